package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/replay"
	"github.com/petra-oci/petra-oci/signing"
	"github.com/petra-oci/petra-oci/unpack"
)

// copyTree copies a bundle directory (regular files and directories only).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// someBlob returns the path of the largest blob of dir (a layer).
func someBlob(t testing.TB, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var best string
	var size int64 = -1
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Size() > size {
			best, size = filepath.Join(dir, "blobs", "sha256", e.Name()), fi.Size()
		}
	}
	return best
}

func flipByte(t testing.TB, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// resign rewrites petra/metadata.json through edit (on its generic JSON form, so it can
// also break the format) and signs it again with the bundle key: the attacker holds
// the key in these cases, and only the file checks can catch them.
func resign(t testing.TB, dir string, edit func(m map[string]any)) {
	t.Helper()
	mp := filepath.Join(dir, filepath.FromSlash(layout.MetadataPath))
	b, err := os.ReadFile(mp)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.MarshalIndent(m, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sig, err := signing.SignBlob(context.Background(), bundleKey, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(layout.SignaturePath)), sig, 0o644); err != nil {
		t.Fatal(err)
	}
}

// setFile sets the metadata entry of rel to the current content of the file.
func setFile(t testing.TB, dir, rel string) func(m map[string]any) {
	return func(m map[string]any) {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m["files"].([]any) {
			e := f.(map[string]any)
			if e["path"] == rel {
				e["sha256"] = digest.FromBytes(b).Encoded()
				e["size"] = len(b)
				return
			}
		}
		t.Fatalf("%s not in metadata", rel)
	}
}

// TestTamperSuite proves every rejection of bundle verification, each with its own
// error and exit code, through `petra-oci verify` and through unpack, and that a
// registry given a rejected bundle receives nothing at all.
func TestTamperSuite(t *testing.T) {
	ctx := context.Background()
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 7})
	base, _ := packImages(t, img.Repo+":"+img.Tag)
	dst := registrytest.Start(t, registrytest.Distribution)
	e := newEnv(t)
	pub, err := bundleKey.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pubFile := writeFile(t, filepath.Join(t.TempDir(), "bundle.pub"), pub)
	otherKey, otherPub, _ := fixture.KeyPair(t)
	_ = otherKey
	otherPubFile := writeFile(t, filepath.Join(t.TempDir(), "other.pub"), otherPub)

	// the untouched bundle passes both ways (so every rejection below is the tamper's)
	if r := e.run(petraBin, "verify", "--key", pubFile, "--state", filepath.Join(t.TempDir(), "s.json"), base); r.exitCode != 0 {
		t.Fatalf("untouched bundle: %s", r)
	}

	idxPath := func(dir string) string { return filepath.Join(dir, "index.json") }
	cases := []struct {
		name   string
		mutate func(t *testing.T, dir string) (state string)
		want   error
		exit   int
		key    string
	}{
		{"changed byte in a blob", func(t *testing.T, dir string) string { flipByte(t, someBlob(t, dir), 100); return "" }, layout.ErrFileChanged, 20, ""},
		{"changed byte in index.json", func(t *testing.T, dir string) string { flipByte(t, idxPath(dir), 10); return "" }, layout.ErrFileChanged, 20, ""},
		{"changed byte in oci-layout", func(t *testing.T, dir string) string { flipByte(t, filepath.Join(dir, "oci-layout"), 3); return "" }, layout.ErrFileChanged, 20, ""},
		{"missing blob", func(t *testing.T, dir string) string { must(t, os.Remove(someBlob(t, dir))); return "" }, layout.ErrFileMissing, 21, ""},
		{"extra file", func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, "README"), []byte("hello"))
			return ""
		}, layout.ErrFileExtra, 22, ""},
		{"extra blob with a valid name", func(t *testing.T, dir string) string {
			b := []byte("smuggled")
			writeFile(t, filepath.Join(dir, "blobs", "sha256", digest.FromBytes(b).Encoded()), b)
			return ""
		}, layout.ErrFileExtra, 22, ""},
		{"symlinked blob", func(t *testing.T, dir string) string {
			p := someBlob(t, dir)
			outside := filepath.Join(t.TempDir(), "same-bytes")
			b, _ := os.ReadFile(p)
			writeFile(t, outside, b)
			must(t, os.Remove(p))
			must(t, os.Symlink(outside, p))
			return ""
		}, layout.ErrUnsafeFile, 23, ""},
		{"symlink escaping the bundle", func(t *testing.T, dir string) string {
			must(t, os.Symlink("/etc", filepath.Join(dir, "petra", "etc")))
			return ""
		}, layout.ErrUnsafeFile, 23, ""},
		{"FIFO", func(t *testing.T, dir string) string {
			must(t, syscall.Mkfifo(filepath.Join(dir, "blobs", "fifo"), 0o644))
			return ""
		}, layout.ErrUnsafeFile, 23, ""},
		{"blob not hashing to its name (metadata re-signed to match)", func(t *testing.T, dir string) string {
			p := someBlob(t, dir)
			flipByte(t, p, 100)
			rel, _ := filepath.Rel(dir, p)
			resign(t, dir, setFile(t, dir, filepath.ToSlash(rel)))
			return ""
		}, layout.ErrBlobDigest, 24, ""},
		{"index entry not covered by the metadata (re-signed)", func(t *testing.T, dir string) string {
			b, err := os.ReadFile(idxPath(dir))
			must(t, err)
			ghost := digest.FromString("not in the bundle")
			b = bytes.Replace(b, []byte(`"manifests": [`), []byte(`"manifests": [{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+ghost.String()+`","size":2,"annotations":{"dev.petra-oci.kind":"image","dev.petra-oci.repository":"x.io/ghost"}},`), 1)
			writeFile(t, idxPath(dir), b)
			resign(t, dir, setFile(t, dir, "index.json"))
			return ""
		}, layout.ErrNotCovered, 25, ""},
		{"path escaping the bundle in the metadata (re-signed)", func(t *testing.T, dir string) string {
			resign(t, dir, func(m map[string]any) {
				m["files"] = append(m["files"].([]any), map[string]any{"path": "../outside", "size": 1, "sha256": strings.Repeat("a", 64)})
			})
			return ""
		}, layout.ErrMetadataInvalid, 12, ""},
		{"unsigned", func(t *testing.T, dir string) string {
			must(t, os.Remove(filepath.Join(dir, filepath.FromSlash(layout.SignaturePath))))
			return ""
		}, bundle.ErrUnsigned, 10, ""},
		{"metadata changed after signing", func(t *testing.T, dir string) string {
			flipByte(t, filepath.Join(dir, filepath.FromSlash(layout.MetadataPath)), 20)
			return ""
		}, bundle.ErrSignature, 11, ""},
		{"signed by another key", func(t *testing.T, dir string) string { return "" }, bundle.ErrSignature, 11, otherPubFile},
		{"replayed bundle", func(t *testing.T, dir string) string { return acceptedState(t, dir, 0) }, replay.ErrReplay, 13, ""},
		{"rolled back to an older sequence", func(t *testing.T, dir string) string { return acceptedState(t, dir, 1) }, replay.ErrReplay, 13, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bundle")
			copyTree(t, base, dir)
			state := tc.mutate(t, dir)
			if state == "" {
				state = filepath.Join(t.TempDir(), "series.json")
			}
			key := pubFile
			if tc.key != "" {
				key = tc.key
			}
			r := e.run(petraBin, "verify", "--key", key, "--state", state, dir)
			if r.exitCode != tc.exit || r.stderr == "" {
				t.Errorf("verify exit %d, want %d with a message:\n%s", r.exitCode, tc.exit, r)
			}

			kb, err := os.ReadFile(key)
			must(t, err)
			g, err := replay.New(replay.Options{Path: state})
			must(t, err)
			_, err = unpack.Unpack(ctx, unpack.Options{Dir: dir, To: dst.Host + "/mirror", Client: client(t),
				Verify: &bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: kb}, Replay: g}})
			if !errors.Is(err, tc.want) {
				t.Errorf("unpack err = %v, want %v", err, tc.want)
			}
			if cat := dst.Catalog(t); len(cat) != 0 {
				t.Fatalf("the registry received %v from a rejected bundle", cat)
			}
		})
	}
}

// acceptedState returns a replay state that has accepted the bundle's series up to its
// sequence + ahead.
func acceptedState(t *testing.T, dir string, ahead uint64) string {
	state := filepath.Join(t.TempDir(), "series.json")
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(layout.MetadataPath)))
	must(t, err)
	m, err := layout.ParseMetadata(b)
	must(t, err)
	g, err := replay.New(replay.Options{Path: state})
	must(t, err)
	must(t, g.Accept(m.BundleID, m.Sequence+ahead))
	return state
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
