// Package evidence writes what pack proved about an image as signed evidence in the
// bundle: an in-toto statement with the SLSA Verification Summary predicate
// (https://slsa.dev/verification_summary/v1), signed with the bundle key as DSSE, and
// attached to the image in ONE form, the publisher's (see FormFor and
// docs/evidence.md): a layer of the image's cosign .att manifest when the publisher
// signed the legacy way (.sig/.att tags), an OCI referrer holding a Sigstore bundle
// when the image already carries Sigstore bundle referrers.
//
// The reason is cosign (v2.6.5 and v3.1.3 alike): it verifies an image either from
// its .sig/.att tags or, as soon as it finds any Sigstore bundle referrer on it, from
// bundles only. A bundle-form summary next to legacy signatures would hide them from
// `cosign verify`; a legacy-form summary next to bundles would never be read.
package evidence

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	vsa "github.com/in-toto/attestation/go/predicates/vsa/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/signing"
)

// PredicateVSA is the SLSA Verification Summary predicate type.
const PredicateVSA = "https://slsa.dev/verification_summary/v1"

// VerifierID names petra-oci as the verifier in its summaries.
const VerifierID = "https://github.com/petra-oci/petra-oci"

// Annotations cosign v3 writes on Sigstore bundle referrers.
const (
	annotationBundleContent       = "dev.sigstore.bundle.content"
	annotationBundlePredicateType = "dev.sigstore.bundle.predicateType"
)

// Options configure Attach.
type Options struct {
	// Signer is the bundle key.
	Signer signing.Signer
	// Version of petra-oci, recorded in the verifier id.
	Version string
	// PolicyURI and PolicyDigest name the policy the image was verified against.
	PolicyURI    string
	PolicyDigest digest.Digest
	// Time is when the verification happened (default now).
	Time time.Time
}

// Statement returns the in-toto statement summarising res for the image
// repository@res.Digest.
func Statement(repository string, res *imageverify.Result, opts Options) ([]byte, error) {
	if res == nil {
		return nil, fmt.Errorf("%w: no verification summary without a verification result", oci.ErrInvalid)
	}
	return StatementAbout(repository, res, res.Digest, opts)
}

// StatementAbout returns the in-toto statement summarising res, the verification of
// the image repository@res.Digest, about subject: the image itself, or one of the
// children res verified with it (res.Children). A child's summary has the child as
// its only subject and resource, and the same policy, result and inputs as the
// image's: the policy verified the image as a whole, its children bound to it by
// digest. policy-controller checks the summary of whatever digest a pod names, so
// every child named by digest needs its own (docs/evidence.md).
func StatementAbout(repository string, res *imageverify.Result, subject digest.Digest, opts Options) ([]byte, error) {
	if res == nil || !res.Verified {
		return nil, fmt.Errorf("%w: no verification summary for an image that did not verify", oci.ErrInvalid)
	}
	if !verifiedSubject(res, subject) {
		return nil, fmt.Errorf("%w: no verification summary about %s: neither the image %s nor a child it verified", oci.ErrInvalid, subject, res.Digest)
	}
	at := opts.Time
	if at.IsZero() {
		at = time.Now().UTC()
	}
	uri := repository + "@" + subject.String()
	verifier := VerifierID
	if opts.Version != "" {
		verifier += "@" + opts.Version
	}
	pred := &vsa.VerificationSummary{
		Verifier:           &vsa.VerificationSummary_Verifier{Id: verifier},
		TimeVerified:       timestamppb.New(at),
		ResourceUri:        uri,
		Policy:             &vsa.VerificationSummary_Policy{Uri: opts.PolicyURI, Digest: digestMap(opts.PolicyDigest)},
		VerificationResult: "PASSED",
		VerifiedLevels:     []string{"PETRA_POLICY_PASSED"},
		SlsaVersion:        "1.0",
	}
	seen := map[digest.Digest]bool{}
	for _, s := range append([]imageverify.Subject{res.Root}, res.Children...) {
		for _, a := range s.Attestations {
			if seen[a.PayloadDigest] {
				continue
			}
			seen[a.PayloadDigest] = true
			pred.InputAttestations = append(pred.InputAttestations, &vsa.VerificationSummary_InputAttestation{
				Uri: repository + "@" + a.Manifest.String() + "#" + a.PredicateType, Digest: digestMap(a.PayloadDigest),
			})
		}
	}
	pb, err := protojson.Marshal(pred)
	if err != nil {
		return nil, fmt.Errorf("encoding the verification summary: %w", err)
	}
	var ps structpb.Struct
	if err := protojson.Unmarshal(pb, &ps); err != nil {
		return nil, fmt.Errorf("encoding the verification summary: %w", err)
	}
	st := &intoto.Statement{
		Type:          intoto.StatementTypeUri,
		Subject:       []*intoto.ResourceDescriptor{{Name: repository, Digest: digestMap(subject)}},
		PredicateType: PredicateVSA,
		Predicate:     &ps,
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("verification summary statement: %w", err)
	}
	return protojson.Marshal(st)
}

