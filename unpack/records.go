package unpack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/evidence"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/replay"
)

// imageKey is one image of the graph: its source repository and digest.
type imageKey struct {
	repo string
	d    digest.Digest
}

// checkEvidence checks the pack-side summary of every image of the graph and of each
// of its children (read from the verified store) with the key or identity that verified the bundle. With
// RequireEvidence an image without a valid one refuses the bundle: the error wraps
// evidence.ErrNoEvidence and names each such image. Without it, a refusal is only
// reported (the import record then names no summary).
func checkEvidence(ctx context.Context, opts Options, store referrers.Store, g *referrers.Graph) (map[imageKey]*evidence.Summary, []Evidence, error) {
	copts := evidence.CheckOptions{Signature: opts.Verify.Signature}
	if opts.Verify.Images != nil && opts.Verify.Images.Policy != nil {
		copts.PolicyDigest = opts.Verify.Images.Policy.Digest()
	}
	found := map[imageKey]*evidence.Summary{}
	var report []Evidence
	var errs []error
	for _, r := range g.Repositories() {
		grouped := r.Grouped()
		for _, img := range r.Images {
			// the root and every child: a pod may name any of them by digest
			for _, n := range img.Tree() {
				k := imageKey{r.Name, n.Entry.Descriptor.Digest}
				if _, ok := found[k]; ok {
					continue
				}
				name := r.Name + "@" + k.d.String()
				s, err := evidence.CheckSummary(ctx, store, k.d, grouped[k.d], copts)
				found[k] = s
				if err != nil {
					if opts.RequireEvidence {
						errs = append(errs, fmt.Errorf("%s: %w", name, err))
						continue
					}
					opts.Log.Warn("no valid verification summary: the import record names none", "image", name, "reason", err)
					report = append(report, Evidence{Image: name, Refusal: err.Error()})
					continue
				}
				opts.Log.Info("verification summary verified", "image", name, "form", s.Form, "statement", s.Statement)
				report = append(report, Evidence{Image: name, Summary: s})
			}
		}
	}
	return found, report, errors.Join(errs...)
}

// taggedManifest is a manifest unpack wrote itself (an .att holding an import record)
// and the tag that moves to it.
type taggedManifest struct {
	desc ocispec.Descriptor
	b    []byte
}

// tagMoves are the tag moves of an unpack, in order, with the position of each Ref.
type tagMoves struct {
	list []replay.TagMove
	pos  map[string]int
}

// set sets the tag move m: it replaces the move of the same Ref (the bundle's .att,
// now with the import record) or is added. One map lookup, not a scan of the moves
// (an import record per image and child would make that quadratic in the images).
func (t *tagMoves) set(m replay.TagMove) {
	if t.pos == nil {
		t.pos = make(map[string]int, len(t.list))
		for i, old := range t.list {
			if _, ok := t.pos[old.Ref]; !ok {
				t.pos[old.Ref] = i
			}
		}
	}
	if i, ok := t.pos[m.Ref]; ok {
		t.list[i] = m
		return
	}
	t.pos[m.Ref] = len(t.list)
	t.list = append(t.list, m)
}

