package imageverify

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/signing"
)

// realSig is one of the real Chainguard signatures in
// shared/testdata/chainguard-real (see its README).
type realSig struct {
	dir            string
	image          digest.Digest
	integratedTime int64
	payload        []byte
	signature      string
	certificate    string
	rekorBundle    string
}

const (
	chainguardIssuer   = "https://token.actions.githubusercontent.com"
	chainguardIdentity = "https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main"
)

func loadRealSig(t *testing.T, dir string, image digest.Digest) realSig {
	t.Helper()
	p := func(name string) string { return shared(t, "chainguard-real", dir, name) }
	r := realSig{
		dir:         dir,
		image:       image,
		payload:     readFile(t, p("payload.json")),
		signature:   strings.TrimSpace(string(readFile(t, p("signature.b64")))),
		certificate: string(readFile(t, p("certificate.pem"))),
		rekorBundle: strings.TrimSpace(string(readFile(t, p("rekor-bundle.json")))),
	}
	var rb rekorBundle
	if err := json.Unmarshal([]byte(r.rekorBundle), &rb); err != nil {
		t.Fatal(err)
	}
	r.integratedTime = rb.Payload.IntegratedTime
	return r
}

func realSigs(t *testing.T) []realSig {
	return []realSig{
		loadRealSig(t, "php-2023-01-16", "sha256:194c852460b52e70f4dbd704678bc26eee022d20407a612371adccddcbfca80e"),
		loadRealSig(t, "musl-dynamic-2023-01-22", "sha256:99c3df2be4bf45420f5ef7cd0cbd09132da5a7e29c1dd15f5ec769a554560680"),
	}
}

// sigManifest builds the cosign .sig manifest the README describes: one
// simple-signing layer holding payload, with the three annotations (those
// given empty are left out), attached to subject.
func (s *store) sigManifest(subject digest.Digest, payload []byte, ann map[string]string) referrers.Attachment {
	s.t.Helper()
	layer := s.push(oci.MediaTypeCosignSimpleSigning, payload)
	layer.Annotations = map[string]string{}
	for k, v := range ann {
		if v != "" {
			layer.Annotations[k] = v
		}
	}
	return s.cosignManifest(subject, oci.KindCosignSig, layer)
}

func (r realSig) annotations() map[string]string {
	return map[string]string{
		oci.AnnotationCosignSignature:   r.signature,
		oci.AnnotationCosignCertificate: r.certificate,
		oci.AnnotationCosignBundle:      r.rekorBundle,
	}
}

// subjectDesc is the image as a descriptor; the manifest itself is not needed
// (a signature binds the digest) and is never fetched.
func subjectDesc(d digest.Digest) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: d, Size: 1}
}

// TestRealChainguardSignatures verifies the two real Chainguard signatures
// offline with the shipped chainguard-public policy and the public-good trusted
// root, and refuses tampered and re-targeted copies of them.
func TestRealChainguardSignatures(t *testing.T) {
	ctx := context.Background()
	tm := trustedRoot(t, "trusted_root.json")
	pol, err := policy.Builtin("chainguard-public")
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := pol.For("cgr.dev/chainguard/php")
	if err != nil {
		t.Fatal(err)
	}
	// The testdata has the signatures and no attestations: the same rule
	// without its attestation requirements.
	sigOnly := *shipped
	sigOnly.Attestations = nil

	for _, rs := range realSigs(t) {
		t.Run(rs.dir, func(t *testing.T) {
			st := newStore(t)
			img := Image{
				Repository:  "cgr.dev/chainguard/" + strings.Split(rs.dir, "-20")[0],
				Root:        subjectDesc(rs.image),
				Attachments: map[digest.Digest][]referrers.Attachment{rs.image: {st.sigManifest(rs.image, rs.payload, rs.annotations())}},
			}

			// The shipped rule: the signature verifies; what fails is only the
			// attestations the testdata does not have.
			res, err := Verify(ctx, st, shipped, img, Options{TrustedMaterial: tm})
			wantErrs(t, err, []error{ErrMissingAttestation}, ErrNoValidSignature, ErrIdentity, ErrTlog, ErrNoTrustedTime, ErrDigestMismatch)
			checkRealSignature(t, res, rs)
			if res.Verified || len(res.Failures) != 2 {
				t.Fatalf("failures %q, want the two missing attestations", res.Failures)
			}

			res, err = Verify(ctx, st, &sigOnly, img, Options{TrustedMaterial: tm})
			wantErrs(t, err, nil)
			checkRealSignature(t, res, rs)
			if !res.Verified || len(res.Failures) != 0 || len(res.Root.Rejected) != 0 {
				t.Fatalf("result %+v", res)
			}
		})
	}
}

