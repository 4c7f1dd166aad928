package layout

import (
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// TestChildEntries: a child manifest of a packed index is listed in index.json,
// untagged and with its platform, so that oras can resolve it by digest in the layout
// (oras-go's layout store only resolves manifests index.json lists); it parses back,
// merges by digest and sorts right after the images.
func TestChildEntries(t *testing.T) {
	const repo = "reg.example/chainguard/nginx"
	img := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("index"), Size: 5}
	child := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("amd64"), Size: 5,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}}
	sig := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("sig"), Size: 3}

	d := ChildEntry(child, repo).IndexDescriptor()
	if _, tagged := d.Annotations[ocispec.AnnotationRefName]; tagged {
		t.Fatalf("child entry is tagged: %v", d.Annotations)
	}
	if d.Platform == nil || d.Platform.Architecture != "amd64" {
		t.Fatalf("child entry lost its platform: %+v", d)
	}
	e, err := ParseEntry(d)
	if err != nil {
		t.Fatalf("parsing a child entry: %v", err)
	}
	if e.Kind != oci.KindChild || e.Repository != repo || e.Tag != "" || e.Subject != "" || e.Descriptor.Annotations != nil || e.Descriptor.Digest != child.Digest {
		t.Fatalf("child entry parsed as %+v", e)
	}

	// a re-pack of the same image keeps one entry per child
	first := []Entry{ImageEntry(img, repo, "latest"), ChildEntry(child, repo)}
	merged := Merge(first, []Entry{ImageEntry(img, repo, "latest"), ChildEntry(child, repo)})
	if len(merged) != 2 {
		t.Fatalf("merge of a re-pack has %d entries, want 2: %+v", len(merged), merged)
	}

	descs := []ocispec.Descriptor{
		AttachmentEntry(sig, oci.KindCosignSig, repo, oci.CosignTag(img.Digest, ".sig"), img.Digest).IndexDescriptor(),
		ChildEntry(child, repo).IndexDescriptor(),
		ImageEntry(img, repo, "latest").IndexDescriptor(),
	}
	SortEntries(descs)
	var kinds []string
	for _, d := range descs {
		kinds = append(kinds, d.Annotations[oci.AnnotationKind])
	}
	if want := []string{string(oci.KindImage), string(oci.KindChild), string(oci.KindCosignSig)}; !slices.Equal(kinds, want) {
		t.Fatalf("sorted kinds %v, want %v", kinds, want)
	}
}