// writeRecords signs and pushes, by digest, the import record of every image of r,
// and of each of its children, in the destination repository of pr, in the form evidence.FormFor decides from what
// the image carries there. It returns the records and the .att manifests whose tags
// must move (by tag); no tag moves here. A bundle-form record of an image on a registry
// without the referrers API is added to pr's referrers (pushedRepo.addReferrer), for
// the referrers tag schema index written with the tags.
func writeRecords(ctx context.Context, opts Options, store referrers.Store, pr *pushedRepo, r *referrers.Repo,
	summaries map[imageKey]*evidence.Summary, b replay.Bundle, at time.Time) ([]ImportRecord, map[string]taggedManifest, error) {
	dest := pr.repo.Reference.Registry + "/" + pr.repo.Reference.Repository
	// manifests with a subject are pushed without oras-go's tag schema rewrite (as
	// pushContent pushes attachments); the index is merged below
	prepo := pr.repo
	if !pr.api {
		var err error
		if prepo, err = opts.Client.Repository(pr.repo.Reference); err != nil {
			return nil, nil, err
		}
		if err := prepo.SetReferrersCapability(true); err != nil {
			return nil, nil, err
		}
	}
	target := &destTarget{repo: prepo, client: opts.Client, manifests: map[digest.Digest][]byte{}}
	var policy digest.Digest
	if opts.Verify != nil && opts.Verify.Images != nil && opts.Verify.Images.Policy != nil {
		policy = opts.Verify.Images.Policy.Digest()
	}
	grouped := r.Grouped()
	tags := map[string]taggedManifest{}
	var recs []ImportRecord
	done := map[digest.Digest]bool{}
	var subjects []ocispec.Descriptor // every root and child, once
	for _, img := range r.Images {
		for _, n := range img.Tree() {
			if d := n.Descriptor(); !done[d.Digest] {
				done[d.Digest] = true
				subjects = append(subjects, d)
			}
		}
	}
	for _, root := range subjects {
		atts := grouped[root.Digest]
		form, err := destinationForm(ctx, opts.Client, store, pr, root, atts)
		if err != nil {
			return recs, nil, fmt.Errorf("choosing the form of the import record of %s@%s: %w", dest, root.Digest, err)
		}
		sum := summaries[imageKey{r.Name, root.Digest}]
		stmt, err := evidence.ImportStatement(evidence.Record{
			Repository: dest, Image: root.Digest, Version: opts.Version, Time: at,
			BundleID: b.ID, Sequence: b.Sequence, Metadata: b.Metadata, Summary: sum,
			PolicyURI: layout.PolicyPath, PolicyDigest: policy,
		})
		if err != nil {
			return recs, nil, err
		}
		added, _, err := evidence.AttachStatement(ctx, target, store, root, form, evidence.PredicateVSA, stmt, opts.AttestSigner, atts)
		if err != nil {
			return recs, nil, fmt.Errorf("import record of %s@%s: %w", dest, root.Digest, err)
		}
		rec := ImportRecord{Image: dest + "@" + root.Digest.String(), Form: form, Manifest: added.Descriptor.Digest, Statement: digest.FromBytes(stmt)}
		if sum != nil {
			rec.Summary = sum.Statement
		}
		switch form {
		case evidence.FormCosignAtt:
			d := added.Descriptor
			tags[added.Tag] = taggedManifest{desc: ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}, b: target.manifest(d.Digest)}
			rec.Tag = added.Tag
		case evidence.FormSigstoreBundle:
			if !pr.api {
				// listed in the referrers tag schema index with the tags, after the record
				pr.addReferrer(root.Digest, added.Descriptor)
			}
		}
		opts.Log.Info("import record attached", "image", rec.Image, "form", form, "manifest", rec.Manifest)
		recs = append(recs, rec)
	}
	return recs, tags, nil
}

// destinationForm decides the form of an image's import record from what it carries
// at the destination once its content is pushed: the bundle's attachments of root
// (read from the verified store) and any other referrer of root the registry lists
// (from an earlier unpack, or pushed there by hand; read from the registry).
func destinationForm(ctx context.Context, client *remote.Client, store referrers.Store, pr *pushedRepo, root ocispec.Descriptor, atts []referrers.Attachment) (evidence.Form, error) {
	form, err := evidence.FormFor(ctx, store, root.Digest, atts)
	if err != nil || form == evidence.FormSigstoreBundle {
		return form, err
	}
	inBundle := map[digest.Digest]bool{}
	for _, a := range atts {
		inBundle[a.Descriptor.Digest] = true
	}
	var extra []referrers.Attachment
	err = client.Retry(ctx, "listing the referrers of "+root.Digest.String(), func(ctx context.Context) error {
		extra = extra[:0]
		return pr.repo.Referrers(ctx, root, "", func(page []ocispec.Descriptor) error {
			for _, d := range page {
				if !inBundle[d.Digest] {
					extra = append(extra, referrers.Attachment{Subject: root.Digest, Descriptor: d, Kind: oci.KindReferrer})
				}
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, errdef.ErrNotFound) {
		return "", fmt.Errorf("listing the referrers of %s at the destination: %w", root.Digest, err)
	}
	// the registry's referrers are read with retries (and resumed reads)
	return evidence.FormFor(ctx, client.RetryingFetcher(pr.repo), root.Digest, extra)
}

// destTarget writes evidence into a destination repository (evidence.Target) and
// keeps the manifests it wrote, for the tags that move to them.
type destTarget struct {
	repo      *orasremote.Repository
	client    *remote.Client
	mu        sync.Mutex
	manifests map[digest.Digest][]byte
}

func (t *destTarget) PushBytes(ctx context.Context, mediaType string, b []byte) (ocispec.Descriptor, error) {
	desc := oci.DescriptorFor(mediaType, b)
	if oci.IsManifest(mediaType) {
		t.mu.Lock()
		t.manifests[desc.Digest] = bytes.Clone(b)
		t.mu.Unlock()
	}
	err := t.client.Retry(ctx, "pushing "+mediaType+" "+desc.Digest.String(), func(ctx context.Context) error {
		// checked on every try: one whose answer was lost may have written it
		if ok, err := t.repo.Exists(ctx, desc); err == nil && ok {
			return nil
		}
		if err := t.repo.Push(ctx, desc, bytes.NewReader(b)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
			return err
		}
		return nil
	})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pushing %s %s: %w", mediaType, desc.Digest, err)
	}
	return desc, nil
}

func (t *destTarget) manifest(d digest.Digest) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.manifests[d]
}
