package signing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/signature"
)

func TestSignDSSE(t *testing.T) {
	ctx := context.Background()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := s.PublicKeyPEM()
	subject := digest.FromString("image")
	stmt := []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"` + subject.Encoded() + `"}}],"predicateType":"https://slsa.dev/verification_summary/v1","predicate":{}}`)
	env, bundle, err := SignDSSE(ctx, s, "application/vnd.in-toto+json", stmt)
	if err != nil {
		t.Fatal(err)
	}
	// the envelope verifies over PAE with the key, and not with a flipped payload
	var e Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	v, err := signature.LoadVerifier(k.Public(), s.hash())
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifySignature(bytes.NewReader(e.Signatures[0].Sig), bytes.NewReader(PAE(e.PayloadType, e.Payload))); err != nil {
		t.Fatalf("envelope: %v", err)
	}
	if err := v.VerifySignature(bytes.NewReader(e.Signatures[0].Sig), bytes.NewReader(PAE(e.PayloadType, append(e.Payload, ' ')))); err == nil {
		t.Fatal("envelope verified over another payload")
	}
	// the bundle form verifies with VerifyBlob against the subject digest, and names the predicate
	res, err := VerifyBlob(ctx, bundle, nil, VerifyOptions{PublicKey: pub, ArtifactDigest: subject.String()})
	if err != nil {
		t.Fatalf("bundle: %v", err)
	}
	if res.PredicateType != "https://slsa.dev/verification_summary/v1" {
		t.Errorf("predicate type %q", res.PredicateType)
	}
	if _, err := VerifyBlob(ctx, bundle, nil, VerifyOptions{PublicKey: pub, ArtifactDigest: digest.FromString("other").String()}); err == nil {
		t.Fatal("bundle verified for another subject")
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	os, _ := NewSigner(other)
	opub, _ := os.PublicKeyPEM()
	if _, err := VerifyBlob(ctx, bundle, nil, VerifyOptions{PublicKey: opub, ArtifactDigest: subject.String()}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("another key: err = %v", err)
	}
}
