package admission

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteDir(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "admission")
	f := generate(t, chainguardOptions(t))
	if err := WriteDir(out, f); err != nil {
		t.Fatal(err)
	}
	check := func(files *Files) {
		t.Helper()
		entries, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(files.Files) {
			t.Fatalf("%d entries, want %d", len(entries), len(files.Files))
		}
		for _, file := range files.Files {
			b, err := os.ReadFile(filepath.Join(out, file.Name))
			if err != nil || !bytes.Equal(b, file.Data) {
				t.Errorf("%s: %v", file.Name, err)
			}
		}
		left, _ := filepath.Glob(filepath.Join(parent, ".admission.*"))
		if len(left) > 0 {
			t.Errorf("temporary directories left: %v", left)
		}
	}
	check(f)
	// a previous output is replaced whole
	opts := chainguardOptions(t)
	opts.TrustedRoot = nil
	opts.Policy = nil
	opts.Images = nil
	g := generate(t, opts)
	if err := WriteDir(out, g); err != nil {
		t.Fatal(err)
	}
	check(g)
	// anything else in the directory refuses the write, leaving it as it was
	if err := os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteDir(out, f); err == nil {
		t.Fatal("a directory holding notes.txt was replaced")
	}
	if _, err := os.Stat(filepath.Join(out, "notes.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(out, "notes.txt")); err != nil {
		t.Fatal(err)
	}
	// a bad file name fails before anything is renamed
	bad := &Files{Files: append(append([]File(nil), f.Files...), File{Name: "../escape.yaml"})}
	if err := WriteDir(out, bad); err == nil {
		t.Fatal("../escape.yaml written")
	}
	check(g)
	// a file in the way
	if err := WriteDir(filepath.Join(out, FileKustomization), f); err == nil {
		t.Fatal("wrote over a file")
	}
}
