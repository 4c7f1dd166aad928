package imageverify

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
)

// mediaTypeBundlePrefix starts every Sigstore bundle media type
// (application/vnd.dev.sigstore.bundle.v0.3+json, ...bundle+json;version=0.1).
const mediaTypeBundlePrefix = "application/vnd.dev.sigstore.bundle"

func isBundleType(t string) bool { return strings.HasPrefix(t, mediaTypeBundlePrefix) }

// bundleReferrer verifies a Sigstore bundle referrer: a message signature must
// be over the image digest (cosign v3 signs the manifest digest), a DSSE
// statement must name the image digest as a subject.
func (v *verifier) bundleReferrer(ctx context.Context, s *subjectState, src Source, l ocispec.Descriptor) {
	if !isBundleType(l.MediaType) {
		s.reject(src, fmt.Errorf("%w: layer media type %q is not a Sigstore bundle", ErrMalformed, l.MediaType), true)
		return
	}
	raw, err := fetch(ctx, v.f, l, MaxEnvelopeBytes)
	if err != nil {
		s.reject(src, err, true)
		return
	}
	b := &bundle.Bundle{}
	if err := b.UnmarshalJSON(raw); err != nil {
		s.reject(src, fmt.Errorf("%w: bundle: %v", ErrMalformed, err), true)
		return
	}
	sc, err := b.SignatureContent()
	if err != nil {
		s.reject(src, fmt.Errorf("%w: bundle: %v", ErrMalformed, err), true)
		return
	}
	vc, err := b.VerificationContent()
	if err != nil {
		s.reject(src, fmt.Errorf("%w: bundle: %v", ErrMalformed, err), true)
		return
	}
	hasCert := vc.Certificate() != nil

	var (
		st      *statement
		payload []byte
	)
	if env := sc.EnvelopeContent(); env != nil {
		raw := env.RawEnvelope()
		if raw == nil {
			s.reject(src, fmt.Errorf("%w: bundle has an empty DSSE envelope", ErrMalformed), true)
			return
		}
		if payload, err = raw.DecodeB64Payload(); err != nil {
			s.reject(src, fmt.Errorf("%w: DSSE payload: %v", ErrMalformed, err), true)
			return
		}
		if st, err = parseStatement(raw.PayloadType, payload, s.Digest); err != nil {
			s.reject(src, err, true)
			return
		}
	} else if msg := sc.MessageSignatureContent(); msg != nil {
		if err := messageDigestIs(msg.DigestAlgorithm(), msg.Digest(), s.Digest.Algorithm().String(), s.Digest.Encoded()); err != nil {
			s.reject(src, err, false)
			return
		}
	} else {
		s.reject(src, fmt.Errorf("%w: bundle has neither a message signature nor a DSSE envelope", ErrMalformed), true)
		return
	}

	signer, err := v.tryAuthorities(func(a authority) (Signer, error) {
		if a.keyless != nil && !hasCert {
			return Signer{}, fmt.Errorf("%w: the bundle's verification material is a public key", ErrCertificateRequired)
		}
		return v.viaBundle(ctx, a, b, nil, s.Digest.String())
	})
	if err != nil {
		s.reject(src, err, st != nil && st.PredicateType != PredicateCosignSign)
		return
	}
	if st == nil {
		s.Signatures = append(s.Signatures, Signature{Source: src, Signer: signer})
		return
	}
	s.attested(src, signer, st, payload)
}

// messageDigestIs checks that a bundle's message digest is the image digest.
func messageDigestIs(protoAlg string, got []byte, alg, wantHex string) error {
	want := map[string]string{
		"sha256": protocommon.HashAlgorithm_SHA2_256.String(),
		"sha384": protocommon.HashAlgorithm_SHA2_384.String(),
		"sha512": protocommon.HashAlgorithm_SHA2_512.String(),
	}[alg]
	if protoAlg != want || !bytes.Equal([]byte(hex.EncodeToString(got)), []byte(wantHex)) {
		return fmt.Errorf("%w: the bundle signs %s %x, the image is %s:%s", ErrDigestMismatch, protoAlg, got, alg, wantHex)
	}
	return nil
}
