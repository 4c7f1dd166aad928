// Package pack copies images and everything attached to them from registries into a
// bundle (an OCI image layout): each reference is resolved to a digest once; the index
// and every included child manifest, config and layer are copied byte for byte; OCI
// referrers and cosign tag-scheme artifacts are collected recursively for the index,
// every child and every attachment; index.json lists every root image, every child
// manifest (untagged) and every attached manifest, plus a referrers tag schema index
// per subject.
package pack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"golang.org/x/sync/errgroup"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/evidence"
	"github.com/petra-oci/petra-oci/graphcopy"
	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/internal/analyze/job"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/receipt"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/remote"
)

// ErrNoPolicy is returned by Pack when Options has neither a Policy nor UnsafeNoPolicy:
// verification is on unless it is turned off by name.
var ErrNoPolicy = fmt.Errorf("%w: pack: no policy (set Options.Policy, or Options.UnsafeNoPolicy to pack unverified images)", oci.ErrInvalid)

// Options configure Pack. Zero values: no platform filter, 4 blob transfers and 2
// images at once, a discarding logger.
type Options struct {
	// Images to pack.
	Images []ImageSpec
	// Platforms applies to images whose spec names none.
	Platforms []string
	// Dir is the bundle directory; an existing bundle is added to, and blobs already
	// there are not copied again.
	Dir string
	// Client opens source repositories.
	Client *remote.Client
	// Concurrency bounds blob transfers in flight.
	Concurrency int
	// ImageConcurrency bounds images worked on at once.
	ImageConcurrency int
	// Log receives progress (never results).
	Log *slog.Logger
	// Seal is how the bundle's metadata manifest is written and signed once every
	// image is packed (signer, series, tool version). A pack with any failure writes
	// no metadata, so an incomplete bundle can never verify.
	Seal bundle.SealOptions
	// Policy is enforced: a reference outside its sources is refused before anything
	// is pulled, and an image that does not verify against its rule (signatures and
	// attestations, read from the source before any layer is copied) is not packed.
	// Required: Pack refuses to run without it (ErrNoPolicy) unless UnsafeNoPolicy.
	Policy *policy.Policy
	// UnsafeNoPolicy packs without verifying any image signature or attestation
	// (Policy nil; both set is an error). The bundle can still be signed, but its
	// signature then vouches only for what was copied, not for who published it.
	UnsafeNoPolicy bool
	// TrustedMaterial verifies keyless signatures (a parsed trusted_root.json).
	TrustedMaterial root.TrustedMaterial
	// PolicyFile and TrustedRootFile, when set, are carried in the bundle
	// (petra/policy.yaml, petra/trusted_root.json) and their digests recorded in the
	// signed metadata.
	PolicyFile, TrustedRootFile []byte
	// Analyze, when set, runs on every image once it is copied (and verified) into
	// the bundle and returns what to attach: SBOMs and scan reports (internal/analyze,
	// in the petra-oci-analyze process through internal/analyze/job). An error (e.g.
	// one wrapping scanreport.ErrThreshold) fails the image. It runs outside the image
	// concurrency limit, so the next images copy meanwhile, and it may be called from
	// several goroutines at once.
	Analyze func(ctx context.Context, req job.Request) ([]referrers.Attachment, error)
	// OnBlob, when set, is told about every blob once it is in the bundle (progress).
	OnBlob func(desc ocispec.Descriptor, how graphcopy.How)
	// Since, for a delta bundle, is the far side's receipt, verified by the caller
	// (receipt.ReadVerified with the far side's key): a config or layer of an image
	// that the receipt lists in the image's repository (the source path under the
	// receipt's registry prefix) is not copied, and the signed metadata records the
	// receipt's digest, its base bundle and every blob so left out (layout.Delta).
	// Manifests and everything attached (signatures, attestations, SBOMs) are always
	// carried. The series continues from the receipt's bundle unless Seal.Previous is
	// set. The bundle directory must not hold a bundle already. nil packs everything.
	Since *receipt.Signed
	// Evidence writes, for every verified image, a SLSA verification summary signed
	// with the bundle key (Seal.Signer), in the form of the publisher's signatures:
	// a Sigstore bundle referrer beside Sigstore bundles, a layer of the cosign .att
	// manifest otherwise (evidence.FormFor, docs/evidence.md).
	Evidence bool
}

