package graphcopy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/graphcopy"
	"github.com/petra-oci/petra-oci/oci"
)

// store is a counting in-memory content store, in the style of oras-go v2.7.0's
// copy_test.go (storageTracker, countingStorage): it serves as a graphcopy Source and
// Target, counts every call per digest (calls on a cancelled context too), verifies
// what is pushed to it, honours its context like a registry client does (a call on a
// cancelled context fails before it does anything), and lets a test fail or hold
// chosen calls.
type store struct {
	mu      sync.Mutex
	content map[digest.Digest][]byte
	// calls per digest
	fetches, pushes, exists map[digest.Digest]int
	// bytesIn counts the bytes pushed into the store (what was moved).
	bytesIn int64
	// stored lists the digests pushed, in the order the pushes completed.
	stored []digest.Digest
	// blob pushes (not manifests) in flight now, and the most ever at once
	inflight, maxInflight int

	// beforePush and beforeFetch, when set, run at the start of every Push / Fetch
	// (after it was counted, without the lock held); an error fails the call.
	beforePush  func(ctx context.Context, desc ocispec.Descriptor, attempt int) error
	beforeFetch func(ctx context.Context, desc ocispec.Descriptor, attempt int) error
}

func newStore() *store {
	return &store{
		content: map[digest.Digest][]byte{},
		fetches: map[digest.Digest]int{}, pushes: map[digest.Digest]int{}, exists: map[digest.Digest]int{},
	}
}

func (s *store) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	s.mu.Lock()
	s.fetches[desc.Digest]++
	attempt := s.fetches[desc.Digest]
	b, ok := s.content[desc.Digest]
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.beforeFetch != nil {
		if err := s.beforeFetch(ctx, desc, attempt); err != nil {
			return nil, err
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s", oci.ErrNotFound, desc.Digest)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (s *store) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.exists[desc.Digest]++
	if err := ctx.Err(); err != nil {
		return false, err
	}
	_, ok := s.content[desc.Digest]
	return ok, nil
}

func (s *store) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	blob := !oci.IsManifest(desc.MediaType)
	s.mu.Lock()
	s.pushes[desc.Digest]++
	attempt := s.pushes[desc.Digest]
	if blob {
		s.inflight++
		s.maxInflight = max(s.maxInflight, s.inflight)
	}
	s.mu.Unlock()
	if blob {
		defer func() {
			s.mu.Lock()
			s.inflight--
			s.mu.Unlock()
		}()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.beforePush != nil {
		if err := s.beforePush(ctx, desc, attempt); err != nil {
			return err
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if int64(len(b)) != desc.Size || digest.FromBytes(b) != desc.Digest {
		return fmt.Errorf("store: pushed content does not match %s", desc.Digest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytesIn += int64(len(b))
	s.content[desc.Digest] = b
	s.stored = append(s.stored, desc.Digest)
	return nil
}

func (s *store) count(m map[digest.Digest]int, d digest.Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return m[d]
}

func (s *store) inflightNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight
}

func (s *store) has(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.content[d]
	return ok
}

func (s *store) total(m map[digest.Digest]int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// put adds b to the store as mediaType without counting it.
func (s *store) put(mediaType string, b []byte) ocispec.Descriptor {
	d := oci.DescriptorFor(mediaType, b)
	s.mu.Lock()
	s.content[d.Digest] = b
	s.mu.Unlock()
	return d
}

// graph builds image graphs in a source store.
type graph struct {
	t   *testing.T
	src *store
	// blobs are the distinct non-manifest blobs put so far, by digest.
	blobs map[digest.Digest]ocispec.Descriptor
}

func newGraph(t *testing.T) *graph {
	return &graph{t: t, src: newStore(), blobs: map[digest.Digest]ocispec.Descriptor{}}
}

func (g *graph) blob(mediaType, s string) ocispec.Descriptor {
	d := g.src.put(mediaType, []byte(s))
	g.blobs[d.Digest] = d
	return d
}

func (g *graph) manifest(mediaType string, v any) ocispec.Descriptor {
	g.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		g.t.Fatal(err)
	}
	return g.src.put(mediaType, b)
}

// image puts an image manifest with its own config and layer, then the shared layers.
func (g *graph) image(seed string, shared ...ocispec.Descriptor) ocispec.Descriptor {
	cfg := g.blob(ocispec.MediaTypeImageConfig, `{"architecture":"amd64","os":"linux","seed":"`+seed+`"}`)
	layers := append([]ocispec.Descriptor{g.blob(ocispec.MediaTypeImageLayerGzip, "layer of "+seed)}, shared...)
	return g.manifest(ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: layers})
}

func (g *graph) index(children ...ocispec.Descriptor) ocispec.Descriptor {
	return g.manifest(ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex, Manifests: children})
}

// size is the total size of the distinct blobs put.
func (g *graph) size() int64 {
	var n int64
	for _, d := range g.blobs {
		n += d.Size
	}
	return n
}

// blobCounter counts graphcopy's OnBlob reports per digest and way.
type blobCounter struct {
	mu  sync.Mutex
	got map[digest.Digest][]string
}

func (c *blobCounter) onBlob(d ocispec.Descriptor, how graphcopy.How) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.got == nil {
		c.got = map[digest.Digest][]string{}
	}
	c.got[d.Digest] = append(c.got[d.Digest], howName[how])
}

func (c *blobCounter) reports() map[digest.Digest][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got
}

var howName = map[graphcopy.How]string{graphcopy.Copied: "copied", graphcopy.Existed: "existed", graphcopy.Mounted: "mounted"}
