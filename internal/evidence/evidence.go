// Package evidence writes what pack proved about an image as signed evidence in the
// bundle: an in-toto statement with the SLSA Verification Summary predicate
// (https://slsa.dev/verification_summary/v1), signed with the bundle key as DSSE, and
// attached to the image twice: as an OCI referrer holding a Sigstore bundle (the form
// cosign v3 attaches) and as a layer of the image's cosign .att manifest (the form
// policy-controller and `cosign verify-attestation` read by default).
package evidence

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	vsa "github.com/in-toto/attestation/go/predicates/vsa/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petra-oci/petra-oci/internal/imageverify"
	"github.com/petra-oci/petra-oci/internal/signing"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
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
	if res == nil || !res.Verified {
		return nil, fmt.Errorf("%w: no verification summary for an image that did not verify", oci.ErrInvalid)
	}
	at := opts.Time
	if at.IsZero() {
		at = time.Now().UTC()
	}
	uri := repository + "@" + res.Digest.String()
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
		Subject:       []*intoto.ResourceDescriptor{{Name: repository, Digest: digestMap(res.Digest)}},
		PredicateType: PredicateVSA,
		Predicate:     &ps,
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("verification summary statement: %w", err)
	}
	return protojson.Marshal(st)
}

func digestMap(d digest.Digest) map[string]string {
	if d == "" {
		return nil
	}
	return map[string]string{d.Algorithm().String(): d.Encoded()}
}

// Attach signs the summary of res and writes it into l for the image root: a Sigstore
// bundle referrer, and a cosign .att manifest that holds the layers of att (the
// image's existing .att manifest, nil when it has none) plus the summary. It returns
// the attachments to list in index.json; the .att one replaces att.
func Attach(ctx context.Context, l *layout.Layout, repository string, root ocispec.Descriptor, res *imageverify.Result, att *referrers.Attachment, opts Options) ([]referrers.Attachment, error) {
	if opts.Signer == nil {
		return nil, fmt.Errorf("%w: evidence needs the bundle key", oci.ErrInvalid)
	}
	stmt, err := Statement(repository, res, opts)
	if err != nil {
		return nil, err
	}
	envelope, bundle, err := signing.SignDSSE(ctx, opts.Signer, "application/vnd.in-toto+json", stmt)
	if err != nil {
		return nil, err
	}
	subject := ocispec.Descriptor{MediaType: root.MediaType, Digest: root.Digest, Size: root.Size}

	// 1. the referrer: a Sigstore bundle v0.3 with the DSSE envelope
	empty, err := l.PushBytes(ctx, ocispec.MediaTypeEmptyJSON, []byte("{}"))
	if err != nil {
		return nil, err
	}
	bundleLayer, err := l.PushBytes(ctx, oci.MediaTypeSigstoreBundle03, bundle)
	if err != nil {
		return nil, err
	}
	ann := map[string]string{annotationBundleContent: "dsse-envelope", annotationBundlePredicateType: PredicateVSA}
	refDesc, err := pushManifest(ctx, l, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: oci.MediaTypeSigstoreBundle03, Config: empty, Layers: []ocispec.Descriptor{bundleLayer},
		Subject: &subject, Annotations: ann,
	})
	if err != nil {
		return nil, err
	}
	refDesc.ArtifactType, refDesc.Annotations = oci.MediaTypeSigstoreBundle03, ann
	out := []referrers.Attachment{{Subject: root.Digest, Descriptor: refDesc, Kind: oci.KindReferrer}}

	// 2. the cosign .att form: existing layers + the summary envelope
	var layers []ocispec.Descriptor
	if att != nil {
		b, err := l.FetchManifest(ctx, ocispec.Descriptor{MediaType: att.Descriptor.MediaType, Digest: att.Descriptor.Digest, Size: att.Descriptor.Size})
		if err != nil {
			return nil, fmt.Errorf("reading the .att manifest of %s: %w", root.Digest, err)
		}
		m, err := oci.ParseManifest(att.Descriptor, b)
		if err != nil {
			return nil, err
		}
		layers = append(layers, m.Layers...)
	}
	envLayer, err := l.PushBytes(ctx, oci.MediaTypeDSSEEnvelope, envelope)
	if err != nil {
		return nil, err
	}
	envLayer.Annotations = map[string]string{oci.AnnotationCosignPredicate: PredicateVSA, oci.AnnotationCosignSignature: ""}
	layers = append(layers, envLayer)
	diffIDs := make([]digest.Digest, len(layers))
	for i, d := range layers {
		diffIDs[i] = d.Digest
	}
	cfg, err := json.Marshal(ocispec.Image{Platform: ocispec.Platform{}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	if err != nil {
		return nil, err
	}
	cfgDesc, err := l.PushBytes(ctx, ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		return nil, err
	}
	attDesc, err := pushManifest(ctx, l, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfgDesc, Layers: layers,
	})
	if err != nil {
		return nil, err
	}
	return append(out, referrers.Attachment{Subject: root.Digest, Descriptor: attDesc, Kind: oci.KindCosignAtt, Tag: oci.CosignTag(root.Digest, ".att")}), nil
}

func pushManifest(ctx context.Context, l *layout.Layout, m ocispec.Manifest) (ocispec.Descriptor, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encoding manifest: %w", err)
	}
	return l.PushBytes(ctx, ocispec.MediaTypeImageManifest, b)
}
