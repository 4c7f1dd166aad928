package graphcopy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/graphcopy"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/remote"
)

// flakySource serves blobs from memory; the first breaks fetches of each digest
// break off with an unexpected EOF after cut bytes, as a link that drops does.
type flakySource struct {
	blobs  map[digest.Digest][]byte
	breaks int
	cut    int

	mu      sync.Mutex
	fetches map[digest.Digest]int
}

func (s *flakySource) Fetch(_ context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	b, ok := s.blobs[desc.Digest]
	if !ok {
		return nil, oci.ErrNotFound
	}
	s.mu.Lock()
	s.fetches[desc.Digest]++
	n := s.fetches[desc.Digest]
	s.mu.Unlock()
	if n <= s.breaks && len(b) > s.cut {
		return io.NopCloser(io.MultiReader(bytes.NewReader(b[:s.cut]), failing{io.ErrUnexpectedEOF})), nil
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

type failing struct{ err error }

func (f failing) Read([]byte) (int, error) { return 0, f.err }

// image builds a manifest with a config and two layers.
func image(t *testing.T) (ocispec.Descriptor, map[digest.Digest][]byte) {
	t.Helper()
	blobs := map[digest.Digest][]byte{}
	add := func(mt string, b []byte) ocispec.Descriptor {
		d := oci.DescriptorFor(mt, b)
		blobs[d.Digest] = b
		return d
	}
	cfg := add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	l1 := add(ocispec.MediaTypeImageLayerGzip, bytes.Repeat([]byte("layer one "), 300))
	l2 := add(ocispec.MediaTypeImageLayerGzip, bytes.Repeat([]byte("layer two "), 500))
	m, err := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfg, Layers: []ocispec.Descriptor{l1, l2}})
	if err != nil {
		t.Fatal(err)
	}
	return add(ocispec.MediaTypeImageManifest, m), blobs
}

func retrier(t *testing.T, attempts int) *remote.Retrier {
	t.Helper()
	r, err := remote.NewRetrier(remote.RetryOptions{Attempts: attempts, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestCopyRetriesBrokenReads: every read of the manifest and its blobs breaks off
// twice; with Retry the copy re-opens each at the source and completes, every blob
// in the layout whole; without it, the copy fails and the layout holds no blob that
// does not verify, and no partial file.
func TestCopyRetriesBrokenReads(t *testing.T) {
	ctx := context.Background()
	root, blobs := image(t)

	t.Run("with retry", func(t *testing.T) {
		src := &flakySource{blobs: blobs, breaks: 2, cut: 100, fetches: map[digest.Digest]int{}}
		dir := filepath.Join(t.TempDir(), "l")
		l, err := layout.Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		c := graphcopy.New(l, graphcopy.Options{Retry: retrier(t, 3).Do})
		if _, err := c.Copy(ctx, src, root, nil); err != nil {
			t.Fatalf("copy with retries: %v", err)
		}
		for d, b := range blobs {
			if got, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", d.Encoded())); err != nil || !bytes.Equal(got, b) {
				t.Errorf("blob %s: %d bytes (%v), want it whole", d, len(got), err)
			}
			want := 3 // 2 broken
			if len(b) <= src.cut {
				want = 1 // too small to break
			}
			if src.fetches[d] != want {
				t.Errorf("blob %s (%d bytes) fetched %d times, want %d", d, len(b), src.fetches[d], want)
			}
		}
		if s := c.Stats(); s.BlobsCopied != 3 || s.Manifests != 1 {
			t.Errorf("stats %+v, want 3 blobs and 1 manifest copied", s)
		}
		assertNoIngest(t, dir)
	})

	t.Run("bounded", func(t *testing.T) {
		src := &flakySource{blobs: blobs, breaks: 1000, cut: 100, fetches: map[digest.Digest]int{}}
		dir := filepath.Join(t.TempDir(), "l")
		l, err := layout.Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		c := graphcopy.New(l, graphcopy.Options{Retry: retrier(t, 4).Do})
		_, err = c.Copy(ctx, src, root, nil)
		if !errors.Is(err, remote.ErrGaveUp) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("copy from a source that always breaks: %v, want a give-up", err)
		}
		if src.fetches[root.Digest] != 4 {
			t.Errorf("manifest fetched %d times, want 4", src.fetches[root.Digest])
		}
	})

	t.Run("without retry", func(t *testing.T) {
		src := &flakySource{blobs: blobs, breaks: 1, cut: 100, fetches: map[digest.Digest]int{}}
		// the manifest reads whole: the blobs break
		src.fetches[root.Digest] = 1
		dir := filepath.Join(t.TempDir(), "l")
		l, err := layout.Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		_, err = graphcopy.New(l, graphcopy.Options{}).Copy(ctx, src, root, nil)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("copy without retries: %v, want the broken read", err)
		}
		entries, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
		for _, e := range entries {
			b, _ := os.ReadFile(filepath.Join(dir, "blobs", "sha256", e.Name()))
			if digest.FromBytes(b).Encoded() != e.Name() {
				t.Errorf("blob %s left corrupt in the layout", e.Name())
			}
		}
		assertNoIngest(t, dir)
		// and a second run, once the link is sound, completes what the first left
		src.breaks = 0
		if _, err := graphcopy.New(l, graphcopy.Options{}).Copy(ctx, src, root, nil); err != nil {
			t.Fatalf("second run: %v", err)
		}
	})
}

