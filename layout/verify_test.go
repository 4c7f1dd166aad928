package layout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// testBundle is a small real bundle: an image index with one present child (manifest,
// config, layer) and one child left out as by a platform filter, a cosign signature
// manifest attached to the index, trust files, metadata and a stand-in signature.
type testBundle struct {
	dir      string
	meta     *Metadata
	metaB    []byte
	index    ocispec.Descriptor
	manifest ocispec.Descriptor
	config   ocispec.Descriptor
	layer    ocispec.Descriptor
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestBundle(t testing.TB) *testBundle {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	l, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	push := func(mediaType string, b []byte) ocispec.Descriptor {
		d, err := l.PushBytes(ctx, mediaType, b)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tb := &testBundle{dir: dir}
	tb.config = push(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	tb.layer = push(ocispec.MediaTypeImageLayerGzip, []byte("layer bytes, pretend gzip"))
	tb.manifest = push(ocispec.MediaTypeImageManifest, mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
		"config": tb.config, "layers": []ocispec.Descriptor{tb.layer},
	}))
	child := tb.manifest
	child.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	absent := oci.DescriptorFor(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"left":"out"}`))
	absent.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	tb.index = push(ocispec.MediaTypeImageIndex, mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageIndex,
		"manifests": []ocispec.Descriptor{child, absent},
	}))
	sigLayer := push(oci.MediaTypeCosignSimpleSigning, []byte(`{"critical":{"image":{"docker-manifest-digest":"`+tb.index.Digest.String()+`"}}}`))
	sigCfg := push(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}`))
	sig := push(ocispec.MediaTypeImageManifest, mustJSON(t, map[string]any{
		"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
		"config": sigCfg, "layers": []ocispec.Descriptor{sigLayer},
	}))
	repo := "cgr.example/chainguard/nginx"
	entries := []ocispec.Descriptor{
		ImageEntry(tb.index, repo, "latest").IndexDescriptor(),
		AttachmentEntry(sig, oci.KindCosignSig, repo, oci.CosignTag(tb.index.Digest, ".sig"), tb.index.Digest).IndexDescriptor(),
	}
	if err := l.WriteIndex(NewIndex(entries)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, PolicyPath, "apiVersion: petra-oci/v1\n")
	writeFile(t, dir, TrustedRootPath, `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
	id, seq, err := NextInSeries(nil)
	if err != nil {
		t.Fatal(err)
	}
	tb.meta, tb.metaB, err = BuildMetadata(ctx, dir, Metadata{
		BundleID: id, Sequence: seq,
		Created: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
		Tool:    ToolInfo{Name: "petra-oci", Version: "test"},
		Images: []MetadataImage{{Source: repo + ":latest", Repository: repo, Tag: "latest",
			Digest: tb.index.Digest, MediaType: tb.index.MediaType}},
		Trust: []TrustFile{{Role: RolePolicy, Path: PolicyPath}, {Role: RoleTrustedRoot, Path: TrustedRootPath}},
	}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteMetadata(tb.metaB); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, SignaturePath, `{"stand-in":"signature"}`)
	return tb
}

func writeFile(t testing.TB, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func blobRel(d ocispec.Descriptor) string {
	return "blobs/sha256/" + d.Digest.Encoded()
}

func flipByte(t *testing.T, dir, rel string, at int) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[at%len(b)] ^= 0x01
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// restamp updates (or adds) rel's entry in m to the file's current content, as a signer
// who signed metadata over a bad bundle would have.
func restamp(t *testing.T, dir string, m *Metadata, rel string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	f := File{Path: rel, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
	for i := range m.Files {
		if m.Files[i].Path == rel {
			m.Files[i] = f
			return
		}
	}
	m.Files = append(m.Files, f)
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
}

// rewriteIndex adds entries to index.json and restamps it in m.
func rewriteIndex(t *testing.T, dir string, m *Metadata, add ...ocispec.Descriptor) {
	t.Helper()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := l.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	idx.Manifests = append(idx.Manifests, add...)
	if err := l.WriteIndex(idx); err != nil {
		t.Fatal(err)
	}
	restamp(t, dir, m, IndexFile)
}

func TestVerifyFilesAcceptsIntactBundle(t *testing.T) {
	tb := newTestBundle(t)
	rep, err := VerifyFiles(context.Background(), tb.dir, tb.meta, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// oci-layout, index.json, 7 blobs, policy, trusted root
	if rep.Files != 11 || rep.Blobs != 7 || rep.IndexEntries != 2 || rep.Manifests != 3 || rep.Workers < 1 {
		t.Fatalf("report = %+v", rep)
	}
	var sum int64
	for _, f := range tb.meta.Files {
		sum += f.Size
		if f.Path == MetadataPath || f.Path == SignaturePath {
			t.Fatalf("metadata lists %s", f.Path)
		}
	}
	if rep.Bytes != sum {
		t.Fatalf("report bytes %d, files sum %d", rep.Bytes, sum)
	}
	// the bytes written parse back to the same metadata
	read, err := ReadMetadataBytes(tb.dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMetadata(read)
	if err != nil {
		t.Fatal(err)
	}
	if string(mustJSON(t, m)) != string(mustJSON(t, tb.meta)) {
		t.Fatalf("round trip differs:\n%s\n%s", mustJSON(t, m), mustJSON(t, tb.meta))
	}
	for _, tf := range m.Trust {
		if tf.SHA256 == "" {
			t.Fatalf("trust file %s has no digest", tf.Path)
		}
	}
	// one worker gives the same answer
	if _, err := VerifyFiles(context.Background(), tb.dir, tb.meta, VerifyOptions{Workers: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyFilesTamper(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name   string
		tamper func(t *testing.T, tb *testBundle, m *Metadata) string // returns the dir to verify, "" = tb.dir
		want   error
	}{
		{"flipped byte in a layer blob", func(t *testing.T, tb *testBundle, m *Metadata) string {
			flipByte(t, tb.dir, blobRel(tb.layer), 3)
			return ""
		}, ErrFileChanged},
		{"flipped byte in a manifest blob", func(t *testing.T, tb *testBundle, m *Metadata) string {
			flipByte(t, tb.dir, blobRel(tb.manifest), 10)
			return ""
		}, ErrFileChanged},
		{"flipped byte in index.json", func(t *testing.T, tb *testBundle, m *Metadata) string {
			flipByte(t, tb.dir, IndexFile, 40)
			return ""
		}, ErrFileChanged},
		{"flipped byte in oci-layout", func(t *testing.T, tb *testBundle, m *Metadata) string {
			flipByte(t, tb.dir, LayoutFile, 5)
			return ""
		}, ErrFileChanged},
		{"flipped byte in the policy", func(t *testing.T, tb *testBundle, m *Metadata) string {
			flipByte(t, tb.dir, PolicyPath, 0)
			return ""
		}, ErrFileChanged},
		{"truncated blob", func(t *testing.T, tb *testBundle, m *Metadata) string {
			if err := os.Truncate(filepath.Join(tb.dir, blobRel(tb.layer)), 3); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrFileChanged},
		{"appended byte", func(t *testing.T, tb *testBundle, m *Metadata) string {
			f, err := os.OpenFile(filepath.Join(tb.dir, blobRel(tb.config)), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte("\n"))
			f.Close()
			return ""
		}, ErrFileChanged},
		{"deleted blob", func(t *testing.T, tb *testBundle, m *Metadata) string {
			if err := os.Remove(filepath.Join(tb.dir, blobRel(tb.layer))); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrFileMissing},
		{"deleted index.json", func(t *testing.T, tb *testBundle, m *Metadata) string {
			if err := os.Remove(filepath.Join(tb.dir, IndexFile)); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrFileMissing},
		{"deleted trusted root", func(t *testing.T, tb *testBundle, m *Metadata) string {
			if err := os.Remove(filepath.Join(tb.dir, TrustedRootPath)); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrFileMissing},
		{"extra file at the root", func(t *testing.T, tb *testBundle, m *Metadata) string {
			writeFile(t, tb.dir, "README", "hello")
			return ""
		}, ErrFileExtra},
		{"extra blob with a valid name", func(t *testing.T, tb *testBundle, m *Metadata) string {
			b := []byte("smuggled")
			writeFile(t, tb.dir, "blobs/sha256/"+digest.FromBytes(b).Encoded(), string(b))
			return ""
		}, ErrFileExtra},
		{"extra file under blobs with an invalid name", func(t *testing.T, tb *testBundle, m *Metadata) string {
			writeFile(t, tb.dir, "blobs/sha256/not-a-digest", "x")
			return ""
		}, ErrFileExtra},
		{"extra file in petra/", func(t *testing.T, tb *testBundle, m *Metadata) string {
			writeFile(t, tb.dir, "petra/notes.txt", "x")
			return ""
		}, ErrFileExtra},
		{"extra empty directory", func(t *testing.T, tb *testBundle, m *Metadata) string {
			if err := os.Mkdir(filepath.Join(tb.dir, "blobs", "sha512"), 0o755); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrFileExtra},
		{"leftover ingest folder", func(t *testing.T, tb *testBundle, m *Metadata) string {
			if err := os.Mkdir(filepath.Join(tb.dir, IngestDir), 0o755); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrFileExtra},
		{"blob replaced by a symlink to an identical file outside", func(t *testing.T, tb *testBundle, m *Metadata) string {
			p := filepath.Join(tb.dir, blobRel(tb.layer))
			b, _ := os.ReadFile(p)
			o := filepath.Join(outside, "layer-copy")
			if err := os.WriteFile(o, b, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Remove(p)
			if err := os.Symlink(o, p); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrUnsafeFile},
		{"blob replaced by a relative symlink inside the bundle", func(t *testing.T, tb *testBundle, m *Metadata) string {
			p := filepath.Join(tb.dir, blobRel(tb.layer))
			os.Remove(p)
			if err := os.Symlink("../../"+LayoutFile, p); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrUnsafeFile},
		{"blobs/sha256 replaced by a symlink to a copy outside", func(t *testing.T, tb *testBundle, m *Metadata) string {
			src := filepath.Join(tb.dir, "blobs", "sha256")
			dst := filepath.Join(outside, "sha256-copy")
			if err := os.Rename(src, dst); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(dst, src); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrUnsafeFile},
		{"dangling symlink", func(t *testing.T, tb *testBundle, m *Metadata) string {
			if err := os.Symlink("/nonexistent", filepath.Join(tb.dir, "petra", "link")); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrUnsafeFile},
		{"metadata.json replaced by a symlink", func(t *testing.T, tb *testBundle, m *Metadata) string {
			p := filepath.Join(tb.dir, filepath.FromSlash(MetadataPath))
			o := filepath.Join(outside, "metadata.json")
			if err := os.Rename(p, o); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(o, p); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrUnsafeFile},
		{"blob replaced by a FIFO", func(t *testing.T, tb *testBundle, m *Metadata) string {
			p := filepath.Join(tb.dir, blobRel(tb.layer))
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrUnsafeFile},
		{"extra FIFO", func(t *testing.T, tb *testBundle, m *Metadata) string {
			if err := syscall.Mkfifo(filepath.Join(tb.dir, "fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
			return ""
		}, ErrUnsafeFile},
		{"extra unix socket", func(t *testing.T, tb *testBundle, m *Metadata) string {
			ln, err := net.Listen("unix", filepath.Join(tb.dir, "s"))
			if err != nil {
				t.Skipf("cannot create a unix socket here: %v", err)
			}
			t.Cleanup(func() { ln.Close() })
			return ""
		}, ErrUnsafeFile},
		{"character device", func(t *testing.T, tb *testBundle, m *Metadata) string {
			// /dev/null's numbers: 1, 3
			if err := syscall.Mknod(filepath.Join(tb.dir, "petra", "null"), syscall.S_IFCHR|0o644, 1<<8|3); err != nil {
				t.Skipf("cannot create a device node here: %v", err)
			}
			return ""
		}, ErrUnsafeFile},
		{"bundle root is a symlink", func(t *testing.T, tb *testBundle, m *Metadata) string {
			link := filepath.Join(outside, "bundle-link")
			if err := os.Symlink(tb.dir, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, ErrUnsafeFile},
		{"bundle root is a file", func(t *testing.T, tb *testBundle, m *Metadata) string {
			return filepath.Join(tb.dir, IndexFile)
		}, ErrUnsafeFile},
		{"blob bytes differ from its name, metadata restamped", func(t *testing.T, tb *testBundle, m *Metadata) string {
			flipByte(t, tb.dir, blobRel(tb.layer), 0)
			restamp(t, tb.dir, m, blobRel(tb.layer))
			return ""
		}, ErrBlobDigest},
		{"index entry for a manifest the metadata does not list", func(t *testing.T, tb *testBundle, m *Metadata) string {
			ghost := oci.DescriptorFor(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"ghost":true}`))
			rewriteIndex(t, tb.dir, m, ImageEntry(ghost, "cgr.example/chainguard/ghost", "1").IndexDescriptor())
			return ""
		}, ErrNotCovered},
		{"manifest reaching a layer the metadata does not list", func(t *testing.T, tb *testBundle, m *Metadata) string {
			ghostLayer := oci.DescriptorFor(ocispec.MediaTypeImageLayerGzip, []byte("ghost layer"))
			b := mustJSON(t, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
				"config": tb.config, "layers": []ocispec.Descriptor{ghostLayer}})
			man := oci.DescriptorFor(ocispec.MediaTypeImageManifest, b)
			writeFile(t, tb.dir, blobRel(man), string(b))
			restamp(t, tb.dir, m, blobRel(man))
			rewriteIndex(t, tb.dir, m, ImageEntry(man, "cgr.example/chainguard/ghost", "1").IndexDescriptor())
			return ""
		}, ErrNotCovered},
		{"index entry with the wrong size", func(t *testing.T, tb *testBundle, m *Metadata) string {
			d := tb.manifest
			d.Size++
			rewriteIndex(t, tb.dir, m, ImageEntry(d, "cgr.example/chainguard/other", "1").IndexDescriptor())
			return ""
		}, ErrNotCovered},
		{"packed image not in the bundle", func(t *testing.T, tb *testBundle, m *Metadata) string {
			m.Images = append(m.Images, MetadataImage{Source: "cgr.example/x:1", Repository: "cgr.example/x",
				Digest: digest.FromString("absent"), MediaType: ocispec.MediaTypeImageManifest})
			return ""
		}, ErrNotCovered},
		{"metadata breaking the format", func(t *testing.T, tb *testBundle, m *Metadata) string {
			m.Files[0].Path = "../escape"
			return ""
		}, ErrMetadataInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestBundle(t)
			m := *tb.meta
			m.Files = append([]File(nil), tb.meta.Files...)
			m.Images = append([]MetadataImage(nil), tb.meta.Images...)
			dir := tc.tamper(t, tb, &m)
			if dir == "" {
				dir = tb.dir
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := VerifyFiles(ctx, dir, &m, VerifyOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var fe *FileError
			if tc.want != ErrMetadataInvalid && !errors.As(err, &fe) {
				t.Fatalf("err %v is not a *FileError", err)
			}
			t.Log(err)
		})
	}
}

