package layout

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// scaleEntries are the index.json entries pack writes for n images of the
// bench/mkscale graph: per image the index (tagged), two children, a .sig and an .att
// on each of the three, one referrer and its referrers tag schema index (11 entries),
// ten images per repository.
func scaleEntries(n int) []Entry {
	var out []Entry
	man := func(s string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(s), Size: 1234}
	}
	for i := range n {
		repo := fmt.Sprintf("registry.example.com:5000/bench/scale-%05d/app", i/10)
		idx := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString(fmt.Sprint("index ", i)), Size: 789}
		out = append(out, ImageEntry(idx, repo, fmt.Sprintf("v%d", i%10)))
		subjects := []digest.Digest{idx.Digest}
		for _, arch := range []string{"amd64", "arm64"} {
			c := man(fmt.Sprint("child ", i, arch))
			c.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
			out = append(out, ChildEntry(c, repo))
			subjects = append(subjects, c.Digest)
		}
		for _, s := range subjects {
			out = append(out,
				AttachmentEntry(man("sig "+s.String()), oci.KindCosignSig, repo, oci.CosignTag(s, ".sig"), s),
				AttachmentEntry(man("att "+s.String()), oci.KindCosignAtt, repo, oci.CosignTag(s, ".att"), s))
		}
		ref := man(fmt.Sprint("note ", i))
		ref.ArtifactType = "application/vnd.petra.bench.note"
		ref.Annotations = map[string]string{ocispec.AnnotationCreated: "2026-01-01T00:00:00Z"}
		out = append(out, AttachmentEntry(ref, oci.KindReferrer, repo, "", idx.Digest))
		ri := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString(fmt.Sprint("referrers of ", i)), Size: 456}
		out = append(out, AttachmentEntry(ri, oci.KindReferrersIndex, repo, oci.ReferrersTag(idx.Digest), idx.Digest))
	}
	return out
}

func descriptorsOf(es []Entry) []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, 0, len(es))
	for _, e := range es {
		out = append(out, e.IndexDescriptor())
	}
	return out
}

// TestIndexLimitHoldsScale pins the bound of index.json against the graph of the
// scale bench: 2,000 images (22,000 entries) round-trip through WriteIndex, ReadIndex
// and ParseEntries, and MaxIndexBytes leaves room for at least twice that.
func TestIndexLimitHoldsScale(t *testing.T) {
	l, err := Create(filepath.Join(t.TempDir(), "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	es := scaleEntries(n)
	if err := l.WriteIndex(NewIndex(descriptorsOf(es))); err != nil {
		t.Fatal(err)
	}
	b, err := l.readIndexBytes()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d images: %d entries, %d bytes (%d a entry); MaxIndexBytes %d", n, len(es), len(b), len(b)/len(es), MaxIndexBytes)
	if 2*len(b) > MaxIndexBytes {
		t.Errorf("index.json of %d images is %d bytes: less than 2x headroom under MaxIndexBytes %d", n, len(b), MaxIndexBytes)
	}
	idx, err := l.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseEntries(idx)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(es) {
		t.Fatalf("read back %d entries, wrote %d", len(back), len(es))
	}
}

// TestWriteIndexRefusesOversized: pack never writes an index.json its readers refuse.
func TestWriteIndexRefusesOversized(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bundle")
	l, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 1<<20)
	var descs []ocispec.Descriptor
	for i := range MaxIndexBytes>>20 + 1 {
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(fmt.Sprint(i)), Size: 1,
			Annotations: map[string]string{"example.pad": big}}
		descs = append(descs, d)
	}
	err = l.WriteIndex(NewIndex(descs))
	if !errors.Is(err, oci.ErrTooLarge) {
		t.Fatalf("WriteIndex of an index over MaxIndexBytes: err = %v, want ErrTooLarge", err)
	}
	idx, err := l.ReadIndex()
	if err != nil || len(idx.Manifests) != 0 {
		t.Fatalf("after the refused write: %d entries, %v; want the empty index", len(idx.Manifests), err)
	}
}

// BenchmarkIndexRoundTrip: what pack (Merge, WriteIndex) and every reader (ReadIndex,
// ParseEntries) do with index.json, at 200 and 2,000 images.
func BenchmarkIndexRoundTrip(b *testing.B) {
	for _, n := range []int{200, 2000} {
		b.Run(fmt.Sprintf("images=%d", n), func(b *testing.B) {
			l, err := Create(filepath.Join(b.TempDir(), "bundle"))
			if err != nil {
				b.Fatal(err)
			}
			es := scaleEntries(n)
			b.ResetTimer()
			for b.Loop() {
				merged := Merge(es[:len(es)/2], es[len(es)/2:])
				if err := l.WriteIndex(NewIndex(descriptorsOf(merged))); err != nil {
					b.Fatal(err)
				}
				idx, err := l.ReadIndex()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ParseEntries(idx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
