package imageverify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"oras.land/oras-go/v2/content"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/signing"
)

const (
	vsIdentity = "builder@petra.example"
	vsIssuer   = "https://oidc.petra.example"
	vsBuilder  = "https://ci.petra.example/builder@v1"
)

func newVirtualSigstore(t *testing.T) *ca.VirtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func slsaPredicate(builder, buildType string) map[string]any {
	return map[string]any{
		"buildDefinition": map[string]any{"buildType": buildType, "externalParameters": map[string]any{}},
		"runDetails":      map[string]any{"builder": map[string]any{"id": builder}},
	}
}

func spdxPredicate() map[string]any {
	return map[string]any{
		"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "name": "app", "dataLicense": "CC0-1.0",
		"packages": []any{map[string]any{"SPDXID": "SPDXRef-Package-xz", "name": "xz", "versionInfo": "5.6.1-r0"}},
	}
}

func manifestBytes(t *testing.T, st *store, d ocispec.Descriptor) []byte {
	t.Helper()
	b, err := content.FetchAll(context.Background(), st, d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVirtualSigstoreBundleReferrers verifies keyless Sigstore bundle
// referrers made by sigstore-go's VirtualSigstore: a message signature over
// the image digest (as cosign v3 signs) and a DSSE attestation.
func TestVirtualSigstoreBundleReferrers(t *testing.T) {
	ctx := context.Background()
	vs := newVirtualSigstore(t)
	st := newStore(t)
	img := st.image("app")
	other := st.image("other")

	sign := func(subject ocispec.Descriptor) []byte {
		e, err := vs.Sign(vsIdentity, vsIssuer, manifestBytes(t, st, subject))
		if err != nil {
			t.Fatal(err)
		}
		return virtualBundle(t, vs, e)
	}
	attest := func(about digest.Digest, predicateType string, predicate any) []byte {
		e, err := vs.Attest(vsIdentity, vsIssuer, inTotoStatement(about, predicateType, predicate))
		if err != nil {
			t.Fatal(err)
		}
		return virtualBundle(t, vs, e)
	}
	sig := st.bundleReferrer(img, sign(img))
	prov := st.bundleReferrer(img, attest(img.Digest, policy.PredicateSLSAProvenanceV1, slsaPredicate(vsBuilder, fixture.BuildTypeApko)))
	sigForOther := st.bundleReferrer(img, sign(other))
	provForOther := st.bundleReferrer(img, attest(other.Digest, policy.PredicateSLSAProvenanceV1, slsaPredicate(vsBuilder, fixture.BuildTypeApko)))
	cosignV3Sign := st.bundleReferrer(img, attest(img.Digest, PredicateCosignSign, map[string]any{}))

	provRule := "  attestations:\n  - predicateType: https://slsa.dev/provenance/v1\n    slsaProvenance: {builderIDs: [" + quote(vsBuilder) + "], buildTypes: [" + quote(fixture.BuildTypeApko) + "]}\n"
	rule := keylessRule(t, vsIdentity, vsIssuer, provRule)
	opts := Options{TrustedMaterial: vs, skipSCTs: true}
	image := func(atts ...referrers.Attachment) Image {
		return Image{Repository: "registry.example/app", Root: img, Attachments: map[digest.Digest][]referrers.Attachment{img.Digest: atts}}
	}

	res, err := Verify(ctx, st, rule, image(sig, prov), opts)
	wantErrs(t, err, nil)
	if !res.Verified || len(res.Root.Signatures) != 1 || len(res.Root.Attestations) != 1 || len(res.Root.Checks) != 1 || !res.Root.Checks[0].Passed {
		t.Fatalf("result %+v", res)
	}
	s, a := res.Root.Signatures[0], res.Root.Attestations[0]
	if s.Form != FormSigstoreBundle || s.Manifest != sig.Descriptor.Digest || s.Mode != ModeKeyless || s.Identity != vsIdentity || s.Issuer != vsIssuer || s.SignedAt.IsZero() || s.TimeSource == "" {
		t.Fatalf("signature %+v", s)
	}
	if a.PredicateType != policy.PredicateSLSAProvenanceV1 || a.Identity != vsIdentity || a.Manifest != prov.Descriptor.Digest || a.PayloadDigest == "" {
		t.Fatalf("attestation %+v", a)
	}
	if _, err := json.Marshal(res); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		rule    *policy.ImageRule
		opts    Options
		atts    []referrers.Attachment
		want    []error
		notWant []error
	}{
		{"signature over another image's digest", rule, opts, []referrers.Attachment{sigForOther, prov},
			[]error{ErrNoValidSignature, ErrDigestMismatch}, []error{ErrMissingAttestation}},
		{"attestation about another image", rule, opts, []referrers.Attachment{sig, provForOther},
			[]error{ErrMissingAttestation, ErrDigestMismatch}, []error{ErrNoValidSignature}},
		{"wrong identity", keylessRule(t, "mallory@petra.example", vsIssuer, provRule), opts, []referrers.Attachment{sig, prov},
			[]error{ErrNoValidSignature, ErrMissingAttestation, ErrIdentity}, nil},
		{"wrong issuer", keylessRule(t, vsIdentity, "https://other.example", provRule), opts, []referrers.Attachment{sig, prov},
			[]error{ErrNoValidSignature, ErrIdentity}, nil},
		{"SCT required (the default)", rule, Options{TrustedMaterial: vs}, []referrers.Attachment{sig, prov},
			[]error{ErrNoValidSignature, ErrMissingAttestation, signing.ErrUntrustedChain}, []error{ErrIdentity}},
		{"another Sigstore's trust material", rule, Options{TrustedMaterial: newVirtualSigstore(t), skipSCTs: true}, []referrers.Attachment{sig, prov},
			[]error{ErrNoValidSignature, ErrMissingAttestation}, []error{ErrIdentity}},
		{"builder not allowed", keylessRule(t, vsIdentity, vsIssuer, "  attestations:\n  - predicateType: https://slsa.dev/provenance/v1\n    slsaProvenance: {builderIDs: [https://ci.example/other]}\n"),
			opts, []referrers.Attachment{sig, prov}, []error{ErrAttestationCheck}, []error{ErrNoValidSignature, ErrMissingAttestation}},
		{"build type not allowed", keylessRule(t, vsIdentity, vsIssuer, "  attestations:\n  - predicateType: https://slsa.dev/provenance/v1\n    slsaProvenance: {buildTypes: [https://example.com/other-build]}\n"),
			opts, []referrers.Attachment{sig, prov}, []error{ErrAttestationCheck}, nil},
		{"SPDX required, provenance only", keylessRule(t, vsIdentity, vsIssuer, "  attestations:\n  - {predicateType: https://spdx.dev/Document, spdx: {}}\n"),
			opts, []referrers.Attachment{sig, prov}, []error{ErrMissingAttestation}, []error{ErrNoValidSignature}},
		{"attestation only, no signature", rule, opts, []referrers.Attachment{prov},
			[]error{ErrNoValidSignature}, []error{ErrMissingAttestation}},
		{"attestation only, counted as signature", keylessRule(t, vsIdentity, vsIssuer, provRule+"  countAttestationsAsSignatures: true\n"), opts, []referrers.Attachment{prov},
			nil, nil},
		{"cosign v3 signature statement", rule, opts, []referrers.Attachment{cosignV3Sign, prov}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Verify(ctx, st, tc.rule, image(tc.atts...), tc.opts)
			wantErrs(t, err, tc.want, tc.notWant...)
			if res.Verified != (err == nil) || (err != nil) != (len(res.Failures) > 0) {
				t.Fatalf("Verified %v with error %v, failures %q", res.Verified, err, res.Failures)
			}
		})
	}
}

