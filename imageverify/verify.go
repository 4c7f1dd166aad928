// Package imageverify verifies one image's signatures and attestations against a
// policy rule, offline: legacy cosign .sig and .att manifests (keyless ones
// converted into Sigstore bundles with their Rekor SET) and Sigstore bundle
// referrers (v0.1-v0.3). All cryptography (certificate chain, SCT, SET, log body
// against the signature, signatures) is sigstore-go's and sigstore's, through
// internal/signing. Pack runs it on what it pulled; unpack and verify run it again
// on the bundle, on the disconnected side, with the trust material pinned there.
package imageverify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/referrers"
)

// Limits on what is read into memory. Manifests are bounded by oci.MaxManifestBytes.
const (
	// MaxPayloadBytes bounds a legacy simple-signing payload.
	MaxPayloadBytes = 1 << 20
	// MaxEnvelopeBytes bounds a DSSE envelope (.att layer) or a Sigstore bundle
	// layer; SBOM attestations of large images run to megabytes.
	MaxEnvelopeBytes = 32 << 20
	// MaxLayers bounds the layers read from one .sig or .att manifest; the
	// rest are rejected unread.
	MaxLayers = 64
)

// Fetcher reads content by descriptor: a registry repository (oras-go
// remote.Repository), a bundle layout (layout.Layout), an oras-go memory store.
// Everything read is verified against the descriptor's size and digest here.
type Fetcher interface {
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// Image is what to verify.
type Image struct {
	// Repository is host/path, for the result only.
	Repository string
	// Root is the image as referenced: an index or a manifest.
	Root ocispec.Descriptor
	// Children are the platform manifests of an index that are packed (with
	// their platforms, as listed in the index); empty for a single manifest.
	Children []ocispec.Descriptor
	// Attachments maps a subject digest (the root, each child) to what is
	// attached to it, as referrers.Discover reports (see Group).
	Attachments map[digest.Digest][]referrers.Attachment
}

// Options configure Verify.
type Options struct {
	// TrustedMaterial verifies keyless signatures (Fulcio CAs, Rekor logs, CT
	// logs, timestamp authorities), e.g. TrustedRootFromJSON of trusted_root.json.
	// It may be nil when the rule has key authorities only.
	TrustedMaterial root.TrustedMaterial

	// skipSCTs drops the SCT requirement; only for tests with sigstore-go's
	// VirtualSigstore, whose certificates embed none.
	skipSCTs bool
}

// TrustedRootFromJSON parses a trusted_root.json into trust material for Options.
func TrustedRootFromJSON(b []byte) (root.TrustedMaterial, error) {
	tr, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("imageverify: trusted root: %w", err)
	}
	return tr, nil
}

