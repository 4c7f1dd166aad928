package archive

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/petra-oci/petra-oci/layout"
)

// crafted writes a tar that starts as a petra export of dir does (the petra directory,
// the signed metadata and its signature) and continues with entries.
type crafted struct {
	t   *testing.T
	dir string
	buf bytes.Buffer
	tw  *tar.Writer
}

func newCrafted(t *testing.T, dir string, withMetadata bool) *crafted {
	c := &crafted{t: t, dir: dir}
	c.tw = tar.NewWriter(&c.buf)
	if withMetadata {
		c.dirEntry("petra/")
		c.file(layout.MetadataPath, readFile(t, filepath.Join(dir, layout.MetadataPath)))
		c.file(layout.SignaturePath, readFile(t, filepath.Join(dir, layout.SignaturePath)))
	}
	return c
}

func (c *crafted) header(h *tar.Header, body []byte) {
	c.t.Helper()
	must(c.t, c.tw.WriteHeader(h))
	if len(body) > 0 {
		_, err := c.tw.Write(body)
		must(c.t, err)
	}
}

func (c *crafted) file(name string, b []byte) {
	c.header(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}, b)
}

func (c *crafted) dirEntry(name string) {
	c.header(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}, nil)
}

// rest adds every file of the bundle but the metadata.
func (c *crafted) rest(except ...string) {
	m, err := layout.ParseMetadata(readFile(c.t, filepath.Join(c.dir, layout.MetadataPath)))
	must(c.t, err)
	for _, f := range m.Files {
		if !slices.Contains(except, f.Path) {
			c.file(f.Path, readFile(c.t, filepath.Join(c.dir, f.Path)))
		}
	}
}

func (c *crafted) bytes() []byte {
	must(c.t, c.tw.Close())
	return c.buf.Bytes()
}