// verifiedSubject reports whether d is the image res verified or one of its children.
func verifiedSubject(res *imageverify.Result, d digest.Digest) bool {
	if d == res.Digest {
		return true
	}
	for _, c := range res.Children {
		if c.Digest == d {
			return true
		}
	}
	return false
}

func digestMap(d digest.Digest) map[string]string {
	if d == "" {
		return nil
	}
	return map[string]string{d.Algorithm().String(): d.Encoded()}
}

// Form is how a verification summary is attached to its subject.
type Form string

const (
	// FormCosignAtt: a layer of the subject's cosign .att manifest (tag
	// sha256-<hex>.att), next to the publisher's own .att layers.
	FormCosignAtt Form = "cosign-att"
	// FormSigstoreBundle: an OCI referrer of the subject holding a Sigstore bundle
	// v0.3 with the DSSE envelope, annotated as cosign v3 annotates its attestations.
	FormSigstoreBundle Form = "sigstore-bundle"
)

// Fetcher reads what the image's attachments point to (a layout).
type Fetcher interface {
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// mediaTypeBundlePrefix starts every Sigstore bundle media type.
const mediaTypeBundlePrefix = "application/vnd.dev.sigstore.bundle"

// maxBundleBytes bounds a bundle layer read to decide the form.
const maxBundleBytes = 32 << 20

// FormFor decides the form of the summary about subject from the attachments the
// image carries (as packed, read through f): FormSigstoreBundle when any OCI referrer
// of subject is a Sigstore bundle that cosign would load, FormCosignAtt otherwise.
//
// "Would load" is cosign's own test (pkg/cosign GetBundles and pkg/oci/remote Bundle
// in v2.6.5 and v3.1.3): a referrer whose manifest has exactly one layer, of a media
// type starting with application/vnd.dev.sigstore.bundle, that parses as a Sigstore
// bundle of version v0.3 or later. When one exists, cosign verifies the subject from
// bundles only, so a bundle-form summary changes nothing it would otherwise see; when
// none exists, cosign reads the .sig/.att tags, and only the .att form leaves that so.
// Whether the bundles verify, and who signed them, does not matter: cosign switches
// on their presence.
func FormFor(ctx context.Context, f Fetcher, subject digest.Digest, atts []referrers.Attachment) (Form, error) {
	for _, a := range atts {
		if a.Subject != subject || !a.Kind.IsReferrer() {
			continue
		}
		ok, err := loadableBundle(ctx, f, a.Descriptor)
		if err != nil {
			return "", fmt.Errorf("referrer %s of %s: %w", a.Descriptor.Digest, subject, err)
		}
		if ok {
			return FormSigstoreBundle, nil
		}
	}
	return FormCosignAtt, nil
}

// loadableBundle reports whether the referrer manifest desc holds a Sigstore bundle
// cosign loads (see FormFor).
func loadableBundle(ctx context.Context, f Fetcher, desc ocispec.Descriptor) (bool, error) {
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return false, nil
	}
	b, err := fetch(ctx, f, ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, oci.MaxManifestBytes)
	if err != nil {
		return false, err
	}
	m, err := oci.ParseManifest(desc, b)
	if err != nil {
		return false, err
	}
	if len(m.Layers) != 1 || !strings.HasPrefix(m.Layers[0].MediaType, mediaTypeBundlePrefix) {
		return false, nil
	}
	raw, err := fetch(ctx, f, m.Layers[0], maxBundleBytes)
	if err != nil {
		return false, err
	}
	var bundle sgbundle.Bundle
	if err := bundle.UnmarshalJSON(raw); err != nil {
		return false, nil // cosign skips what does not parse
	}
	return bundle.MinVersion("v0.3"), nil
}