// Verify checks img against rule: at least one signature on the root verified by
// one of the rule's authorities; one on every child when the rule requires it;
// every required attestation present, verified by an authority, naming the image
// digest as a subject, and passing its checks. Nothing is fetched from the
// network but through f.
//
// The Result is always returned (nil only when the call itself is wrong). The
// error joins every failure found (errors.Join), each wrapping the package's
// sentinels; it is nil exactly when Result.Verified is true.
func Verify(ctx context.Context, f Fetcher, rule *policy.ImageRule, img Image, opts Options) (*Result, error) {
	if f == nil || rule == nil {
		return nil, errors.New("imageverify: nil fetcher or rule")
	}
	if len(rule.Authorities) == 0 {
		return nil, fmt.Errorf("imageverify: %w: rule %q has no authorities", policy.ErrInvalidPolicy, rule.Glob)
	}
	if rule.NeedsTrustedMaterial() && opts.TrustedMaterial == nil {
		return nil, fmt.Errorf("imageverify: %w: rule %q (give a trusted_root.json)", ErrTrustedMaterialRequired, rule.Glob)
	}
	if err := oci.ValidateDescriptor(img.Root); err != nil {
		return nil, fmt.Errorf("imageverify: root: %w", err)
	}
	v := &verifier{f: f, rule: rule, opts: opts, auths: make([]authority, len(rule.Authorities))}
	for i, a := range rule.Authorities {
		au, err := newAuthority(a)
		if err != nil {
			return nil, fmt.Errorf("imageverify: rule %q authority %d: %w", rule.Glob, i, err)
		}
		v.auths[i] = au
	}

	res := &Result{Repository: img.Repository, Digest: img.Root.Digest, Rule: rule.Glob}
	var failures []error
	if err := checkChildren(ctx, f, img); err != nil {
		failures = append(failures, err)
	}

	rs, errs := v.subject(ctx, img.Root, img.Attachments[img.Root.Digest])
	rs.label = "root " + img.Root.Digest.String()
	failures = append(failures, errs...)
	if !rs.signed(rule) {
		failures = append(failures, withCauses(fmt.Errorf("%s: %w%s", rs.label, ErrNoValidSignature, rs.noneFound()), rs.signatureCauses(rule)))
	}
	failures = append(failures, v.requireAttestations(rs)...)
	res.Root = rs.Subject

	for _, c := range img.Children {
		cs, errs := v.subject(ctx, c, img.Attachments[c.Digest])
		cs.label = fmt.Sprintf("child %s (%s)", c.Digest, oci.PlatformString(c.Platform))
		failures = append(failures, errs...)
		if rule.RequireChildSignatures && !cs.signed(rule) {
			failures = append(failures, withCauses(fmt.Errorf("%s: %w%s", cs.label, ErrChildUnsigned, cs.noneFound()), cs.signatureCauses(rule)))
		}
		if rule.RequireChildAttestations {
			failures = append(failures, v.requireAttestations(cs)...)
		}
		res.Children = append(res.Children, cs.Subject)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	for _, f := range failures {
		res.Failures = append(res.Failures, f.Error())
	}
	res.Verified = len(failures) == 0
	if len(failures) > 0 {
		name := img.Root.Digest.String()
		if img.Repository != "" {
			name = img.Repository + "@" + name
		}
		return res, fmt.Errorf("imageverify: %s: %w", name, errors.Join(failures...))
	}
	return res, nil
}

// withCauses adds the rejections behind a missing signature or attestation to
// err, keeping them in the error chain (errors.Is finds ErrIdentity there).
func withCauses(err error, causes []error) error {
	if len(causes) == 0 {
		return err
	}
	return fmt.Errorf("%w; refused: %w", err, errors.Join(causes...))
}

// checkChildren makes sure every child given is a descendant of the root index
// (listed by it, or by an index it lists).
func checkChildren(ctx context.Context, f Fetcher, img Image) error {
	if len(img.Children) == 0 {
		return nil
	}
	if !oci.IsIndex(img.Root.MediaType) {
		return fmt.Errorf("%w: %s is a %s, it has no children", oci.ErrInvalid, img.Root.Digest, img.Root.MediaType)
	}
	given := map[digest.Digest]ocispec.Descriptor{}
	for _, c := range img.Children {
		given[c.Digest] = c
	}
	listed := map[digest.Digest]bool{}
	queue := []ocispec.Descriptor{img.Root}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		m, err := fetchManifest(ctx, f, d)
		if err != nil {
			return err
		}
		for _, e := range m.Successors() {
			if e.Kind != oci.EdgeManifest {
				continue
			}
			c := e.Descriptor
			if listed[c.Digest] {
				continue
			}
			listed[c.Digest] = true
			if _, ok := given[c.Digest]; ok && oci.IsIndex(c.MediaType) {
				queue = append(queue, c) // a nested index the caller gave: its children may be given too
			}
		}
	}
	for _, c := range img.Children {
		if !listed[c.Digest] {
			return fmt.Errorf("%w: child %s is not listed by index %s", oci.ErrInvalid, c.Digest, img.Root.Digest)
		}
	}
	return nil
}

func fetchManifest(ctx context.Context, f Fetcher, desc ocispec.Descriptor) (*oci.Manifest, error) {
	b, err := fetch(ctx, f, desc, oci.MaxManifestBytes)
	if err != nil {
		return nil, err
	}
	return oci.ParseManifest(desc, b)
}

func fetch(ctx context.Context, f Fetcher, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size > limit {
		return nil, fmt.Errorf("%w: %w: %s is %d bytes, limit %d", ErrMalformed, oci.ErrTooLarge, desc.Digest, desc.Size, limit)
	}
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", desc.Digest, err)
	}
	return oci.ReadAllVerified(rc, desc, limit)
}

// subjectState is a Subject while it is verified.
type subjectState struct {
	Subject
	label         string  // "root <digest>", "child <digest> (<platform>)"
	sigRejections []error // why candidate signatures were refused
	attRejections []error // why candidate attestations were refused
	// statements holds the signed statement of each verified attestation, by
	// payload digest.
	statements map[digest.Digest]*statement
}

// signatureCauses are the rejections that may explain a missing signature.
func (s *subjectState) signatureCauses(rule *policy.ImageRule) []error {
	if rule.CountAttestationsAsSignatures {
		return append(slices.Clone(s.sigRejections), s.attRejections...)
	}
	return s.sigRejections
}

// noneFound says, for a subject without a valid signature, that nothing was
// even attached.
func (s *subjectState) noneFound() string {
	if len(s.sigRejections) == 0 && len(s.attRejections) == 0 && len(s.Signatures) == 0 && len(s.Attestations) == 0 {
		return " (none attached)"
	}
	return ""
}

