package serve

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/signing"
)

// packed is a signed bundle of one Chainguard-shaped fixture image (mixed signing:
// .sig/.att tags, Sigstore bundle referrers, an SBOM referrer with its own signature).
type packed struct {
	dir string
	pub []byte
	img *fixture.Image
}

// layerBytes makes every unique layer span several stream chunks.
const layerBytes = 3*chunkSize + 12345

func packFixture(t *testing.T) *packed {
	t.Helper()
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.InProcess)
	img := fixture.Chainguard(ctx, t, reg.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 7, LayerBytes: layerBytes})
	client, err := remote.NewClient(remote.Options{PlainHTTP: true})
	must(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	signer, err := signing.NewSigner(key)
	must(t, err)
	pub, err := signer.PublicKeyPEM()
	must(t, err)
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := pack.Pack(ctx, pack.Options{UnsafeNoPolicy: true, Images: []pack.ImageSpec{{Ref: img.Repo + ":" + img.Tag}}, Dir: dir, Client: client,
		Seal: bundle.SealOptions{Signer: signer, ToolVersion: "test"}}); err != nil {
		t.Fatal(err)
	}
	return &packed{dir: dir, pub: pub, img: img}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (p *packed) options() Options {
	return Options{Dir: p.dir, Verify: &bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: p.pub}}, Prefix: "mirror"}
}

// start verifies the bundle and serves its handler on a loopback test server.
func start(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	s, err := New(context.Background(), opts)
	must(t, err)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		_ = s.Shutdown(context.Background())
	})
	return s, hs.URL
}

const repoName = "mirror/chainguard/nginx"

type response struct {
	status int
	header http.Header
	body   []byte
	err    error // reading the body
}