func TestBuildMetadataRefuses(t *testing.T) {
	ctx := context.Background()
	base := Metadata{BundleID: "0123456789abcdef0123456789abcdef", Sequence: 1, Tool: ToolInfo{Name: "petra-oci"}}
	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string) Metadata
		want   error
	}{
		{"open layout with its ingest folder", func(t *testing.T, dir string) Metadata {
			l, err := Create(dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.PushBytes(ctx, "application/octet-stream", []byte("x")); err != nil {
				t.Fatal(err)
			}
			return base
		}, ErrFileExtra},
		{"blob that does not hash to its name", func(t *testing.T, dir string) Metadata {
			writeFile(t, dir, "blobs/sha256/"+digest.FromString("a").Encoded(), "b")
			return base
		}, ErrBlobDigest},
		{"misnamed blob", func(t *testing.T, dir string) Metadata {
			writeFile(t, dir, "blobs/sha256/ABC", "b")
			return base
		}, ErrBlobDigest},
		{"symlink", func(t *testing.T, dir string) Metadata {
			if err := os.Symlink(IndexFile, filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			return base
		}, ErrUnsafeFile},
		{"empty directory", func(t *testing.T, dir string) Metadata {
			if err := os.Mkdir(filepath.Join(dir, "stray"), 0o755); err != nil {
				t.Fatal(err)
			}
			return base
		}, ErrFileExtra},
		{"index entry whose manifest is absent", func(t *testing.T, dir string) Metadata {
			l, _ := Open(dir)
			ghost := oci.DescriptorFor(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2}`))
			if err := l.WriteIndex(NewIndex([]ocispec.Descriptor{ImageEntry(ghost, "reg.example/a/b", "1").IndexDescriptor()})); err != nil {
				t.Fatal(err)
			}
			return base
		}, ErrNotCovered},
		{"image absent", func(t *testing.T, dir string) Metadata {
			m := base
			m.Images = []MetadataImage{{Source: "reg.example/a/b:1", Repository: "reg.example/a/b",
				Digest: digest.FromString("x"), MediaType: ocispec.MediaTypeImageIndex}}
			return m
		}, ErrNotCovered},
		{"bad series", func(t *testing.T, dir string) Metadata {
			m := base
			m.Sequence = 0
			return m
		}, ErrMetadataInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := Create(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.WriteIndex(NewIndex(nil)); err != nil {
				t.Fatal(err)
			}
			m := tc.tamper(t, dir)
			if _, _, err := BuildMetadata(ctx, dir, m, 0); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// the empty bundle itself is fine and verifies
	dir := t.TempDir()
	l, _ := Create(dir)
	if err := l.WriteIndex(NewIndex(nil)); err != nil {
		t.Fatal(err)
	}
	m, _, err := BuildMetadata(ctx, dir, base, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyFiles(ctx, dir, m, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	// a trust file must be in the bundle
	base.Trust = []TrustFile{{Role: RolePolicy, Path: PolicyPath}}
	if _, _, err := BuildMetadata(ctx, dir, base, 0); err == nil {
		t.Fatal("missing trust file accepted")
	}
}

func TestReadMetadataBytes(t *testing.T) {
	tb := newTestBundle(t)
	if b, err := ReadMetadataBytes(tb.dir); err != nil || string(b) != string(tb.metaB) {
		t.Fatalf("ReadMetadataBytes = %d bytes, %v", len(b), err)
	}
	if b, err := ReadSignatureBytes(tb.dir); err != nil || len(b) == 0 {
		t.Fatalf("ReadSignatureBytes = %q, %v", b, err)
	}
	outside := t.TempDir()
	tests := []struct {
		name   string
		tamper func(t *testing.T, dir string)
		want   error
	}{
		{"missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, filepath.FromSlash(MetadataPath)))
		}, fs.ErrNotExist},
		{"symlink", func(t *testing.T, dir string) {
			p := filepath.Join(dir, filepath.FromSlash(MetadataPath))
			o := filepath.Join(outside, "m.json")
			os.Rename(p, o)
			os.Symlink(o, p)
		}, ErrUnsafeFile},
		{"petra dir is a symlink", func(t *testing.T, dir string) {
			p := filepath.Join(dir, PetraDir)
			o := filepath.Join(outside, "petra")
			os.Rename(p, o)
			os.Symlink(o, p)
		}, ErrUnsafeFile},
		{"FIFO", func(t *testing.T, dir string) {
			p := filepath.Join(dir, filepath.FromSlash(MetadataPath))
			os.Remove(p)
			syscall.Mkfifo(p, 0o644)
		}, ErrUnsafeFile},
		{"too large", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, filepath.FromSlash(MetadataPath)), MaxMetadataBytes+1); err != nil {
				t.Fatal(err)
			}
		}, oci.ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTestBundle(t)
			tc.tamper(t, tb.dir)
			if _, err := ReadMetadataBytes(tb.dir); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestWriteMetadataRefusesInvalid(t *testing.T) {
	l, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteMetadata([]byte(`{"mediaType":"x"}`)); !errors.Is(err, ErrMetadataInvalid) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.Root(), filepath.FromSlash(MetadataPath))); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("invalid metadata written: %v", err)
	}
}

func TestVerifyFilesHonoursContext(t *testing.T) {
	tb := newTestBundle(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := VerifyFiles(ctx, tb.dir, tb.meta, VerifyOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkVerifyFiles verifies a bundle of 8 blobs of 64 MiB (from the page cache
// after the first iteration). Compare with `openssl dgst -sha256` on one large file:
// each core hashes one file at a time.
func BenchmarkVerifyFiles(b *testing.B) {
	const n, size = 8, 64 << 20
	ctx := context.Background()
	dir := b.TempDir()
	l, err := Create(dir)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, size)
	var entries []ocispec.Descriptor
	for i := range n {
		rng.Read(buf)
		d, err := l.PushBytes(ctx, ocispec.MediaTypeImageLayerGzip, buf)
		if err != nil {
			b.Fatal(err)
		}
		man, err := l.PushBytes(ctx, ocispec.MediaTypeImageManifest, mustJSON(b, map[string]any{
			"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest,
			"config": oci.DescriptorFor(ocispec.MediaTypeImageConfig, []byte("{}")), "layers": []ocispec.Descriptor{d}}))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.PushBytes(ctx, ocispec.MediaTypeImageConfig, []byte("{}")); err != nil {
			b.Fatal(err)
		}
		entries = append(entries, ImageEntry(man, "reg.example/bench/img", fmt.Sprint(i)).IndexDescriptor())
	}
	if err := l.WriteIndex(NewIndex(entries)); err != nil {
		b.Fatal(err)
	}
	l.Close()
	m, _, err := BuildMetadata(ctx, dir, Metadata{BundleID: "0123456789abcdef0123456789abcdef", Sequence: 1, Tool: ToolInfo{Name: "bench"}}, 0)
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, f := range m.Files {
		total += f.Size
	}
	b.SetBytes(total)
	// CPU time used per byte does not depend on what else runs on the machine: report
	// MB per CPU-second next to the wall-clock MB/s.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	iters := 0
	b.ResetTimer()
	c0 := cpu()
	for b.Loop() {
		if _, err := VerifyFiles(ctx, dir, m, VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
		iters++
	}
	if used := cpu() - c0; used > 0 {
		b.ReportMetric(float64(total)*float64(iters)/1e6/used.Seconds(), "MB/cpu-s")
	}
}

// TestOpenRefusesSwapsAfterTheWalk covers a file replaced between the walk and the open:
// by another file, by a symlink to an identical file, or by a FIFO (which must not hang).
func TestOpenRefusesSwapsAfterTheWalk(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a", "same")
	writeFile(t, dir, "b", "same")
	tr, err := openTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	swaps := map[string]func(p string){
		"renamed over": func(p string) {
			writeFile(t, dir, "c", "same")
			if err := os.Rename(filepath.Join(dir, "c"), p); err != nil {
				t.Fatal(err)
			}
		},
		"symlink": func(p string) {
			os.Remove(p)
			if err := os.Symlink("b", p); err != nil {
				t.Fatal(err)
			}
		},
		"FIFO": func(p string) {
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, swap := range swaps {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "a")
			os.Remove(p)
			writeFile(t, dir, "a", "same")
			walked, err := tr.root.Lstat("a")
			if err != nil {
				t.Fatal(err)
			}
			swap(p)
			f, err := tr.open("a", walked)
			if err == nil {
				f.Close()
			}
			if !errors.Is(err, ErrUnsafeFile) {
				t.Fatalf("err = %v, want ErrUnsafeFile", err)
			}
		})
	}
}

func TestSHA512Blob(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("hashed with sha512")
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.SHA512.FromBytes(content), Size: int64(len(content))}
	if err := l.Push(ctx, desc, bytes.NewReader(content)); err != nil {
		t.Fatal(err)
	}
	if err := l.WriteIndex(NewIndex(nil)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	m, _, err := BuildMetadata(ctx, dir, Metadata{BundleID: "0123456789abcdef0123456789abcdef", Sequence: 1, Tool: ToolInfo{Name: "t"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyFiles(ctx, dir, m, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	rel := "blobs/sha512/" + desc.Digest.Encoded()
	flipByte(t, dir, rel, 1)
	if _, err := VerifyFiles(ctx, dir, m, VerifyOptions{}); !errors.Is(err, ErrFileChanged) {
		t.Fatalf("err = %v, want ErrFileChanged", err)
	}
	restamp(t, dir, m, rel)
	if _, err := VerifyFiles(ctx, dir, m, VerifyOptions{}); !errors.Is(err, ErrBlobDigest) {
		t.Fatalf("err = %v, want ErrBlobDigest", err)
	}
}

func TestBuildMetadataRefusesNonUTF8Names(t *testing.T) {
	dir := t.TempDir()
	l, _ := Create(dir)
	if err := l.WriteIndex(NewIndex(nil)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "petra/bad-\xff-name", "x")
	_, _, err := BuildMetadata(context.Background(), dir, Metadata{BundleID: "0123456789abcdef0123456789abcdef", Sequence: 1, Tool: ToolInfo{Name: "t"}}, 0)
	if !errors.Is(err, ErrMetadataInvalid) {
		t.Fatalf("err = %v", err)
	}
	if _, err := VerifyFiles(context.Background(), dir, nil, VerifyOptions{}); !errors.Is(err, ErrMetadataInvalid) {
		t.Fatalf("nil metadata: %v", err)
	}
}
