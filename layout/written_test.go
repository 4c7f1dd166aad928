//go:build linux

package layout

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// copyRecorded copies the bundle at src into a new directory, the listed files through a
// WriteRecord (the metadata and its signature plainly), as an import's extraction does.
func copyRecorded(t *testing.T, src string, m *Metadata) (string, *WriteRecord) {
	t.Helper()
	dst := t.TempDir()
	root, err := os.OpenRoot(dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	rec, err := NewWriteRecord(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{MetadataPath, SignaturePath} {
		b, err := os.ReadFile(filepath.Join(src, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dst, rel, string(b))
	}
	for _, f := range m.Files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, filepath.FromSlash(f.Path))), 0o755); err != nil {
			t.Fatal(err)
		}
		in, err := os.Open(filepath.Join(src, filepath.FromSlash(f.Path)))
		if err != nil {
			t.Fatal(err)
		}
		out, err := rec.Create(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{BlobsDir + "/sha256"} {
		if err := os.MkdirAll(filepath.Join(dst, filepath.FromSlash(d)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dst, rec
}

func verifyWritten(t *testing.T, dir string, m *Metadata, rec *WriteRecord) (*VerifyReport, error) {
	t.Helper()
	r, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, rep, err := r.Verify(context.Background(), m, VerifyOptions{Written: rec})
	return rep, err
}

// TestWriteRecordSkipsOnlyFilesAsWritten: files written through a WriteRecord are
// checked with the hash computed while writing, and only while they are the very file
// written, unchanged: a file rewritten in place, replaced, recorded with other content,
// or a record of another directory, is hashed again and a changed byte is refused.
func TestWriteRecordSkipsOnlyFilesAsWritten(t *testing.T) {
	tb := newTestBundle(t)
	layer := blobRel(tb.layer)

	t.Run("as-written", func(t *testing.T) {
		dir, rec := copyRecorded(t, tb.dir, tb.meta)
		rep, err := verifyWritten(t, dir, tb.meta, rec)
		if err != nil {
			t.Fatal(err)
		}
		if rep.HashedWhenWritten != len(tb.meta.Files) || rep.Files != len(tb.meta.Files) {
			t.Fatalf("%d of %d files checked with the recorded hash, want all", rep.HashedWhenWritten, rep.Files)
		}
		// without the record every file is read
		if rep, err = verifyWritten(t, dir, tb.meta, nil); err != nil || rep.HashedWhenWritten != 0 {
			t.Fatalf("no record: %+v, %v", rep, err)
		}
	})
	t.Run("rewritten-in-place", func(t *testing.T) {
		dir, rec := copyRecorded(t, tb.dir, tb.meta)
		time.Sleep(20 * time.Millisecond) // past the file system's timestamp granularity
		flipByte(t, dir, layer, 3)        // same inode, same size
		_, err := verifyWritten(t, dir, tb.meta, rec)
		if !errors.Is(err, ErrFileChanged) {
			t.Fatalf("a byte changed after the write: %v, want ErrFileChanged", err)
		}
	})
	t.Run("replaced", func(t *testing.T) {
		dir, rec := copyRecorded(t, tb.dir, tb.meta)
		p := filepath.Join(dir, filepath.FromSlash(layer))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[0] ^= 1
		if err := os.WriteFile(p+".new", b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(p+".new", p); err != nil {
			t.Fatal(err)
		}
		if _, err := verifyWritten(t, dir, tb.meta, rec); !errors.Is(err, ErrFileChanged) {
			t.Fatalf("a file replaced after the write: %v, want ErrFileChanged", err)
		}
	})
	t.Run("chmod-only", func(t *testing.T) {
		dir, rec := copyRecorded(t, tb.dir, tb.meta)
		time.Sleep(20 * time.Millisecond)
		p := filepath.Join(dir, filepath.FromSlash(layer))
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
		rep, err := verifyWritten(t, dir, tb.meta, rec)
		if err != nil {
			t.Fatal(err)
		}
		if rep.HashedWhenWritten != len(tb.meta.Files)-1 {
			t.Fatalf("a file changed (ctime) since the write must be hashed again: %d of %d from the record", rep.HashedWhenWritten, rep.Files)
		}
	})
	t.Run("recorded-other-content", func(t *testing.T) {
		dir, rec := copyRecorded(t, tb.dir, tb.meta)
		root, err := os.OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		rec2, err := NewWriteRecord(root)
		if err != nil {
			t.Fatal(err)
		}
		_ = rec
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(layer)))
		if err != nil {
			t.Fatal(err)
		}
		b[1] ^= 1
		out, err := rec2.Create(layer)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := out.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := verifyWritten(t, dir, tb.meta, rec2); !errors.Is(err, ErrFileChanged) {
			t.Fatalf("a record of other content vouched for it: %v, want ErrFileChanged", err)
		}
	})
	t.Run("other-directory", func(t *testing.T) {
		dir, rec := copyRecorded(t, tb.dir, tb.meta)
		other, _ := copyRecorded(t, dir, tb.meta)
		rep, err := verifyWritten(t, other, tb.meta, rec)
		if err != nil {
			t.Fatal(err)
		}
		if rep.HashedWhenWritten != 0 {
			t.Fatalf("a record of %s used for %s: %d files", dir, other, rep.HashedWhenWritten)
		}
	})
	t.Run("refuses-unclean-paths", func(t *testing.T) {
		_, rec := copyRecorded(t, tb.dir, tb.meta)
		for _, p := range []string{"../x", "/abs", "a/../b", "", "."} {
			if f, err := rec.Create(p); err == nil {
				f.Close()
				t.Errorf("Create(%q) accepted", p)
			}
		}
	})
}
