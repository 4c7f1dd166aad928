package evidence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"

	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/signing"
)

// ErrNoEvidence marks an image that does not carry a valid pack-side verification
// summary: none at all, or none that verifies with the bundle key, names the image,
// says PASSED and names the pinned policy.
var ErrNoEvidence = errors.New("no valid verification summary")

// maxEnvelopeBytes bounds a DSSE envelope (.att layer) read to check a summary.
const maxEnvelopeBytes = 32 << 20

// CheckOptions say what a pack-side summary must prove.
type CheckOptions struct {
	// Signature is the key or identity the summary must verify with: the one that
	// verified the bundle's signature (bundle.VerifyOptions.Signature). Its
	// ArtifactDigest is ignored (the image digest is used).
	Signature signing.VerifyOptions
	// PolicyDigest, when set, is the pinned policy: the summary must name it.
	PolicyDigest digest.Digest
}

// Summary is a pack-side verification summary that CheckSummary accepted.
type Summary struct {
	// Form is how it is attached; Manifest the .att or referrer manifest holding it.
	Form     Form          `json:"form"`
	Manifest digest.Digest `json:"manifest"`
	// Statement is the digest of the signed in-toto statement (the DSSE payload).
	Statement digest.Digest `json:"statement"`
	// KeyID is the key that verified it (base64 SHA-256 of the PKIX public key).
	KeyID string `json:"keyID"`
}

// CheckSummary finds, among atts (what is attached to the image, read through f),
// a pack-side verification summary about subject and checks it: a DSSE envelope in
// a layer of subject's cosign .att, or a Sigstore bundle v0.3 in a referrer of
// subject, whose signature verifies with opts.Signature, whose in-toto statement has
// predicate type PredicateVSA, subject's digest as a subject, verifier VerifierID
// (pack; not an import record), result PASSED and, with opts.PolicyDigest, that
// policy digest. It returns the first that passes, or an error wrapping
// ErrNoEvidence that says why each candidate was refused.
func CheckSummary(ctx context.Context, f Fetcher, subject digest.Digest, atts []referrers.Attachment, opts CheckOptions) (*Summary, error) {
	vopts := opts.Signature
	vopts.ArtifactDigest = subject.String()
	var why []string
	found := 0
	for _, a := range atts {
		if a.Subject != subject {
			continue
		}
		var cands []candidate
		var err error
		switch a.Kind {
		case oci.KindCosignAtt:
			cands, err = attCandidates(ctx, f, a.Descriptor)
		case oci.KindReferrer:
			cands, err = referrerCandidates(ctx, f, a.Descriptor)
		default:
			continue
		}
		if err != nil {
			why = append(why, fmt.Sprintf("%s %s: %v", a.Kind, a.Descriptor.Digest, err))
			continue
		}
		for _, c := range cands {
			found++
			s, err := c.check(ctx, subject, vopts, opts.PolicyDigest)
			if err != nil {
				why = append(why, fmt.Sprintf("the summary in %s %s: %v", a.Kind, a.Descriptor.Digest, err))
				continue
			}
			s.Manifest = a.Descriptor.Digest
			return s, nil
		}
	}
	if found == 0 {
		why = append([]string{fmt.Sprintf("no %s statement is attached to %s (pack it with a policy and --key, without --no-evidence)", PredicateVSA, subject)}, why...)
	}
	return nil, fmt.Errorf("%w for %s: %s", ErrNoEvidence, subject, strings.Join(why, "; "))
}

// candidate is a signed statement of PredicateVSA, before its signature is checked.
type candidate struct {
	form    Form
	bundle  *sgbundle.Bundle
	payload []byte
}

// attCandidates returns the DSSE layers of a cosign .att manifest whose in-toto
// statement has predicate type PredicateVSA.
func attCandidates(ctx context.Context, f Fetcher, desc ocispec.Descriptor) ([]candidate, error) {
	m, err := fetchManifest(ctx, f, desc)
	if err != nil {
		return nil, err
	}
	var out []candidate
	for _, l := range m.Layers {
		if l.MediaType != oci.MediaTypeDSSEEnvelope {
			continue
		}
		raw, err := fetch(ctx, f, l, maxEnvelopeBytes)
		if err != nil {
			return nil, err
		}
		var env signing.Envelope
		if err := json.Unmarshal(raw, &env); err != nil || env.PayloadType != payloadTypeInToto || predicateTypeOf(env.Payload) != PredicateVSA {
			continue // not a summary: another attestation of the publisher
		}
		sigs := make([]*protodsse.Signature, 0, len(env.Signatures))
		for _, s := range env.Signatures {
			sigs = append(sigs, &protodsse.Signature{Sig: s.Sig, Keyid: s.KeyID})
		}
		b, err := sgbundle.NewBundle(&protobundle.Bundle{
			MediaType: signing.MediaTypeBundleV03,
			VerificationMaterial: &protobundle.VerificationMaterial{
				Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{}},
			},
			Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
				Payload: env.Payload, PayloadType: env.PayloadType, Signatures: sigs,
			}},
		})
		if err != nil {
			return nil, fmt.Errorf("%w: DSSE layer %s: %v", oci.ErrInvalid, l.Digest, err)
		}
		out = append(out, candidate{form: FormCosignAtt, bundle: b, payload: env.Payload})
	}
	return out, nil
}