func do(t *testing.T, method, url string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	must(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

func (r response) code(t *testing.T) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil || len(e.Errors) != 1 {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	return e.Errors[0].Code
}

// blobOf returns the first layer of the amd64 child manifest, served from url.
func layerOf(t *testing.T, url string, p *packed) ocispec.Descriptor {
	t.Helper()
	child := p.img.Children["linux/amd64"]
	r := do(t, "GET", url+"/v2/"+repoName+"/manifests/"+child.Digest.String())
	if r.status != 200 {
		t.Fatalf("child manifest: %d %s", r.status, r.body)
	}
	var m ocispec.Manifest
	must(t, json.Unmarshal(r.body, &m))
	for _, l := range m.Layers {
		if l.Size > 2*chunkSize && l.Digest != p.img.BaseLayer.Digest {
			return l
		}
	}
	t.Fatalf("no layer over %d bytes in %s", 2*chunkSize, child.Digest)
	return ocispec.Descriptor{}
}

func TestServesVerifiedGraph(t *testing.T) {
	p := packFixture(t)
	s, url := start(t, p.options())
	img := p.img
	idx := img.Index.Digest

	r := do(t, "GET", url+"/v2/")
	if r.status != 200 || r.header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("/v2/: %d %v", r.status, r.header)
	}

	// catalog: the repository as unpack --to HOST/mirror names it
	r = do(t, "GET", url+"/v2/_catalog")
	var cat struct{ Repositories []string }
	must(t, json.Unmarshal(r.body, &cat))
	if !slices.Equal(cat.Repositories, []string{repoName}) {
		t.Errorf("catalog %s", r.body)
	}

	// tags: the image tag, every cosign tag, a referrers tag schema tag per subject
	r = do(t, "GET", url+"/v2/"+repoName+"/tags/list")
	var tl struct {
		Name string
		Tags []string
	}
	must(t, json.Unmarshal(r.body, &tl))
	want := []string{img.Tag}
	for subj := range img.Signatures {
		want = append(want, oci.CosignTag(subj, ".sig"))
	}
	for subj := range img.Attestations {
		want = append(want, oci.CosignTag(subj, ".att"))
	}
	for subj := range img.Referrers {
		want = append(want, oci.ReferrersTag(subj))
	}
	slices.Sort(want)
	if tl.Name != repoName || !slices.Equal(tl.Tags, want) {
		t.Errorf("tags/list = %s %v\nwant %v", tl.Name, tl.Tags, want)
	}
	// paging: n and last, with a Link to the next page
	r = do(t, "GET", url+"/v2/"+repoName+"/tags/list?n=2")
	must(t, json.Unmarshal(r.body, &tl))
	if !slices.Equal(tl.Tags, want[:2]) || !strings.Contains(r.header.Get("Link"), "last="+want[1]) {
		t.Errorf("n=2: %v, Link %q", tl.Tags, r.header.Get("Link"))
	}
	r = do(t, "GET", url+"/v2/"+repoName+"/tags/list?last="+want[1])
	must(t, json.Unmarshal(r.body, &tl))
	if !slices.Equal(tl.Tags, want[2:]) || r.header.Get("Link") != "" {
		t.Errorf("last=%s: %v, Link %q", want[1], tl.Tags, r.header.Get("Link"))
	}
	if r := do(t, "GET", url+"/v2/"+repoName+"/tags/list?n=x"); r.status != 400 || r.code(t) != codePaginationNum {
		t.Errorf("n=x: %d %s", r.status, r.body)
	}

	// every manifest by digest, GET and HEAD, with its media type, size and digest
	for _, m := range img.AllManifests {
		for _, method := range []string{"GET", "HEAD"} {
			r := do(t, method, url+"/v2/"+repoName+"/manifests/"+m.Digest.String())
			if r.status != 200 || r.header.Get("Content-Type") != m.MediaType || r.header.Get("Docker-Content-Digest") != m.Digest.String() ||
				r.header.Get("Content-Length") != fmt.Sprint(m.Size) {
				t.Errorf("%s manifest %s: %d %v", method, m.Digest, r.status, r.header)
			}
			if method == "GET" && digest.FromBytes(r.body) != m.Digest {
				t.Errorf("GET manifest %s: body hashes to %s", m.Digest, digest.FromBytes(r.body))
			}
			if method == "HEAD" && len(r.body) != 0 {
				t.Errorf("HEAD manifest %s: %d body bytes", m.Digest, len(r.body))
			}
		}
	}
	r = do(t, "GET", url+"/v2/"+repoName+"/manifests/"+img.Tag)
	if r.status != 200 || digest.FromBytes(r.body) != idx || r.header.Get("Content-Type") != ocispec.MediaTypeImageIndex {
		t.Errorf("by tag: %d %v", r.status, r.header)
	}
	for subj, sig := range img.Signatures {
		r := do(t, "HEAD", url+"/v2/"+repoName+"/manifests/"+oci.CosignTag(subj, ".sig"))
		if r.status != 200 || r.header.Get("Docker-Content-Digest") != sig.Digest.String() {
			t.Errorf(".sig of %s: %d %v", subj, r.status, r.header)
		}
	}

	// blobs: GET streams the verified bytes; HEAD answers without a body
	layer := layerOf(t, url, p)
	blobURL := url + "/v2/" + repoName + "/blobs/" + layer.Digest.String()
	full := do(t, "GET", blobURL)
	if full.status != 200 || full.err != nil || digest.FromBytes(full.body) != layer.Digest || full.header.Get("Docker-Content-Digest") != layer.Digest.String() {
		t.Fatalf("GET blob: %d %v %v", full.status, full.err, full.header)
	}
	if r := do(t, "HEAD", blobURL); r.status != 200 || r.header.Get("Content-Length") != fmt.Sprint(layer.Size) || len(r.body) != 0 {
		t.Errorf("HEAD blob: %d %v", r.status, r.header)
	}
	// Range: 206 with exactly the bytes asked for, across chunk boundaries
	for _, c := range []struct {
		rng        string
		start, end int64
	}{
		{"bytes=0-9", 0, 9},
		{fmt.Sprintf("bytes=%d-%d", chunkSize-5, 2*chunkSize+5), chunkSize - 5, 2*chunkSize + 5},
		{fmt.Sprintf("bytes=%d-", layer.Size-100), layer.Size - 100, layer.Size - 1},
		{"bytes=-7", layer.Size - 7, layer.Size - 1},
		{fmt.Sprintf("bytes=10-%d", layer.Size+1000), 10, layer.Size - 1},
	} {
		r := do(t, "GET", blobURL, "Range", c.rng)
		if r.status != 206 || r.err != nil || !bytes.Equal(r.body, full.body[c.start:c.end+1]) ||
			r.header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", c.start, c.end, layer.Size) {
			t.Errorf("Range %s: %d %v %v, %d bytes", c.rng, r.status, r.err, r.header, len(r.body))
		}
	}
	if r := do(t, "GET", blobURL, "Range", fmt.Sprintf("bytes=%d-", layer.Size)); r.status != 416 || r.header.Get("Content-Range") != fmt.Sprintf("bytes */%d", layer.Size) {
		t.Errorf("unsatisfiable range: %d %v", r.status, r.header)
	}
	if r := do(t, "GET", blobURL, "Range", "bytes=0-1,5-6"); r.status != 200 || !bytes.Equal(r.body, full.body) {
		t.Errorf("multi-range: %d, %d bytes (want the whole blob)", r.status, len(r.body))
	}

	// referrers API: every referrer of the index with its artifactType; the filter;
	// an empty index for a subject without referrers
	r = do(t, "GET", url+"/v2/"+repoName+"/referrers/"+idx.String())
	var list ocispec.Index
	must(t, json.Unmarshal(r.body, &list))
	if r.status != 200 || r.header.Get("Content-Type") != ocispec.MediaTypeImageIndex || list.MediaType != ocispec.MediaTypeImageIndex || list.SchemaVersion != 2 {
		t.Fatalf("referrers: %d %v %s", r.status, r.header, r.body)
	}
	assertReferrers(t, "referrers of the index", list.Manifests, img.Referrers[idx])
	at := img.Referrers[idx][0].ArtifactType
	r = do(t, "GET", url+"/v2/"+repoName+"/referrers/"+idx.String()+"?artifactType="+neturl.QueryEscape(at))
	must(t, json.Unmarshal(r.body, &list))
	var wantAT []ocispec.Descriptor
	for _, d := range img.Referrers[idx] {
		if d.ArtifactType == at {
			wantAT = append(wantAT, d)
		}
	}
	if r.header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Errorf("filtered referrers: OCI-Filters-Applied %q", r.header.Get("OCI-Filters-Applied"))
	}
	assertReferrers(t, "filtered referrers", list.Manifests, wantAT)
	r = do(t, "GET", url+"/v2/"+repoName+"/referrers/"+digest.FromString("nothing").String())
	must(t, json.Unmarshal(r.body, &list))
	if r.status != 200 || list.Manifests == nil || len(list.Manifests) != 0 {
		t.Errorf("referrers of an unknown subject: %d %s", r.status, r.body)
	}
	// the referrers tag schema: sha256-<hex> resolves to an index of the same referrers
	r = do(t, "GET", url+"/v2/"+repoName+"/manifests/"+oci.ReferrersTag(idx))
	must(t, json.Unmarshal(r.body, &list))
	if r.status != 200 || r.header.Get("Docker-Content-Digest") != digest.FromBytes(r.body).String() {
		t.Errorf("referrers tag: %d %v", r.status, r.header)
	}
	assertReferrers(t, "referrers tag schema index", list.Manifests, img.Referrers[idx])
	if r := do(t, "GET", url+"/v2/"+repoName+"/manifests/"+digest.FromBytes(r.body).String()); r.status != 200 {
		t.Errorf("referrers tag schema index by digest: %d", r.status)
	}

	// what is not served
	for _, c := range []struct{ path, code string }{
		{"/v2/chainguard/nginx/tags/list", codeNameUnknown}, // the source name, not the served one
		{"/v2/" + repoName + "/manifests/missing", codeManifestUnknwn},
		{"/v2/" + repoName + "/manifests/" + digest.FromString("x").String(), codeManifestUnknwn},
		{"/v2/" + repoName + "/blobs/" + digest.FromString("x").String(), codeBlobUnknown},
	} {
		if r := do(t, "GET", url+c.path); r.status != 404 || r.code(t) != c.code {
			t.Errorf("%s: %d %s, want 404 %s", c.path, r.status, r.body, c.code)
		}
	}
	if r := do(t, "GET", url+"/v2/"+repoName+"/manifests/sha256:baddigest"); r.status != 400 || r.code(t) != codeDigestInvalid {
		t.Errorf("bad digest: %d %s", r.status, r.body)
	}
	if st := s.Stats(); st.Tampered != 0 || st.Requests == 0 {
		t.Errorf("stats %+v", st)
	}
}

