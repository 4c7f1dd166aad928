package remote

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/petra-oci/petra-oci/oci"
)

func status(code int, codes ...string) error {
	er := &errcode.ErrorResponse{Method: http.MethodPut, URL: &url.URL{Scheme: "http", Host: "r", Path: "/v2/x/blobs/uploads/1"}, StatusCode: code}
	for _, c := range codes {
		er.Errors = append(er.Errors, errcode.Error{Code: c})
	}
	return fmt.Errorf("writing blob sha256:ab: %w", er)
}

// TestTransient: only what can go away on its own is retried.
func TestTransient(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"503", status(503), true},
		{"500", status(500), true},
		{"502", status(502), true},
		{"504", status(504), true},
		{"429", status(429), true},
		{"408", status(408), true},
		{"501 not implemented", status(501), false},
		{"400", status(400), false},
		{"401", status(401), false},
		{"403", status(403), false},
		{"404 manifest unknown", status(404, errcode.ErrorCodeManifestUnknown), false},
		{"404 upload session lost", status(404, errcode.ErrorCodeBlobUploadUnknown), true},
		{"409", status(409), false},
		{"body cut short", fmt.Errorf("reading sha256:ab: %w", io.ErrUnexpectedEOF), true},
		{"connection closed before an answer", &url.Error{Op: "Get", URL: "http://r/v2/", Err: io.EOF}, true},
		{"connection reset", &url.Error{Op: "Put", URL: "http://r/v2/", Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}, true},
		{"broken pipe", fmt.Errorf("x: %w", syscall.EPIPE), true},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"timeout", &url.Error{Op: "Get", URL: "http://r/", Err: &net.DNSError{IsTimeout: true}}, true},
		{"no such host", &url.Error{Op: "Get", URL: "http://r/", Err: &net.OpError{Op: "dial", Err: &net.DNSError{IsNotFound: true}}}, false},
		{"context cancelled", fmt.Errorf("x: %w", context.Canceled), false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"cancelled while reading", errors.Join(context.Canceled, io.ErrUnexpectedEOF), false},
		{"digest mismatch of complete content", fmt.Errorf("%w: content does not hash to sha256:ab", oci.ErrDigestMismatch), false},
		{"not found", fmt.Errorf("sha256:ab: %w", errdef.ErrNotFound), false},
		{"certificate", &url.Error{Op: "Get", URL: "https://r/", Err: x509.UnknownAuthorityError{}}, false},
		{"policy refusal", errors.New("no valid signature"), false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := Transient(c.err); got != c.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// TestBackoffBounds: waits double from Backoff up to MaxBackoff, each drawn in
// [w/2, w], and are not all the same (jitter).
func TestBackoffBounds(t *testing.T) {
	r, err := NewRetrier(RetryOptions{Backoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Duration]bool{}
	for retry := 1; retry <= 40; retry++ {
		w := min(100*time.Millisecond<<min(retry-1, 30), 2*time.Second)
		for range 50 {
			d := r.Backoff(retry)
			if d < w/2 || d > w {
				t.Fatalf("retry %d: wait %s outside [%s, %s]", retry, d, w/2, w)
			}
			seen[d] = true
		}
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct waits in 2000 draws: no jitter", len(seen))
	}
}

func TestRetryOptionsDefaults(t *testing.T) {
	r, err := NewRetrier(RetryOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Options(), (RetryOptions{Attempts: DefaultAttempts, MaxTime: DefaultMaxTime, Backoff: DefaultBackoff, MaxBackoff: DefaultMaxBackoff}); got != want {
		t.Errorf("zero options mean %+v, want %+v", got, want)
	}
	for _, o := range []RetryOptions{{Attempts: -1}, {MaxTime: -time.Second}, {Backoff: -1}, {MaxBackoff: -1}} {
		if _, err := NewRetrier(o, nil); !errors.Is(err, oci.ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", o, err)
		}
	}
	if _, err := NewClient(Options{Retry: RetryOptions{Attempts: -2}}); !errors.Is(err, oci.ErrInvalid) {
		t.Errorf("NewClient with negative attempts: %v", err)
	}
}

// fakeClock makes a Retrier's waits instant and records them.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func withFakeClock(r *Retrier) *fakeClock {
	c := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	r.now = func() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
	r.sleep = func(ctx context.Context, d time.Duration) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.waits = append(c.waits, d)
		c.now = c.now.Add(d)
		return ctx.Err()
	}
	return c
}

func TestDoRetriesTransientThenSucceeds(t *testing.T) {
	r, _ := NewRetrier(RetryOptions{Attempts: 5, Backoff: time.Second, MaxBackoff: 4 * time.Second}, nil)
	clock := withFakeClock(r)
	calls := 0
	err := r.Do(context.Background(), "copying blob sha256:ab", func(context.Context) error {
		calls++
		if calls < 4 {
			return status(503)
		}
		return nil
	})
	if err != nil || calls != 4 {
		t.Fatalf("Do = %v after %d calls, want success on the 4th", err, calls)
	}
	if len(clock.waits) != 3 {
		t.Fatalf("waited %v, want 3 waits", clock.waits)
	}
	for i, w := range clock.waits {
		hi := min(time.Second<<i, 4*time.Second)
		if w < hi/2 || w > hi {
			t.Errorf("wait %d = %s, want in [%s, %s]", i+1, w, hi/2, hi)
		}
	}
}

func TestDoDoesNotRetryPermanent(t *testing.T) {
	r, _ := NewRetrier(RetryOptions{Attempts: 5}, nil)
	clock := withFakeClock(r)
	perm := status(401)
	calls := 0
	err := r.Do(context.Background(), "x", func(context.Context) error { calls++; return perm })
	if calls != 1 || err != perm || len(clock.waits) != 0 {
		t.Errorf("a 401: %d calls, error %v, waits %v; want one call and the error as it is", calls, err, clock.waits)
	}
	if errors.Is(err, ErrGaveUp) {
		t.Errorf("a permanent error is reported as a give-up: %v", err)
	}
}

func TestDoGivesUpAfterAttempts(t *testing.T) {
	r, _ := NewRetrier(RetryOptions{Attempts: 3, Backoff: 10 * time.Millisecond}, nil)
	withFakeClock(r)
	calls := 0
	err := r.Do(context.Background(), "copying blob sha256:ab", func(context.Context) error { calls++; return status(503) })
	if calls != 3 {
		t.Errorf("%d calls, want 3", calls)
	}
	var g *GaveUpError
	if !errors.As(err, &g) || !errors.Is(err, ErrGaveUp) {
		t.Fatalf("Do = %v, want a GaveUpError", err)
	}
	var er *errcode.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != 503 {
		t.Errorf("the last error is not wrapped: %v", err)
	}
	if g.What != "copying blob sha256:ab" || g.Attempts != 3 {
		t.Errorf("GaveUpError %+v", g)
	}
	msg := err.Error()
	for _, want := range []string{"gave up after 3 attempts", "writing blob sha256:ab", "response status code 503"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
}

// TestDoMaxTime: no wait begins that would end beyond MaxTime; the give-up names the
// bound.
func TestDoMaxTime(t *testing.T) {
	r, _ := NewRetrier(RetryOptions{Attempts: 100, MaxTime: 10 * time.Second, Backoff: time.Second, MaxBackoff: 4 * time.Second}, nil)
	clock := withFakeClock(r)
	start := clock.now
	calls := 0
	err := r.Do(context.Background(), "x", func(context.Context) error { calls++; return io.ErrUnexpectedEOF })
	var g *GaveUpError
	if !errors.As(err, &g) || !strings.Contains(err.Error(), "beyond the 10s retry bound") {
		t.Fatalf("Do = %v, want a give-up at the time bound", err)
	}
	if spent := clock.now.Sub(start); spent > 10*time.Second {
		t.Errorf("spent %s waiting, beyond MaxTime", spent)
	}
	if calls < 3 || calls >= 100 || g.Attempts != calls {
		t.Errorf("%d calls (error says %d)", calls, g.Attempts)
	}
}

func TestDoStopsWithContext(t *testing.T) {
	r, _ := NewRetrier(RetryOptions{Attempts: 100, Backoff: time.Hour, MaxBackoff: time.Hour, MaxTime: 24 * time.Hour}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	start := time.Now()
	err := r.Do(ctx, "x", func(context.Context) error { return status(503) })
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Errorf("Do = %v after %s, want the cancellation at once", err, time.Since(start))
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 2, 8, 0, 0, 0, time.UTC)
	resp := func(code int, v string) *http.Response {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	cases := []struct {
		resp *http.Response
		want time.Duration
	}{
		{resp(429, "3"), 3 * time.Second},
		{resp(503, "120"), 2 * time.Minute},
		{resp(429, now.Add(90*time.Second).Format(http.TimeFormat)), 90 * time.Second},
		{resp(429, now.Add(-time.Minute).Format(http.TimeFormat)), 0},
		{resp(429, "0"), 0},
		{resp(429, "-5"), 0},
		{resp(429, "soon"), 0},
		{resp(429, ""), 0},
		{resp(500, "3"), 0}, // only 429 and 503 ask to come back later
		{resp(200, "3"), 0},
		{resp(429, "99999999999"), 24 * time.Hour},
		{nil, 0},
	}
	for _, c := range cases {
		if got := RetryAfter(c.resp, now); got != c.want {
			v := ""
			if c.resp != nil {
				v = fmt.Sprintf("%d %q", c.resp.StatusCode, c.resp.Header.Get("Retry-After"))
			}
			t.Errorf("RetryAfter(%s) = %s, want %s", v, got, c.want)
		}
	}
}

// streamed is a request body that cannot be replayed (no GetBody), as a blob upload
// from a verified reader is.
type streamed struct{ io.Reader }

// TestRetryAfterHonoured: a registry answers a streamed upload (which the transport
// cannot replay) 429 with Retry-After: 2; the operation waits those 2 s, longer
// than its backoff, and succeeds on the next try. A Retry-After beyond MaxTime ends
// the operation at once.
func TestRetryAfterHonoured(t *testing.T) {
	var mu sync.Mutex
	puts := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		puts++
		n := puts
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", r.URL.Query().Get("after"))
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	c, err := NewClient(Options{PlainHTTP: true, Retry: RetryOptions{Attempts: 4, Backoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, MaxTime: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	clock := withFakeClock(c.retry)
	upload := func(after string) error {
		return c.Retry(context.Background(), "upload", func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL+"/v2/x/blobs/uploads/1?after="+after, streamed{strings.NewReader("blob")})
			if err != nil {
				return err
			}
			resp, err := c.client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return &errcode.ErrorResponse{Method: req.Method, URL: req.URL, StatusCode: resp.StatusCode}
			}
			return nil
		})
	}
	if err := upload("2"); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if puts != 2 || len(clock.waits) != 1 || clock.waits[0] != 2*time.Second {
		t.Errorf("%d PUTs, waits %v: want one retry after the 2 s the registry asked for", puts, clock.waits)
	}

	puts, clock.waits = 0, nil
	err = upload("3600")
	if !errors.Is(err, ErrGaveUp) || !strings.Contains(err.Error(), "beyond the 1m0s retry bound") || len(clock.waits) != 0 {
		t.Errorf("a Retry-After of an hour with a 1 m bound: %v after waits %v, want a give-up without waiting", err, clock.waits)
	}
}

// TestTransportRetriesReplayable: a GET answered 503 twice is retried by the
// transport, bounded by Attempts, and a 404 is not.
func TestTransportRetriesReplayable(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		n := hits[r.URL.Path]
		mu.Unlock()
		switch {
		case r.URL.Path == "/missing":
			w.WriteHeader(http.StatusNotFound)
		case r.URL.Path == "/flaky" && n <= 2, r.URL.Path == "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer srv.Close()
	c, err := NewClient(Options{PlainHTTP: true, Retry: RetryOptions{Attempts: 4, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) int {
		resp, err := c.client.Client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/flaky"); code != 200 || hits["/flaky"] != 3 {
		t.Errorf("/flaky: %d after %d requests, want 200 after 3", code, hits["/flaky"])
	}
	if code := get("/down"); code != 503 || hits["/down"] != 4 {
		t.Errorf("/down: %d after %d requests, want 503 after 4 (Attempts)", code, hits["/down"])
	}
	if code := get("/missing"); code != 404 || hits["/missing"] != 1 {
		t.Errorf("/missing: %d after %d requests, want one", code, hits["/missing"])
	}
}

// breakingFetcher serves content, breaking off the first breaks reads after cut bytes
// with an unexpected EOF.
type breakingFetcher struct {
	content []byte
	cut     int
	mu      sync.Mutex
	breaks  int
	fetches int
}

func (f *breakingFetcher) Fetch(context.Context, ocispec.Descriptor) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches++
	if f.fetches <= f.breaks {
		return io.NopCloser(io.MultiReader(bytes.NewReader(f.content[:f.cut]), errReader{io.ErrUnexpectedEOF})), nil
	}
	return io.NopCloser(bytes.NewReader(f.content)), nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestRetryingFetcher: reads that break off are resumed where they broke, and what
// is read verifies; a source that always breaks gives up after Attempts fetches.
func TestRetryingFetcher(t *testing.T) {
	content := bytes.Repeat([]byte("petra-oci "), 1000)
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(content), Size: int64(len(content))}
	r, _ := NewRetrier(RetryOptions{Attempts: 4, Backoff: time.Millisecond}, nil)
	withFakeClock(r)

	f := &breakingFetcher{content: content, cut: 512, breaks: 3}
	rc, err := r.RetryingFetcher(f).Fetch(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := oci.ReadAllVerified(rc, desc, 1<<20)
	if err != nil || !bytes.Equal(b, content) {
		t.Fatalf("read %d bytes (%v), want the content whole", len(b), err)
	}
	if f.fetches != 4 {
		t.Errorf("%d fetches, want 4 (3 broken)", f.fetches)
	}

	f = &breakingFetcher{content: content, cut: 512, breaks: 1000}
	rc, err = r.RetryingFetcher(f).Fetch(context.Background(), desc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = oci.ReadAllVerified(rc, desc, 1<<20)
	if !errors.Is(err, ErrGaveUp) || !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "gave up after 4 attempts") {
		t.Errorf("always broken: %v, want a give-up after 4 attempts", err)
	}
	if f.fetches != 4 {
		t.Errorf("%d fetches, want 4", f.fetches)
	}
}

// TestTransportWithinOperationTime: the transport's retries of a request stop when
// the operation's time is up, so --retry-max-time bounds an operation as a whole.
func TestTransportWithinOperationTime(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, err := NewClient(Options{PlainHTTP: true, Retry: RetryOptions{Attempts: 20, Backoff: 40 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, MaxTime: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = c.Retry(context.Background(), "get", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/down", nil)
		resp, err := c.client.Client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return &errcode.ErrorResponse{Method: req.Method, URL: req.URL, StatusCode: resp.StatusCode}
	})
	took := time.Since(start)
	if !errors.Is(err, ErrGaveUp) {
		t.Fatalf("err = %v, want a give-up", err)
	}
	// waits of 20–40 ms within 200 ms: at most 11 requests, not 20 × 20
	if n := hits.Load(); n > 11 || took > 2*time.Second {
		t.Errorf("%d requests in %s for an operation bounded to 200 ms", n, took)
	}
}
