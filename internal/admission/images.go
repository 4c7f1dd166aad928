package admission

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/evidence"
	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
)

// annotationBundlePredicateType is what cosign v3 (and petra's evidence) annotate a
// Sigstore bundle referrer with.
const annotationBundlePredicateType = "dev.sigstore.bundle.predicateType"

// ImagesFromBundle lists the images of a verified bundle as Generate takes them: each
// root with its children, the form of petra's summary on each of them (read from the
// verified graph) and the pinned policy's result for it (v.Report.ImageResults, when the bundle
// was verified with a policy).
func ImagesFromBundle(ctx context.Context, v *bundle.Verified) ([]Image, error) {
	if v == nil || v.Graph == nil || v.Report == nil {
		return nil, fmt.Errorf("%w: no verified bundle", ErrInvalidOptions)
	}
	results := map[string]*imageverify.Result{}
	for _, r := range v.Report.ImageResults {
		results[r.Repository+"@"+r.Digest.String()] = r
	}
	var out []Image
	for _, repo := range v.Graph.Repositories() {
		for _, img := range repo.Images {
			e := img.Entry
			im := Image{Repository: e.Repository, Digest: e.Descriptor.Digest, Result: results[e.Repository+"@"+e.Descriptor.Digest.String()]}
			form, err := summaryForm(ctx, v.Store, img.Root)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", e.Name(), err)
			}
			im.Summary = form
			for _, n := range img.Tree()[1:] {
				d := n.Entry.Descriptor.Digest
				im.Children = append(im.Children, d)
				form, err := summaryForm(ctx, v.Store, n)
				if err != nil {
					return nil, fmt.Errorf("%s: child %s: %w", e.Name(), d, err)
				}
				if im.ChildSummaries == nil {
					im.ChildSummaries = map[digest.Digest]SummaryForm{}
				}
				im.ChildSummaries[d] = form
			}
			out = append(out, im)
		}
	}
	return out, nil
}

// summaryForm finds petra's verification summary among what is attached to root (an
// image root or a child): a layer of its cosign .att annotated with the summary's predicate type, or a Sigstore
// bundle referrer annotated so (as internal/evidence attaches it). Presence only: the
// signature is what admission verifies.
func summaryForm(ctx context.Context, s referrers.Store, root *referrers.Node) (SummaryForm, error) {
	form := SummaryNone
	for _, a := range root.Attached {
		m := a.Manifest
		if m == nil {
			var err error
			if m, err = readManifest(ctx, s, a.Entry); err != nil {
				return "", err
			}
		}
		switch a.Entry.Kind {
		case oci.KindCosignAtt:
			for _, l := range m.Layers {
				if l.Annotations[oci.AnnotationCosignPredicate] == evidence.PredicateVSA && form == SummaryNone {
					form = SummaryLegacy
				}
			}
		case oci.KindReferrer:
			if m.Annotations[annotationBundlePredicateType] == evidence.PredicateVSA {
				form = SummaryBundle
			}
		}
	}
	return form, nil
}

func readManifest(ctx context.Context, s referrers.Store, e layout.Entry) (*oci.Manifest, error) {
	d := e.Descriptor
	bare := d
	bare.Annotations, bare.Platform = nil, nil
	rc, err := s.Fetch(ctx, bare)
	if err != nil {
		return nil, err
	}
	b, err := oci.ReadAllVerified(rc, bare, oci.MaxManifestBytes)
	if err != nil {
		return nil, err
	}
	return oci.ParseManifest(bare, b)
}

// PolicyDigestOf returns the digest of the policy the bundle carries (its SHA-256 in
// the signed metadata), or "" when it carries none.
func PolicyDigestOf(r *bundle.Report) digest.Digest {
	if r == nil || r.Metadata == nil {
		return ""
	}
	for _, tf := range r.Metadata.Trust {
		if tf.Role == layout.RolePolicy && tf.SHA256 != "" {
			return digest.NewDigestFromEncoded(digest.SHA256, tf.SHA256)
		}
	}
	return ""
}
