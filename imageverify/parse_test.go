package imageverify

import (
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/policy"
)

// Both places pack and unpack read from are Fetchers.
var (
	_ Fetcher = (*remote.Repository)(nil)
	_ Fetcher = (*layout.Layout)(nil)
)

func TestParseStatement(t *testing.T) {
	img := digest.FromString("image")
	ok := inTotoStatement(img, "https://example.com/p", map[string]any{})
	if st, err := parseStatement(payloadTypeInToto, ok, img); err != nil || st.PredicateType != "https://example.com/p" {
		t.Fatalf("parseStatement = %+v, %v", st, err)
	}
	for _, tc := range []struct {
		name        string
		payloadType string
		payload     string
		want        error
	}{
		{"other payload type", "application/json", string(ok), ErrMalformed},
		{"not JSON", payloadTypeInToto, "{", ErrMalformed},
		{"no _type", payloadTypeInToto, `{"subject":[{"digest":{"sha256":"` + img.Encoded() + `"}}],"predicateType":"x"}`, ErrMalformed},
		{"no predicate type", payloadTypeInToto, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha256":"` + img.Encoded() + `"}}]}`, ErrMalformed},
		{"other subject", payloadTypeInToto, string(inTotoStatement(digest.FromString("other"), "x", nil)), ErrDigestMismatch},
		{"subject under another algorithm", payloadTypeInToto, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{"sha512":"` + img.Encoded() + `"}}],"predicateType":"x"}`, ErrDigestMismatch},
		{"no subject", payloadTypeInToto, `{"_type":"https://in-toto.io/Statement/v1","predicateType":"x"}`, ErrDigestMismatch},
	} {
		if _, err := parseStatement(tc.payloadType, []byte(tc.payload), img); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestCheckPredicate(t *testing.T) {
	slsa := policy.AttestationRequirement{PredicateType: policy.PredicateSLSAProvenanceV1, SLSAProvenance: &policy.SLSAProvenanceCheck{BuilderIDs: []string{"b"}, BuildTypes: []string{"t"}}}
	spdx := policy.AttestationRequirement{PredicateType: policy.PredicateSPDX, SPDX: &policy.SPDXCheck{}}
	st := func(pred string) *statement { return &statement{Predicate: []byte(pred)} }
	for _, tc := range []struct {
		name string
		req  policy.AttestationRequirement
		pred string
		ok   bool
	}{
		{"slsa ok", slsa, `{"buildDefinition":{"buildType":"t"},"runDetails":{"builder":{"id":"b"}}}`, true},
		{"slsa other builder", slsa, `{"buildDefinition":{"buildType":"t"},"runDetails":{"builder":{"id":"x"}}}`, false},
		{"slsa other build type", slsa, `{"buildDefinition":{"buildType":"x"},"runDetails":{"builder":{"id":"b"}}}`, false},
		{"slsa v0.2 shape", slsa, `{"builder":{"id":"b"},"buildType":"t"}`, false},
		{"slsa no builder, any allowed", policy.AttestationRequirement{PredicateType: policy.PredicateSLSAProvenanceV1, SLSAProvenance: &policy.SLSAProvenanceCheck{}}, `{"buildDefinition":{"buildType":"t"}}`, false},
		{"slsa not an object", slsa, `"text"`, false},
		{"spdx ok", spdx, `{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","packages":[]}`, true},
		{"spdx wrapped as text", spdx, `{"Data":"{\"spdxVersion\":\"SPDX-2.3\"}"}`, false},
		{"spdx no version", spdx, `{"SPDXID":"SPDXRef-DOCUMENT"}`, false},
		{"spdx null", spdx, `null`, false},
		{"presence only", policy.AttestationRequirement{PredicateType: "x"}, `null`, true},
	} {
		_, err := checkPredicate(tc.req, st(tc.pred))
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrAttestationCheck)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// FuzzLegacyParsers feeds the parsers of untrusted signature material: they
// must never panic, and refuse with ErrMalformed or ErrDigestMismatch.
func FuzzLegacyParsers(f *testing.F) {
	f.Add([]byte(`{"SignedEntryTimestamp":"MEUCIQ==","Payload":{"body":"eyJraW5kIjoiaGFzaGVkcmVrb3JkIiwiYXBpVmVyc2lvbiI6IjAuMC4xIn0=","integratedTime":1,"logIndex":2,"logID":"c0d2"}}`))
	f.Add(inTotoStatement(digest.FromString("image"), "x", nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseRekorBundle(b); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("parseRekorBundle: %v", err)
		}
		if _, err := parseStatement(payloadTypeInToto, b, digest.FromString("image")); err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("parseStatement: %v", err)
		}
		_, _ = parseLegacyMaterial(map[string]string{"dev.sigstore.cosign/certificate": string(b), "dev.sigstore.cosign/bundle": string(b)})
	})
}
