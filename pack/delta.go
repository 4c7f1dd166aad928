package pack

import (
	"context"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/receipt"
)

// deltaTarget is the layout as the image copies of a delta see it: a config or layer
// that the receipt lists in the image's repository exists already (it is at the
// destination), and is recorded as expected instead of copied. Manifests are always
// written.
type deltaTarget struct {
	l    *layout.Layout
	have map[string]map[digest.Digest]int64 // receipt repository name -> blobs

	mu   sync.Mutex
	left map[layout.ExpectedKey]int64
}

func newDeltaTarget(l *layout.Layout, r *receipt.Receipt) *deltaTarget {
	t := &deltaTarget{l: l, have: map[string]map[digest.Digest]int64{}, left: map[layout.ExpectedKey]int64{}}
	for _, repo := range r.Repositories {
		m := make(map[digest.Digest]int64, len(repo.Blobs))
		for _, b := range repo.Blobs {
			m[b.Digest] = b.Size
		}
		t.have[repo.Name] = m
	}
	return t
}

// forRepository returns the target of the images of one source repository (host/path).
func (t *deltaTarget) forRepository(repository string) *repoTarget {
	return &repoTarget{t: t, repository: repository, have: t.have[receipt.PathOf(repository)]}
}

// expected returns the blobs left out that the layout does not hold after all (an
// attachment or an image of another repository may have needed it whole).
func (t *deltaTarget) expected(ctx context.Context) ([]layout.ExpectedBlob, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []layout.ExpectedBlob{}
	for k, size := range t.left {
		ok, err := t.l.Exists(ctx, ocispec.Descriptor{Digest: k.Digest, Size: size})
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, layout.ExpectedBlob{Repository: k.Repository, Digest: k.Digest, Size: size})
		}
	}
	return out, nil
}

// repoTarget is deltaTarget for one repository: a graphcopy.Target.
type repoTarget struct {
	t          *deltaTarget
	repository string
	have       map[digest.Digest]int64
}

func (r *repoTarget) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	if !oci.IsManifest(desc.MediaType) {
		if size, ok := r.have[desc.Digest]; ok && size == desc.Size {
			r.t.mu.Lock()
			r.t.left[layout.ExpectedKey{Repository: r.repository, Digest: desc.Digest}] = desc.Size
			r.t.mu.Unlock()
			return true, nil
		}
	}
	return r.t.l.Exists(ctx, desc)
}

func (r *repoTarget) Push(ctx context.Context, desc ocispec.Descriptor, rd io.Reader) error {
	return r.t.l.Push(ctx, desc, rd)
}
