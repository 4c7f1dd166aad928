package imageverify

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/referrers"
)

// discover collects the attachments of every subject, as pack does.
func discover(t *testing.T, repo *remote.Repository, subjects ...ocispec.Descriptor) map[digest.Digest][]referrers.Attachment {
	t.Helper()
	var all []referrers.Attachment
	for _, s := range subjects {
		atts, err := referrers.Discover(context.Background(), repo, s)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, atts...)
	}
	return referrers.BySubject(all)
}

// TestPublicGoodEmptyImage verifies the real public-good attestation that cosign
// attached to go-containerregistry's empty image, as an OCI referrer pulled
// from a registry, with its real identity and trusted root.
func TestPublicGoodEmptyImage(t *testing.T) {
	ctx := context.Background()
	r := registrytest.Start(t, registrytest.InProcess)
	subject, referrer := fixture.PublicGoodEmptyImage(ctx, t, r.Host, "sigstore/empty")
	repo := r.Repository(t, "sigstore/empty")
	img := Image{Repository: r.Host + "/sigstore/empty", Root: subject, Attachments: discover(t, repo, subject)}
	if got := img.Attachments[subject.Digest]; len(got) != 1 || got[0].Descriptor.Digest != referrer.Digest {
		t.Fatalf("attachments %+v, want the bundle referrer %s", got, referrer.Digest)
	}
	opts := Options{TrustedMaterial: trustedRoot(t, "trusted_root_pgi.json")}
	const (
		identity = "cody@soyland.com"
		issuer   = "https://github.com/login/oauth"
		require  = "  attestations: [{predicateType: " + fixture.PredicateCosignAttestation + "}]\n"
	)
	// The image carries one attestation and no signature: the rule lets the
	// verified attestation stand for the signature.
	rule := keylessRule(t, identity, issuer, require+"  countAttestationsAsSignatures: true\n")
	_, somePub, _ := fixture.KeyPair(t)

	res, err := Verify(ctx, repo, rule, img, opts)
	wantErrs(t, err, nil)
	a := res.Root.Attestations
	if len(a) != 1 || a[0].Form != FormSigstoreBundle || a[0].Manifest != referrer.Digest || a[0].Identity != identity || a[0].Issuer != issuer ||
		a[0].PredicateType != fixture.PredicateCosignAttestation || a[0].SignedAt.IsZero() || !res.Verified {
		t.Fatalf("result %+v", res)
	}
	if b, err := json.MarshalIndent(res, "", "  "); err != nil || !strings.Contains(string(b), `"identity": "cody@soyland.com"`) {
		t.Fatalf("JSON result: %v\n%s", err, b)
	}

	for _, tc := range []struct {
		name string
		rule *policy.ImageRule
		opts Options
		want []error
	}{
		{"a signature is required by default", keylessRule(t, identity, issuer, require), opts, []error{ErrNoValidSignature}},
		{"another identity", keylessRule(t, "someone@example.com", issuer, require+"  countAttestationsAsSignatures: true\n"), opts,
			[]error{ErrNoValidSignature, ErrMissingAttestation, ErrIdentity}},
		{"another issuer", keylessRule(t, identity, "https://accounts.google.com", require+"  countAttestationsAsSignatures: true\n"), opts,
			[]error{ErrNoValidSignature, ErrMissingAttestation, ErrIdentity}},
		{"another predicate required", keylessRule(t, identity, issuer, "  attestations: [{predicateType: https://slsa.dev/provenance/v1}]\n  countAttestationsAsSignatures: true\n"), opts,
			[]error{ErrMissingAttestation}},
		{"a key where the attestation is keyless", keyRule(t, somePub, require+"  countAttestationsAsSignatures: true\n"), Options{},
			[]error{ErrNoValidSignature, ErrMissingAttestation}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(ctx, repo, tc.rule, img, tc.opts)
			wantErrs(t, err, tc.want)
		})
	}
}