func assertReferrers(t *testing.T, what string, got, want []ocispec.Descriptor) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d, want %d: %+v", what, len(got), len(want), got)
	}
	for _, w := range want {
		i := slices.IndexFunc(got, func(g ocispec.Descriptor) bool { return g.Digest == w.Digest })
		if i < 0 || got[i].ArtifactType != w.ArtifactType || got[i].Size != w.Size || got[i].MediaType != w.MediaType {
			t.Errorf("%s: %s (%s) missing or different: %+v", what, w.Digest, w.ArtifactType, got)
		}
	}
}

func TestWritesRefused(t *testing.T) {
	p := packFixture(t)
	_, url := start(t, p.options())
	for _, c := range []struct{ method, path string }{
		{"POST", "/v2/" + repoName + "/blobs/uploads/"},
		{"GET", "/v2/" + repoName + "/blobs/uploads/some-session"},
		{"PATCH", "/v2/" + repoName + "/blobs/uploads/some-session"},
		{"PUT", "/v2/" + repoName + "/manifests/1.27"},
		{"PUT", "/v2/" + repoName + "/manifests/new"},
		{"DELETE", "/v2/" + repoName + "/manifests/" + p.img.Index.Digest.String()},
		{"DELETE", "/v2/" + repoName + "/blobs/" + p.img.BaseLayer.Digest.String()},
	} {
		r := do(t, c.method, url+c.path)
		if r.status != 405 || r.code(t) != codeUnsupported || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}
	// still the same content
	r := do(t, "GET", url+"/v2/"+repoName+"/manifests/1.27")
	if r.status != 200 || digest.FromBytes(r.body) != p.img.Index.Digest {
		t.Errorf("after the refused writes: %d", r.status)
	}
}

