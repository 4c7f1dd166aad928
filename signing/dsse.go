package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"google.golang.org/protobuf/encoding/protojson"
)

// Envelope is a DSSE envelope as cosign stores it in an .att layer.
type Envelope struct {
	PayloadType string              `json:"payloadType"`
	Payload     []byte              `json:"payload"` // base64 in JSON
	Signatures  []EnvelopeSignature `json:"signatures"`
}

// EnvelopeSignature is one signature of an Envelope.
type EnvelopeSignature struct {
	KeyID string `json:"keyid"`
	Sig   []byte `json:"sig"` // base64 in JSON
}

// PAE is DSSE's pre-authentication encoding of a payload, what is signed.
func PAE(payloadType string, payload []byte) []byte {
	return []byte(fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload))
}

// SignDSSE signs payload as a DSSE envelope with s, offline. It returns the envelope
// JSON (the form of a cosign .att layer) and the same signature as a Sigstore bundle
// v0.3 with a dsseEnvelope and s's public-key hint (the form cosign v3 attaches as a
// referrer). The signature is checked against s's public key before returning.
func SignDSSE(ctx context.Context, s Signer, payloadType string, payload []byte) (envelopeJSON, bundleJSON []byte, err error) {
	if s == nil {
		return nil, nil, errors.New("signing: SignDSSE: nil Signer")
	}
	pae := PAE(payloadType, payload)
	h := s.hash().New()
	h.Write(pae)
	digest := h.Sum(nil)
	sig, err := s.signDigest(ctx, digest)
	if err != nil {
		return nil, nil, err
	}
	v, err := signature.LoadVerifier(s.PublicKey(), s.hash())
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %s: %w", s, err)
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(pae), options.WithContext(ctx)); err != nil {
		return nil, nil, fmt.Errorf("signing: %s returned a DSSE signature its public key does not verify: %w", s, err)
	}
	envelopeJSON, err = json.Marshal(Envelope{PayloadType: payloadType, Payload: payload,
		Signatures: []EnvelopeSignature{{KeyID: "", Sig: sig}}})
	if err != nil {
		return nil, nil, fmt.Errorf("signing: encoding the DSSE envelope: %w", err)
	}
	b := &protobundle.Bundle{
		MediaType: MediaTypeBundleV03,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: s.KeyID()}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: payload, PayloadType: payloadType,
			Signatures: []*protodsse.Signature{{Sig: sig}},
		}},
	}
	if bundleJSON, err = protojson.Marshal(b); err != nil {
		return nil, nil, fmt.Errorf("signing: encoding the bundle: %w", err)
	}
	return envelopeJSON, bundleJSON, nil
}