func TestHostileArchives(t *testing.T) {
	dir := newBundle(t, 20, 3000, 100)
	index := readFile(t, filepath.Join(dir, layout.IndexFile))
	cases := []struct {
		name  string
		build func(c *crafted)
		kind  error
		says  string
	}{
		{"dot-dot", func(c *crafted) { c.file("../evil", []byte("x")) }, ErrUnsafeEntry, "traversal"},
		{"dot-dot inside", func(c *crafted) { c.file("blobs/../../evil", []byte("x")) }, ErrUnsafeEntry, "traversal"},
		{"absolute", func(c *crafted) { c.file(filepath.Join(t.TempDir(), "evil"), []byte("x")) }, ErrUnsafeEntry, "absolute"},
		{"not clean", func(c *crafted) { c.file("blobs//sha256/x", []byte("x")) }, ErrUnsafeEntry, "clean"},
		{"symlink", func(c *crafted) {
			c.header(&tar.Header{Name: "blobs/evil", Typeflag: tar.TypeSymlink, Linkname: "/etc"}, nil)
		}, ErrUnsafeEntry, "symlink"},
		{"symlink then file through it", func(c *crafted) {
			c.header(&tar.Header{Name: "blobs", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, nil)
			c.rest()
		}, ErrUnsafeEntry, "symlink"},
		{"hard link", func(c *crafted) {
			c.header(&tar.Header{Name: layout.IndexFile, Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}, nil)
		}, ErrUnsafeEntry, "hard link"},
		{"character device", func(c *crafted) {
			c.header(&tar.Header{Name: "blobs/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}, nil)
		}, ErrUnsafeEntry, "character device"},
		{"block device", func(c *crafted) {
			c.header(&tar.Header{Name: "blobs/sda", Typeflag: tar.TypeBlock, Devmajor: 8}, nil)
		}, ErrUnsafeEntry, "block device"},
		{"fifo", func(c *crafted) { c.header(&tar.Header{Name: "blobs/fifo", Typeflag: tar.TypeFifo}, nil) }, ErrUnsafeEntry, "FIFO"},
		{"duplicate name", func(c *crafted) {
			c.file(layout.IndexFile, index)
			c.file(layout.IndexFile, index)
		}, ErrUnsafeEntry, "duplicate"},
		{"duplicate metadata", func(c *crafted) {
			c.file(layout.MetadataPath, readFile(t, filepath.Join(dir, layout.MetadataPath)))
		}, ErrUnsafeEntry, "duplicate"},
		{"huge header", func(c *crafted) {
			// a PAX extended header of 2 MiB (a path record), then the entry it describes
			rec := " path=" + strings.Repeat("a/", 1<<20) + "x\n"
			rec = fmt.Sprint(len(rec)+7) + rec
			start := c.buf.Len()
			c.file("PaxHeaders/x", []byte(rec))
			must(t, c.tw.Flush())
			blk := c.buf.Bytes()[start : start+512]
			blk[156] = tar.TypeXHeader
			copy(blk[148:156], "        ")
			sum := 0
			for _, b := range blk {
				sum += int(b)
			}
			copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
			c.file("x", nil)
		}, ErrUnsafeEntry, "header"},
		{"long name", func(c *crafted) {
			c.header(&tar.Header{Name: strings.Repeat("a", 5000), Typeflag: tar.TypeReg, Format: tar.FormatPAX}, nil)
		}, ErrUnsafeEntry, "limit"},
		{"xattr", func(c *crafted) {
			c.header(&tar.Header{Name: layout.IndexFile, Typeflag: tar.TypeReg, Size: int64(len(index)), Format: tar.FormatPAX,
				PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "x"}}, index)
		}, ErrUnsafeEntry, "PAX record"},
		{"size beyond the signed one", func(c *crafted) { c.file(layout.IndexFile, append(bytes.Clone(index), ' ')) }, ErrUnlisted, "the signed metadata says"},
		{"unlisted file", func(c *crafted) { c.file("blobs/sha256/"+strings.Repeat("0", 64), []byte("x")) }, ErrUnlisted, "does not list"},
		{"unlisted directory", func(c *crafted) { c.dirEntry("blobs/sha512/") }, ErrUnlisted, "does not describe"},
		{"data after the end", func(c *crafted) {
			c.rest()
			must(t, c.tw.Close())
			c.buf.WriteString("trailing")
			c.tw = tar.NewWriter(&bytes.Buffer{})
		}, ErrUnsafeEntry, "after the end"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCrafted(t, dir, true)
			tc.build(c)
			c.rest(layout.IndexFile) // so the archive would otherwise be complete
			c.file(layout.IndexFile+".never", nil)
			runHostile(t, c.bytes(), tc.kind, tc.says)
		})
	}
	t.Run("entry before the metadata", func(t *testing.T) {
		c := newCrafted(t, dir, false)
		c.file(layout.LayoutFile, readFile(t, filepath.Join(dir, layout.LayoutFile)))
		runHostile(t, c.bytes(), ErrNotExport, layout.LayoutFile)
	})
	t.Run("symlink before the metadata", func(t *testing.T) {
		c := newCrafted(t, dir, false)
		c.header(&tar.Header{Name: "petra", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, nil)
		runHostile(t, c.bytes(), ErrUnsafeEntry, "symlink")
	})
	t.Run("zstd bomb", func(t *testing.T) {
		c := newCrafted(t, dir, true)
		c.rest()
		tarBytes := c.bytes()
		var z bytes.Buffer
		zw, err := zstd.NewWriter(&z)
		must(t, err)
		_, err = zw.Write(tarBytes)
		must(t, err)
		_, err = zw.Write(make([]byte, 256<<20)) // zeros past the signed sizes
		must(t, err)
		must(t, zw.Close())
		if z.Len() > 1<<20 {
			t.Fatalf("test bug: bomb of %d bytes", z.Len())
		}
		runHostile(t, z.Bytes(), ErrUnlisted, "signed sizes")
	})
	t.Run("control: the same crafting, untouched, imports", func(t *testing.T) {
		c := newCrafted(t, dir, true)
		c.rest()
		p := filepath.Join(t.TempDir(), "a.tar")
		must(t, os.WriteFile(p, c.bytes(), 0o644))
		if _, _, err := importTo(t, p, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// runHostile imports the archive b and wants a refusal of kind naming says, with
// nothing at the output and nothing outside the work directory.
func runHostile(t *testing.T, b []byte, kind error, says string) {
	t.Helper()
	top := t.TempDir()
	src := filepath.Join(top, "src", "a.tar")
	must(t, os.MkdirAll(filepath.Dir(src), 0o755))
	must(t, os.WriteFile(src, b, 0o644))
	out := filepath.Join(top, "dst", "imported")
	must(t, os.MkdirAll(filepath.Dir(out), 0o755))
	_, err := Import(t.Context(), src, ImportOptions{Out: out, Verify: verifyOpts(t)})
	wantErr(t, err, kind, says)
	if _, err := os.Lstat(out); err == nil {
		t.Fatal("the output exists")
	}
	work := filepath.Join(top, "dst", ".imported.petra-import")
	for _, p := range listTree(t, top) {
		switch {
		case p == "." || p == "src" || p == "src/a.tar" || p == "dst" || p == "dst/.imported.petra-import":
		case strings.HasPrefix(p, "dst/.imported.petra-import/"):
			if strings.Contains(p, "evil") || strings.Contains(p, "null") || strings.Contains(p, "fifo") {
				t.Errorf("hostile entry written: %s", p)
			}
		default:
			t.Errorf("written outside the work directory: %s", p)
		}
	}
	_ = work
	for _, p := range []string{"/tmp/evil", filepath.Join(filepath.Dir(top), "evil")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}
}