// TestKeySignedFixture verifies the key-signed Chainguard-shaped fixture (cosign
// .sig and .att on the index and every child, a DSSE bundle referrer on the
// index) from an in-process registry.
func TestKeySignedFixture(t *testing.T) {
	ctx := context.Background()
	r := registrytest.Start(t, registrytest.InProcess)
	fx := fixture.Chainguard(ctx, t, r.Host, "chainguard/nginx", "latest", fixture.Options{Seed: 1})
	repo := r.Repository(t, "chainguard/nginx")
	var children []ocispec.Descriptor
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		children = append(children, fx.Children[p])
	}
	full := Image{Repository: fx.Repo, Root: fx.Index, Children: children, Attachments: discover(t, repo, append([]ocispec.Descriptor{fx.Index}, children...)...)}
	amd64 := children[0].Digest

	const (
		attestations = "  attestations:\n" +
			"  - predicateType: https://slsa.dev/provenance/v1\n" +
			"    slsaProvenance: {builderIDs: [\"" + fixture.ChainguardBuilderID + "\"], buildTypes: [\"" + fixture.BuildTypeApko + "\"]}\n" +
			"  - {predicateType: https://spdx.dev/Document, spdx: {}}\n"
		strict = attestations + "  requireChildSignatures: true\n  requireChildAttestations: true\n"
	)
	rule := keyRule(t, fx.PublicKeyPEM, strict)

	res, err := Verify(ctx, repo, rule, full, Options{})
	wantErrs(t, err, nil)
	if !res.Verified || len(res.Children) != 2 {
		t.Fatalf("result %+v", res)
	}
	// Index: the .sig; the .att (SPDX, provenance) and the bundle referrer (provenance).
	if s := res.Root.Signatures; len(s) != 1 || s[0].Form != FormCosignSig || s[0].Mode != ModeKey || s[0].KeyID == "" || !s[0].SignedAt.IsZero() {
		t.Fatalf("root signatures %+v", s)
	}
	var forms []string
	for _, a := range res.Root.Attestations {
		forms = append(forms, a.Form+" "+a.PredicateType)
	}
	slices.Sort(forms)
	if want := []string{"cosign-att https://slsa.dev/provenance/v1", "cosign-att https://spdx.dev/Document", "sigstore-bundle https://slsa.dev/provenance/v1"}; !slices.Equal(forms, want) {
		t.Fatalf("root attestations %q, want %q", forms, want)
	}
	if len(res.Root.Checks) != 3 || len(res.Root.Rejected) != 0 {
		t.Fatalf("root checks %+v, rejected %+v", res.Root.Checks, res.Root.Rejected)
	}
	for _, c := range res.Children {
		if len(c.Signatures) != 1 || len(c.Attestations) != 2 || len(c.Checks) != 2 || c.Platform == "" {
			t.Fatalf("child %+v", c)
		}
	}

	without := func(subject digest.Digest, kind oci.Kind) Image {
		img := full
		img.Attachments = map[digest.Digest][]referrers.Attachment{}
		for d, atts := range full.Attachments {
			for _, a := range atts {
				if d != subject || a.Kind != kind {
					img.Attachments[d] = append(img.Attachments[d], a)
				}
			}
		}
		return img
	}
	swapped := func(kind oci.Kind) Image {
		// the amd64 child's .sig/.att presented as the arm64 child's
		img := without(children[1].Digest, kind)
		for _, a := range full.Attachments[amd64] {
			if a.Kind == kind {
				a.Subject = children[1].Digest
				img.Attachments[children[1].Digest] = append(img.Attachments[children[1].Digest], a)
			}
		}
		return img
	}
	_, otherKey, _ := fixture.KeyPair(t)
	keyless := ruleFrom(t, `apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["**"]
images:
- glob: "**"
  authorities:
  - keyless: {issuer: https://token.actions.githubusercontent.com, identity: "`+fixture.ChainguardBuilderID+`"}
`)
	for _, tc := range []struct {
		name    string
		rule    *policy.ImageRule
		img     Image
		opts    Options
		want    []error
		notWant []error
	}{
		{"another key", keyRule(t, otherKey, attestations), full, Options{},
			[]error{ErrNoValidSignature, ErrMissingAttestation}, []error{ErrChildUnsigned}},
		{"another key, children required", keyRule(t, otherKey, strict), full, Options{},
			[]error{ErrNoValidSignature, ErrChildUnsigned, ErrMissingAttestation}, nil},
		{"a child's .sig removed", rule, without(amd64, oci.KindCosignSig), Options{},
			[]error{ErrChildUnsigned}, []error{ErrNoValidSignature, ErrMissingAttestation}},
		{"a child's .sig removed, child signatures not required", keyRule(t, fx.PublicKeyPEM, attestations), without(amd64, oci.KindCosignSig), Options{},
			nil, nil},
		{"the index's .sig removed", rule, without(fx.Index.Digest, oci.KindCosignSig), Options{},
			[]error{ErrNoValidSignature}, []error{ErrChildUnsigned}},
		{"a child signed with another child's .sig", rule, swapped(oci.KindCosignSig), Options{},
			[]error{ErrChildUnsigned, ErrDigestMismatch}, []error{ErrNoValidSignature}},
		{"a child's .att removed", rule, without(amd64, oci.KindCosignAtt), Options{},
			[]error{ErrMissingAttestation}, []error{ErrNoValidSignature, ErrChildUnsigned}},
		{"a child's .att removed, child attestations not required", keyRule(t, fx.PublicKeyPEM, attestations+"  requireChildSignatures: true\n"), without(amd64, oci.KindCosignAtt), Options{},
			nil, nil},
		{"a child attested with another child's .att", rule, swapped(oci.KindCosignAtt), Options{},
			[]error{ErrMissingAttestation, ErrDigestMismatch}, []error{ErrChildUnsigned}},
		{"builder not allowed", keyRule(t, fx.PublicKeyPEM, "  attestations:\n  - predicateType: https://slsa.dev/provenance/v1\n    slsaProvenance: {builderIDs: [https://ci.example/other]}\n"), full, Options{},
			[]error{ErrAttestationCheck}, []error{ErrNoValidSignature, ErrMissingAttestation}},
		{"missing required attestation", keyRule(t, fx.PublicKeyPEM, "  attestations: [{predicateType: https://apko.dev/image-configuration}]\n"), full, Options{},
			[]error{ErrMissingAttestation}, []error{ErrNoValidSignature, ErrAttestationCheck}},
		{"bare key where keyless is required", keyless, full, Options{TrustedMaterial: trustedRoot(t, "trusted_root.json")},
			[]error{ErrNoValidSignature, ErrCertificateRequired}, []error{ErrIdentity}},
		{"every failure reported", keyRule(t, fx.PublicKeyPEM, "  requireChildSignatures: true\n  attestations:\n  - predicateType: https://slsa.dev/provenance/v1\n    slsaProvenance: {builderIDs: [https://ci.example/other]}\n  - {predicateType: https://apko.dev/image-configuration}\n"),
			without(amd64, oci.KindCosignSig), Options{},
			[]error{ErrChildUnsigned, ErrAttestationCheck, ErrMissingAttestation}, []error{ErrNoValidSignature}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Verify(ctx, repo, tc.rule, tc.img, tc.opts)
			wantErrs(t, err, tc.want, tc.notWant...)
			if res.Verified != (err == nil) {
				t.Fatalf("Verified = %v with error %v", res.Verified, err)
			}
		})
	}

	// A child that is not in the index is refused.
	stray := full
	stray.Children = append(slices.Clone(children), fx.SBOM)
	_, err = Verify(ctx, repo, keyRule(t, fx.PublicKeyPEM, ""), stray, Options{})
	wantErrs(t, err, []error{oci.ErrInvalid})
}