func fetch(ctx context.Context, f Fetcher, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", desc.Digest, err)
	}
	return oci.ReadAllVerified(rc, desc, limit)
}

// Target is where evidence is written: the bundle layout (pack) or a destination
// repository (unpack). PushBytes stores b (a blob or a manifest, by mediaType) and
// returns its descriptor; content already there is not an error.
type Target interface {
	PushBytes(ctx context.Context, mediaType string, b []byte) (ocispec.Descriptor, error)
}

// Attach signs the summary of res about subject (the image root, res.Digest, or a
// child res verified with it: StatementAbout) and writes it into l, in the form
// FormFor decides from atts for subject (everything attached to the image, as
// packed). It returns the image's attachments with the summary: atts plus a
// Sigstore bundle referrer of subject, or atts with subject's cosign .att manifest
// replaced by one holding its layers (unchanged, in order) plus the summary, and
// the form used. Pack calls it for the root and for every child, each in the form
// of the publisher's signatures on that subject, so no verdict of cosign on any of
// them changes and policy-controller finds a summary on whatever digest a pod names.
func Attach(ctx context.Context, l *layout.Layout, repository string, subject ocispec.Descriptor, res *imageverify.Result, atts []referrers.Attachment, opts Options) ([]referrers.Attachment, Form, error) {
	if opts.Signer == nil {
		return nil, "", fmt.Errorf("%w: evidence needs the bundle key", oci.ErrInvalid)
	}
	stmt, err := StatementAbout(repository, res, subject.Digest, opts)
	if err != nil {
		return nil, "", err
	}
	form, err := FormFor(ctx, l, subject.Digest, atts)
	if err != nil {
		return nil, "", fmt.Errorf("choosing the form of the verification summary of %s: %w", subject.Digest, err)
	}
	added, replaced, err := AttachStatement(ctx, l, l, subject, form, PredicateVSA, stmt, opts.Signer, atts)
	if err != nil {
		return nil, "", err
	}
	out := atts[:0:0]
	for i := range atts {
		if replaced == &atts[i] {
			continue // the first .att of subject, now with the summary
		}
		out = append(out, atts[i])
	}
	return append(out, added), form, nil
}

// AttachStatement signs the in-toto statement stmt (of predicateType) with signer as
// DSSE and writes it into t as an attachment of root in form: a Sigstore bundle v0.3
// referrer (FormSigstoreBundle), or a cosign .att manifest holding the layers of
// root's current .att (the first KindCosignAtt of atts with subject root, read
// through from; unchanged, in order) plus the envelope (FormCosignAtt). It returns
// the new attachment and, for the .att form, the .att it replaces (nil when root
// had none).
func AttachStatement(ctx context.Context, t Target, from Fetcher, root ocispec.Descriptor, form Form, predicateType string, stmt []byte, signer signing.Signer, atts []referrers.Attachment) (referrers.Attachment, *referrers.Attachment, error) {
	if signer == nil {
		return referrers.Attachment{}, nil, fmt.Errorf("%w: no signing key for the statement", oci.ErrInvalid)
	}
	envelope, bundle, err := signing.SignDSSE(ctx, signer, payloadTypeInToto, stmt)
	if err != nil {
		return referrers.Attachment{}, nil, err
	}
	switch form {
	case FormSigstoreBundle:
		ref, err := pushBundleReferrer(ctx, t, root, predicateType, bundle)
		return ref, nil, err
	case FormCosignAtt:
		var att *referrers.Attachment
		for i := range atts {
			if atts[i].Kind == oci.KindCosignAtt && atts[i].Subject == root.Digest {
				att = &atts[i]
				break
			}
		}
		a, err := pushAtt(ctx, t, from, root, att, predicateType, envelope)
		return a, att, err
	}
	return referrers.Attachment{}, nil, fmt.Errorf("%w: unknown evidence form %q", oci.ErrInvalid, form)
}

