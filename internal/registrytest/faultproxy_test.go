package registrytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// plainClient sends each request on a new connection, so the faults are seen as
// they are (net/http would quietly resend a GET whose reused connection closed).
func plainClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
}

// pushBlob stores b in repo of r directly (not through a proxy).
func pushBlob(t *testing.T, r *Registry, repo string, b []byte) ocispec.Descriptor {
	t.Helper()
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := r.Repository(t, repo).Push(context.Background(), desc, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return desc
}

// outcome is what a client saw of one request: a status and the body length, or an
// error.
func outcome(c *http.Client, method, url string, body []byte) string {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	resp, err := c.Do(req)
	if err != nil {
		return "error"
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return fmt.Sprintf("%d cut at %d (%v)", resp.StatusCode, n, errors.Is(err, io.ErrUnexpectedEOF))
	}
	return fmt.Sprintf("%d %d", resp.StatusCode, n)
}

// TestFaultProxyKinds: each kind of fault, alone at rate 1, does to a client what it
// says, and is counted.
func TestFaultProxyKinds(t *testing.T) {
	r := Start(t, InProcess)
	big := pushBlob(t, r, "f/x", bytes.Repeat([]byte("x"), 2000))
	small := pushBlob(t, r, "f/x", bytes.Repeat([]byte("y"), 100))
	c := plainClient()
	proxy := func(f Fault) *FaultProxy {
		return StartFaultProxy(t, r, FaultOptions{Seed: 1, Rate: 1, Faults: []Fault{f}, RetryAfter: 7})
	}
	blobURL := func(p *FaultProxy, d ocispec.Descriptor) string {
		return "http://" + p.Host + "/v2/f/x/blobs/" + d.Digest.String()
	}

	t.Run("503", func(t *testing.T) {
		p := proxy(FaultUnavailable)
		resp, err := c.Get(blobURL(p, big))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || !strings.Contains(string(b), `"code":"UNAVAILABLE"`) {
			t.Errorf("got %d %s", resp.StatusCode, b)
		}
		if got := p.Counts(); got.Unavailable != 1 || got.Injected() != 1 || got.Requests != 1 {
			t.Errorf("counts %s", got)
		}
	})
	t.Run("429", func(t *testing.T) {
		p := proxy(FaultTooMany)
		resp, err := c.Get(blobURL(p, big))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" {
			t.Errorf("got %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if got := p.Counts(); got.TooMany != 1 {
			t.Errorf("counts %s", got)
		}
	})
	t.Run("drop", func(t *testing.T) {
		p := proxy(FaultDrop)
		if got := outcome(c, http.MethodGet, blobURL(p, big), nil); got != "error" {
			t.Errorf("a dropped connection answered %s", got)
		}
		if got := p.Counts(); got.Dropped != 1 {
			t.Errorf("counts %s", got)
		}
	})
	t.Run("truncate", func(t *testing.T) {
		p := proxy(FaultTruncate)
		if got, want := outcome(c, http.MethodGet, blobURL(p, big), nil), "200 cut at 512 (true)"; got != want {
			t.Errorf("2000-byte blob: %s, want %s", got, want)
		}
		if got, want := outcome(c, http.MethodGet, blobURL(p, small), nil), "200 cut at 50 (true)"; got != want {
			t.Errorf("100-byte blob: %s, want %s", got, want)
		}
		if got := outcome(c, http.MethodHead, blobURL(p, big), nil); got != "error" {
			t.Errorf("HEAD: %s, want the answer lost", got)
		}
		// a request body is cut: the upload never reaches the registry
		body := bytes.Repeat([]byte("z"), 4096)
		d := digest.FromBytes(body)
		if got := outcome(c, http.MethodPost, "http://"+p.Host+"/v2/f/x/blobs/uploads/?digest="+d.String(), body); got != "error" {
			t.Errorf("upload with its body cut: %s", got)
		}
		if ok, err := r.Repository(t, "f/x").Blobs().Exists(context.Background(), ocispec.Descriptor{Digest: d, Size: int64(len(body))}); err != nil || ok {
			t.Errorf("the cut upload reached the registry (%v, %v)", ok, err)
		}
		if got := p.Counts(); got.TruncatedResponses != 3 || got.TruncatedRequests != 1 || got.Injected() != 4 {
			t.Errorf("counts %s", got)
		}
	})
}

// TestFaultProxyPassesThrough: at rate 0 everything is forwarded whole, with latency.
func TestFaultProxyPassesThrough(t *testing.T) {
	r := Start(t, InProcess)
	big := pushBlob(t, r, "f/x", bytes.Repeat([]byte("x"), 2000))
	p := StartFaultProxy(t, r, FaultOptions{Seed: 1, Latency: 40 * time.Millisecond})
	c := plainClient()
	start := time.Now()
	for range 5 {
		if got := outcome(c, http.MethodGet, "http://"+p.Host+"/v2/f/x/blobs/"+big.Digest.String(), nil); got != "200 2000" {
			t.Fatalf("got %s", got)
		}
	}
	if took := time.Since(start); took < 5*20*time.Millisecond {
		t.Errorf("5 requests took %s, want at least 5 × 20 ms of latency", took)
	}
	if got := p.Counts(); got.Requests != 5 || got.Delayed != 5 || got.Injected() != 0 {
		t.Errorf("counts %s", got)
	}
}

// TestFaultProxySeeded: the same seed fails the same requests in the same way; another
// seed does not; Select limits the faults to the requests it picks; the rate holds.
func TestFaultProxySeeded(t *testing.T) {
	r := Start(t, InProcess)
	big := pushBlob(t, r, "f/x", bytes.Repeat([]byte("x"), 2000))
	c := plainClient()
	run := func(opts FaultOptions) ([]string, FaultCounts) {
		p := StartFaultProxy(t, r, opts)
		var out []string
		for i := range 60 {
			path := "/v2/f/x/blobs/" + big.Digest.String()
			if i%3 == 0 {
				path = "/v2/"
			}
			out = append(out, outcome(c, http.MethodGet, "http://"+p.Host+path, nil))
		}
		return out, p.Counts()
	}
	a, ca := run(FaultOptions{Seed: 42, Rate: 0.5})
	b, cb := run(FaultOptions{Seed: 42, Rate: 0.5})
	other, _ := run(FaultOptions{Seed: 43, Rate: 0.5})
	if fmt.Sprint(a) != fmt.Sprint(b) || ca != cb {
		t.Errorf("same seed, different faults:\n%v\n%v", a, b)
	}
	if fmt.Sprint(a) == fmt.Sprint(other) {
		t.Errorf("seeds 42 and 43 gave the same faults: %v", a)
	}
	if n := ca.Injected(); n < 15 || n > 45 {
		t.Errorf("%d faults in 60 requests at rate 0.5", n)
	}
	_, cs := run(FaultOptions{Seed: 42, Rate: 1, Select: func(r *http.Request) bool { return r.URL.Path == "/v2/" }})
	if cs.Injected() != 20 {
		t.Errorf("Select of 20 of 60 requests at rate 1: %s", cs)
	}
}

func TestSelectors(t *testing.T) {
	cases := []struct {
		method, path string
		upload, read bool
	}{
		{http.MethodPost, "/v2/a/b/blobs/uploads/", true, false},
		{http.MethodPatch, "/v2/a/b/blobs/uploads/5f3e", true, false},
		{http.MethodPut, "/v2/a/b/blobs/uploads/5f3e", true, false},
		{http.MethodGet, "/v2/a/b/blobs/uploads/5f3e", false, false},
		{http.MethodGet, "/v2/a/b/blobs/sha256:ab", false, true},
		{http.MethodHead, "/v2/a/b/blobs/sha256:ab", false, false},
		{http.MethodGet, "/v2/a/b/manifests/sha256:ab", false, false},
		{http.MethodPut, "/v2/a/b/manifests/1", false, false},
	}
	for _, c := range cases {
		r, _ := http.NewRequest(c.method, "http://h"+c.path, nil)
		if got := BlobUpload(r); got != c.upload {
			t.Errorf("BlobUpload(%s %s) = %v", c.method, c.path, got)
		}
		if got := BlobRead(r); got != c.read {
			t.Errorf("BlobRead(%s %s) = %v", c.method, c.path, got)
		}
	}
}

// TestFaultProxyBreakEvery: with BreakEvery, bodies are counted as read, and the
// link breaks once [BreakEvery/2, 3·BreakEvery/2] body bytes went through since the
// last break: a request whose body crosses that point gets a 502, the others pass.
func TestFaultProxyBreakEvery(t *testing.T) {
	r := Start(t, InProcess)
	p := StartFaultProxy(t, r, FaultOptions{Seed: 1, BreakEvery: 3000})
	c := plainClient()
	body := bytes.Repeat([]byte("z"), 1000)
	var got []string
	for range 12 {
		// an upload of 1000 bytes in one request (POST ?digest= is answered 201 or 202)
		got = append(got, outcome(c, http.MethodPut, "http://"+p.Host+"/v2/f/x/blobs/uploads/x?digest="+digest.FromBytes(body).String(), body))
	}
	cnt := p.Counts()
	broken := 0
	for _, g := range got {
		if strings.HasPrefix(g, "502") {
			broken++
		}
	}
	if cnt.Breaks < 2 || cnt.Breaks > 8 || broken != cnt.Breaks {
		t.Errorf("12 bodies of 1000 bytes breaking every 1500-4500 bytes: %d breaks counted, %d answered 502 (%v)", cnt.Breaks, broken, got)
	}
	if cnt.BodyBytes == 0 || cnt.BodyBytes > 12000 || cnt.UploadBodyBytes != cnt.BodyBytes {
		t.Errorf("body bytes %d, upload body bytes %d, want (0, 12000] and equal", cnt.BodyBytes, cnt.UploadBodyBytes)
	}
}
