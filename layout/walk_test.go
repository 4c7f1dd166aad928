package layout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestScanRefusesHugeExtraDirectoryEarly: with 20 000 extra blobs in blobs/sha256, the
// verification walk refuses the first one it reads, after reading a bounded number of
// entries, instead of reading (and sorting) the whole directory first. Building
// metadata over the same tree reads every entry, which shows the counter counts.
func TestScanRefusesHugeExtraDirectoryEarly(t *testing.T) {
	const extra = 20000
	tb := newTestBundle(t)
	shaDir := filepath.Join(tb.dir, "blobs", "sha256")
	for i := range extra {
		name := digest.FromString(fmt.Sprint("extra ", i)).Encoded()
		if err := os.WriteFile(filepath.Join(shaDir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]*File{}
	for i := range tb.meta.Files {
		want[tb.meta.Files[i].Path] = &tb.meta.Files[i]
	}
	tr, err := openTree(tb.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	_, err = tr.scan(context.Background(), want)
	if !errors.Is(err, ErrFileExtra) {
		t.Fatalf("err = %v, want ErrFileExtra", err)
	}
	var fe *FileError
	if !errors.As(err, &fe) || !strings.HasPrefix(fe.Path, "blobs/sha256/") {
		t.Fatalf("err = %v, want a *FileError naming an extra blob", err)
	}
	// the root (4), petra/ (4), blobs/ (1) and one batch of blobs/sha256 (128)
	if read, limit := tr.lastScan.Load().read, 300; read > limit {
		t.Fatalf("read %d entries before refusing, want at most %d", read, limit)
	}
	t.Logf("refused after reading %d of %d entries: %v", tr.lastScan.Load().read, extra+len(tb.meta.Files)+5, err)

	if _, err := tr.scan(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if read := tr.lastScan.Load().read; read < extra {
		t.Fatalf("building read %d entries, want all %d", read, extra)
	}
}

// TestWalkBounds: the walk stops once it has read more entries than allowed, and at a
// directory nested deeper than maxWalkDepth; both are ErrFileExtra naming the path.
func TestWalkBounds(t *testing.T) {
	dir := t.TempDir()
	for i := range 10 {
		writeFile(t, dir, fmt.Sprintf("f%d", i), "x")
	}
	deep := strings.Repeat("d/", maxWalkDepth+1) + "f"
	writeFile(t, dir, "sub/"+deep, "x")
	tr, err := openTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	all := func(string, fs.FileInfo) error { return nil }
	for _, sorted := range []bool{false, true} {
		var counts walkCounts
		err = tr.walk(context.Background(), walkOptions{sorted: sorted, maxEntries: 5}, &counts, all)
		var fe *FileError
		if !errors.Is(err, ErrFileExtra) || !errors.As(err, &fe) || fe.Path == "" {
			t.Fatalf("sorted=%v: err = %v, want ErrFileExtra naming a path", sorted, err)
		}
		if counts.visited != 6 {
			t.Fatalf("sorted=%v: visited %d entries, want 6", sorted, counts.visited)
		}
	}
	err = tr.walk(context.Background(), walkOptions{}, &walkCounts{}, all)
	var fe *FileError
	if !errors.Is(err, ErrFileExtra) || !errors.As(err, &fe) || !strings.Contains(fe.Detail, "deeper") {
		t.Fatalf("err = %v, want ErrFileExtra for nesting", err)
	}
	if want := "sub/" + strings.Repeat("d/", maxWalkDepth); fe.Path != want {
		t.Fatalf("path %q, want %q", fe.Path, want)
	}
	// exactly maxWalkDepth levels is fine
	dir2 := t.TempDir()
	writeFile(t, dir2, strings.Repeat("d/", maxWalkDepth-1)+"f", "x")
	tr2, err := openTree(dir2)
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.close()
	if err := tr2.walk(context.Background(), walkOptions{}, &walkCounts{}, all); err != nil {
		t.Fatal(err)
	}
}

// TestWalkRefusesDirectorySwappedAfterListing: a directory replaced by a symlink to an
// identical directory between being listed and being opened is refused.
func TestWalkRefusesDirectorySwappedAfterListing(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a/f", "x")
	writeFile(t, dir, "copy/f", "x")
	tr, err := openTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	listed, err := tr.root.Lstat("a")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("copy", filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	if f, err := tr.openDir("a", listed); !errors.Is(err, ErrUnsafeFile) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("err = %v, want ErrUnsafeFile", err)
	}
}

// TestBuildMetadataSortedAndDeterministic: BuildMetadata lists files sorted by path,
// and building twice gives the same bytes.
func TestBuildMetadataSortedAndDeterministic(t *testing.T) {
	tb := newTestBundle(t)
	m := *tb.meta
	m.Files = nil
	m.Trust = []TrustFile{{Role: RolePolicy, Path: PolicyPath}, {Role: RoleTrustedRoot, Path: TrustedRootPath}}
	_, b, err := BuildMetadata(context.Background(), tb.dir, m, 3)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(tb.metaB) {
		t.Fatalf("rebuilt metadata differs:\n%s\n%s", b, tb.metaB)
	}
	for i := 1; i < len(tb.meta.Files); i++ {
		if tb.meta.Files[i-1].Path >= tb.meta.Files[i].Path {
			t.Fatalf("files not sorted: %q before %q", tb.meta.Files[i-1].Path, tb.meta.Files[i].Path)
		}
	}
}
