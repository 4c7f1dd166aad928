package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/fips140"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func newP256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pubPEM(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	b, err := cryptoutils.MarshalPublicKeyToPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newSigner(t *testing.T, k crypto.Signer) Signer {
	t.Helper()
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSignVerifyKeyTypes signs with each accepted key type and checks the
// bundle's shape, the digest algorithm and the key-mode verification.
func TestSignVerifyKeyTypes(t *testing.T) {
	ctx := context.Background()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	content := []byte("petra/metadata.json stand-in\n")
	for _, tc := range []struct {
		name    string
		key     crypto.Signer
		hashAlg string
	}{
		{"ecdsa-p256", newP256(t), "SHA2_256"},
		{"ecdsa-p384", p384, "SHA2_384"},
		{"rsa-2048", rsa2048, "SHA2_256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSigner(t, tc.key)
			b, err := SignBlob(ctx, s, bytes.NewReader(content))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				MediaType            string `json:"mediaType"`
				VerificationMaterial struct {
					PublicKey struct {
						Hint string `json:"hint"`
					} `json:"publicKey"`
					TlogEntries []any `json:"tlogEntries"`
				} `json:"verificationMaterial"`
				MessageSignature struct {
					MessageDigest struct {
						Algorithm string `json:"algorithm"`
					} `json:"messageDigest"`
				} `json:"messageSignature"`
			}
			if err := json.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.MediaType != MediaTypeBundleV03 || doc.VerificationMaterial.PublicKey.Hint != s.KeyID() ||
				len(doc.VerificationMaterial.TlogEntries) != 0 || doc.MessageSignature.MessageDigest.Algorithm != tc.hashAlg {
				t.Fatalf("bundle shape: %s", b)
			}
			res, err := VerifyBlob(ctx, b, bytes.NewReader(content), VerifyOptions{PublicKey: pubPEM(t, tc.key)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Mode != ModeKey || res.KeyID != s.KeyID() || !res.SignedAt.IsZero() || res.Identity != "" {
				t.Fatalf("result %+v", res)
			}
			_, err = VerifyBlob(ctx, b, bytes.NewReader(flipByte(content)), VerifyOptions{PublicKey: pubPEM(t, tc.key)})
			wantErr(t, err, ErrBadSignature)
		})
	}
}

