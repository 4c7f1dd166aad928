package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func pubPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cryptoutils.MarshalPublicKeyToPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// indent prefixes every line of s with n spaces (for PEM inside YAML).
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
}

const validKeyless = `apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources:
  - "cgr.dev/chainguard/*"
images:
  - glob: "cgr.dev/chainguard/**"
    authorities:
      - keyless:
          issuer: https://token.actions.githubusercontent.com
          identity: https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main
`

func TestParseRefuses(t *testing.T) {
	key := pubPEM(t)
	head := "apiVersion: petra-oci.dev/v1alpha1\nkind: Policy\nsources: [\"cgr.dev/**\"]\n"
	rule := func(authority string) string {
		return head + "images:\n  - glob: \"cgr.dev/**\"\n    authorities:\n      - " + authority + "\n"
	}
	keyless := func(fields string) string { return rule("keyless: {" + fields + "}") }
	withAtt := func(att string) string {
		return rule("keyless: {issuer: https://i.example, identity: me@example.com}") + "    attestations:\n      - " + att + "\n"
	}
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unanchored identity regexp", keyless(`issuer: https://i.example, identityRegexp: "https://issuer\\.enforce\\.dev/.*"`), "not anchored"},
		{"half anchored alternation", keyless(`issuer: https://i.example, identityRegexp: "^a@example\\.com|b@example\\.com$"`), "not anchored"},
		{"unanchored issuer regexp", keyless(`issuerRegexp: "https://.*", identity: me@example.com`), "not anchored"},
		{"bad regexp", keyless(`issuer: https://i.example, identityRegexp: "^(a$"`), "regexp"},
		{"keyless without issuer", keyless(`identity: me@example.com`), "no issuer"},
		{"keyless without identity", keyless(`issuer: https://i.example`), "no identity"},
		{"identity and regexp", keyless(`issuer: https://i.example, identity: a, identityRegexp: "^a$"`), "both identity and identityRegexp"},
		{"neither key nor keyless", rule(`name: nobody`), "neither keyless nor key"},
		{"both key and keyless", rule("keyless: {issuer: https://i.example, identity: a}\n        key: {path: cosign.pub}"), "both keyless and key"},
		{"key without material", rule(`key: {}`), "neither publicKey nor path"},
		{"key not PEM", rule(`key: {publicKey: "not a key"}`), "public key"},
		{"relative key path without directory", rule(`key: {path: cosign.pub}`), "relative"},
		{"placeholder identity", keyless(`issuer: https://issuer.enforce.dev, identityRegexp: "^https://issuer\\.enforce\\.dev/(<APKO_BUILDER_UIDP>)$"`), "placeholder"},
		{"empty sources", strings.Replace(keyless(`issuer: https://i.example, identity: a`), `sources: ["cgr.dev/**"]`, "sources: []", 1), "sources is empty"},
		{"no sources", strings.Replace(keyless(`issuer: https://i.example, identity: a`), `sources: ["cgr.dev/**"]`+"\n", "", 1), "sources is empty"},
		{"no images", head, "images is empty"},
		{"no authorities", head + "images:\n  - glob: \"cgr.dev/**\"\n", "authorities is empty"},
		{"unknown top-level field", keyless(`issuer: https://i.example, identity: a`) + "extra: 1\n", "unknown field"},
		{"unknown keyless field", keyless(`issuer: https://i.example, identity: a, subject: b`), "unknown field"},
		{"misspelt rule field", keyless(`issuer: https://i.example, identity: a`) + "    requireChildSignature: true\n", "unknown field"},
		{"unknown predicate check", withAtt("{predicateType: https://cyclonedx.org/bom, cyclonedx: {}}"), "unknown field"},
		{"slsa check on another type", withAtt("{predicateType: https://spdx.dev/Document, slsaProvenance: {builderIDs: [x]}}"), "slsaProvenance checks apply"},
		{"spdx check on another type", withAtt("{predicateType: https://slsa.dev/provenance/v1, spdx: {}}"), "spdx checks apply"},
		{"unknown slsa option", withAtt("{predicateType: https://slsa.dev/provenance/v1, slsaProvenance: {builders: [x]}}"), "unknown field"},
		{"empty predicate type", withAtt("{predicateType: \"\"}"), "predicateType"},
		{"duplicate predicate type", withAtt("{predicateType: https://spdx.dev/Document}\n      - {predicateType: https://spdx.dev/Document}"), "listed twice"},
		{"duplicate YAML key", strings.Replace(keyless(`issuer: https://i.example, identity: a`), "kind: Policy\n", "kind: Policy\nkind: Policy\n", 1), "already set"},
		{"wrong apiVersion", strings.Replace(keyless(`issuer: https://i.example, identity: a`), "v1alpha1", "v1", 1), "apiVersion"},
		{"wrong kind", strings.Replace(keyless(`issuer: https://i.example, identity: a`), "kind: Policy", "kind: ClusterImagePolicy", 1), "kind"},
		{"source with tag", strings.Replace(keyless(`issuer: https://i.example, identity: a`), `"cgr.dev/**"]`, `"cgr.dev/chainguard/nginx:latest"]`, 1), "no tag or digest"},
		{"source with digest", strings.Replace(keyless(`issuer: https://i.example, identity: a`), `"cgr.dev/**"]`, `"cgr.dev/chainguard/nginx@sha256:abc"]`, 1), "no tag or digest"},
		{"source with scheme", strings.Replace(keyless(`issuer: https://i.example, identity: a`), `"cgr.dev/**"]`, `"oci://registry.example/**"]`, 1), "scheme"},
		{"source host only", strings.Replace(keyless(`issuer: https://i.example, identity: a`), `"cgr.dev/**"]`, `"cgr.dev"]`, 1), "host/path"},
		{"source with ***", strings.Replace(keyless(`issuer: https://i.example, identity: a`), `"cgr.dev/**"]`, `"cgr.dev/***"]`, 1), "***"},
		{"source with ?", strings.Replace(keyless(`issuer: https://i.example, identity: a`), `"cgr.dev/**"]`, `"cgr.dev/nginx?"]`, 1), "not allowed"},
		{"duplicate glob", keyless(`issuer: https://i.example, identity: a`) + "  - glob: \"cgr.dev/**\"\n    authorities: [{key: {publicKey: \"" + strings.ReplaceAll(string(key), "\n", `\n`) + "\"}}]\n", "listed twice"},
		{"child attestations without attestations", keyless(`issuer: https://i.example, identity: a`) + "    requireChildAttestations: true\n", "requireChildAttestations"},
		{"not YAML", "{{{", "invalid policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.yaml), "")
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Parse = %v, %v; want ErrInvalidPolicy\n%s", p, err, tc.yaml)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestAllowedAndFor(t *testing.T) {
	key := pubPEM(t)
	y := `apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources:
  - "cgr.dev/chainguard/*"
  - "127.0.0.1:5000/**"
  - "registry.example/team/**/base"
images:
  - glob: "cgr.dev/chainguard/static"
    authorities: [{keyless: {issuer: https://i.example, identity: static@example.com}}]
  - glob: "cgr.dev/chainguard/*"
    authorities: [{keyless: {issuer: https://i.example, identity: any@example.com}}]
  - glob: "**"
    authorities:
      - key:
          publicKey: |
` + indent(string(key), 12) + "\n"
	p, err := Parse([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		repo string
		want error
	}{
		{"cgr.dev/chainguard/nginx", nil},
		{"cgr.dev/chainguard/a/b", ErrSourceNotAllowed}, // * stays within a segment
		{"cgr.dev/chainguardx/nginx", ErrSourceNotAllowed},
		{"cgr.dev/chainguard", ErrSourceNotAllowed},
		{"evil.example/cgr.dev/chainguard/nginx", ErrSourceNotAllowed},
		{"cgr.dev.evil.example/chainguard/nginx", ErrSourceNotAllowed},
		{"127.0.0.1:5000/a", nil},
		{"127.0.0.1:5000/a/b/c", nil}, // ** crosses segments
		{"127.0.0.1:5001/a", ErrSourceNotAllowed},
		{"registry.example/team/x/y/base", nil},
		{"registry.example/team/base", ErrSourceNotAllowed}, // ** matches at least one character
		{"registry.example/team/x/base2", ErrSourceNotAllowed},
		{"cgr.dev/chainguard/nginx:latest", ErrInvalidRepository},
		{"cgr.dev/chainguard/nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000", ErrInvalidRepository},
		{"oci://registry.example/chainguard/nginx", ErrInvalidRepository},
		{"cgr.dev", ErrInvalidRepository},
		{"", ErrInvalidRepository},
	} {
		if err := p.Allowed(tc.repo); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("Allowed(%q) = %v, want %v", tc.repo, err, tc.want)
		}
	}
	for repo, want := range map[string]string{
		"cgr.dev/chainguard/static": "static@example.com",
		"cgr.dev/chainguard/nginx":  "any@example.com",
		"cgr.dev/other/nginx":       "", // the catch-all key rule
	} {
		r, err := p.For(repo)
		if err != nil {
			t.Fatalf("For(%q): %v", repo, err)
		}
		switch a := r.Authorities[0]; {
		case want == "" && a.Key == nil, want != "" && (a.Keyless == nil || a.Keyless.Identity != want):
			t.Errorf("For(%q) = rule %q %+v, want identity %q", repo, r.Glob, a, want)
		}
	}
	if !p.NeedsTrustedMaterial() {
		t.Error("NeedsTrustedMaterial = false with keyless rules")
	}

	noCatchAll, err := Parse([]byte(validKeyless), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noCatchAll.For("ghcr.io/chainguard-images/php"); !errors.Is(err, ErrNoRule) {
		t.Fatalf("For outside every glob: %v, want ErrNoRule", err)
	}
	if _, err := noCatchAll.For("cgr.dev/chainguard/php:1"); !errors.Is(err, ErrInvalidRepository) {
		t.Fatalf("For with a tag: %v, want ErrInvalidRepository", err)
	}
}

func TestDigestIsCanonical(t *testing.T) {
	key := pubPEM(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cosign.pub"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	withPath := `# a comment
apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["cgr.dev/**"]
images:
  - glob: "cgr.dev/**"
    authorities:
      - key: {path: cosign.pub}
`
	inline := "kind: Policy\napiVersion: petra-oci.dev/v1alpha1\nsources:\n- cgr.dev/**\nimages:\n- authorities:\n  - key:\n      publicKey: |\n" +
		indent(string(key), 8) + "\n  glob: cgr.dev/**\n"
	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte(withPath), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(inline), "")
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest() != b.Digest() || a.Digest() == "" {
		t.Fatalf("same policy, different digests: %s (key path) vs %s (inline)", a.Digest(), b.Digest())
	}
	if a.Images[0].Authorities[0].Key.Path != "" || a.Images[0].Authorities[0].Key.PublicKey != string(key) {
		t.Fatalf("key not resolved inline: %+v", a.Images[0].Authorities[0].Key)
	}
	again, err := Parse(a.Bytes(), "")
	if err != nil {
		t.Fatalf("the canonical form does not parse: %v\n%s", err, a.Bytes())
	}
	if again.Digest() != a.Digest() || string(again.Bytes()) != string(a.Bytes()) {
		t.Fatalf("canonical form is not stable:\n%s\n---\n%s", a.Bytes(), again.Bytes())
	}
	kp, err := KeyPolicy(key, []string{"cgr.dev/**"})
	if err != nil {
		t.Fatal(err)
	}
	if kp.Digest() == a.Digest() {
		t.Fatal("a different policy (another glob) has the same digest")
	}
	// A changed requirement changes the digest.
	c, err := Parse([]byte(strings.Replace(inline, "cgr.dev/**\n", "cgr.dev/chainguard/**\n", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Digest() == a.Digest() {
		t.Fatal("changed sources, same digest")
	}
	// A key path that is not there.
	if err := os.Remove(filepath.Join(dir, "cosign.pub")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("Load with a missing key file: %v", err)
	}
}

func TestKeyPolicy(t *testing.T) {
	key := pubPEM(t)
	p, err := KeyPolicy(key, []string{"cgr.dev/chainguard/**"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Allowed("cgr.dev/chainguard/nginx"); err != nil {
		t.Fatal(err)
	}
	if err := p.Allowed("docker.io/library/nginx"); !errors.Is(err, ErrSourceNotAllowed) {
		t.Fatalf("Allowed outside sources: %v", err)
	}
	r, err := p.For("cgr.dev/chainguard/nginx")
	if err != nil || len(r.Authorities) != 1 || r.Authorities[0].Key == nil || r.RequireChildSignatures || len(r.Attestations) != 0 {
		t.Fatalf("For = %+v, %v", r, err)
	}
	if p.NeedsTrustedMaterial() {
		t.Fatal("a key policy needs no trusted material")
	}
	if _, err := KeyPolicy(key, nil); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("KeyPolicy without sources: %v", err)
	}
	if _, err := KeyPolicy([]byte("nope"), []string{"cgr.dev/**"}); !errors.Is(err, ErrInvalidPolicy) {
		t.Fatalf("KeyPolicy with a bad key: %v", err)
	}
}

func TestBuiltin(t *testing.T) {
	if got := BuiltinNames(); strings.Join(got, ",") != "chainguard-org,chainguard-public" {
		t.Fatalf("BuiltinNames = %v", got)
	}
	p, err := Builtin("chainguard-public")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Allowed("cgr.dev/chainguard/nginx"); err != nil {
		t.Fatal(err)
	}
	if err := p.Allowed("cgr.dev/acme.com/nginx"); !errors.Is(err, ErrSourceNotAllowed) {
		t.Fatalf("public policy allows an org repository: %v", err)
	}
	r, err := p.For("cgr.dev/chainguard/nginx")
	if err != nil {
		t.Fatal(err)
	}
	k := r.Authorities[0].Keyless
	if k == nil || k.Issuer != "https://token.actions.githubusercontent.com" ||
		k.Identity != "https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main" {
		t.Fatalf("authority %+v", r.Authorities[0])
	}
	if !r.RequireChildSignatures || len(r.Attestations) != 2 ||
		r.Attestations[0].PredicateType != PredicateSLSAProvenanceV1 || r.Attestations[0].SLSAProvenance == nil ||
		strings.Join(r.Attestations[0].SLSAProvenance.BuildTypes, ",") != "https://apko.dev/slsa-build-type@v1" ||
		r.Attestations[1].PredicateType != PredicateSPDX || r.Attestations[1].SPDX == nil {
		t.Fatalf("rule %+v", r)
	}

	// The organisation template refuses to load as shipped, and loads filled in.
	if _, err := Builtin("chainguard-org"); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), "placeholder") {
		t.Fatalf("unfilled template: %v", err)
	}
	tmpl, err := BuiltinBytes("chainguard-org")
	if err != nil {
		t.Fatal(err)
	}
	filled := strings.NewReplacer(
		"<ORGANIZATION>", "acme.com",
		"<CATALOG_SYNCER_UIDP>", "720909c9f5279097d847ad02a2f24ba8f59de36a/b6461e99e132298f",
		"<APKO_BUILDER_UIDP>", "720909c9f5279097d847ad02a2f24ba8f59de36a/3b9b8e5c1a2d4f60",
	).Replace(string(tmpl))
	org, err := Parse([]byte(filled), "")
	if err != nil {
		t.Fatalf("filled-in template: %v", err)
	}
	r, err = org.For("cgr.dev/acme.com/nginx")
	if err != nil {
		t.Fatal(err)
	}
	if k := r.Authorities[0].Keyless; k == nil || k.Issuer != "https://issuer.enforce.dev" || !strings.HasPrefix(k.IdentityRegexp, `^https://issuer\.enforce\.dev/(`) {
		t.Fatalf("org authority %+v", r.Authorities[0])
	}
	half := strings.Replace(string(tmpl), "<ORGANIZATION>", "acme.com", -1)
	if _, err := Parse([]byte(half), ""); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), "<CATALOG_SYNCER_UIDP>") {
		t.Fatalf("template with UIDP placeholders left: %v", err)
	}

	for _, bad := range []string{"", "nope", "../policy", "chainguard-public.yaml"} {
		if _, err := Builtin(bad); !errors.Is(err, ErrNoBuiltin) {
			t.Errorf("Builtin(%q) = %v, want ErrNoBuiltin", bad, err)
		}
	}
}
