package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/layout"
)

func export(t testing.TB, dir, out string, split int64, parity int, z bool) *ExportResult {
	t.Helper()
	res, err := Export(context.Background(), dir, ExportOptions{Out: out, SplitSize: split, Parity: parity, Zstd: z, Signer: testKey})
	must(t, err)
	return res
}

func TestExportDeterministic(t *testing.T) {
	dir := newBundle(t, 1, 300<<10, 5000, 1)
	tmp := t.TempDir()
	for _, z := range []bool{false, true} {
		a := export(t, dir, filepath.Join(tmp, fmt.Sprint("a", z, ".tar")), 0, 0, z)
		// the second export happens later: nothing of the clock may leak in
		time.Sleep(1100 * time.Millisecond)
		b := export(t, dir, filepath.Join(tmp, fmt.Sprint("b", z, ".tar")), 0, 0, z)
		if !bytes.Equal(readFile(t, a.Out), readFile(t, b.Out)) {
			t.Fatalf("zstd=%v: two exports of one bundle differ", z)
		}
		if a.Archive != b.Archive {
			t.Fatalf("zstd=%v: archive info differs: %+v %+v", z, a.Archive, b.Archive)
		}
	}
	// the chunks and the chunk index (not its signature) are identical too
	c1 := export(t, dir, filepath.Join(tmp, "c1"), 64<<10, 2, false)
	c2 := export(t, dir, filepath.Join(tmp, "c2"), 64<<10, 2, false)
	for _, c := range append(c1.Index.Chunks, Chunk{Name: IndexFile}) {
		if !bytes.Equal(readFile(t, filepath.Join(c1.Out, c.Name)), readFile(t, filepath.Join(c2.Out, c.Name))) {
			t.Fatalf("%s differs between two exports", c.Name)
		}
	}
	// the tar: metadata and signature first, then sorted; fixed owner, time, modes
	m, err := layout.ParseMetadata(readFile(t, filepath.Join(dir, layout.MetadataPath)))
	must(t, err)
	tr := tar.NewReader(bytes.NewReader(readFile(t, filepath.Join(tmp, "afalse.tar"))))
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(m.Created.Truncate(time.Second)) {
			t.Errorf("%s: uid %d gid %d uname %q gname %q mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		if (h.Typeflag == tar.TypeDir && h.Mode != 0o755) || (h.Typeflag == tar.TypeReg && h.Mode != 0o644) {
			t.Errorf("%s: type %c mode %o", h.Name, h.Typeflag, h.Mode)
		}
	}
	if !slices.Equal(names[:3], []string{"petra/", layout.MetadataPath, layout.SignaturePath}) || !slices.IsSorted(names[3:]) {
		t.Errorf("entry order %q", names)
	}
	if want := 3 + 2 + len(m.Files); len(names) != want { // + blobs/, blobs/sha256/
		t.Errorf("%d entries, want %d: %q", len(names), want, names)
	}
}

