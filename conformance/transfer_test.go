package conformance

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petra-oci/petra-oci/internal/archive"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
)

// Exit codes of the transfer commands (cmd/petra-oci/exit.go).
const (
	exitTransferChunk  = 60
	exitTransferStale  = 61
	exitTransferUnsafe = 62
	exitTransferExists = 65
)

// TestTransferCLI moves a packed bundle across a simulated CDS with the CLI: pack,
// export twice (byte-identical), export --split --parity 2, delete and corrupt chunks,
// import (rebuilt from parity, JSON-lines progress), verify, unpack into a registry;
// and the refusals: chunks beyond parity, a stale chunk, a hostile archive entry, an
// existing output.
func TestTransferCLI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, interopRepo, interopTag, fixture.Options{Seed: 81, LayerBytes: 200 << 10})
	dir, packed := packCLI(t, e, keys, img.Repo+":"+img.Tag)
	work := t.TempDir()
	p := func(name string) string { return filepath.Join(work, name) }

	// two exports of one bundle are byte-identical
	e.petra("export", dir, "-o", p("a.tar"))
	e.petra("export", dir, "-o", p("b.tar"))
	if !bytes.Equal(readAll(t, p("a.tar")), readAll(t, p("b.tar"))) {
		t.Fatal("two exports of one bundle differ")
	}
	size := int64(len(readAll(t, p("a.tar"))))
	split := fmt.Sprint(size/6 + 1)

	var ex archive.ExportResult
	decodeJSON(t, e.petra("export", dir, "-o", p("chunks"), "--split", split, "--parity", "2", "--key", keys.priv, "--output", "json"), &ex)
	if ex.Index == nil || ex.Index.Parity == nil || ex.Index.Parity.DataChunks < 5 || ex.Index.Parity.ParityChunks != 2 {
		t.Fatalf("export --split --parity 2: index %+v", ex.Index)
	}
	if ex.BundleID != packed.BundleID || ex.Archive.Size != size {
		t.Fatalf("export: bundle %s archive %d bytes, want %s and %d (the plain archive's)", ex.BundleID, ex.Archive.Size, packed.BundleID, size)
	}
	// the exported chunk directory exists already: refused
	assertExit(t, "export onto the chunk directory", runPetra(t, e, "export", dir, "-o", p("chunks"), "--split", split, "--key", keys.priv), exitTransferExists)

	chunks := func(t *testing.T) string {
		c := filepath.Join(t.TempDir(), "chunks")
		copyTree(t, p("chunks"), c)
		return c
	}
	flip := func(t *testing.T, path string) {
		b := readAll(t, path)
		b[len(b)/2] ^= 1
		writeFile(t, path, b)
	}

	t.Run("two chunks lost and corrupted are rebuilt, then verify and unpack", func(t *testing.T) {
		c := chunks(t)
		must(t, os.Remove(filepath.Join(c, "data-00001")))
		flip(t, filepath.Join(c, "data-00003"))
		out := filepath.Join(t.TempDir(), "bundle")
		r := e.petra("import", filepath.Join(c, archive.IndexFile), "-o", out, "--key", keys.pub, "--output", "json")
		var res archive.ImportResult
		decodeJSON(t, r, &res)
		rebuilt := map[string]bool{}
		for _, ch := range res.Chunks {
			if ch.Status == "rebuilt" {
				rebuilt[ch.Name] = true
			}
		}
		if len(rebuilt) != 2 || !rebuilt["data-00001"] || !rebuilt["data-00003"] {
			t.Fatalf("rebuilt %v, want data-00001 and data-00003:\n%s", rebuilt, r)
		}
		// progress: JSON lines on stderr, naming the bad chunks
		bad := map[string]bool{}
		sc := bufio.NewScanner(strings.NewReader(r.stderr))
		phases := map[string]bool{}
		for sc.Scan() {
			var ev archive.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("stderr line %q is not a JSON event: %v", sc.Text(), err)
			}
			phases[ev.Phase] = true
			if ev.Phase == "bad-chunk" {
				bad[ev.Chunk] = true
			}
		}
		if !bad["data-00001"] || !bad["data-00003"] || !phases["verify-chunk"] || !phases["extract"] || !phases["verify-bundle"] || !phases["done"] {
			t.Errorf("progress events: phases %v, bad chunks %v", phases, bad)
		}
		e.petra("verify", "--key", keys.pub, out)
		dst := registrytest.Start(t, registrytest.Olareg)
		e.petra(unpackArgs(keys, dst.Host+"/pfx", out, "--state", filepath.Join(t.TempDir(), "s.json"))...)
		if got := resolveAt(t, dst, "pfx/"+interopRepo, img.Tag); got != img.Index.Digest {
			t.Fatalf("after import and unpack, %s:%s is %q, want %s", interopRepo, img.Tag, got, img.Index.Digest)
		}
	})

	t.Run("three bad chunks are refused before extraction, naming each", func(t *testing.T) {
		c := chunks(t)
		must(t, os.Remove(filepath.Join(c, "data-00000")))
		flip(t, filepath.Join(c, "data-00002"))
		flip(t, filepath.Join(c, "parity-00000"))
		out := filepath.Join(t.TempDir(), "bundle")
		r := runPetra(t, e, "import", c, "-o", out, "--key", keys.pub)
		assertExit(t, "import with three bad chunks", r, exitTransferChunk)
		for _, n := range []string{"data-00000", "data-00002", "parity-00000"} {
			if !strings.Contains(r.stderr, n) {
				t.Errorf("stderr does not name %s:\n%s", n, r)
			}
		}
		if _, err := os.Stat(out); err == nil {
			t.Error("the output exists")
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(out), ".bundle.petra-import", "bundle")); err == nil {
			t.Error("something was extracted")
		}
	})

	t.Run("a stale chunk of another export is refused", func(t *testing.T) {
		c := chunks(t)
		writeFile(t, filepath.Join(c, "data-00042"), []byte("left over"))
		assertExit(t, "import with a stale chunk", runPetra(t, e, "import", c, "-o", filepath.Join(t.TempDir(), "b"), "--key", keys.pub), exitTransferStale, "data-00042")
	})

	t.Run("a hostile archive entry is refused, nothing written outside", func(t *testing.T) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, name := range []string{layout.MetadataPath, layout.SignaturePath} {
			b := readAll(t, filepath.Join(dir, name))
			must(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}))
			_, err := tw.Write(b)
			must(t, err)
		}
		must(t, tw.WriteHeader(&tar.Header{Name: "../../evil", Typeflag: tar.TypeReg, Size: 1}))
		_, err := tw.Write([]byte("x"))
		must(t, err)
		must(t, tw.Close())
		top := t.TempDir()
		a := writeFile(t, filepath.Join(top, "hostile.tar"), buf.Bytes())
		r := runPetra(t, e, "import", a, "-o", filepath.Join(top, "out", "b"), "--key", keys.pub)
		assertExit(t, "import of ../../evil", r, exitTransferUnsafe, "../../evil")
		for _, q := range []string{filepath.Join(top, "evil"), filepath.Join(top, "out", "evil")} {
			if _, err := os.Lstat(q); err == nil {
				t.Errorf("%s was written", q)
			}
		}
	})

	t.Run("plain zstd archive imports and verifies", func(t *testing.T) {
		e.petra("export", dir, "-o", p("z.tar.zst"), "--zstd")
		out := filepath.Join(t.TempDir(), "bundle")
		e.petra("import", p("z.tar.zst"), "-o", out, "--key", keys.pub)
		e.petra("verify", "--key", keys.pub, out)
		assertExit(t, "import onto an existing directory", runPetra(t, e, "import", p("z.tar.zst"), "-o", out, "--key", keys.pub), exitTransferExists)
	})
}

func readAll(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}