func assertNoIngest(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(dir, layout.IngestDir))
	if len(entries) != 0 {
		t.Errorf("%d partial files left in %s", len(entries), layout.IngestDir)
	}
}

// lossyTarget stores what is pushed but, the first time for each digest, reads
// half of it and fails (an upload that broke), and, the second time, stores it and
// loses the answer (the registry has it, the client sees an error).
type lossyTarget struct {
	mu     sync.Mutex
	stored map[digest.Digest][]byte
	pushes map[digest.Digest]int
}

func (t *lossyTarget) Exists(_ context.Context, desc ocispec.Descriptor) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.stored[desc.Digest]
	return ok, nil
}

func (t *lossyTarget) Push(_ context.Context, desc ocispec.Descriptor, r io.Reader) error {
	t.mu.Lock()
	t.pushes[desc.Digest]++
	n := t.pushes[desc.Digest]
	t.mu.Unlock()
	if n == 1 {
		_, _ = io.CopyN(io.Discard, r, desc.Size/2)
		return fmt.Errorf("writing %s: %w", desc.Digest, io.ErrUnexpectedEOF)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.stored[desc.Digest] = b
	t.mu.Unlock()
	return io.ErrUnexpectedEOF // the answer is lost
}

// TestCopyRestartsUploads: an upload that breaks is restarted from the source (a
// streamed body cannot be replayed), and one whose answer was lost is found in the
// target on the next try and not pushed again.
func TestCopyRestartsUploads(t *testing.T) {
	ctx := context.Background()
	root, blobs := image(t)
	src := &flakySource{blobs: blobs, fetches: map[digest.Digest]int{}}
	dst := &lossyTarget{stored: map[digest.Digest][]byte{}, pushes: map[digest.Digest]int{}}
	c := graphcopy.New(dst, graphcopy.Options{Retry: retrier(t, 5).Do})
	if _, err := c.Copy(ctx, src, root, nil); err != nil {
		t.Fatalf("copy: %v", err)
	}
	for d, b := range blobs {
		if !bytes.Equal(dst.stored[d], b) {
			t.Errorf("%s not stored whole", d)
		}
		if dst.pushes[d] != 2 {
			t.Errorf("%s pushed %d times, want 2 (broken, then answer lost)", d, dst.pushes[d])
		}
		if d != root.Digest && src.fetches[d] != 2 {
			t.Errorf("blob %s opened %d times at the source, want 2", d, src.fetches[d])
		}
	}
}