// signed reports whether the subject has a verified signature (or, when the rule
// allows it, a verified attestation).
func (s *subjectState) signed(rule *policy.ImageRule) bool {
	return len(s.Signatures) > 0 || (rule.CountAttestationsAsSignatures && len(s.Attestations) > 0)
}

// verifier holds one Verify call's state.
type verifier struct {
	f     Fetcher
	rule  *policy.ImageRule
	opts  Options
	auths []authority
}

// subject verifies every signature and attestation attached to desc. The errors
// returned are those that stop the subject from being read at all (a manifest
// that cannot be fetched); refused signatures are recorded in the state.
func (v *verifier) subject(ctx context.Context, desc ocispec.Descriptor, atts []referrers.Attachment) (*subjectState, []error) {
	s := &subjectState{
		Subject:    Subject{Digest: desc.Digest, MediaType: desc.MediaType, Platform: oci.PlatformString(desc.Platform)},
		statements: map[digest.Digest]*statement{},
	}
	var errs []error
	for _, a := range atts {
		if a.Subject != "" && a.Subject != desc.Digest {
			errs = append(errs, fmt.Errorf("%w: attachment %s is for %s, listed under %s", oci.ErrInvalid, a.Descriptor.Digest, a.Subject, desc.Digest))
			continue
		}
		var form string
		switch a.Kind {
		case oci.KindCosignSig:
			form = FormCosignSig
		case oci.KindCosignAtt:
			form = FormCosignAtt
		case oci.KindReferrer:
			form = FormSigstoreBundle
		default:
			continue // SBOMs, referrers indexes: not signatures
		}
		m, err := fetchManifest(ctx, v.f, a.Descriptor)
		if err != nil {
			s.reject(Source{Form: form, Manifest: a.Descriptor.Digest}, err, form != FormCosignSig)
			continue
		}
		if len(m.Layers) > MaxLayers {
			s.reject(Source{Form: form, Manifest: a.Descriptor.Digest}, fmt.Errorf("%w: %d layers, more than the %d read", ErrMalformed, len(m.Layers), MaxLayers), form != FormCosignSig)
			m.Layers = m.Layers[:MaxLayers]
		}
		switch form {
		case FormCosignSig:
			for _, l := range m.Layers {
				v.legacySignature(ctx, s, Source{Form: form, Manifest: a.Descriptor.Digest, Layer: l.Digest}, l)
			}
		case FormCosignAtt:
			for _, l := range m.Layers {
				v.legacyAttestation(ctx, s, Source{Form: form, Manifest: a.Descriptor.Digest, Layer: l.Digest}, l)
			}
		case FormSigstoreBundle:
			if !isBundleType(m.Type()) {
				continue // an SBOM or other artifact, not a signature
			}
			if len(m.Layers) != 1 {
				s.reject(Source{Form: form, Manifest: a.Descriptor.Digest}, fmt.Errorf("%w: bundle referrer has %d layers, want 1", ErrMalformed, len(m.Layers)), true)
				continue
			}
			v.bundleReferrer(ctx, s, Source{Form: form, Manifest: a.Descriptor.Digest, Layer: m.Layers[0].Digest}, m.Layers[0])
		}
	}
	return s, errs
}

// reject records a refused candidate; attestation tells which requirement it
// may have been meant for (signatures or attestations).
func (s *subjectState) reject(src Source, err error, attestation bool) {
	err = fmt.Errorf("%s %s layer %s: %w", src.Form, src.Manifest, src.Layer, err)
	s.Rejected = append(s.Rejected, Rejection{Source: src, Reason: err.Error()})
	if attestation {
		s.attRejections = append(s.attRejections, err)
	} else {
		s.sigRejections = append(s.sigRejections, err)
	}
}

// requireAttestations evaluates the rule's attestation requirements on a subject
// and records the checks.
func (v *verifier) requireAttestations(s *subjectState) []error {
	var failures []error
	for _, req := range v.rule.Attestations {
		var found []Attestation
		for _, a := range s.Attestations {
			if a.PredicateType == req.PredicateType {
				found = append(found, a)
			}
		}
		if len(found) == 0 {
			s.Checks = append(s.Checks, Check{PredicateType: req.PredicateType, Detail: "no verified attestation of this type"})
			failures = append(failures, withCauses(fmt.Errorf("%s: %w: %s", s.label, ErrMissingAttestation, req.PredicateType), s.attRejections))
			continue
		}
		for _, a := range found {
			detail, err := checkPredicate(req, s.statements[a.PayloadDigest])
			c := Check{PredicateType: req.PredicateType, Passed: err == nil, Detail: detail}
			if err != nil {
				c.Detail = err.Error()
				failures = append(failures, fmt.Errorf("%s: attestation %s (%s): %w", s.label, a.Manifest, req.PredicateType, err))
			}
			s.Checks = append(s.Checks, c)
		}
	}
	return failures
}
