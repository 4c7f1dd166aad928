package layout

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

func TestPushFetchRoundTrip(t *testing.T) {
	ctx := context.Background()
	l, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	desc, err := l.PushBytes(ctx, "application/octet-stream", []byte("blob"))
	if err != nil {
		t.Fatal(err)
	}
	ok, err := l.Exists(ctx, desc)
	if err != nil || !ok {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
	rc, err := l.Fetch(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "blob" {
		t.Fatalf("Fetch = %q, %v", b, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(l.Root(), IngestDir)); !os.IsNotExist(err) {
		t.Fatalf("ingest folder left behind: %v", err)
	}
}

func TestPushRejectsWrongContentAndLeavesNothing(t *testing.T) {
	ctx := context.Background()
	l, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	desc := oci.DescriptorFor("application/octet-stream", []byte("expected"))
	err = l.Push(ctx, desc, strings.NewReader("tampered"))
	if !errors.Is(err, oci.ErrDigestMismatch) {
		t.Fatalf("err = %v, want digest mismatch", err)
	}
	if ok, _ := l.Exists(ctx, desc); ok {
		t.Fatal("a blob that failed verification is in the layout")
	}
	entries, _ := os.ReadDir(filepath.Join(l.Root(), IngestDir))
	if len(entries) != 0 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestFetchRejectsTamperedAndSymlinkedBlobs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := l.PushBytes(ctx, "application/octet-stream", []byte("original"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := BlobPath(desc)
	if err := os.WriteFile(filepath.Join(dir, p), []byte("origina!"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := l.Fetch(ctx, desc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, oci.ErrDigestMismatch) {
		t.Fatalf("tampered blob: err = %v", err)
	}
	rc.Close()

	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, p))
	if err := os.Symlink(outside, filepath.Join(dir, p)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Fetch(ctx, desc); err == nil {
		t.Fatal("symlinked blob was opened")
	}
	if _, err := l.Exists(ctx, desc); !errors.Is(err, oci.ErrInvalid) {
		t.Fatalf("symlinked blob Exists err = %v", err)
	}
}

func TestBlobPathRefusesEscapes(t *testing.T) {
	for _, d := range []string{"sha256:../../etc/passwd", "sha256/../x:abc", "md5:d41d8cd98f00b204e9800998ecf8427e"} {
		if _, err := BlobPath(ocispec.Descriptor{Digest: digest.Digest(d), Size: 1}); err == nil {
			t.Errorf("BlobPath(%q) accepted", d)
		}
	}
}

func TestIndexRoundTripAndEntries(t *testing.T) {
	ctx := context.Background()
	l, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, _ := l.PushBytes(ctx, ocispec.MediaTypeImageIndex, []byte(`{"schemaVersion":2,"manifests":[]}`))
	sig, _ := l.PushBytes(ctx, ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2}`))
	in := []Entry{
		AttachmentEntry(sig, oci.KindCosignSig, "reg.example/chainguard/nginx", oci.CosignTag(img.Digest, ".sig"), img.Digest),
		ImageEntry(img, "reg.example/chainguard/nginx", "latest"),
	}
	var descs []ocispec.Descriptor
	for _, e := range in {
		descs = append(descs, e.IndexDescriptor())
	}
	if err := l.WriteIndex(NewIndex(descs)); err != nil {
		t.Fatal(err)
	}
	idx, err := l.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	if got := idx.Manifests[0].Annotations[ocispec.AnnotationRefName]; got != "reg.example/chainguard/nginx:latest" {
		t.Fatalf("first entry ref.name = %q, want the image first", got)
	}
	out, err := ParseEntries(idx)
	if err != nil {
		t.Fatal(err)
	}
	if out[1].Kind != oci.KindCosignSig || out[1].Subject != img.Digest || out[1].Descriptor.Annotations != nil {
		t.Fatalf("entry = %+v", out[1])
	}
	// a cosign entry whose tag does not match its subject is refused
	bad := out[1].IndexDescriptor()
	bad.Annotations[ocispec.AnnotationRefName] = oci.CosignTag(sig.Digest, ".sig")
	if _, err := ParseEntry(bad); !errors.Is(err, oci.ErrInvalid) {
		t.Fatalf("mismatched cosign tag accepted: %v", err)
	}
}

func TestParseIndexRejects(t *testing.T) {
	for name, b := range map[string]string{
		"not json":        `{`,
		"trailing":        `{"schemaVersion":2,"manifests":[]} {}`,
		"schema 1":        `{"schemaVersion":1,"manifests":[]}`,
		"blob entry":      `{"schemaVersion":2,"manifests":[{"mediaType":"application/octet-stream","digest":"sha256:` + strings.Repeat("a", 64) + `","size":1}]}`,
		"huge manifest":   `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":99999999999}]}`,
		"escaping digest": `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../x","size":1}]}`,
	} {
		if _, err := ParseIndex([]byte(b)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseIndex(bytes.Repeat([]byte(" "), MaxIndexBytes+1)); !errors.Is(err, oci.ErrTooLarge) {
		t.Errorf("oversized index: %v", err)
	}
}

// TestWriteFileStaysInPetra: only files under petra/ are written by WriteFile.
func TestWriteFileStaysInPetra(t *testing.T) {
	l, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"index.json", "petra/../index.json", "../x", "petra", "/petra/x", "blobs/sha256/x"} {
		if err := l.WriteFile(rel, []byte("x")); !errors.Is(err, oci.ErrInvalid) {
			t.Errorf("WriteFile(%q) err = %v", rel, err)
		}
	}
	if err := l.WriteFile(PolicyPath, []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// Push hashes a reader that oci.NewVerifiedReader made for the same descriptor only
// once; it still refuses the content when that reader's content is wrong, and hashes
// itself a verified reader made for another descriptor.
func TestPushVerifiedReaderStillRefusesWrongContent(t *testing.T) {
	ctx := context.Background()
	l, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := oci.DescriptorFor("application/octet-stream", []byte("expected"))
	// same descriptor, wrong bytes of the right size
	bad := oci.NewVerifiedReader(io.NopCloser(strings.NewReader("tampered")), want)
	if err := l.Push(ctx, want, bad); !errors.Is(err, oci.ErrDigestMismatch) {
		t.Fatalf("err = %v, want digest mismatch", err)
	}
	// a reader verified for other content pushed under want's name
	other := oci.DescriptorFor("application/octet-stream", []byte("tampered"))
	wrong := oci.NewVerifiedReader(io.NopCloser(strings.NewReader("tampered")), other)
	if err := l.Push(ctx, want, wrong); !errors.Is(err, oci.ErrDigestMismatch) {
		t.Fatalf("err = %v, want digest mismatch", err)
	}
	if ok, _ := l.Exists(ctx, want); ok {
		t.Fatal("a blob that failed verification is in the layout")
	}
	good := oci.NewVerifiedReader(io.NopCloser(strings.NewReader("expected")), want)
	if err := l.Push(ctx, want, good); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.Exists(ctx, want); err != nil || !ok {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
}
