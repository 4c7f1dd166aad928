package layout

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// pin verifies tb and returns the pinned file set; the root is closed at cleanup.
func pin(t *testing.T, tb *testBundle) *Pinned {
	t.Helper()
	r, err := OpenRoot(tb.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	p, rep, err := r.Verify(context.Background(), tb.meta, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != len(tb.meta.Files) || p.Len() != len(tb.meta.Files) {
		t.Fatalf("report %+v, pinned %d, metadata lists %d", rep, p.Len(), len(tb.meta.Files))
	}
	return p
}

func readBlob(ctx context.Context, p *Pinned, d ocispec.Descriptor) ([]byte, error) {
	rc, err := p.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func blobFile(tb *testBundle, d ocispec.Descriptor) string {
	return filepath.Join(tb.dir, "blobs", "sha256", d.Digest.Encoded())
}

// TestPinnedReadsVerifiedBundle: an untouched bundle reads back whole through the pin,
// with the same report as VerifyFiles, also from many goroutines at once.
func TestPinnedReadsVerifiedBundle(t *testing.T) {
	ctx := context.Background()
	tb := newTestBundle(t)
	p := pin(t, tb)
	want, err := VerifyFiles(ctx, tb.dir, tb.meta, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := OpenRoot(tb.dir)
	defer r.Close()
	_, got, err := r.Verify(ctx, tb.meta, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Duration, want.Duration = 0, 0
	if *got != *want {
		t.Fatalf("Verify report %+v, VerifyFiles %+v", got, want)
	}
	for _, f := range tb.meta.Files {
		if !p.Has(f.Path) {
			t.Errorf("%s not pinned", f.Path)
		}
	}
	if p.Has(MetadataPath) || p.Has(SignaturePath) || p.Has("blobs") {
		t.Error("pins a file the metadata does not list")
	}
	var wg sync.WaitGroup
	for range 8 {
		for _, d := range []ocispec.Descriptor{tb.index, tb.manifest, tb.config, tb.layer} {
			wg.Go(func() {
				if ok, err := p.Exists(ctx, d); !ok || err != nil {
					t.Errorf("Exists(%s) = %v, %v", d.Digest, ok, err)
				}
				b, err := readBlob(ctx, p, d)
				if err != nil || digest.FromBytes(b) != d.Digest {
					t.Errorf("Fetch(%s): %d bytes, %v", d.Digest, len(b), err)
				}
				if oci.IsManifest(d.MediaType) {
					if b, err := p.FetchManifest(ctx, d); err != nil || digest.FromBytes(b) != d.Digest {
						t.Errorf("FetchManifest(%s): %v", d.Digest, err)
					}
				}
			})
		}
	}
	wg.Wait()
	idx, err := p.ReadIndex()
	if err != nil || len(idx.Manifests) != 2 {
		t.Fatalf("ReadIndex: %d entries, %v", len(idx.Manifests), err)
	}
	// a listed blob asked for with another size
	d := tb.layer
	d.Size++
	if ok, err := p.Exists(ctx, d); ok || !errors.Is(err, oci.ErrSizeMismatch) {
		t.Errorf("Exists with a wrong size = %v, %v; want ErrSizeMismatch", ok, err)
	}
	if _, err := p.Fetch(ctx, d); !errors.Is(err, oci.ErrSizeMismatch) {
		t.Errorf("Fetch with a wrong size: %v, want ErrSizeMismatch", err)
	}
	if _, err := p.Exists(ctx, ocispec.Descriptor{Digest: "sha256:../../x"}); err == nil {
		t.Error("Exists accepted an invalid digest")
	}
}

// TestPinnedUnlistedBlobCopiedAfterVerify: a blob the bundle does not carry (an index
// child left out by the platform filter), copied onto disk after verification, does
// not exist for the pin and is not fetched, although the directory now holds it.
func TestPinnedUnlistedBlobCopiedAfterVerify(t *testing.T) {
	ctx := context.Background()
	tb := newTestBundle(t)
	p := pin(t, tb)
	b := []byte(`{"schemaVersion":2,"left":"out"}`)
	absent := oci.DescriptorFor(ocispec.MediaTypeImageManifest, b)
	writeFile(t, tb.dir, blobRel(absent), string(b))
	if l, err := Open(tb.dir); err != nil {
		t.Fatal(err)
	} else if ok, err := l.Exists(ctx, absent); !ok || err != nil {
		t.Fatalf("precondition: the disk holds the blob: %v, %v", ok, err)
	}
	if ok, err := p.Exists(ctx, absent); ok || err != nil {
		t.Errorf("Exists = %v, %v; want false, nil", ok, err)
	}
	if p.Has(blobRel(absent)) {
		t.Error("Has = true")
	}
	if _, err := p.Fetch(ctx, absent); !errors.Is(err, oci.ErrNotFound) {
		t.Errorf("Fetch: %v, want ErrNotFound", err)
	}
	if _, err := p.FetchManifest(ctx, absent); !errors.Is(err, oci.ErrNotFound) {
		t.Errorf("FetchManifest: %v, want ErrNotFound", err)
	}
}

// TestPinnedRefusesFIFO: a listed blob or manifest swapped for a FIFO after
// verification is refused at once (a blocking open would hang until a writer comes),
// and the manifest is an error, not skipped.
func TestPinnedRefusesFIFO(t *testing.T) {
	ctx := context.Background()
	tb := newTestBundle(t)
	p := pin(t, tb)
	mkfifo(t, blobFile(tb, tb.layer))
	mkfifo(t, blobFile(tb, tb.manifest))
	err := within(t, 5*time.Second, func() error { _, err := readBlob(ctx, p, tb.layer); return err })
	if !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("Fetch of a FIFO: %v, want ErrUnsafeFile", err)
	}
	err = within(t, 5*time.Second, func() error { _, err := p.FetchManifest(ctx, tb.manifest); return err })
	if !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("FetchManifest of a FIFO: %v, want ErrUnsafeFile", err)
	}
	if ok, err := p.Exists(ctx, tb.manifest); !ok || err != nil {
		t.Errorf("Exists(manifest) = %v, %v: the pin answers from the verified list", ok, err)
	}
}

// TestPinnedRefusesReplacedFile: a listed blob replaced by another file with the same
// bytes (a new inode), or its directory replaced by a copy, is refused.
func TestPinnedRefusesReplacedFile(t *testing.T) {
	ctx := context.Background()
	tb := newTestBundle(t)
	p := pin(t, tb)
	path := blobFile(tb, tb.layer)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(ctx, p, tb.layer); !errors.Is(err, ErrFileChanged) {
		t.Errorf("Fetch of a replaced blob: %v, want ErrFileChanged", err)
	}
	// the whole blobs/sha256 directory moved away and copied back
	sha := filepath.Join(tb.dir, "blobs", "sha256")
	if err := os.Rename(sha, sha+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(sha, os.DirFS(sha+".old")); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(ctx, p, tb.config); !errors.Is(err, ErrFileChanged) {
		t.Errorf("Fetch from a copied directory: %v, want ErrFileChanged", err)
	}
	// a symlink to another file in its place
	os.Remove(blobFile(tb, tb.config))
	if err := os.Symlink(filepath.Join(sha+".old", tb.config.Digest.Encoded()), blobFile(tb, tb.config)); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(ctx, p, tb.config); err == nil {
		t.Error("Fetch followed a symlink out of the root")
	}
}

// TestPinnedRefusesRewriteInPlace: a listed blob rewritten in place (same inode, same
// size, other bytes) after verification fails the read, for a sha256 and a sha512 blob.
func TestPinnedRefusesRewriteInPlace(t *testing.T) {
	ctx := context.Background()
	tb := newTestBundle(t)
	// a sha512 blob too: its SHA-256 in the metadata is checked as well as its digest
	content := []byte("hashed with sha512")
	d512 := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.SHA512.FromBytes(content), Size: int64(len(content))}
	l, err := Open(tb.dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Push(ctx, d512, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	restamp(t, tb.dir, tb.meta, "blobs/sha512/"+d512.Digest.Encoded())
	p := pin(t, tb)
	for _, c := range []struct {
		d    ocispec.Descriptor
		path string
	}{
		{tb.layer, blobFile(tb, tb.layer)},
		{d512, filepath.Join(tb.dir, "blobs", "sha512", d512.Digest.Encoded())},
	} {
		before, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(c.path)
		b[0] ^= 1
		if err := os.WriteFile(c.path, b, 0o644); err != nil { // O_TRUNC: same inode
			t.Fatal(err)
		}
		if after, err := os.Stat(c.path); err != nil || !os.SameFile(before, after) || after.Size() != before.Size() {
			t.Fatalf("precondition: rewritten in place: %v", err)
		}
		_, err = readBlob(ctx, p, c.d)
		if !errors.Is(err, ErrFileChanged) {
			t.Errorf("%s: read %v, want ErrFileChanged", c.d.Digest.Algorithm(), err)
		}
		if c.d.Digest.Algorithm() == digest.SHA256 && !errors.Is(err, oci.ErrDigestMismatch) {
			t.Errorf("%s: read %v, want ErrDigestMismatch too", c.d.Digest.Algorithm(), err)
		}
	}
	// the same for a manifest read whole
	path := blobFile(tb, tb.manifest)
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 1
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := p.FetchManifest(ctx, tb.manifest); !errors.Is(err, ErrFileChanged) {
		t.Errorf("FetchManifest: %v, want ErrFileChanged", err)
	}
}

// TestPinnedReadIndexRefusesChangedIndex: index.json changed after verification, in
// place (same size) or replaced atomically as WriteIndex does, is refused.
func TestPinnedReadIndexRefusesChangedIndex(t *testing.T) {
	t.Run("in place", func(t *testing.T) {
		tb := newTestBundle(t)
		p := pin(t, tb)
		flipByte(t, tb.dir, IndexFile, 40)
		if _, err := p.ReadIndex(); !errors.Is(err, ErrFileChanged) {
			t.Fatalf("err = %v, want ErrFileChanged", err)
		}
	})
	t.Run("replaced", func(t *testing.T) {
		tb := newTestBundle(t)
		p := pin(t, tb)
		ghost := oci.DescriptorFor(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"ghost":true}`))
		l, err := Open(tb.dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.WriteIndex(NewIndex([]ocispec.Descriptor{ImageEntry(ghost, "cgr.example/x/ghost", "1").IndexDescriptor()})); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ReadIndex(); !errors.Is(err, ErrFileChanged) {
			t.Fatalf("err = %v, want ErrFileChanged", err)
		}
	})
	t.Run("FIFO", func(t *testing.T) {
		tb := newTestBundle(t)
		p := pin(t, tb)
		mkfifo(t, filepath.Join(tb.dir, IndexFile))
		err := within(t, 5*time.Second, func() error { _, err := p.ReadIndex(); return err })
		if !errors.Is(err, ErrUnsafeFile) {
			t.Fatalf("err = %v, want ErrUnsafeFile", err)
		}
	})
	t.Run("removed", func(t *testing.T) {
		tb := newTestBundle(t)
		p := pin(t, tb)
		os.Remove(filepath.Join(tb.dir, IndexFile))
		if _, err := p.ReadIndex(); !errors.Is(err, ErrFileMissing) {
			t.Fatalf("err = %v, want ErrFileMissing", err)
		}
	})
}

// TestPinnedHonoursContext: a read stops once its context is cancelled, and a fetch
// with a cancelled context does not start.
func TestPinnedHonoursContext(t *testing.T) {
	tb := newTestBundle(t)
	p := pin(t, tb)
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := p.Fetch(ctx, tb.layer)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if n, err := rc.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
	if _, err := p.Fetch(ctx, tb.layer); !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch with a cancelled context: %v", err)
	}
	if _, err := p.FetchManifest(ctx, tb.manifest); !errors.Is(err, context.Canceled) {
		t.Fatalf("FetchManifest with a cancelled context: %v", err)
	}
}

// TestPinnedAfterClose: once the Root is closed, nothing is read.
func TestPinnedAfterClose(t *testing.T) {
	tb := newTestBundle(t)
	r, err := OpenRoot(tb.dir)
	if err != nil {
		t.Fatal(err)
	}
	p, _, err := r.Verify(context.Background(), tb.meta, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(context.Background(), p, tb.layer); err == nil {
		t.Fatal("Fetch after Close succeeded")
	}
	if _, err := p.ReadIndex(); err == nil {
		t.Fatal("ReadIndex after Close succeeded")
	}
}

// TestVerifyReturnsNoPinOnFailure: a bundle that fails verification gives no pin.
func TestVerifyReturnsNoPinOnFailure(t *testing.T) {
	tb := newTestBundle(t)
	writeFile(t, tb.dir, "README", "extra")
	r, err := OpenRoot(tb.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, rep, err := r.Verify(context.Background(), tb.meta, VerifyOptions{})
	if !errors.Is(err, ErrFileExtra) || p != nil || rep != nil {
		t.Fatalf("Verify = %v, %v, %v", p, rep, err)
	}
	if _, _, err := r.Verify(context.Background(), nil, VerifyOptions{}); !errors.Is(err, ErrMetadataInvalid) {
		t.Fatalf("nil metadata: %v", err)
	}
}

// TestRootVerifyConcurrent: one Root verifies from several goroutines at once (run
// with -race).
func TestRootVerifyConcurrent(t *testing.T) {
	tb := newTestBundle(t)
	r, err := OpenRoot(tb.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			p, _, err := r.Verify(context.Background(), tb.meta, VerifyOptions{Workers: 2})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := p.ReadIndex(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