// referrerCandidates returns the Sigstore bundle of a referrer manifest when it is a
// DSSE statement of predicate type PredicateVSA.
func referrerCandidates(ctx context.Context, f Fetcher, desc ocispec.Descriptor) ([]candidate, error) {
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, nil
	}
	m, err := fetchManifest(ctx, f, desc)
	if err != nil {
		return nil, err
	}
	if len(m.Layers) != 1 || !strings.HasPrefix(m.Layers[0].MediaType, mediaTypeBundlePrefix) {
		return nil, nil
	}
	raw, err := fetch(ctx, f, m.Layers[0], maxBundleBytes)
	if err != nil {
		return nil, err
	}
	b := &sgbundle.Bundle{}
	if err := b.UnmarshalJSON(raw); err != nil {
		return nil, nil // not a bundle cosign loads: not evidence either
	}
	env := b.GetDsseEnvelope()
	if env == nil || env.GetPayloadType() != payloadTypeInToto || predicateTypeOf(env.GetPayload()) != PredicateVSA {
		return nil, nil
	}
	return []candidate{{form: FormSigstoreBundle, bundle: b, payload: env.GetPayload()}}, nil
}

func fetchManifest(ctx context.Context, f Fetcher, desc ocispec.Descriptor) (*oci.Manifest, error) {
	desc = ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	b, err := fetch(ctx, f, desc, oci.MaxManifestBytes)
	if err != nil {
		return nil, err
	}
	return oci.ParseManifest(desc, b)
}

// predicateTypeOf is the predicateType of an in-toto statement ("" when payload is
// not one). Only used to pick candidates: nothing is trusted before the signature.
func predicateTypeOf(payload []byte) string {
	var st struct {
		PredicateType string `json:"predicateType"`
	}
	if json.Unmarshal(payload, &st) != nil {
		return ""
	}
	return st.PredicateType
}

// summaryStatement is what CheckSummary reads of a verified summary.
type summaryStatement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string `json:"predicateType"`
	Predicate     struct {
		Verifier struct {
			ID string `json:"id"`
		} `json:"verifier"`
		Policy struct {
			Digest map[string]string `json:"digest"`
		} `json:"policy"`
		VerificationResult string `json:"verificationResult"`
	} `json:"predicate"`
}

// check refuses a candidate whose statement is not a PASSED pack summary about
// subject (naming policy), then verifies its signature over subject's digest. What
// the statement says is refused on before the signature is checked, never accepted.
func (c candidate) check(ctx context.Context, subject digest.Digest, vopts signing.VerifyOptions, policy digest.Digest) (*Summary, error) {
	var st summaryStatement
	if err := json.Unmarshal(c.payload, &st); err != nil {
		return nil, fmt.Errorf("statement: %v", err)
	}
	alg, hex := subject.Algorithm().String(), subject.Encoded()
	var names []string
	about := false
	for _, s := range st.Subject {
		about = about || s.Digest[alg] == hex
		for a, d := range s.Digest {
			names = append(names, a+":"+d)
		}
	}
	id := st.Predicate.Verifier.ID
	switch {
	case st.Type != "https://in-toto.io/Statement/v1" || st.PredicateType != PredicateVSA:
		return nil, fmt.Errorf("statement %q of predicate %q, want an in-toto v1 %s", st.Type, st.PredicateType, PredicateVSA)
	case len(st.Subject) != 1 || !about:
		return nil, fmt.Errorf("it is about %v, not %s", names, subject)
	case id != VerifierID && !strings.HasPrefix(id, VerifierID+"@"):
		return nil, fmt.Errorf("its verifier is %q, not petra-oci's pack (%s)", id, VerifierID)
	case st.Predicate.VerificationResult != "PASSED":
		return nil, fmt.Errorf("its result is %q, not PASSED", st.Predicate.VerificationResult)
	case policy != "" && st.Predicate.Policy.Digest[policy.Algorithm().String()] != policy.Encoded():
		return nil, fmt.Errorf("it names policy %v, the pinned policy is %s", st.Predicate.Policy.Digest, policy)
	}
	res, err := signing.VerifyBundle(ctx, c.bundle, nil, vopts, signing.Trust{})
	if err != nil {
		return nil, fmt.Errorf("its signature does not verify with the bundle's key or identity: %v", err)
	}
	return &Summary{Form: c.form, Statement: digest.FromBytes(c.payload), KeyID: res.KeyID}, nil
}
