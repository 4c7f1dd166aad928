package referrers

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/petra-oci/petra-oci/oci"
)

// flakyGraph is a graphSource whose referrers listings deliver a first page and then
// break off (unexpected EOF) the first breaks times, and whose tag resolutions fail
// the first breaks times.
type flakyGraph struct {
	*graphSource
	breaks   int
	listings int
	resolves map[string]int
}

func (f *flakyGraph) Referrers(ctx context.Context, desc ocispec.Descriptor, at string, fn func([]ocispec.Descriptor) error) error {
	f.listings++
	if f.listings <= f.breaks {
		page := f.referrers[desc.Digest]
		if err := fn(page[:1]); err != nil {
			return err
		}
		return io.ErrUnexpectedEOF
	}
	return f.graphSource.Referrers(ctx, desc, at, fn)
}

func (f *flakyGraph) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	f.resolves[ref]++
	if f.resolves[ref] <= f.breaks {
		return ocispec.Descriptor{}, io.ErrUnexpectedEOF
	}
	return f.graphSource.Resolve(ctx, ref)
}

// retryAll retries every error but errdef.ErrNotFound, up to attempts tries, and
// records what it ran.
func retryAll(attempts int, ran *[]string) Retry {
	return func(ctx context.Context, what string, op func(context.Context) error) error {
		*ran = append(*ran, what)
		var err error
		for range attempts {
			if err = op(ctx); err == nil || errors.Is(err, errdef.ErrNotFound) {
				return err
			}
		}
		return err
	}
}

// TestDiscoverRetry: a referrers listing that breaks off after its first page is
// listed again whole (no referrer counted twice, none lost), and a cosign tag whose
// resolution fails is resolved again; without retries the first break fails
// discovery.
func TestDiscoverRetry(t *testing.T) {
	root, a, b, sig := manifestDesc("root"), manifestDesc("a"), manifestDesc("b"), manifestDesc("sig")
	mk := func(breaks int) *flakyGraph {
		return &flakyGraph{
			graphSource: &graphSource{
				referrers: map[digest.Digest][]ocispec.Descriptor{root.Digest: {a, b}},
				tags:      map[string]ocispec.Descriptor{oci.CosignTag(root.Digest, ".sig"): sig},
				listed:    map[digest.Digest]int{},
			},
			breaks:   breaks,
			resolves: map[string]int{},
		}
	}
	var ran []string
	src := mk(2)
	got, err := DiscoverRetry(context.Background(), src, root, retryAll(3, &ran))
	if err != nil {
		t.Fatalf("DiscoverRetry: %v", err)
	}
	var digests []string
	for _, at := range got {
		digests = append(digests, string(at.Kind)+" "+at.Descriptor.Digest.String())
	}
	want := []string{string(oci.KindReferrer) + " " + a.Digest.String(), string(oci.KindReferrer) + " " + b.Digest.String()}
	if len(got) != 3 || !strings.Contains(strings.Join(digests, ","), want[0]) || !strings.Contains(strings.Join(digests, ","), want[1]) {
		t.Errorf("discovered %v, want a, b and the .sig once each", digests)
	}
	if src.listings != 3 || src.resolves[oci.CosignTag(root.Digest, ".sig")] != 3 {
		t.Errorf("%d listings and %d resolutions of the .sig tag, want 3 each", src.listings, src.resolves[oci.CosignTag(root.Digest, ".sig")])
	}
	if len(ran) != 1+len(oci.CosignSuffixes) || !strings.HasPrefix(ran[0], "listing referrers of ") {
		t.Errorf("operations run through Retry: %v", ran)
	}

	if _, err := Discover(context.Background(), mk(1), root); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Discover without retries: %v, want the broken listing", err)
	}
	// Collect passes its Retry on
	ran = nil
	if _, err := Collect(context.Background(), mk(1), []ocispec.Descriptor{root}, CollectOptions{Retry: retryAll(2, &ran)}, nil); err != nil {
		t.Errorf("Collect with Retry: %v", err)
	}
	if len(ran) == 0 {
		t.Errorf("Collect did not use its Retry")
	}
}

// TestProbeStatusError: a registry that answers the probe 503 gives an
// errcode.ErrorResponse, so that a caller can tell it from a refusal and retry.
func TestProbeStatusError(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	repo, err := remote.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/a/b")
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	_, err = Probe(context.Background(), repo)
	var er *errcode.ErrorResponse
	if !errors.As(err, &er) || er.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("Probe of a 503: %v, want an ErrorResponse with 503", err)
	}
}
