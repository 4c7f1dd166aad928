package imageverify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/petra-oci/petra-oci/oci"
)

// cosignPayloadType is the critical.type of cosign's simple-signing payload.
const cosignPayloadType = "cosign container image signature"

// mediaTypeBundleV01 is the bundle version legacy signatures are converted to:
// the one whose log entries carry an inclusion promise (SET) and no proof.
const mediaTypeBundleV01 = "application/vnd.dev.sigstore.bundle+json;version=0.1"

// simpleSigning is cosign's legacy payload.
type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// rekorBundle is the dev.sigstore.cosign/bundle annotation: the Rekor entry and
// its signed entry timestamp.
type rekorBundle struct {
	SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
	Payload              struct {
		Body           string `json:"body"`
		IntegratedTime int64  `json:"integratedTime"`
		LogIndex       int64  `json:"logIndex"`
		LogID          string `json:"logID"`
	} `json:"Payload"`
}

// legacyMaterial is what a legacy layer's annotations carry for keyless
// verification: the Fulcio leaf and the Rekor entry (each may be absent).
type legacyMaterial struct {
	cert *x509.Certificate
	tle  *protorekor.TransparencyLogEntry
}

// parseLegacyMaterial reads the certificate and Rekor bundle annotations.
// The chain annotation is not used: intermediates come from the trusted root.
func parseLegacyMaterial(ann map[string]string) (legacyMaterial, error) {
	var lm legacyMaterial
	if c := ann[oci.AnnotationCosignCertificate]; c != "" {
		certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(c))
		if err != nil || len(certs) != 1 {
			return lm, fmt.Errorf("%w: annotation %s: want one PEM certificate (%v)", ErrMalformed, oci.AnnotationCosignCertificate, err)
		}
		lm.cert = certs[0]
	}
	if rb := ann[oci.AnnotationCosignBundle]; rb != "" {
		tle, err := parseRekorBundle([]byte(rb))
		if err != nil {
			return lm, err
		}
		lm.tle = tle
	}
	return lm, nil
}

// parseRekorBundle turns cosign's Rekor bundle annotation into a transparency
// log entry with its inclusion promise: kind and version are read from the
// entry body, the log id is the hex-decoded logID.
func parseRekorBundle(b []byte) (*protorekor.TransparencyLogEntry, error) {
	var rb rekorBundle
	if err := json.Unmarshal(b, &rb); err != nil {
		return nil, fmt.Errorf("%w: annotation %s: %v", ErrMalformed, oci.AnnotationCosignBundle, err)
	}
	body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: annotation %s: body: %v", ErrMalformed, oci.AnnotationCosignBundle, err)
	}
	var kv struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(body, &kv); err != nil || kv.Kind == "" || kv.APIVersion == "" {
		return nil, fmt.Errorf("%w: annotation %s: entry body has no kind and apiVersion (%v)", ErrMalformed, oci.AnnotationCosignBundle, err)
	}
	logID, err := hex.DecodeString(rb.Payload.LogID)
	if err != nil || len(logID) == 0 {
		return nil, fmt.Errorf("%w: annotation %s: logID %q is not hex", ErrMalformed, oci.AnnotationCosignBundle, rb.Payload.LogID)
	}
	if len(rb.SignedEntryTimestamp) == 0 {
		return nil, fmt.Errorf("%w: annotation %s: no SignedEntryTimestamp", ErrMalformed, oci.AnnotationCosignBundle)
	}
	return &protorekor.TransparencyLogEntry{
		LogIndex:          rb.Payload.LogIndex,
		LogId:             &protocommon.LogId{KeyId: logID},
		KindVersion:       &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion},
		IntegratedTime:    rb.Payload.IntegratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: rb.SignedEntryTimestamp},
		CanonicalizedBody: body,
	}, nil
}

