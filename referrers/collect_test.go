package referrers

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// graphSource is a registry's subject graph in memory: referrers per subject and
// cosign tags. It counts referrer listings, so a walk that visits a manifest twice
// shows.
type graphSource struct {
	referrers map[digest.Digest][]ocispec.Descriptor
	tags      map[string]ocispec.Descriptor
	listed    map[digest.Digest]int
}

func (g *graphSource) Resolve(_ context.Context, ref string) (ocispec.Descriptor, error) {
	if d, ok := g.tags[ref]; ok {
		return d, nil
	}
	return ocispec.Descriptor{}, errdef.ErrNotFound
}

func (g *graphSource) Referrers(_ context.Context, desc ocispec.Descriptor, _ string, fn func([]ocispec.Descriptor) error) error {
	g.listed[desc.Digest]++
	return fn(g.referrers[desc.Digest])
}

func manifestDesc(name string) ocispec.Descriptor {
	b := []byte(`{"schemaVersion":2,"name":"` + name + `"}`)
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// TestCollect: subjects first, each manifest walked once even through a loop (a
// referrer attached to its own referrer) and a diamond, visit's result recorded, and
// the bound an error rather than a cut.
func TestCollect(t *testing.T) {
	root, sig, sbom, sbomSig := manifestDesc("root"), manifestDesc("sig"), manifestDesc("sbom"), manifestDesc("sbom-sig")
	src := &graphSource{
		referrers: map[digest.Digest][]ocispec.Descriptor{
			root.Digest: {sbom},
			sbom.Digest: {sbomSig},
			// a loop: the signature of the SBOM names the SBOM's subject chain again
			sbomSig.Digest: {sbom},
		},
		tags:   map[string]ocispec.Descriptor{oci.CosignTag(root.Digest, ".sig"): sig},
		listed: map[digest.Digest]int{},
	}
	var visited []digest.Digest
	got, err := Collect(context.Background(), src, []ocispec.Descriptor{root}, CollectOptions{}, func(_ context.Context, a Attachment) (Attachment, error) {
		visited = append(visited, a.Descriptor.Digest)
		a.Descriptor.ArtifactType = "seen/" + string(a.Kind)
		return a, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[digest.Digest]int{}
	for i, a := range got {
		if a.Descriptor.ArtifactType != "seen/"+string(a.Kind) {
			t.Errorf("attachment %d: visit's result not recorded: %+v", i, a.Descriptor)
		}
		if _, ok := pos[a.Descriptor.Digest]; !ok {
			pos[a.Descriptor.Digest] = i
		}
	}
	if len(got) != len(visited) {
		t.Errorf("recorded %d attachments, visited %d", len(got), len(visited))
	}
	for _, d := range []digest.Digest{sig.Digest, sbom.Digest, sbomSig.Digest} {
		if _, ok := pos[d]; !ok {
			t.Errorf("%s not collected; got %v", d, visited)
		}
	}
	if pos[sbom.Digest] > pos[sbomSig.Digest] {
		t.Errorf("the SBOM's signature came before the SBOM: %v", visited)
	}
	for d, n := range src.listed {
		if n != 1 {
			t.Errorf("referrers of %s listed %d times, want once", d, n)
		}
	}

	_, err = Collect(context.Background(), src, []ocispec.Descriptor{root}, CollectOptions{MaxNodes: 2}, nil)
	if !errors.Is(err, oci.ErrInvalid) || !strings.Contains(err.Error(), "more than 2 attachments") {
		t.Errorf("over the bound: err = %v, want oci.ErrInvalid naming the bound", err)
	}

	boom := errors.New("copy failed")
	_, err = Collect(context.Background(), src, []ocispec.Descriptor{root}, CollectOptions{}, func(context.Context, Attachment) (Attachment, error) {
		return Attachment{}, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("visit error: got %v, want it returned", err)
	}
}

// TestReferrersBySubject: one list per subject in first-appearance order, each
// referrer once even when two repositories carry it, cosign tags left out.
func TestReferrersBySubject(t *testing.T) {
	a, b, r1, r2, sig := manifestDesc("a"), manifestDesc("b"), manifestDesc("r1"), manifestDesc("r2"), manifestDesc("sig")
	entries := []layout.Entry{
		layout.AttachmentEntry(r1, oci.KindReferrer, "cgr.dev/x/one", "", b.Digest),
		layout.AttachmentEntry(sig, oci.KindCosignSig, "cgr.dev/x/one", oci.CosignTag(b.Digest, ".sig"), b.Digest),
		layout.AttachmentEntry(r2, oci.KindReferrer, "cgr.dev/x/one", "", a.Digest),
		layout.AttachmentEntry(r1, oci.KindReferrer, "cgr.dev/x/two", "", b.Digest),
		layout.AttachmentEntry(r2, oci.KindReferrer, "cgr.dev/x/one", "", b.Digest),
	}
	got := ReferrersBySubject(entries)
	if len(got) != 2 || got[0].Subject != b.Digest || got[1].Subject != a.Digest {
		t.Fatalf("subjects = %+v, want b then a", got)
	}
	if got[0].Repository != "cgr.dev/x/one" {
		t.Errorf("repository = %q, want the first entry's", got[0].Repository)
	}
	if len(got[0].Referrers) != 2 || got[0].Referrers[0].Digest != r1.Digest || got[0].Referrers[1].Digest != r2.Digest {
		t.Errorf("referrers of b = %+v, want r1, r2 once each", got[0].Referrers)
	}
}
