package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"google.golang.org/protobuf/encoding/protojson"
)

const vsaPredicate = "https://slsa.dev/verification_summary/v1"

// keyDSSEBundle builds a key-signed v0.3 bundle with a DSSE envelope over an
// in-toto statement whose subject is artifact, as cosign attest-blob does.
func keyDSSEBundle(t *testing.T, key crypto.Signer, artifact string) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte(artifact))
	payload := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"metadata.json","digest":{"sha256":"%s"}}],"predicateType":"%s","predicate":{"verifier":{"id":"petra-oci"}}}`,
		hex.EncodeToString(sum[:]), vsaPredicate)
	const payloadType = "application/vnd.in-toto+json"
	pae := fmt.Sprintf("DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
	var sig []byte
	var err error
	switch k := key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, []byte(pae)) // pure Ed25519 over the PAE
	case *ecdsa.PrivateKey:
		d := sha256.Sum256([]byte(pae))
		sig, err = ecdsa.SignASN1(rand.Reader, k, d[:])
	default:
		t.Fatalf("key %T", key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return marshalBundle(t, key, &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
		Payload: []byte(payload), PayloadType: payloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
	}})
}

func marshalBundle(t *testing.T, key crypto.Signer, content any) []byte {
	t.Helper()
	id, err := keyID(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	b := &protobundle.Bundle{
		MediaType: MediaTypeBundleV03,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: id}},
		},
	}
	switch c := content.(type) {
	case *protobundle.Bundle_DsseEnvelope:
		b.Content = c
	case *protobundle.Bundle_MessageSignature:
		b.Content = c
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKeyModeDSSE verifies key-signed DSSE bundles (ECDSA P-256 and pure
// Ed25519 over the PAE) and an Ed25519ph message signature (hashedrekord's
// Ed25519 form) in key mode.
func TestKeyModeDSSE(t *testing.T) {
	ctx := context.Background()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const artifact = `{"petra":"metadata"}`
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa-p256", newP256(t)}, {"ed25519", edKey}} {
		t.Run(tc.name, func(t *testing.T) {
			b := keyDSSEBundle(t, tc.key, artifact)
			opts := VerifyOptions{PublicKey: pubPEM(t, tc.key)}
			res, err := VerifyBlob(ctx, b, strings.NewReader(artifact), opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Mode != ModeKey || res.PredicateType != vsaPredicate {
				t.Fatalf("result %+v", res)
			}
			_, err = VerifyBlob(ctx, b, strings.NewReader(artifact+" "), opts)
			wantErr(t, err, ErrBadSignature)
			_, err = VerifyBlob(ctx, editJSON(t, b, func(m map[string]any) {
				env := m["dsseEnvelope"].(map[string]any)
				env["payloadType"] = "application/json"
			}), strings.NewReader(artifact), opts)
			wantErr(t, err, ErrBadSignature)
			_, err = VerifyBlob(ctx, editJSON(t, b, func(m map[string]any) {
				flipB64(t, obj(t, m, "dsseEnvelope", "signatures", 0).(map[string]any), "sig")
			}), strings.NewReader(artifact), opts)
			wantErr(t, err, ErrBadSignature)
			_, err = VerifyBlob(ctx, b, strings.NewReader(artifact), VerifyOptions{PublicKey: pubPEM(t, newP256(t))})
			wantErr(t, err, ErrBadSignature)
		})
	}

	t.Run("ed25519ph-message", func(t *testing.T) {
		digest := sha512.Sum512([]byte(artifact))
		sig, err := edKey.Sign(rand.Reader, digest[:], &ed25519.Options{Hash: crypto.SHA512})
		if err != nil {
			t.Fatal(err)
		}
		b := marshalBundle(t, edKey, &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_512, Digest: digest[:]},
			Signature:     sig,
		}})
		opts := VerifyOptions{PublicKey: pubPEM(t, edKey)}
		if _, err := VerifyBlob(ctx, b, strings.NewReader(artifact), opts); err != nil {
			t.Fatal(err)
		}
		_, err = VerifyBlob(ctx, b, strings.NewReader(artifact+" "), opts)
		wantErr(t, err, ErrBadSignature)
		// Pure Ed25519 over the message is not what a message signature means here.
		pure := marshalBundle(t, edKey, &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_512, Digest: digest[:]},
			Signature:     ed25519.Sign(edKey, []byte(artifact)),
		}})
		_, err = VerifyBlob(ctx, pure, strings.NewReader(artifact), opts)
		wantErr(t, err, ErrBadSignature)
	})
}
