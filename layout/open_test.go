package layout

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// within runs fn in a goroutine and fails the test, instead of hanging it, when fn does
// not return within d (a blocking open of a FIFO never returns on its own).
func within(t *testing.T, d time.Duration, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("still blocked after %s", d)
		return nil
	}
}

func mkfifo(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLayoutReadsDoNotBlockOnFIFO: a blob, index.json or oci-layout swapped for a FIFO
// makes Layout's reads fail at once (the open is non-blocking), not hang.
func TestLayoutReadsDoNotBlockOnFIFO(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.PushBytes(ctx, ocispec.MediaTypeImageLayerGzip, []byte("layer"))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteIndex(NewIndex(nil)); err != nil {
		t.Fatal(err)
	}
	mkfifo(t, filepath.Join(dir, "blobs", "sha256", d.Digest.Encoded()))
	mkfifo(t, filepath.Join(dir, IndexFile))
	if err := within(t, 5*time.Second, func() error {
		rc, err := l.Fetch(ctx, d)
		if err == nil {
			rc.Close()
		}
		return err
	}); err == nil {
		t.Fatal("Fetch of a FIFO succeeded")
	}
	if err := within(t, 5*time.Second, func() error { _, err := l.ReadIndex(); return err }); err == nil {
		t.Fatal("ReadIndex of a FIFO succeeded")
	}
	mkfifo(t, filepath.Join(dir, LayoutFile))
	if err := within(t, 5*time.Second, func() error { _, err := Open(dir); return err }); err == nil {
		t.Fatal("Open with a FIFO oci-layout succeeded")
	}
}