func checkRealSignature(t *testing.T, res *Result, rs realSig) {
	t.Helper()
	if res == nil || len(res.Root.Signatures) != 1 {
		t.Fatalf("result %+v: want one verified signature", res)
	}
	s := res.Root.Signatures[0]
	want := time.Unix(rs.integratedTime, 0).UTC()
	if s.Form != FormCosignSig || s.Mode != ModeKeyless || s.Identity != chainguardIdentity || s.Issuer != chainguardIssuer ||
		!s.SignedAt.Equal(want) || s.TimeSource != signing.TimeSourceTlog || s.Authority != "chainguard-release" ||
		!strings.HasPrefix(s.DockerReference, "ghcr.io/chainguard-images/") || s.KeyID == "" {
		t.Fatalf("signature %+v; want %s / %s at %s from the tlog", s, chainguardIdentity, chainguardIssuer, want)
	}
}

func TestRealChainguardSignaturesRefused(t *testing.T) {
	ctx := context.Background()
	tm := trustedRoot(t, "trusted_root.json")
	sigs := realSigs(t)
	php, musl := sigs[0], sigs[1]
	rule := keylessRule(t, chainguardIdentity, chainguardIssuer, "")

	// Sanity: the rule used below accepts the untouched signature, by identity
	// and by anchored regexp.
	for _, r := range []*policyRule{
		{"exact", rule},
		{"regexp", ruleFrom(t, `apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["**"]
images:
- glob: "**"
  authorities:
  - keyless:
      issuerRegexp: '^https://token\.actions\.githubusercontent\.com$'
      identityRegexp: '^https://github\.com/chainguard-images/images/\.github/workflows/release\.yaml@refs/heads/(main|release)$'
`)},
	} {
		st := newStore(t)
		img := Image{Root: subjectDesc(php.image), Attachments: map[digest.Digest][]referrers.Attachment{php.image: {st.sigManifest(php.image, php.payload, php.annotations())}}}
		if _, err := Verify(ctx, st, r.rule, img, Options{TrustedMaterial: tm}); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
	}

	flipPayload := func(p []byte) []byte {
		out := []byte(strings.Replace(string(p), `"run_attempt":"1"`, `"run_attempt":"2"`, 1))
		if string(out) == string(p) {
			t.Fatal("payload has no run_attempt to change")
		}
		return out
	}
	editBundle := func(f func(m map[string]any)) string {
		var m map[string]any
		if err := json.Unmarshal([]byte(php.rekorBundle), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	with := func(k, v string) map[string]string {
		a := php.annotations()
		a[k] = v
		return a
	}

	for _, tc := range []struct {
		name    string
		subject digest.Digest
		payload []byte
		ann     map[string]string
		rule    *policyRule
		opts    *Options
		want    []error
		notWant []error
	}{
		{name: "another identity", rule: &policyRule{"", keylessRule(t, "https://github.com/chainguard-images/images/.github/workflows/other.yaml@refs/heads/main", chainguardIssuer, "")},
			want: []error{ErrNoValidSignature, ErrIdentity, signing.ErrIdentity}},
		{name: "another issuer", rule: &policyRule{"", keylessRule(t, chainguardIdentity, "https://accounts.google.com", "")},
			want: []error{ErrNoValidSignature, ErrIdentity}},
		{name: "identity regexp that does not match", rule: &policyRule{"", ruleFrom(t, "apiVersion: petra-oci.dev/v1alpha1\nkind: Policy\nsources: [\"**\"]\nimages:\n- glob: \"**\"\n  authorities: [{keyless: {issuer: "+chainguardIssuer+", identityRegexp: '^https://github\\.com/chainguard-images/images/\\.github/workflows/release\\.yaml@refs/tags/.*$'}}]\n")},
			want: []error{ErrNoValidSignature, ErrIdentity}},
		{name: "flipped payload byte", payload: flipPayload(php.payload),
			want: []error{ErrNoValidSignature, signing.ErrBadSignature}, notWant: []error{ErrIdentity, ErrDigestMismatch}},
		{name: "flipped signature byte", ann: with(oci.AnnotationCosignSignature, flipB64(t, php.signature, 20)),
			want: []error{ErrNoValidSignature, signing.ErrBadSignature}, notWant: []error{ErrIdentity}},
		{name: "flipped SET byte", ann: with(oci.AnnotationCosignBundle, editBundle(func(m map[string]any) {
			m["SignedEntryTimestamp"] = flipB64(t, m["SignedEntryTimestamp"].(string), 30)
		})), want: []error{ErrNoValidSignature, ErrTlog}, notWant: []error{ErrNoTrustedTime}},
		{name: "integrated time not the one the SET signs", ann: with(oci.AnnotationCosignBundle, editBundle(func(m map[string]any) {
			p := m["Payload"].(map[string]any)
			p["integratedTime"] = p["integratedTime"].(float64) + 60
		})), want: []error{ErrNoValidSignature, ErrTlog}},
		{name: "payload digest for another image", subject: musl.image,
			want: []error{ErrNoValidSignature, ErrDigestMismatch}, notWant: []error{ErrIdentity}},
		{name: "certificate without the SET", ann: with(oci.AnnotationCosignBundle, ""),
			want: []error{ErrNoValidSignature, ErrNoTrustedTime}, notWant: []error{ErrTlog}},
		{name: "another signature's certificate", ann: with(oci.AnnotationCosignCertificate, musl.certificate),
			want: []error{ErrNoValidSignature}, notWant: []error{ErrIdentity}},
		{name: "another signature's Rekor entry", ann: with(oci.AnnotationCosignBundle, musl.rekorBundle),
			want: []error{ErrNoValidSignature}},
		{name: "bare signature, no certificate", ann: map[string]string{oci.AnnotationCosignSignature: php.signature},
			want: []error{ErrNoValidSignature, ErrCertificateRequired}},
		{name: "no signature annotation", ann: with(oci.AnnotationCosignSignature, ""),
			want: []error{ErrNoValidSignature, ErrMalformed}},
		{name: "trusted root without the Fulcio CAs", opts: &Options{TrustedMaterial: trimmedRoot(t, "certificateAuthorities")},
			want: []error{ErrNoValidSignature, signing.ErrUntrustedChain}, notWant: []error{ErrIdentity}},
		{name: "trusted root without the CT logs (SCT unverifiable)", opts: &Options{TrustedMaterial: trimmedRoot(t, "ctlogs")},
			want: []error{ErrNoValidSignature, signing.ErrUntrustedChain}},
		{name: "trusted root without the Rekor log", opts: &Options{TrustedMaterial: trimmedRoot(t, "tlogs")},
			want: []error{ErrNoValidSignature, ErrTlog}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			subject, payload, ann, r, opts := php.image, php.payload, php.annotations(), rule, Options{TrustedMaterial: tm}
			if tc.subject != "" {
				subject = tc.subject
			}
			if tc.payload != nil {
				payload = tc.payload
			}
			if tc.ann != nil {
				ann = tc.ann
			}
			if tc.rule != nil {
				r = tc.rule.rule
			}
			if tc.opts != nil {
				opts = *tc.opts
			}
			st := newStore(t)
			img := Image{Root: subjectDesc(subject), Attachments: map[digest.Digest][]referrers.Attachment{subject: {st.sigManifest(subject, payload, ann)}}}
			res, err := Verify(ctx, st, r, img, opts)
			wantErrs(t, err, tc.want, tc.notWant...)
			if res == nil || res.Verified || len(res.Root.Signatures) != 0 || len(res.Root.Rejected) != 1 {
				t.Fatalf("result %+v: want one rejected signature", res)
			}
		})
	}

	// Keyless verification needs trust material: refused before anything is read.
	st := newStore(t)
	img := Image{Root: subjectDesc(php.image), Attachments: map[digest.Digest][]referrers.Attachment{php.image: {st.sigManifest(php.image, php.payload, php.annotations())}}}
	if _, err := Verify(ctx, st, rule, img, Options{}); !errors.Is(err, ErrTrustedMaterialRequired) {
		t.Fatalf("no trusted root: %v", err)
	}
	// No signature at all.
	_, err := Verify(ctx, st, rule, Image{Root: subjectDesc(php.image)}, Options{TrustedMaterial: tm})
	wantErrs(t, err, []error{ErrNoValidSignature})
}

type policyRule struct {
	name string
	rule *policy.ImageRule
}

// trimmedRoot is the public-good trusted root with the named list emptied.
func trimmedRoot(t *testing.T, key string) root.TrustedMaterial {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readFile(t, shared(t, "sigstore-public-good", "trusted_root.json")), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m[key]; !ok {
		t.Fatalf("trusted root has no %q", key)
	}
	m[key] = []any{}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	tm, err := TrustedRootFromJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