func TestExportRefuses(t *testing.T) {
	ctx := context.Background()
	t.Run("changed file", func(t *testing.T) {
		dir := newBundle(t, 2, 1000)
		must(t, os.WriteFile(filepath.Join(dir, layout.IndexFile), append(readFile(t, filepath.Join(dir, layout.IndexFile)), ' '), 0o644))
		out := filepath.Join(t.TempDir(), "x.tar")
		_, err := Export(ctx, dir, ExportOptions{Out: out})
		wantErr(t, err, layout.ErrFileChanged, layout.IndexFile)
		if ls := listTree(t, filepath.Dir(out)); len(ls) != 1 {
			t.Errorf("left behind: %q", ls)
		}
	})
	t.Run("same-size change: VerifyFiles at export, always at import", func(t *testing.T) {
		dir := newBundle(t, 2, 1000)
		mb, err := layout.ReadMetadataBytes(dir)
		must(t, err)
		m, err := layout.ParseMetadata(mb)
		must(t, err)
		var blob string
		for _, f := range m.Files {
			if f.Size == 1000 {
				blob = f.Path
			}
		}
		if blob == "" {
			t.Fatal("no 1000-byte layer in the metadata")
		}
		flipByte(t, filepath.Join(dir, filepath.FromSlash(blob)), 500)
		out := filepath.Join(t.TempDir(), "x.tar")
		_, err = Export(ctx, dir, ExportOptions{Out: out, VerifyFiles: true})
		wantErr(t, err, layout.ErrFileChanged, blob)
		if ls := listTree(t, filepath.Dir(out)); len(ls) != 1 {
			t.Errorf("left behind: %q", ls)
		}
		// without VerifyFiles the sizes match, so the export goes through, and the
		// import refuses the file, naming it, and renames nothing into place
		if _, err := Export(ctx, dir, ExportOptions{Out: out}); err != nil {
			t.Fatalf("export without VerifyFiles: %v", err)
		}
		_, imported, err := importTo(t, out, nil)
		wantErr(t, err, layout.ErrFileChanged, blob)
		if _, serr := os.Lstat(imported); !errors.Is(serr, fs.ErrNotExist) {
			t.Errorf("%s exists after a refused import (%v)", imported, serr)
		}
	})
	t.Run("extra file and symlink", func(t *testing.T) {
		dir := newBundle(t, 2, 1000)
		must(t, os.WriteFile(filepath.Join(dir, "extra"), nil, 0o644))
		_, err := Export(ctx, dir, ExportOptions{Out: filepath.Join(t.TempDir(), "x.tar")})
		wantErr(t, err, layout.ErrFileExtra, "extra")
		must(t, os.Remove(filepath.Join(dir, "extra")))
		must(t, os.Symlink("/etc/passwd", filepath.Join(dir, "blobs", "link")))
		_, err = Export(ctx, dir, ExportOptions{Out: filepath.Join(t.TempDir(), "x.tar")})
		wantErr(t, err, layout.ErrUnsafeFile, "blobs/link")
	})
	t.Run("other key signs the index", func(t *testing.T) {
		dir := newBundle(t, 2, 1000)
		out := filepath.Join(t.TempDir(), "c")
		_, err := Export(ctx, dir, ExportOptions{Out: out, SplitSize: 4096, Signer: otherKey})
		if err == nil {
			t.Fatal("a chunk index signed with a key other than the bundle's was written")
		}
		if !strings.Contains(err.Error(), "does not verify "+layout.SignaturePath) {
			t.Errorf("err = %v, want the key check's error", err)
		}
		if ls := listTree(t, filepath.Dir(out)); len(ls) != 1 {
			t.Errorf("left behind: %q", ls)
		}
	})
	t.Run("existing chunk directory", func(t *testing.T) {
		dir := newBundle(t, 2, 1000)
		out := filepath.Join(t.TempDir(), "c")
		export(t, dir, out, 4096, 0, false)
		_, err := Export(ctx, dir, ExportOptions{Out: out, SplitSize: 4096, Signer: testKey})
		wantErr(t, err, ErrExists)
	})
}

func importTo(t testing.TB, src string, mod func(*ImportOptions)) (*ImportResult, string, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "imported")
	opts := ImportOptions{Out: out, Verify: verifyOpts(t)}
	if mod != nil {
		mod(&opts)
	}
	res, err := Import(context.Background(), src, opts)
	return res, opts.Out, err
}