// overwrite changes one byte of path in place (same file, same size).
func overwrite(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	must(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	must(t, err)
}

func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

func TestTamperedBlobNotServed(t *testing.T) {
	p := packFixture(t)
	s, url := start(t, p.options())
	layer := layerOf(t, url, p)
	blobURL := url + "/v2/" + repoName + "/blobs/" + layer.Digest.String()

	// the last byte changes: everything before the last chunk may go out, the rest is
	// held back and the response is cut
	overwrite(t, blobPath(p.dir, layer.Digest), layer.Size-1)
	r := do(t, "GET", blobURL)
	if r.err == nil || int64(len(r.body)) >= layer.Size || r.status != 200 {
		t.Fatalf("GET of a blob changed on disk: status %d, %d of %d bytes, read error %v (want a cut body)", r.status, len(r.body), layer.Size, r.err)
	}
	if int64(len(r.body)) > layer.Size-1-(layer.Size-1)%chunkSize {
		t.Errorf("the chunk holding the changed byte went out: %d of %d bytes", len(r.body), layer.Size)
	}
	// a range before the changed byte is cut too: the whole blob is checked first
	r = do(t, "GET", blobURL, "Range", "bytes=0-99")
	if r.err == nil || len(r.body) == 100 {
		t.Errorf("Range of a changed blob: status %d, %d bytes, err %v", r.status, len(r.body), r.err)
	}
	if got := s.Stats().Tampered; got != 2 {
		t.Errorf("Tampered = %d, want 2", got)
	}

	// a blob replaced by another file (new inode, even with the right bytes) is
	// refused before anything is sent
	base := blobPath(p.dir, p.img.BaseLayer.Digest)
	b, err := os.ReadFile(base)
	must(t, err)
	must(t, os.Rename(base, base+".old")) // kept, so its inode is not reused
	must(t, os.WriteFile(base, b, 0o644))
	r = do(t, "GET", url+"/v2/"+repoName+"/blobs/"+p.img.BaseLayer.Digest.String())
	if r.status != 500 || r.code(t) != codeUnknown {
		t.Errorf("replaced blob: %d %s", r.status, r.body)
	}
	// a manifest changed on disk is refused whole
	child := p.img.Children["linux/arm64"]
	overwrite(t, blobPath(p.dir, child.Digest), 3)
	if r := do(t, "GET", url+"/v2/"+repoName+"/manifests/"+child.Digest.String()); r.status != 500 {
		t.Errorf("changed manifest: %d %s", r.status, r.body)
	}
	if got := s.Stats().Tampered; got != 4 {
		t.Errorf("Tampered = %d, want 4", got)
	}
}

func TestReload(t *testing.T) {
	p := packFixture(t)
	s, url := start(t, p.options())
	ctx := context.Background()
	must(t, s.Reload(ctx))
	if st := s.Stats(); st.Reloads != 1 || st.ReloadFailures != 0 {
		t.Errorf("stats after a passing reload: %+v", st)
	}
	idxURL := url + "/v2/" + repoName + "/manifests/" + p.img.Tag
	if r := do(t, "GET", idxURL); r.status != 200 {
		t.Fatalf("after reload: %d", r.status)
	}
	// tampered: the reload fails as verify does, and the verified view keeps serving
	layer := layerOf(t, url, p)
	overwrite(t, blobPath(p.dir, layer.Digest), 0)
	err := s.Reload(ctx)
	if !errors.Is(err, layout.ErrFileChanged) {
		t.Fatalf("Reload of a tampered bundle = %v, want ErrFileChanged", err)
	}
	if st := s.Stats(); st.Reloads != 1 || st.ReloadFailures != 1 {
		t.Errorf("stats after a failed reload: %+v", st)
	}
	if r := do(t, "GET", idxURL); r.status != 200 || digest.FromBytes(r.body) != p.img.Index.Digest {
		t.Errorf("after a failed reload: %d", r.status)
	}
	if r := do(t, "GET", url+"/v2/"+repoName+"/blobs/"+layer.Digest.String()); r.err == nil {
		t.Errorf("the tampered blob is served after a failed reload: %d, %d bytes", r.status, len(r.body))
	}
}

// TestReloadDuringStreams: streams in flight on the old view finish intact while a
// reload swaps the view; the old view's files stay open until they are done.
func TestConcurrentClientsAndReload(t *testing.T) {
	p := packFixture(t)
	s, url := start(t, p.options())
	layer := layerOf(t, url, p)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("GET", url+"/v2/"+repoName+"/blobs/"+layer.Digest.String(), nil)
			if i%2 == 1 {
				req.Header.Set("Range", fmt.Sprintf("bytes=%d-", i*1000))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			if i%2 == 0 && digest.FromBytes(b) != layer.Digest || i%2 == 1 && int64(len(b)) != layer.Size-int64(i*1000) {
				errs <- fmt.Errorf("client %d: %d bytes", i, len(b))
			}
		}()
		if i == 16 {
			must(t, s.Reload(context.Background()))
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRefusedBeforeServing(t *testing.T) {
	p := packFixture(t)
	_, otherPub, _ := fixture.KeyPair(t)
	opts := p.options()
	opts.Verify = &bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: otherPub}}
	if _, err := New(context.Background(), opts); !errors.Is(err, bundle.ErrSignature) {
		t.Errorf("another key: %v, want ErrSignature", err)
	}
	layer := p.img.BaseLayer
	overwrite(t, blobPath(p.dir, layer.Digest), 1)
	if _, err := New(context.Background(), p.options()); !errors.Is(err, layout.ErrFileChanged) {
		t.Errorf("tampered bundle: %v, want ErrFileChanged", err)
	}
	// a non-loopback address without TLS is refused before the bundle is read
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:5000"} {
		opts := Options{Dir: "/nonexistent", Verify: &bundle.VerifyOptions{}, Addr: addr}
		if _, err := New(context.Background(), opts); !errors.Is(err, ErrPlainHTTP) {
			t.Errorf("plain HTTP on %s: %v, want ErrPlainHTTP", addr, err)
		}
	}
	if _, err := New(context.Background(), Options{Dir: "/x", Verify: &bundle.VerifyOptions{}, TLSCertFile: "c.pem"}); !errors.Is(err, ErrOptions) {
		t.Errorf("cert without key: %v", err)
	}
}

