package unpack_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/unpack"
)

// sparseBundle is a bundle as pack --platform linux/amd64 leaves it: the original
// index of an amd64 and an arm64 image, and only the amd64 child with its blobs.
func sparseBundle(t *testing.T) (dir string, idx, amd, arm ocispec.Descriptor) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "bundle")
	l, err := layout.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &orderBundle{t: t, dir: dir, l: l, m: map[string]ocispec.Descriptor{},
		children: map[digest.Digest][]digest.Digest{}, subject: map[digest.Digest]digest.Digest{},
		referrers: map[digest.Digest]bool{}}
	amd = b.image("amd64", &ocispec.Platform{OS: "linux", Architecture: "amd64"})
	arm = b.image("arm64", &ocispec.Platform{OS: "linux", Architecture: "arm64"})
	idx = b.index("index", amd, arm)
	// the filter leaves the arm64 child and the blobs only it names out
	for _, d := range append([]digest.Digest{arm.Digest}, b.children[arm.Digest]...) {
		if err := os.Remove(filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.WriteIndex(layout.NewIndex([]ocispec.Descriptor{layout.ImageEntry(idx, nginx, "1.27").IndexDescriptor()})); err != nil {
		t.Fatal(err)
	}
	return dir, idx, amd, arm
}

// TestUnpackSparseIndex: a bundle whose index lacks a child (a platform filter) is
// refused before a single request reaches the registry, with ErrSparseIndex naming the
// index and the left-out child with its platform; with AllowSparseIndex it is pushed,
// the original index unchanged, to a registry that accepts sparse indexes, while one
// that refuses them fails the run with no tag moved.
func TestUnpackSparseIndex(t *testing.T) {
	ctx := context.Background()
	dir, idx, amd, arm := sparseBundle(t)
	client, err := remote.NewClient(remote.Options{PlainHTTP: true, Retry: remote.RetryOptions{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		k      registrytest.Kind
		sparse bool // the registry accepts sparse indexes
	}{
		{"inprocess", registrytest.InProcess, false},
		{"distribution", registrytest.Distribution, false},
		{"distribution accepting sparse indexes", registrytest.Distribution, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := registrytest.StartWith(t, tc.k, registrytest.StartOptions{SparseIndexes: tc.sparse})
			p := registrytest.StartHookProxy(t, r, registrytest.HookOptions{})
			_, err := unpack.Unpack(ctx, unpack.Options{Dir: dir, To: p.Host + "/mirror", Client: client, UnsafeSkipVerify: true})
			var se *unpack.SparseIndexError
			if !errors.Is(err, unpack.ErrSparseIndex) || !errors.As(err, &se) {
				t.Fatalf("unpack of a sparse index: err = %v, want ErrSparseIndex", err)
			}
			for _, want := range []string{idx.Digest.String(), arm.Digest.String(), "linux/arm64", "--allow-sparse-index", "nothing was pushed"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal does not name %q: %v", want, err)
				}
			}
			if len(se.Indexes) != 1 || se.Indexes[0].Index != idx.Digest || len(se.Indexes[0].Missing) != 1 || se.Indexes[0].Missing[0].Digest != arm.Digest {
				t.Errorf("SparseIndexError %+v, want index %s missing %s", se, idx.Digest, arm.Digest)
			}
			if reqs := p.Requests(); len(reqs) != 0 {
				t.Errorf("the refused bundle sent %d requests to the registry: %v", len(reqs), reqs)
			}

			_, err = unpack.Unpack(ctx, unpack.Options{Dir: dir, To: p.Host + "/mirror", Client: client, UnsafeSkipVerify: true, AllowSparseIndex: true})
			repo := r.Repository(t, "mirror/chainguard/nginx")
			tagged, terr := repo.Resolve(ctx, "1.27")
			if tc.sparse {
				if err != nil {
					t.Fatalf("AllowSparseIndex into a registry that accepts sparse indexes: %v", err)
				}
				if terr != nil || tagged.Digest != idx.Digest {
					t.Errorf("tag 1.27 = %v (%v), want the original index %s", tagged.Digest, terr, idx.Digest)
				}
				if ok, _ := repo.Exists(ctx, amd); !ok {
					t.Error("the carried child is not in the registry")
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), "leaves out 1 children of index "+idx.Digest.String()) {
					t.Errorf("AllowSparseIndex into a registry that refuses sparse indexes: err = %v, want the registry's refusal explained", err)
				}
				if terr == nil {
					t.Errorf("tag 1.27 set to %s after the registry refused the index", tagged.Digest)
				}
			}
		})
	}
}