func TestRoundTrip(t *testing.T) {
	dir := newBundle(t, 3, 200<<10, 70<<10, 10)
	tmp := t.TempDir()
	for _, tc := range []struct {
		name   string
		split  int64
		parity int
		z      bool
	}{{"archive", 0, 0, false}, {"zstd archive", 0, 0, true}, {"chunks", 50 << 10, 0, false},
		{"chunks+parity", 50 << 10, 2, false}, {"zstd chunks+parity", 30 << 10, 3, true}, {"one chunk", 10 << 20, 1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			ex := export(t, dir, filepath.Join(tmp, tc.name), tc.split, tc.parity, tc.z)
			src := ex.Out
			if tc.split > 0 && tc.name != "one chunk" {
				src = filepath.Join(ex.Out, IndexFile)
			}
			res, out, err := importTo(t, src, nil)
			must(t, err)
			if res.BundleID != ex.BundleID || res.MetadataDigest != ex.MetadataDigest || res.Verify == nil || res.Verify.Dir != out {
				t.Fatalf("result %+v", res)
			}
			// every file was checked with the hash computed while extracting it, not read again
			if f := res.Verify.Files; f.HashedWhenWritten != f.Files || f.Files != ex.Files-2 {
				t.Fatalf("%d of %d files (export: %d with the metadata) checked with the extraction's hashes", f.HashedWhenWritten, f.Files, ex.Files)
			}
			if _, err := bundle.Verify(context.Background(), out, verifyOpts(t)); err != nil {
				t.Fatalf("the imported bundle does not verify: %v", err)
			}
			if ls := listTree(t, filepath.Dir(out)); !slices.Equal(ls[:2], []string{".", "imported"}) || slices.ContainsFunc(ls, func(s string) bool { return filepath.Base(s)[0] == '.' && s != "." }) {
				t.Fatalf("left beside the bundle: %q", ls)
			}
			if !slices.Equal(listTree(t, out), listTree(t, dir)) {
				t.Fatalf("imported tree %q, want %q", listTree(t, out), listTree(t, dir))
			}
			// the output exists now: a second import refuses
			_, err = Import(context.Background(), src, ImportOptions{Out: out, Verify: verifyOpts(t)})
			wantErr(t, err, ErrExists)
		})
	}
}

func TestImportWrongKey(t *testing.T) {
	dir := newBundle(t, 4, 1000)
	ex := export(t, dir, filepath.Join(t.TempDir(), "c"), 1024, 0, false)
	pub, err := otherKey.PublicKeyPEM()
	must(t, err)
	_, out, err := importTo(t, ex.Out, func(o *ImportOptions) { o.Verify.Signature.PublicKey = pub })
	wantErr(t, err, ErrIndexSignature)
	if _, err := os.Stat(filepath.Join(filepath.Dir(out), ".imported.petra-import")); err == nil {
		t.Error("a work directory was made before the index verified")
	}
	// no key at all
	_, _, err = importTo(t, ex.Out, func(o *ImportOptions) { o.Verify = bundle.VerifyOptions{} })
	wantErr(t, err, ErrIndexSignature)
	// unsigned
	must(t, os.Remove(filepath.Join(ex.Out, IndexSignatureFile)))
	_, _, err = importTo(t, ex.Out, nil)
	wantErr(t, err, ErrIndexUnsigned)
	// plain archive with the wrong key: refused at the metadata, before anything else
	a := export(t, dir, filepath.Join(t.TempDir(), "a.tar"), 0, 0, false)
	_, out, err = importTo(t, a.Out, func(o *ImportOptions) { o.Verify.Signature.PublicKey = pub })
	wantErr(t, err, bundle.ErrSignature)
	if ls := listTree(t, filepath.Join(filepath.Dir(out), ".imported.petra-import", "bundle")); len(ls) != 1 {
		t.Errorf("extracted before the signature verified: %q", ls)
	}
}

func TestIndexTampered(t *testing.T) {
	dir := newBundle(t, 5, 10000)
	ex := export(t, dir, filepath.Join(t.TempDir(), "c"), 2048, 1, false)
	p := filepath.Join(ex.Out, IndexFile)
	orig := readFile(t, p)
	must(t, os.WriteFile(p, bytes.Replace(orig, []byte(`"chunkSize": 2048`), []byte(`"chunkSize": 2049`), 1), 0o644))
	_, _, err := importTo(t, ex.Out, nil)
	wantErr(t, err, ErrIndexSignature)
	// the index parser is strict even over signed bytes
	for _, bad := range [][]byte{
		bytes.Replace(orig, []byte(`"mediaType"`), []byte(`"MediaType"`), 1),
		bytes.Replace(orig, []byte("{\n"), []byte("{\n  \"extra\": 1,\n"), 1),
		bytes.Replace(orig, []byte(`"role": "data"`), []byte(`"role": "parity"`), 1),
	} {
		if _, err := ParseIndex(bad); !errors.Is(err, ErrIndexInvalid) {
			t.Errorf("ParseIndex accepted an edited index: %v", err)
		}
	}
}