// payloadTypeInToto is the DSSE payload type of an in-toto statement.
const payloadTypeInToto = "application/vnd.in-toto+json"

// pushBundleReferrer writes bundle (a Sigstore bundle v0.3 with the DSSE envelope)
// as an OCI referrer of root, the way cosign v3 writes attestations.
func pushBundleReferrer(ctx context.Context, t Target, root ocispec.Descriptor, predicateType string, bundle []byte) (referrers.Attachment, error) {
	// cosign's form: one untitled bundle layer (a standard verifier reads it as is)
	a, err := referrers.NewArtifact(root, oci.MediaTypeSigstoreBundle03,
		referrers.ArtifactOptions{
			Annotations:   map[string]string{annotationBundleContent: "dsse-envelope", annotationBundlePredicateType: predicateType},
			UntitledFiles: true,
		},
		referrers.File{MediaType: oci.MediaTypeSigstoreBundle03, Data: bundle})
	if err != nil {
		return referrers.Attachment{}, err
	}
	if _, err := a.Push(ctx, t); err != nil {
		return referrers.Attachment{}, err
	}
	return a.Attachment(), nil
}

// pushAtt writes the cosign .att manifest of root: the layers of att (the image's
// existing .att manifest, read through from; nil when it has none) plus the envelope.
func pushAtt(ctx context.Context, t Target, from Fetcher, root ocispec.Descriptor, att *referrers.Attachment, predicateType string, envelope []byte) (referrers.Attachment, error) {
	var layers []ocispec.Descriptor
	if att != nil {
		desc := ocispec.Descriptor{MediaType: att.Descriptor.MediaType, Digest: att.Descriptor.Digest, Size: att.Descriptor.Size}
		b, err := fetch(ctx, from, desc, oci.MaxManifestBytes)
		if err != nil {
			return referrers.Attachment{}, fmt.Errorf("reading the .att manifest of %s: %w", root.Digest, err)
		}
		m, err := oci.ParseManifest(desc, b)
		if err != nil {
			return referrers.Attachment{}, err
		}
		layers = append(layers, m.Layers...)
	}
	envLayer, err := t.PushBytes(ctx, oci.MediaTypeDSSEEnvelope, envelope)
	if err != nil {
		return referrers.Attachment{}, err
	}
	envLayer.Annotations = map[string]string{oci.AnnotationCosignPredicate: predicateType, oci.AnnotationCosignSignature: ""}
	layers = append(layers, envLayer)
	diffIDs := make([]digest.Digest, len(layers))
	for i, d := range layers {
		diffIDs[i] = d.Digest
	}
	cfg, err := json.Marshal(ocispec.Image{Platform: ocispec.Platform{}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	if err != nil {
		return referrers.Attachment{}, err
	}
	cfgDesc, err := t.PushBytes(ctx, ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		return referrers.Attachment{}, err
	}
	attDesc, err := pushManifest(ctx, t, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfgDesc, Layers: layers,
	})
	if err != nil {
		return referrers.Attachment{}, err
	}
	return referrers.Attachment{Subject: root.Digest, Descriptor: attDesc, Kind: oci.KindCosignAtt, Tag: oci.CosignTag(root.Digest, ".att")}, nil
}

func pushManifest(ctx context.Context, t Target, m ocispec.Manifest) (ocispec.Descriptor, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encoding manifest: %w", err)
	}
	return t.PushBytes(ctx, ocispec.MediaTypeImageManifest, b)
}