// Image is one packed image.
type Image struct {
	Source      string        `json:"source"`
	Repository  string        `json:"repository"`
	Tag         string        `json:"tag,omitempty"`
	Digest      digest.Digest `json:"digest"`
	MediaType   string        `json:"mediaType"`
	Platforms   []string      `json:"platforms,omitempty"`
	Attachments int           `json:"attachments"`
	// Verification is what the policy check proved (nil without a policy).
	Verification *imageverify.Result `json:"verification,omitempty"`
}

// Result is what Pack did.
type Result struct {
	Dir string `json:"dir"`
	// BundleID and Sequence identify the bundle in its series; Signed says whether
	// its metadata was signed.
	BundleID string          `json:"bundleID,omitempty"`
	Sequence uint64          `json:"sequence,omitempty"`
	Signed   bool            `json:"signed"`
	Images   []Image         `json:"images"`
	Stats    graphcopy.Stats `json:"stats"`
	// Delta says what a pack --since left out (nil for a full bundle).
	Delta *DeltaResult `json:"delta,omitempty"`
}

// DeltaResult is what a delta bundle relies on at the destination.
type DeltaResult struct {
	// Receipt is the digest of the receipt packed against.
	Receipt digest.Digest `json:"receipt"`
	// Expected and ExpectedBytes count the blobs left out and their size.
	Expected      int   `json:"expected"`
	ExpectedBytes int64 `json:"expectedBytes"`
}

type target struct {
	spec      ImageSpec
	ref       string // repository reference (host/path)
	tag       string
	digest    string
	platforms []ocispec.Platform
}

