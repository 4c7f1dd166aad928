package signing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"testing"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// virtualBundle signs artifact keyless with a VirtualSigstore (Fulcio leaf with
// an email SAN, hashedrekord Rekor entry with a SET, RFC 3161 timestamp) and
// writes it as a v0.1 bundle, the version whose tlog entries carry a SET and
// no inclusion proof (which is what VirtualSigstore makes for a blob).
func virtualBundle(t *testing.T, vs *ca.VirtualSigstore, identity, issuer string, artifact []byte) []byte {
	t.Helper()
	e, err := vs.Sign(identity, issuer, artifact)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := e.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := e.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	msg := sc.MessageSignatureContent()
	if msg == nil {
		t.Fatal("VirtualSigstore.Sign made no message signature")
	}
	alg, ok := protocommon.HashAlgorithm_value[msg.DigestAlgorithm()]
	if !ok {
		t.Fatalf("digest algorithm %q", msg.DigestAlgorithm())
	}
	entries, err := e.TlogEntries()
	if err != nil {
		t.Fatal(err)
	}
	var tles []*protorekor.TransparencyLogEntry
	for _, entry := range entries {
		tle := proto.Clone(entry.TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
		tle.KindVersion = &protorekor.KindVersion{Kind: "hashedrekord", Version: "0.0.1"}
		set, err := vs.RekorSignPayload(tlog.RekorPayload{
			Body:           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
			IntegratedTime: tle.IntegratedTime,
			LogIndex:       tle.LogIndex,
			LogID:          hex.EncodeToString(tle.LogId.KeyId),
		})
		if err != nil {
			t.Fatal(err)
		}
		tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
		tles = append(tles, tle)
	}
	tsrs, err := e.Timestamps()
	if err != nil {
		t.Fatal(err)
	}
	tvd := &protobundle.TimestampVerificationData{}
	for _, ts := range tsrs {
		tvd.Rfc3161Timestamps = append(tvd.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
	}
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle+json;version=0.1",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_X509CertificateChain{
				X509CertificateChain: &protocommon.X509CertificateChain{
					Certificates: []*protocommon.X509Certificate{{RawBytes: vc.Certificate().Raw}},
				},
			},
			TlogEntries:               tles,
			TimestampVerificationData: tvd,
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm(alg), Digest: msg.Digest()},
			Signature:     msg.Signature(),
		}},
	}
	out, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.NewBundle(pb); err != nil {
		t.Fatalf("the converted bundle is not valid: %v", err)
	}
	return out
}

func TestVirtualSigstoreKeyless(t *testing.T) {
	ctx := context.Background()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	const (
		identity = "officer@petra.example"
		issuer   = "https://oidc.petra.example"
	)
	artifact := []byte(`{"bundle":"metadata"}`)
	b := virtualBundle(t, vs, identity, issuer, artifact)
	opts := VerifyOptions{CertificateIdentity: identity, CertificateOIDCIssuer: issuer}
	// VirtualSigstore's leaves carry no SCT: every case but one lowers the SCT
	// threshold; "default-requires-sct" shows the default refuses them.
	noSCT := verifyConfig{trustedMaterial: vs}
	with := func(f func(*VerifyOptions)) VerifyOptions { o := opts; f(&o); return o }

	for _, tc := range []struct {
		name     string
		bundle   []byte
		artifact []byte
		opts     VerifyOptions
		cfg      verifyConfig
		want     error
	}{
		{"ok", b, artifact, opts, noSCT, nil},
		{"ok-regexp", b, artifact, with(func(o *VerifyOptions) {
			o.CertificateIdentity, o.CertificateIdentityRegexp = "", `^[a-z]+@petra\.example$`
		}), noSCT, nil},
		{"wrong-identity", b, artifact, with(func(o *VerifyOptions) { o.CertificateIdentity = "mallory@petra.example" }), noSCT, ErrIdentity},
		{"wrong-identity-regexp", b, artifact, with(func(o *VerifyOptions) {
			o.CertificateIdentity, o.CertificateIdentityRegexp = "", `^admin@petra\.example$`
		}), noSCT, ErrIdentity},
		{"wrong-issuer", b, artifact, with(func(o *VerifyOptions) { o.CertificateOIDCIssuer = "https://other.example" }), noSCT, ErrIdentity},
		{"wrong-artifact", b, flipByte(artifact), opts, noSCT, ErrBadSignature},
		{"tampered-signature", editJSON(t, b, func(m map[string]any) {
			flipB64(t, m["messageSignature"].(map[string]any), "signature")
		}), artifact, opts, noSCT, ErrBadSignature},
		{"no-tlog-entry", editJSON(t, b, func(m map[string]any) {
			obj(t, m, "verificationMaterial").(map[string]any)["tlogEntries"] = []any{}
		}), artifact, opts, noSCT, ErrNoTimestamp},
		{"tampered-set", editJSON(t, b, func(m map[string]any) {
			flipB64(t, obj(t, m, "verificationMaterial", "tlogEntries", 0, "inclusionPromise").(map[string]any), "signedEntryTimestamp")
		}), artifact, opts, noSCT, ErrNoTimestamp},
		{"other-sigstore", b, artifact, opts, verifyConfig{trustedMaterial: other}, ErrNoTimestamp},
		{"default-requires-sct", b, artifact, opts, verifyConfig{trustedMaterial: vs, minSCTs: 1}, ErrUntrustedChain},
		{"key-mode", b, artifact, VerifyOptions{PublicKey: pubPEM(t, newP256(t))}, noSCT, ErrWrongKeyType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := verifyBlob(ctx, tc.bundle, bytes.NewReader(tc.artifact), tc.opts, tc.cfg)
			wantErr(t, err, tc.want)
			if err != nil {
				return
			}
			if res.Mode != ModeKeyless || res.Identity != identity || res.Issuer != issuer || res.SignedAt.IsZero() {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

func TestVerifyBundleParsedWithTrust(t *testing.T) {
	ctx := context.Background()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	const identity, issuer = "officer@petra.example", "https://oidc.petra.example"
	artifact := []byte(`{"image":"manifest"}`)
	b := &bundle.Bundle{}
	if err := b.UnmarshalJSON(virtualBundle(t, vs, identity, issuer, artifact)); err != nil {
		t.Fatal(err)
	}
	opts := VerifyOptions{CertificateIdentity: identity, CertificateOIDCIssuer: issuer}
	res, err := VerifyBundle(ctx, b, bytes.NewReader(artifact), opts, Trust{Material: vs, SkipSCTs: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Identity != identity || res.SignedAt.IsZero() || (res.TimeSource != TimeSourceTlog && res.TimeSource != TimeSourceRFC3161) {
		t.Fatalf("result %+v", res)
	}
	// The SCT requirement stays unless dropped explicitly.
	_, err = VerifyBundle(ctx, b, bytes.NewReader(artifact), opts, Trust{Material: vs})
	wantErr(t, err, ErrUntrustedChain)
	// No trust material at all.
	_, err = VerifyBundle(ctx, b, bytes.NewReader(artifact), opts, Trust{})
	wantErr(t, err, ErrInvalidOptions)
	_, err = VerifyBundle(ctx, nil, bytes.NewReader(artifact), opts, Trust{Material: vs})
	wantErr(t, err, ErrMalformedBundle)
}
