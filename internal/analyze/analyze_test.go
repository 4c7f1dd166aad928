package analyze_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/internal/analyze"
	"github.com/petra-oci/petra-oci/internal/analyze/job"
	"github.com/petra-oci/petra-oci/internal/sbom/sbomtest"
	"github.com/petra-oci/petra-oci/internal/sbom/spdx"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
)

// TestSinglePlatformSBOMPlatform: the SBOM referrers of a single-platform image (a
// manifest with no index entry, so no descriptor platform) record the platform of the
// image config, for a generated and for a carried SBOM alike, never "/" or nothing.
func TestSinglePlatformSBOMPlatform(t *testing.T) {
	ctx := context.Background()
	b := sbomtest.Pack(t)
	child := b.Child(t, "linux/arm64")
	// the root of a single-platform image: what pack sends (no platform on it)
	root := ocispec.Descriptor{MediaType: child.MediaType, Digest: child.Digest, Size: child.Size}

	an, err := analyze.New(ctx, analyze.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer an.Close()
	check := func(name string, atts []referrers.Attachment, origin spdx.Origin) {
		t.Helper()
		for _, a := range atts {
			info, ok := spdx.InfoFromAnnotations(a.Descriptor.Annotations)
			if !ok || info.Origin != origin {
				continue
			}
			if info.Platform != "linux/arm64" {
				t.Errorf("%s: %s SBOM annotated platform %q, want linux/arm64 (from the image config)", name, origin, info.Platform)
			}
			return
		}
		t.Errorf("%s: no %s SBOM among %d attachments", name, origin, len(atts))
	}

	atts, err := an.Image(ctx, b.Layout, job.Request{Repository: b.Image.Repo, Root: root})
	if err != nil {
		t.Fatal(err)
	}
	check("generated", atts, spdx.OriginGenerated)

	// carried: the image's verified SPDX attestation (the fixture's cosign .att on it)
	att, layer, payload := spdxAtt(t, b.Layout, child.Digest)
	res := &imageverify.Result{Digest: child.Digest, Verified: true, Root: imageverify.Subject{
		Digest: child.Digest, MediaType: child.MediaType,
		Attestations: []imageverify.Attestation{{
			Source:        imageverify.Source{Form: imageverify.FormCosignAtt, Manifest: att.Digest, Layer: layer},
			PredicateType: spdx.PredicateType, PayloadDigest: payload,
		}},
	}}
	atts, err = an.Image(ctx, b.Layout, job.Request{Repository: b.Image.Repo, Root: root, Verification: res,
		Attachments: []referrers.Attachment{{Subject: child.Digest, Descriptor: att, Kind: oci.KindCosignAtt}}})
	if err != nil {
		t.Fatal(err)
	}
	check("carried", atts, spdx.OriginCarried)
}

// spdxAtt finds the cosign .att manifest about subject in the bundle and the layer of
// its SPDX statement, with the statement's digest.
func spdxAtt(t *testing.T, l *layout.Layout, subject digest.Digest) (ocispec.Descriptor, digest.Digest, digest.Digest) {
	t.Helper()
	ctx := context.Background()
	idx, err := l.ReadIndex()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := layout.ParseEntries(idx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Kind != oci.KindCosignAtt || e.Subject != subject {
			continue
		}
		raw, err := l.FetchManifest(ctx, e.Descriptor)
		if err != nil {
			t.Fatal(err)
		}
		m, err := oci.ParseManifest(e.Descriptor, raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, ld := range m.Layers {
			rc, err := l.Fetch(ctx, ld)
			if err != nil {
				t.Fatal(err)
			}
			b, err := oci.ReadAllVerified(rc, ld, 64<<20)
			if err != nil {
				t.Fatal(err)
			}
			var env struct{ Payload []byte }
			var st struct{ PredicateType string }
			if json.Unmarshal(b, &env) != nil || json.Unmarshal(env.Payload, &st) != nil || st.PredicateType != spdx.PredicateType {
				continue
			}
			d := e.Descriptor
			return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}, ld.Digest, digest.FromBytes(env.Payload)
		}
	}
	t.Fatalf("no SPDX .att about %s in the bundle", subject)
	return ocispec.Descriptor{}, "", ""
}
