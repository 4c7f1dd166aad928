package layout

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestOpenNoFollowRefusesLinksOnTheWay: a symlink as the last element or as a directory
// on the way is not followed, even when it stays inside the root and leads to a real
// file; a FIFO opens without blocking; a plain file reads.
func TestOpenNoFollowRefusesLinksOnTheWay(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "d/f", "content")
	writeFile(t, dir, "e/f", "content")
	if err := os.Symlink("f", filepath.Join(dir, "d", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("e", filepath.Join(dir, "dirlink")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "d", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := openTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	f, err := tr.openNoFollow("d/f")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil || string(b) != "content" {
		t.Fatalf("read %q, %v", b, err)
	}
	for _, rel := range []string{"d/link", "dirlink/f", "../x", "d/../d/f", "d//f", "missing"} {
		if f, err := tr.openNoFollow(rel); err == nil {
			f.Close()
			t.Errorf("%s opened", rel)
		}
	}
	if _, err := tr.openNoFollow("d/link"); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("final symlink: %v, want ELOOP", err)
	}
	err = within(t, 5e9, func() error {
		f, err := tr.openNoFollow("d/fifo")
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("mode %v, want a FIFO", fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.close()
	if f, err := tr.openNoFollow("d/f"); err == nil {
		f.Close()
		t.Fatal("opened after close")
	}
}

// TestPinnedDoesNotFollowLinkToVerifiedFile: a listed blob moved elsewhere in the
// bundle and replaced by a symlink to it (the very inode verified) is still refused:
// the pin does not follow links, even to the right file.
func TestPinnedDoesNotFollowLinkToVerifiedFile(t *testing.T) {
	tb := newTestBundle(t)
	p := pin(t, tb)
	path := blobFile(tb, tb.layer)
	moved := filepath.Join(tb.dir, "petra", "moved")
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../petra/moved", path); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(t.Context(), p, tb.layer); !errors.Is(err, ErrUnsafeFile) {
		t.Fatalf("err = %v, want ErrUnsafeFile", err)
	}
	// the same through a linked directory on the way
	os.Remove(path)
	if err := os.Rename(moved, path); err != nil {
		t.Fatal(err)
	}
	sha := filepath.Join(tb.dir, "blobs", "sha256")
	if err := os.Rename(sha, filepath.Join(tb.dir, "petra", "sha256")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../petra/sha256", sha); err != nil {
		t.Fatal(err)
	}
	if _, err := readBlob(t.Context(), p, tb.layer); !errors.Is(err, ErrUnsafeFile) {
		t.Fatalf("linked directory: err = %v, want ErrUnsafeFile", err)
	}
}