// TestVirtualSigstoreLegacyKeyless verifies legacy keyless .sig and .att
// manifests (certificate and Rekor bundle annotations) made with
// VirtualSigstore, the path the real Chainguard signatures take, here with a
// DSSE (.att) entry too.
func TestVirtualSigstoreLegacyKeyless(t *testing.T) {
	ctx := context.Background()
	vs := newVirtualSigstore(t)
	st := newStore(t)
	img := st.image("app")

	payload := fixture.SimpleSigningPayload("registry.example/app", img.Digest)
	se, err := vs.Sign(vsIdentity, vsIssuer, payload)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := se.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	tle, sigBundle := virtualEntry(t, vs, se, "hashedrekord", "0.0.1")
	sigLayer := st.push(oci.MediaTypeCosignSimpleSigning, payload)
	sigLayer.Annotations = map[string]string{
		oci.AnnotationCosignSignature:   base64.StdEncoding.EncodeToString(sc.MessageSignatureContent().Signature()),
		oci.AnnotationCosignCertificate: certPEM(t, se),
		oci.AnnotationCosignBundle:      sigBundle,
	}
	sigAtt := st.cosignManifest(img.Digest, oci.KindCosignSig, sigLayer)

	attLayer := func(about digest.Digest, withBundle bool) ocispec.Descriptor {
		ae, err := vs.Attest(vsIdentity, vsIssuer, inTotoStatement(about, policy.PredicateSPDX, spdxPredicate()))
		if err != nil {
			t.Fatal(err)
		}
		asc, err := ae.SignatureContent()
		if err != nil {
			t.Fatal(err)
		}
		l := st.pushJSON(oci.MediaTypeDSSEEnvelope, asc.EnvelopeContent().RawEnvelope())
		_, ann := virtualEntry(t, vs, ae, "dsse", "0.0.1")
		l.Annotations = map[string]string{oci.AnnotationCosignSignature: "", oci.AnnotationCosignCertificate: certPEM(t, ae)}
		if withBundle {
			l.Annotations[oci.AnnotationCosignBundle] = ann
		}
		return l
	}
	good := st.cosignManifest(img.Digest, oci.KindCosignAtt, attLayer(img.Digest, true))
	noSET := st.cosignManifest(img.Digest, oci.KindCosignAtt, attLayer(img.Digest, false))
	aboutOther := st.cosignManifest(img.Digest, oci.KindCosignAtt, attLayer(digest.FromString("other"), true))

	rule := keylessRule(t, vsIdentity, vsIssuer, "  attestations:\n  - {predicateType: https://spdx.dev/Document, spdx: {}}\n")
	opts := Options{TrustedMaterial: vs, skipSCTs: true}
	image := func(atts ...referrers.Attachment) Image {
		return Image{Root: img, Attachments: map[digest.Digest][]referrers.Attachment{img.Digest: atts}}
	}

	res, err := Verify(ctx, st, rule, image(sigAtt, good), opts)
	wantErrs(t, err, nil)
	s := res.Root.Signatures[0]
	if s.Form != FormCosignSig || s.Identity != vsIdentity || s.TimeSource != signing.TimeSourceTlog || s.SignedAt.Unix() != tle.IntegratedTime {
		t.Fatalf("signature %+v, want the log's integrated time %d", s, tle.IntegratedTime)
	}
	if a := res.Root.Attestations; len(a) != 1 || a[0].Form != FormCosignAtt || a[0].PredicateType != policy.PredicateSPDX || !res.Root.Checks[0].Passed {
		t.Fatalf("attestations %+v, checks %+v", a, res.Root.Checks)
	}

	_, err = Verify(ctx, st, rule, image(sigAtt, noSET), opts)
	wantErrs(t, err, []error{ErrMissingAttestation, ErrNoTrustedTime}, ErrNoValidSignature)
	_, err = Verify(ctx, st, rule, image(sigAtt, aboutOther), opts)
	wantErrs(t, err, []error{ErrMissingAttestation, ErrDigestMismatch}, ErrNoValidSignature)
	_, err = Verify(ctx, st, keylessRule(t, "mallory@petra.example", vsIssuer, ""), image(sigAtt), opts)
	wantErrs(t, err, []error{ErrNoValidSignature, ErrIdentity})
}
