// Package sbomtest packs a Chainguard-shaped fixture image into a bundle for the tests
// of internal/sbom, internal/scan and internal/report, and attaches evidence to it the
// way pack will (artifact manifest pushed into the layout, referrer entry added to
// index.json).
package sbomtest

import (
	"context"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/internal/report/artifact"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/remote"
)

// Bundle is a packed fixture bundle.
type Bundle struct {
	Dir    string
	Layout *layout.Layout
	Image  *fixture.Image
	// Name is the packed image's name, repository:tag.
	Name string
}

// Child returns the descriptor of the platform manifest for platform (os/arch).
func (b *Bundle) Child(t testing.TB, platform string) ocispec.Descriptor {
	t.Helper()
	d, ok := b.Image.Children[platform]
	if !ok {
		t.Fatalf("sbomtest: no %s child", platform)
	}
	return d
}

// Pack pushes a two-platform fixture image (linux/amd64, linux/arm64) to an in-process
// registry and packs it into a new unsigned bundle. Failures end the test.
func Pack(t testing.TB) *Bundle {
	t.Helper()
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.InProcess)
	img := fixture.Chainguard(ctx, t, reg.Host, "chainguard/xz-demo", "latest", fixture.Options{Seed: 42})
	client, err := remote.NewClient(remote.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	ref := img.Repo + ":" + img.Tag
	if _, err := pack.Pack(ctx, pack.Options{UnsafeNoPolicy: true, Images: []pack.ImageSpec{{Ref: ref}}, Dir: dir, Client: client}); err != nil {
		t.Fatalf("sbomtest: pack: %v", err)
	}
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &Bundle{Dir: dir, Layout: l, Image: img, Name: ref}
}

// Attach stores m in the bundle and lists it in index.json as a referrer of its
// subject (what pack will do for generated SBOMs and scan reports).
func (b *Bundle) Attach(t testing.TB, m *artifact.Manifest, subject ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	desc, err := m.Push(ctx, b.Layout)
	if err != nil {
		t.Fatalf("sbomtest: pushing artifact: %v", err)
	}
	idx, err := b.Layout.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := layout.ParseEntries(idx)
	if err != nil {
		t.Fatal(err)
	}
	entries = layout.Merge(entries, []layout.Entry{layout.AttachmentEntry(desc, oci.KindReferrer, b.Image.Repo, "", subject.Digest)})
	var descs []ocispec.Descriptor
	for _, e := range entries {
		descs = append(descs, e.IndexDescriptor())
	}
	if err := b.Layout.WriteIndex(layout.NewIndex(descs)); err != nil {
		t.Fatal(err)
	}
	return desc
}
