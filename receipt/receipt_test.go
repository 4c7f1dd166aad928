package receipt

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/signing"
)

var (
	hexA = strings.Repeat("a", 64)
	hexB = strings.Repeat("b", 64)
)

func valid() *Receipt {
	return &Receipt{
		MediaType: MediaType, Registry: "reg.internal:5000/mirror",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Tool: Tool{Name: "petra-oci", Version: "v1"},
		Bundle: &Bundle{BundleID: strings.Repeat("0", 32), Sequence: 3, Metadata: digest.Digest("sha256:" + hexA)},
		Repositories: []Repository{
			{Name: "chainguard/nginx", Manifests: []digest.Digest{digest.Digest("sha256:" + hexA)},
				Blobs: []Blob{{Digest: digest.Digest("sha256:" + hexA), Size: 1}, {Digest: digest.Digest("sha256:" + hexB), Size: 2}}},
			{Name: "chainguard/static", Manifests: []digest.Digest{}, Blobs: []Blob{}},
		},
	}
}

func TestParseAcceptsEncoded(t *testing.T) {
	b, err := Encode(valid())
	if err != nil {
		t.Fatal(err)
	}
	r, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Repository("chainguard/nginx") == nil || len(r.Repository("chainguard/nginx").Blobs) != 2 || r.Bundle.Sequence != 3 {
		t.Fatalf("parsed %+v", r)
	}
	noBundle := valid()
	noBundle.Bundle = nil
	if b, err = Encode(noBundle); err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(b); err != nil {
		t.Fatalf("a receipt naming no bundle: %v", err)
	}
}