// keylessBundle builds the v0.1 bundle of a legacy keyless signature, or says
// why it cannot be verified keyless.
func (lm legacyMaterial) keylessBundle(setContent func(*protobundle.Bundle)) (*bundle.Bundle, error) {
	if lm.cert == nil {
		return nil, fmt.Errorf("%w: no %s annotation", ErrCertificateRequired, oci.AnnotationCosignCertificate)
	}
	if lm.tle == nil {
		return nil, fmt.Errorf("%w: no Rekor bundle (%s): the certificate is valid only from %s to %s, and nothing proves the signature was made then",
			ErrNoTrustedTime, oci.AnnotationCosignBundle, lm.cert.NotBefore.UTC().Format(time.RFC3339), lm.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	pb := &protobundle.Bundle{
		MediaType: mediaTypeBundleV01,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_X509CertificateChain{
				X509CertificateChain: &protocommon.X509CertificateChain{
					Certificates: []*protocommon.X509Certificate{{RawBytes: lm.cert.Raw}},
				},
			},
			TlogEntries: []*protorekor.TransparencyLogEntry{lm.tle},
		},
	}
	setContent(pb)
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return b, nil
}

// legacySignature verifies one simple-signing layer of a .sig manifest.
func (v *verifier) legacySignature(ctx context.Context, s *subjectState, src Source, l ocispec.Descriptor) {
	if l.MediaType != oci.MediaTypeCosignSimpleSigning {
		s.reject(src, fmt.Errorf("%w: layer media type %q, want %s", ErrMalformed, l.MediaType, oci.MediaTypeCosignSimpleSigning), false)
		return
	}
	payload, err := fetch(ctx, v.f, l, MaxPayloadBytes)
	if err != nil {
		s.reject(src, err, false)
		return
	}
	var ss simpleSigning
	if err := json.Unmarshal(payload, &ss); err != nil {
		s.reject(src, fmt.Errorf("%w: payload: %v", ErrMalformed, err), false)
		return
	}
	if ss.Critical.Type != cosignPayloadType {
		s.reject(src, fmt.Errorf("%w: payload type %q, want %q", ErrMalformed, ss.Critical.Type, cosignPayloadType), false)
		return
	}
	if ss.Critical.Image.DockerManifestDigest != s.Digest.String() {
		s.reject(src, fmt.Errorf("%w: the payload signs %q, the image is %s", ErrDigestMismatch, ss.Critical.Image.DockerManifestDigest, s.Digest), false)
		return
	}
	sig, err := base64.StdEncoding.DecodeString(l.Annotations[oci.AnnotationCosignSignature])
	if err != nil || len(sig) == 0 {
		s.reject(src, fmt.Errorf("%w: annotation %s is not a base64 signature", ErrMalformed, oci.AnnotationCosignSignature), false)
		return
	}
	lm, err := parseLegacyMaterial(l.Annotations)
	if err != nil {
		s.reject(src, err, false)
		return
	}
	sum := sha256.Sum256(payload)
	signer, err := v.tryAuthorities(func(a authority) (Signer, error) {
		if a.keyless == nil {
			if err := a.raw.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload)); err != nil {
				return Signer{}, fmt.Errorf("signature does not verify with the key: %w", err)
			}
			return Signer{Authority: a.label, Mode: ModeKey, KeyID: a.keyID}, nil
		}
		b, err := lm.keylessBundle(func(pb *protobundle.Bundle) {
			pb.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
				MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
				Signature:     sig,
			}}
		})
		if err != nil {
			return Signer{}, err
		}
		return v.viaBundle(ctx, a, b, payload, "")
	})
	if err != nil {
		s.reject(src, err, false)
		return
	}
	s.Signatures = append(s.Signatures, Signature{Source: src, Signer: signer, DockerReference: ss.Critical.Identity.DockerReference})
}

// legacyAttestation verifies one DSSE layer of an .att manifest.
func (v *verifier) legacyAttestation(ctx context.Context, s *subjectState, src Source, l ocispec.Descriptor) {
	if l.MediaType != oci.MediaTypeDSSEEnvelope {
		s.reject(src, fmt.Errorf("%w: layer media type %q, want %s", ErrMalformed, l.MediaType, oci.MediaTypeDSSEEnvelope), true)
		return
	}
	b, err := fetch(ctx, v.f, l, MaxEnvelopeBytes)
	if err != nil {
		s.reject(src, err, true)
		return
	}
	var env dsse.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		s.reject(src, fmt.Errorf("%w: DSSE envelope: %v", ErrMalformed, err), true)
		return
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		s.reject(src, fmt.Errorf("%w: DSSE payload: %v", ErrMalformed, err), true)
		return
	}
	st, err := parseStatement(env.PayloadType, payload, s.Digest)
	if err != nil {
		s.reject(src, err, true)
		return
	}
	var sigs []*protodsse.Signature
	for _, es := range env.Signatures {
		raw, err := base64.StdEncoding.DecodeString(es.Sig)
		if err != nil || len(raw) == 0 {
			s.reject(src, fmt.Errorf("%w: DSSE signature is not base64", ErrMalformed), true)
			return
		}
		sigs = append(sigs, &protodsse.Signature{Sig: raw, Keyid: es.KeyID})
	}
	if len(sigs) == 0 {
		s.reject(src, fmt.Errorf("%w: DSSE envelope has no signature", ErrMalformed), true)
		return
	}
	lm, err := parseLegacyMaterial(l.Annotations)
	if err != nil {
		s.reject(src, err, true)
		return
	}
	pae := dsse.PAE(env.PayloadType, payload)
	signer, err := v.tryAuthorities(func(a authority) (Signer, error) {
		if a.keyless == nil {
			for _, sig := range sigs {
				if a.raw.VerifySignature(bytes.NewReader(sig.Sig), bytes.NewReader(pae)) == nil {
					return Signer{Authority: a.label, Mode: ModeKey, KeyID: a.keyID}, nil
				}
			}
			return Signer{}, fmt.Errorf("no DSSE signature verifies with the key")
		}
		if len(sigs) != 1 {
			return Signer{}, fmt.Errorf("%w: a keyless DSSE envelope has %d signatures, want 1", ErrMalformed, len(sigs))
		}
		b, err := lm.keylessBundle(func(pb *protobundle.Bundle) {
			pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
				Payload: payload, PayloadType: env.PayloadType, Signatures: sigs,
			}}
		})
		if err != nil {
			return Signer{}, err
		}
		return v.viaBundle(ctx, a, b, nil, s.Digest.String())
	})
	if err != nil {
		s.reject(src, err, true)
		return
	}
	s.attested(src, signer, st, payload)
}

// attested records a verified attestation (or, for cosign v3's signature
// statement, a signature).
func (s *subjectState) attested(src Source, signer Signer, st *statement, payload []byte) {
	if st.PredicateType == PredicateCosignSign {
		s.Signatures = append(s.Signatures, Signature{Source: src, Signer: signer})
		return
	}
	pd := digest.FromBytes(payload)
	s.statements[pd] = st
	s.Attestations = append(s.Attestations, Attestation{Source: src, Signer: signer, PredicateType: st.PredicateType, PayloadDigest: pd})
}