// Pack copies opts.Images into the bundle at opts.Dir. Every image is attempted; the
// error joins every failure, and the bundle's index lists the images that succeeded.
func Pack(ctx context.Context, opts Options) (*Result, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		return nil, errors.New("pack: no registry client")
	}
	if len(opts.Images) == 0 {
		return nil, fmt.Errorf("%w: no images to pack", oci.ErrInvalid)
	}
	switch {
	case opts.Policy == nil && !opts.UnsafeNoPolicy:
		return nil, ErrNoPolicy
	case opts.Policy != nil && opts.UnsafeNoPolicy:
		return nil, fmt.Errorf("%w: pack: both a Policy and UnsafeNoPolicy", oci.ErrInvalid)
	}
	targets, err := parseTargets(opts)
	if err != nil {
		return nil, err
	}
	l, err := layout.Create(opts.Dir)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	oldIdx, err := l.ReadIndex()
	if err != nil {
		return nil, err
	}
	old, err := layout.ParseEntries(oldIdx)
	if err != nil {
		return nil, fmt.Errorf("existing bundle %s: %w", opts.Dir, err)
	}

	// every copy operation is retried on transient errors (a blob fetched again from
	// the source; the layout writes it verified, so a broken try leaves nothing)
	copier := graphcopy.New(l, graphcopy.Options{Concurrency: opts.Concurrency, OnBlob: opts.OnBlob, Retry: opts.Client.Retry})
	var (
		delta        *deltaTarget
		deltaMu      sync.Mutex
		deltaCopiers []*graphcopy.Copier
	)
	imageCopier := func(string) *graphcopy.Copier { return copier }
	if opts.Since != nil {
		if len(old) > 0 {
			return nil, fmt.Errorf("%w: pack --since writes a fresh delta bundle: %s already holds %d index entries", oci.ErrInvalid, opts.Dir, len(old))
		}
		delta = newDeltaTarget(l, opts.Since.Receipt)
		// images through a target that answers "there" for what the receipt lists in
		// their repository; attachments through the plain one: they are always carried
		imageCopier = func(repository string) *graphcopy.Copier {
			c := graphcopy.New(delta.forRepository(repository), graphcopy.Options{Concurrency: opts.Concurrency, OnBlob: opts.OnBlob, Retry: opts.Client.Retry})
			deltaMu.Lock()
			deltaCopiers = append(deltaCopiers, c)
			deltaMu.Unlock()
			return c
		}
	}
	limit := opts.ImageConcurrency
	if limit <= 0 {
		limit = 2
	}
	var (
		mu      sync.Mutex
		entries []layout.Entry
		images  = make([]*Image, len(targets))
		errs    = make([]error, len(targets))
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	var ag errgroup.Group // analyses, bounded by the analyzer's own parallelism
	for i, t := range targets {
		if opts.Policy != nil {
			if err := opts.Policy.Allowed(t.ref); err != nil {
				errs[i] = fmt.Errorf("refusing %s before pulling it: %w", t.spec.Ref, err)
				opts.Log.Error("source not allowed by the policy", "image", t.spec.Ref, "error", err)
				continue
			}
		}
		g.Go(func() error {
			img, es, req, err := packOne(gctx, opts, imageCopier(t.ref), copier, l, t)
			if err != nil {
				errs[i] = fmt.Errorf("packing %s: %w", t.spec.Ref, err)
				opts.Log.Error("pack failed", "image", t.spec.Ref, "error", err)
				return nil
			}
			if req == nil {
				mu.Lock()
				entries = append(entries, es...)
				mu.Unlock()
				images[i] = img
				return nil
			}
			// the SBOMs and scans of this image run while the next images copy: the
			// analyzer works on several at once; the image is listed once they are done
			ag.Go(func() error {
				more, err := opts.Analyze(ctx, *req)
				if err != nil {
					errs[i] = fmt.Errorf("packing %s: %w", t.spec.Ref, err)
					opts.Log.Error("pack failed", "image", t.spec.Ref, "error", err)
					return nil
				}
				for _, a := range more {
					es = append(es, layout.AttachmentEntry(a.Descriptor, a.Kind, t.ref, a.Tag, a.Subject))
				}
				img.Attachments += len(more)
				opts.Log.Info("packed", "image", t.spec.Ref, "digest", img.Digest, "platforms", len(img.Platforms), "attachments", img.Attachments)
				mu.Lock()
				entries = append(entries, es...)
				mu.Unlock()
				images[i] = img
				return nil
			})
			return nil
		})
	}
	_ = g.Wait()
	_ = ag.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	merged := layout.Merge(old, entries)
	idxEntries, err := referrersIndexes(ctx, l, merged)
	if err != nil {
		return nil, err
	}
	descs := make([]ocispec.Descriptor, 0, len(merged)+len(idxEntries))
	for _, e := range append(merged, idxEntries...) {
		descs = append(descs, e.IndexDescriptor())
	}
	if err := l.WriteIndex(layout.NewIndex(descs)); err != nil {
		return nil, err
	}
	res := &Result{Dir: opts.Dir, Stats: copier.Stats()}
	for _, c := range deltaCopiers {
		s := c.Stats()
		res.Stats.BlobsCopied += s.BlobsCopied
		res.Stats.BlobsExisted += s.BlobsExisted
		res.Stats.BlobsMounted += s.BlobsMounted
		res.Stats.Manifests += s.Manifests
		res.Stats.BytesCopied += s.BytesCopied
	}
	for _, im := range images {
		if im != nil {
			res.Images = append(res.Images, *im)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	if err := l.Close(); err != nil {
		return res, err
	}
	seal := opts.Seal
	seal.Trust = nil
	for _, f := range []struct {
		b          []byte
		path, role string
	}{{opts.PolicyFile, layout.PolicyPath, layout.RolePolicy}, {opts.TrustedRootFile, layout.TrustedRootPath, layout.RoleTrustedRoot}} {
		if f.b == nil {
			continue
		}
		if err := l.WriteFile(f.path, f.b); err != nil {
			return res, err
		}
		seal.Trust = append(seal.Trust, layout.TrustFile{Role: f.role, Path: f.path})
	}
	seal.Images = nil
	for _, im := range res.Images {
		seal.Images = append(seal.Images, layout.MetadataImage{
			Source: im.Source, Repository: im.Repository, Tag: im.Tag, Digest: im.Digest, MediaType: im.MediaType,
		})
	}
	for _, e := range old {
		if e.Kind.IsImage() && !packedNow(res.Images, e) {
			seal.Images = append(seal.Images, layout.MetadataImage{
				Source: e.Name(), Repository: e.Repository, Tag: e.Tag, Digest: e.Descriptor.Digest, MediaType: e.Descriptor.MediaType,
			})
		}
	}
	if delta != nil {
		r := opts.Since.Receipt
		d := &layout.Delta{Receipt: opts.Since.Digest(), Registry: r.Registry, Expected: []layout.ExpectedBlob{}}
		if r.Bundle != nil {
			d.BundleID, d.Sequence = r.Bundle.BundleID, r.Bundle.Sequence
			seal.Base = r.Bundle.Metadata
			if seal.Previous == nil {
				seal.Previous = &layout.Metadata{BundleID: r.Bundle.BundleID, Sequence: r.Bundle.Sequence}
			}
		}
		if d.Expected, err = delta.expected(ctx); err != nil {
			return res, err
		}
		seal.Delta = d
		res.Delta = &DeltaResult{Receipt: d.Receipt, Expected: len(d.Expected)}
		for _, e := range d.Expected {
			res.Delta.ExpectedBytes += e.Size
		}
	}
	m, err := bundle.Seal(ctx, opts.Dir, seal)
	if err != nil {
		return res, err
	}
	res.BundleID, res.Sequence, res.Signed = m.BundleID, m.Sequence, seal.Signer != nil
	opts.Log.Info("sealed bundle", "dir", opts.Dir, "bundleID", m.BundleID, "sequence", m.Sequence, "files", len(m.Files), "signed", res.Signed)
	return res, nil
}

// packedNow reports whether an image of the existing bundle was packed again (same
// name) in this run.
func packedNow(images []Image, e layout.Entry) bool {
	for _, im := range images {
		if im.Repository == e.Repository && im.Tag == e.Tag && (e.Tag != "" || im.Digest == e.Descriptor.Digest) {
			return true
		}
	}
	return false
}

func parseTargets(opts Options) ([]target, error) {
	var out []target
	for _, spec := range opts.Images {
		ref, err := remote.ParseReference(spec.Ref)
		if err != nil {
			return nil, err
		}
		t := target{spec: spec, ref: ref.Registry + "/" + ref.Repository}
		if d, err := ref.Digest(); err == nil {
			t.digest = d.String()
		} else if ref.Reference != "" {
			t.tag = ref.Reference
		} else {
			t.tag = "latest"
		}
		// host/path:tag@digest: keep the tag as the name, pin the digest
		if t.digest != "" {
			if tag, _, ok := cutTag(spec.Ref); ok {
				t.tag = tag
			}
		}
		plats := spec.Platforms
		if len(plats) == 0 {
			plats = opts.Platforms
		}
		for _, p := range plats {
			pp, err := oci.ParsePlatform(p)
			if err != nil {
				return nil, fmt.Errorf("image %s: %w", spec.Ref, err)
			}
			t.platforms = append(t.platforms, pp)
		}
		out = append(out, t)
	}
	return out, nil
}

// cutTag returns the tag of "host/path:tag@digest".
func cutTag(s string) (string, string, bool) {
	at := -1
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '@' {
			at = i
			break
		}
	}
	if at < 0 {
		return "", "", false
	}
	name := s[:at]
	for i := len(name) - 1; i >= 0 && name[i] != '/'; i-- {
		if name[i] == ':' {
			return name[i+1:], name[:i], true
		}
	}
	return "", "", false
}

// packOne copies one image (and, with a policy, verifies it first) and returns its
// entries; with opts.Analyze, also the analysis request, which the caller runs
// without holding the image's transfer slot. imageCopier copies the image's own
// graph (a delta's leaves out what the far side holds); copier copies attachments.
func packOne(ctx context.Context, opts Options, imageCopier, copier *graphcopy.Copier, l *layout.Layout, t target) (*Image, []layout.Entry, *job.Request, error) {
	ref, _ := remote.ParseReference(t.ref)
	repo, err := opts.Client.Repository(ref)
	if err != nil {
		return nil, nil, nil, err
	}
	pin := t.digest
	if pin == "" {
		pin = t.tag
	}
	var root ocispec.Descriptor
	err = opts.Client.Retry(ctx, "resolving "+t.ref+":"+pin, func(ctx context.Context) (err error) {
		root, err = repo.Resolve(ctx, pin)
		return err
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("resolving %s:%s: %w", t.ref, pin, err)
	}
	if t.digest != "" && root.Digest.String() != t.digest {
		return nil, nil, nil, fmt.Errorf("%w: registry answered %s for %s@%s", oci.ErrDigestMismatch, root.Digest, t.ref, t.digest)
	}
	opts.Log.Info("packing", "image", t.spec.Ref, "digest", root.Digest)

	var include func(ocispec.Descriptor) bool
	if len(t.platforms) > 0 {
		include = func(child ocispec.Descriptor) bool {
			for _, p := range t.platforms {
				if oci.PlatformMatches(child.Platform, p) {
					return true
				}
			}
			return false
		}
	}
	img := &Image{Source: t.spec.Ref, Repository: t.ref, Tag: t.tag, Digest: root.Digest, MediaType: root.MediaType}
	rootDesc := ocispec.Descriptor{MediaType: root.MediaType, Digest: root.Digest, Size: root.Size}
	noChild := func(nodes []graphcopy.Node) error {
		if len(t.platforms) > 0 && oci.IsIndex(root.MediaType) && len(nodes) == 1 {
			return fmt.Errorf("%w: %s has no child for platforms %v", oci.ErrNotFound, t.spec.Ref, t.spec.Platforms)
		}
		return nil
	}

	// Refuse before downloading: with a policy, the image's manifests, signatures and
	// attestations are read from the source (verified against their digests) and the
	// image is verified before a single config or layer is copied.
	var atts []referrers.Attachment
	if opts.Policy != nil {
		planned, err := copier.Walk(ctx, repo, root, include)
		if err != nil {
			return nil, nil, nil, err
		}
		if err := noChild(planned); err != nil {
			return nil, nil, nil, err
		}
		if atts, err = referrers.Collect(ctx, repo, descriptors(planned), referrers.CollectOptions{Retry: opts.Client.Retry}, nil); err != nil {
			return nil, nil, nil, err
		}
		// a signature read that fails on the network is tried again, never counted
		// as a signature that does not verify
		if img.Verification, err = checkImage(ctx, opts, opts.Client.RetryingFetcher(repo), t.ref, rootDesc, planned, atts); err != nil {
			return nil, nil, nil, err
		}
	}

	nodes, err := imageCopier.Copy(ctx, repo, root, include)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := noChild(nodes); err != nil {
		return nil, nil, nil, err
	}
	entries := []layout.Entry{layout.ImageEntry(rootDesc, t.ref, t.tag)}
	for _, n := range nodes[1:] {
		if n.Descriptor.Platform != nil {
			img.Platforms = append(img.Platforms, oci.PlatformString(n.Descriptor.Platform))
		}
		// listed so that tools resolving digests through index.json (oras) find it
		entries = append(entries, layout.ChildEntry(n.Descriptor, t.ref))
	}

	if opts.Policy == nil {
		atts, err = collectAttachments(ctx, copier, repo, nodes, opts.Client.Retry)
	} else {
		atts, err = copyAttachments(ctx, copier, repo, atts)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if opts.Policy != nil && opts.Evidence {
		if atts, err = attachEvidence(ctx, opts, l, t.ref, rootDesc, nodes, img.Verification, atts); err != nil {
			return nil, nil, nil, err
		}
	}
	for _, a := range atts {
		entries = append(entries, layout.AttachmentEntry(a.Descriptor, a.Kind, t.ref, a.Tag, a.Subject))
	}
	img.Attachments = len(atts)
	var req *job.Request
	if opts.Analyze != nil {
		var children []ocispec.Descriptor
		for _, n := range nodes[1:] {
			children = append(children, n.Descriptor)
		}
		req = &job.Request{Repository: t.ref, Tag: t.tag, Root: rootDesc,
			Children: children, Attachments: atts, Verification: img.Verification}
	} else {
		opts.Log.Info("packed", "image", t.spec.Ref, "digest", root.Digest, "platforms", len(img.Platforms), "attachments", len(atts))
	}
	return img, entries, req, nil
}

// checkImage verifies an image and its attachments against the policy, reading them
// through f (the source: every read is checked against its digest, so what is verified
// is what is then packed, byte for byte).
func checkImage(ctx context.Context, opts Options, f imageverify.Fetcher, repository string, root ocispec.Descriptor, nodes []graphcopy.Node, atts []referrers.Attachment) (*imageverify.Result, error) {
	rule, err := opts.Policy.For(repository)
	if err != nil {
		return nil, err
	}
	var children []ocispec.Descriptor
	for _, n := range nodes[1:] {
		children = append(children, n.Descriptor)
	}
	res, err := imageverify.Verify(ctx, f, rule, imageverify.Image{
		Repository: repository, Root: root, Children: children, Attachments: referrers.BySubject(atts),
	}, imageverify.Options{TrustedMaterial: opts.TrustedMaterial})
	if err != nil {
		return res, fmt.Errorf("verifying against the policy: %w", err)
	}
	opts.Log.Info("verified", "image", repository+"@"+root.Digest.String(), "rule", rule.Glob)
	return res, nil
}

// attachEvidence attaches the signed verification summary of res to the packed image
// and to every child of it (nodes[1:]), and returns the attachments to list.
func attachEvidence(ctx context.Context, opts Options, l *layout.Layout, repository string, root ocispec.Descriptor, nodes []graphcopy.Node, res *imageverify.Result, atts []referrers.Attachment) ([]referrers.Attachment, error) {
	// one summary per subject a pod can name (the root and every child the policy
	// verified with it), each in the form of the publisher's signatures on that
	// subject: never one that changes what cosign verifies
	eopts := evidence.Options{
		Signer: opts.Seal.Signer, Version: opts.Seal.ToolVersion,
		PolicyURI: layout.PolicyPath, PolicyDigest: opts.Policy.Digest(),
	}
	withSummary := atts
	for _, s := range append([]ocispec.Descriptor{root}, descriptors(nodes[1:])...) {
		var form evidence.Form
		var err error
		if withSummary, form, err = evidence.Attach(ctx, l, repository, s, res, withSummary, eopts); err != nil {
			return nil, fmt.Errorf("writing the verification summary of %s: %w", s.Digest, err)
		}
		opts.Log.Info("attached the verification summary", "image", repository+"@"+root.Digest.String(), "subject", s.Digest, "form", form)
	}
	return withSummary, nil
}

// collectAttachments copies everything attached to nodes, and to what is attached to
// them, subjects first (referrers.Collect walks the source graph). Referrer
// descriptors get the artifactType and annotations of their manifest.
func collectAttachments(ctx context.Context, copier *graphcopy.Copier, repo *orasremote.Repository, nodes []graphcopy.Node, retry referrers.Retry) ([]referrers.Attachment, error) {
	return referrers.Collect(ctx, repo, descriptors(nodes), referrers.CollectOptions{Retry: retry}, func(ctx context.Context, a referrers.Attachment) (referrers.Attachment, error) {
		return copyAttachment(ctx, copier, repo, a)
	})
}

// copyAttachments copies attachments already discovered (referrers.Collect), in order.
// Referrer descriptors get the artifactType and annotations of their manifest.
func copyAttachments(ctx context.Context, copier *graphcopy.Copier, repo *orasremote.Repository, atts []referrers.Attachment) ([]referrers.Attachment, error) {
	out := make([]referrers.Attachment, 0, len(atts))
	for _, a := range atts {
		a, err := copyAttachment(ctx, copier, repo, a)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// copyAttachment copies one attachment and returns it as the layout lists it.
func copyAttachment(ctx context.Context, copier *graphcopy.Copier, repo *orasremote.Repository, a referrers.Attachment) (referrers.Attachment, error) {
	anodes, err := copier.Copy(ctx, repo, a.Descriptor, nil)
	if err != nil {
		return a, fmt.Errorf("copying %s %s of %s: %w", a.Kind, a.Descriptor.Digest, a.Subject, err)
	}
	if a.Kind.IsReferrer() {
		a.Descriptor = referrers.Descriptor(a.Descriptor, anodes[0].Manifest)
	} else {
		a.Descriptor = ocispec.Descriptor{MediaType: a.Descriptor.MediaType, Digest: a.Descriptor.Digest, Size: a.Descriptor.Size}
	}
	return a, nil
}

func descriptors(nodes []graphcopy.Node) []ocispec.Descriptor {
	out := make([]ocispec.Descriptor, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.Descriptor)
	}
	return out
}

// referrersIndexes writes a referrers tag schema index for every subject that has
// referrers in entries (referrers.ReferrersBySubject) and returns their entries.
func referrersIndexes(ctx context.Context, l *layout.Layout, entries []layout.Entry) ([]layout.Entry, error) {
	var out []layout.Entry
	for _, s := range referrers.ReferrersBySubject(entries) {
		b, err := referrers.Index(s.Referrers)
		if err != nil {
			return nil, fmt.Errorf("building referrers index of %s: %w", s.Subject, err)
		}
		desc, err := l.PushBytes(ctx, ocispec.MediaTypeImageIndex, b)
		if err != nil {
			return nil, err
		}
		out = append(out, layout.AttachmentEntry(desc, oci.KindReferrersIndex, s.Repository, oci.ReferrersTag(s.Subject), s.Subject))
	}
	return out, nil
}