// TestParseStrict: every rule refused, with ErrInvalid.
func TestParseStrict(t *testing.T) {
	rules := map[string]func(r *Receipt){
		"media type v2":       func(r *Receipt) { r.MediaType = "application/vnd.petra-oci.receipt.v2+json" },
		"no registry":         func(r *Receipt) { r.Registry = "" },
		"registry trailing /": func(r *Receipt) { r.Registry = "reg.internal/mirror/" },
		"registry bad prefix": func(r *Receipt) { r.Registry = "reg.internal/../x" },
		"no created":          func(r *Receipt) { r.Created = time.Time{} },
		"no tool":             func(r *Receipt) { r.Tool.Name = "" },
		"bundle id":           func(r *Receipt) { r.Bundle.BundleID = "xyz" },
		"bundle sequence 0":   func(r *Receipt) { r.Bundle.Sequence = 0 },
		"bundle metadata":     func(r *Receipt) { r.Bundle.Metadata = "sha256:12" },
		"no repositories":     func(r *Receipt) { r.Repositories = nil },
		"repository name":     func(r *Receipt) { r.Repositories[0].Name = "Chainguard/nginx" },
		"repository ..":       func(r *Receipt) { r.Repositories[0].Name = "../nginx" },
		"repositories order":  func(r *Receipt) { r.Repositories[0], r.Repositories[1] = r.Repositories[1], r.Repositories[0] },
		"repository twice":    func(r *Receipt) { r.Repositories[1] = r.Repositories[0] },
		"no manifests list":   func(r *Receipt) { r.Repositories[1].Manifests = nil },
		"no blobs list":       func(r *Receipt) { r.Repositories[1].Blobs = nil },
		"manifest digest":     func(r *Receipt) { r.Repositories[0].Manifests[0] = "md5:abc" },
		"blob digest":         func(r *Receipt) { r.Repositories[0].Blobs[0].Digest = "sha256:ABC" },
		"blob size":           func(r *Receipt) { r.Repositories[0].Blobs[0].Size = -1 },
		"blobs order":         func(r *Receipt) { b := r.Repositories[0].Blobs; b[0], b[1] = b[1], b[0] },
		"blob twice":          func(r *Receipt) { b := r.Repositories[0].Blobs; b[1] = b[0] },
	}
	for name, edit := range rules {
		t.Run(name, func(t *testing.T) {
			r := valid()
			edit(r)
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(b); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
			if _, err := Encode(r); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode = %v, want ErrInvalid", err)
			}
		})
	}
	good, err := json.Marshal(valid())
	if err != nil {
		t.Fatal(err)
	}
	g := string(good)
	for name, b := range map[string]string{
		"unknown key":          strings.Replace(g, `"registry":`, `"extra":true,"registry":`, 1),
		"unknown nested key":   strings.Replace(g, `"size":1}`, `"size":1,"from":"x"}`, 1),
		"key in another case":  strings.Replace(g, `"registry":`, `"Registry":`, 1),
		"duplicate key":        strings.Replace(g, `"registry":`, `"registry":"a.b","registry":`, 1),
		"duplicate nested key": strings.Replace(g, `"size":1}`, `"size":1,"size":1}`, 1),
		"trailing data":        g + `{}`,
		"not UTF-8":            strings.Replace(g, `petra-oci`, "petra-\xff", 1),
		"size not a number":    strings.Replace(g, `"size":1}`, `"size":"1"}`, 1),
		"array":                `[` + g + `]`,
	} {
		t.Run(name, func(t *testing.T) {
			if b == g {
				t.Fatal("the edit changed nothing")
			}
			if _, err := Parse([]byte(b)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := Parse(make([]byte, MaxBytes+1)); !errors.Is(err, ErrInvalid) || !errors.Is(err, oci.ErrTooLarge) {
		t.Fatalf("an oversized receipt: %v", err)
	}
}

// TestSignVerify: a signed receipt verifies with its key only, and its bytes are
// never parsed before that: a changed byte, a missing signature or another key fail.
func TestSignVerify(t *testing.T) {
	priv, pubPEM, _ := fixture.KeyPair(t)
	_, otherPEM, _ := fixture.KeyPair(t)
	signer, err := signing.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Sign(t.Context(), signer, valid())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "receipt.json")
	if err := s.WriteFiles(p); err != nil {
		t.Fatal(err)
	}
	if SignaturePath(p) != strings.TrimSuffix(p, ".json")+".sigstore.json" {
		t.Fatalf("SignaturePath = %s", SignaturePath(p))
	}
	got, err := ReadVerified(t.Context(), p, signing.VerifyOptions{PublicKey: pubPEM})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest() != digest.FromBytes(s.Bytes) || got.Receipt.Registry != "reg.internal:5000/mirror" {
		t.Fatalf("verified %s %+v", got.Digest(), got.Receipt)
	}
	if _, err := ReadVerified(t.Context(), p, signing.VerifyOptions{PublicKey: otherPEM}); !errors.Is(err, ErrSignature) {
		t.Fatalf("another key: %v, want ErrSignature", err)
	}
	// invalid content, correctly signed, is refused by the parser after the signature
	bad := []byte(`{"mediaType":"x"}`)
	sig, err := signing.SignBlob(t.Context(), signer, strings.NewReader(string(bad)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(t.Context(), bad, sig, signing.VerifyOptions{PublicKey: pubPEM}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("signed invalid receipt: %v, want ErrInvalid", err)
	}
	// a changed byte: the signature fails first, so the parser never sees it
	changed := []byte(strings.Replace(string(s.Bytes), "chainguard/nginx", "chainguard/nginy", 1))
	if _, err := Verify(t.Context(), changed, s.Signature, signing.VerifyOptions{PublicKey: pubPEM}); !errors.Is(err, ErrSignature) {
		t.Fatalf("changed receipt: %v, want ErrSignature", err)
	}
	if err := os.Remove(SignaturePath(p)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadVerified(t.Context(), p, signing.VerifyOptions{PublicKey: pubPEM}); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("no signature: %v, want ErrUnsigned", err)
	}
}

func TestPathOf(t *testing.T) {
	if got := PathOf("cgr.dev/chainguard/nginx"); got != "chainguard/nginx" {
		t.Fatalf("PathOf = %q", got)
	}
}