func TestStartTLSAndShutdown(t *testing.T) {
	p := packFixture(t)
	certFile, keyFile, pool := selfSigned(t)
	opts := p.options()
	opts.Addr = "127.0.0.1:0"
	opts.TLSCertFile, opts.TLSKeyFile = certFile, keyFile
	s, err := New(context.Background(), opts)
	must(t, err)
	must(t, s.Start())
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %s", s.URL())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get(s.URL() + "/v2/" + repoName + "/manifests/" + p.img.Tag)
	must(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || digest.FromBytes(b) != p.img.Index.Digest || resp.TLS == nil {
		t.Errorf("over TLS: %d", resp.StatusCode)
	}
	// plain HTTP to the TLS port does not get the content
	if resp, err := http.Get("http://" + s.Addr() + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS listener")
		}
	}
	must(t, s.Shutdown(context.Background()))
	select {
	case err := <-s.Done():
		if err != nil {
			t.Errorf("Done: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still serving after Shutdown")
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("still listening after Shutdown")
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "petra-oci serve test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	d := t.TempDir()
	certFile, keyFile = filepath.Join(d, "cert.pem"), filepath.Join(d, "key.pem")
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600))
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		h             string
		size          int64
		start, end    int64
		ok, unsatisfy bool
	}{
		{"bytes=0-0", 10, 0, 0, true, false},
		{"bytes=2-5", 10, 2, 5, true, false},
		{"bytes=2-", 10, 2, 9, true, false},
		{"bytes=-3", 10, 7, 9, true, false},
		{"bytes=-30", 10, 0, 9, true, false},
		{"bytes=5-100", 10, 5, 9, true, false},
		{"bytes=10-", 10, 0, 0, false, true},
		{"bytes=-0", 10, 0, 0, false, true},
		{"bytes=0-", 0, 0, 0, false, true},
		{"bytes=5-2", 10, 0, 0, false, false},
		{"bytes=1-2,4-5", 10, 0, 0, false, false},
		{"items=1-2", 10, 0, 0, false, false},
		{"bytes=a-b", 10, 0, 0, false, false},
		{"bytes=+1-2", 10, 0, 0, false, false},
		{"bytes=-", 10, 0, 0, false, false},
	} {
		s, e, ok, un := parseRange(c.h, c.size)
		if ok != c.ok || un != c.unsatisfy || ok && (s != c.start || e != c.end) {
			t.Errorf("parseRange(%q, %d) = %d, %d, %v, %v", c.h, c.size, s, e, ok, un)
		}
	}
}