// TestRefusedKeyTypes: Ed25519 cannot sign blobs here, RSA below 2048 bits is
// refused for signing and verification. Under GODEBUG=fips140=only Go itself
// refuses to generate (or use) an RSA-1024 key, which is the same answer one
// step earlier: that one step is gated on fips140.Enforced().
func TestRefusedKeyTypes(t *testing.T) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewSigner(edKey)
	wantErr(t, err, ErrWrongKeyType)

	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if fips140.Enforced() {
		if err == nil {
			t.Fatal("fips140=only generated an RSA-1024 key")
		}
		t.Logf("fips140=only refuses RSA-1024 generation: %v", err)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewSigner(rsa1024)
	wantErr(t, err, ErrWrongKeyType)

	// A bundle made by a 2048-bit key, checked with a 1024-bit public key.
	rsa2048, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b, err := SignBlob(context.Background(), newSigner(t, rsa2048), strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = VerifyBlob(context.Background(), b, strings.NewReader("x"), VerifyOptions{PublicKey: pubPEM(t, rsa1024)})
	wantErr(t, err, ErrWrongKeyType)
}

func TestVerifyOptionsRefused(t *testing.T) {
	ctx := context.Background()
	k := newP256(t)
	b, err := SignBlob(ctx, newSigner(t, k), strings.NewReader("content"))
	if err != nil {
		t.Fatal(err)
	}
	key := VerifyOptions{PublicKey: pubPEM(t, k)}
	with := func(f func(*VerifyOptions)) VerifyOptions { o := key; f(&o); return o }
	for _, tc := range []struct {
		name    string
		bundle  []byte
		content string // "" => nil reader
		opts    VerifyOptions
		want    error
	}{
		{"ok", b, "content", key, nil},
		{"ok-digest", b, "", with(func(o *VerifyOptions) {
			o.ArtifactDigest = "sha256:ed7002b439e9ac845f22357d822bac1444730fbdb6016d3ec9432297b9ec9f73"
		}), nil},
		{"wrong-digest", b, "", with(func(o *VerifyOptions) {
			o.ArtifactDigest = "sha256:ed7002b439e9ac845f22357d822bac1444730fbdb6016d3ec9432297b9ec9f74"
		}), ErrBadSignature},
		{"digest-other-algorithm", b, "", with(func(o *VerifyOptions) { o.ArtifactDigest = dsseDigest }), ErrBadSignature},
		{"digest-uppercase", b, "", with(func(o *VerifyOptions) {
			o.ArtifactDigest = "sha256:ED7002B439E9AC845F22357D822BAC1444730FBDB6016D3EC9432297B9EC9F73"
		}), ErrInvalidOptions},
		{"digest-short", b, "", with(func(o *VerifyOptions) { o.ArtifactDigest = "sha256:ed70" }), ErrInvalidOptions},
		{"digest-md5", b, "", with(func(o *VerifyOptions) { o.ArtifactDigest = "md5:9a0364b9e99bb480dd25e1f0284c8555" }), ErrInvalidOptions},
		{"content-and-digest", b, "content", with(func(o *VerifyOptions) { o.ArtifactDigest = emptyDigest }), ErrInvalidOptions},
		{"no-artifact", b, "", key, ErrInvalidOptions},
		{"key-and-identity", b, "content", with(func(o *VerifyOptions) { o.CertificateIdentity = "a@b" }), ErrInvalidOptions},
		{"key-and-issuer-regexp", b, "content", with(func(o *VerifyOptions) { o.CertificateOIDCIssuerRegexp = "^x$" }), ErrInvalidOptions},
		{"not-a-key", b, "content", with(func(o *VerifyOptions) { o.PublicKey = []byte("not PEM") }), ErrInvalidOptions},
		{"keyless-on-key-bundle", b, "content", VerifyOptions{TrustedRoot: []byte("{}"), CertificateIdentity: "a@b", CertificateOIDCIssuer: "https://x"}, ErrWrongKeyType},
		{"other-key", b, "content", with(func(o *VerifyOptions) { o.PublicKey = pubPEM(t, newP256(t)) }), ErrBadSignature},
		{"oversize", append(b, bytes.Repeat([]byte(" "), MaxBundleSize)...), "content", key, ErrMalformedBundle},
		{"empty", nil, "content", key, ErrMalformedBundle},
		{"no-signature", editJSON(t, b, func(m map[string]any) { delete(m, "messageSignature") }), "content", key, ErrMalformedBundle},
		{"v0.4", editJSON(t, b, func(m map[string]any) { m["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.4+json" }), "content", key, ErrMalformedBundle},
		{"tampered-signature", editJSON(t, b, func(m map[string]any) {
			flipB64(t, m["messageSignature"].(map[string]any), "signature")
		}), "content", key, ErrBadSignature},
		{"tampered-digest", editJSON(t, b, func(m map[string]any) {
			flipB64(t, obj(t, m, "messageSignature", "messageDigest").(map[string]any), "digest")
		}), "content", key, ErrBadSignature},
		{"wrong-hint-same-key", editJSON(t, b, func(m map[string]any) {
			obj(t, m, "verificationMaterial", "publicKey").(map[string]any)["hint"] = "another"
		}), "content", key, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var content *strings.Reader
			opts := tc.opts
			if tc.content != "" {
				content = strings.NewReader(tc.content)
				_, err = VerifyBlob(ctx, tc.bundle, content, opts)
			} else {
				_, err = VerifyBlob(ctx, tc.bundle, nil, opts)
			}
			wantErr(t, err, tc.want)
		})
	}
}

func TestCheckAnchored(t *testing.T) {
	for expr, ok := range map[string]bool{
		`^a$`:                    true,
		`^$`:                     true,
		`^https://x\.dev/(a|b)$`: true,
		`^(?:a|b)$`:              true,
		`^.*$`:                   true,
		`^a\z`:                   true,
		`a`:                      false,
		`^a`:                     false,
		`a$`:                     false,
		`^a|b$`:                  false,
		`(?m)^a$`:                false,
		`^a$|^b$`:                false,
		`^a\$`:                   false,
		`(^a$)`:                  false, // capture group around: refused (write ^(a)$)
		`^a$b`:                   false,
		`[`:                      false,
		`^https://issuer.enforce.dev/(UIDP1|UIDP2)$`: true,
	} {
		err := checkAnchored(expr)
		if (err == nil) != ok {
			t.Errorf("checkAnchored(%q) = %v, want ok=%v", expr, err, ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("checkAnchored(%q): %v does not wrap ErrInvalidOptions", expr, err)
		}
	}
}

func TestSignBlobCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := SignBlob(ctx, newSigner(t, newP256(t)), strings.NewReader("x"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestReadBundle(t *testing.T) {
	b, err := ReadBundle(strings.NewReader(`{"mediaType":"x"}`))
	if err != nil || string(b) != `{"mediaType":"x"}` {
		t.Fatalf("ReadBundle = %q, %v", b, err)
	}
	// An endless reader: refused after MaxBundleSize+1 bytes, not read to the end.
	_, err = ReadBundle(endless{})
	wantErr(t, err, ErrMalformedBundle)
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}
