package layout

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenRootRefusesSymlinkRoot: a bundle root that is a symlink to a real bundle is
// refused however it is spelled, including with a trailing slash (os.Lstat("DIR/")
// follows the link), by OpenRoot and by every function that takes a directory.
func TestOpenRootRefusesSymlinkRoot(t *testing.T) {
	ctx := context.Background()
	tb := newTestBundle(t)
	link := filepath.Join(t.TempDir(), "bundle-link")
	if err := os.Symlink(tb.dir, link); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{link, link + "/", link + "//", link + "/.", link + "/./"} {
		if r, err := OpenRoot(dir); !errors.Is(err, ErrUnsafeFile) {
			if r != nil {
				r.Close()
			}
			t.Errorf("OpenRoot(%q) = %v, want ErrUnsafeFile", dir, err)
		}
		if _, err := VerifyFiles(ctx, dir, tb.meta, VerifyOptions{}); !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("VerifyFiles(%q) = %v, want ErrUnsafeFile", dir, err)
		}
		if _, err := ReadMetadataBytes(dir); !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("ReadMetadataBytes(%q) = %v, want ErrUnsafeFile", dir, err)
		}
		if _, err := ReadSignatureBytes(dir); !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("ReadSignatureBytes(%q) = %v, want ErrUnsafeFile", dir, err)
		}
		if _, _, err := BuildMetadata(ctx, dir, *tb.meta, 0); !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("BuildMetadata(%q) = %v, want ErrUnsafeFile", dir, err)
		}
	}
	// the real directory, with a trailing slash, is fine
	r, err := OpenRoot(tb.dir + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Dir() != tb.dir {
		t.Errorf("Dir() = %q, want %q", r.Dir(), tb.dir)
	}
	if b, err := r.ReadMetadataBytes(); err != nil || string(b) != string(tb.metaB) {
		t.Fatalf("ReadMetadataBytes = %d bytes, %v", len(b), err)
	}
	if f, err := OpenRoot(filepath.Join(tb.dir, IndexFile)); !errors.Is(err, ErrUnsafeFile) {
		if f != nil {
			f.Close()
		}
		t.Errorf("OpenRoot(file) = %v, want ErrUnsafeFile", err)
	}
	if _, err := OpenRoot(filepath.Join(tb.dir, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenRoot(absent) = %v, want ErrNotExist", err)
	}
}

// TestRootReadsThroughTheHandle: after OpenRoot, the path is never used again: moving
// the bundle away and putting another directory (a symlink, or a different bundle) at
// its path changes nothing that the Root reads.
func TestRootReadsThroughTheHandle(t *testing.T) {
	tb := newTestBundle(t)
	other := newTestBundle(t) // another series: different metadata bytes
	r, err := OpenRoot(tb.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(tb.dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other.dir, tb.dir); err != nil {
		t.Fatal(err)
	}
	b, err := r.ReadMetadataBytes()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(tb.metaB) {
		t.Fatal("read the metadata of the directory now at the path, not of the one opened")
	}
	if _, err := r.ReadSignatureBytes(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadMetadataBytes(); err == nil {
		t.Fatal("read after Close")
	}
}
