package evidence

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/oci"
)

func TestStatement(t *testing.T) {
	img := digest.FromString("image")
	payload := digest.FromString("provenance statement")
	res := &imageverify.Result{Digest: img, Verified: true, Root: imageverify.Subject{
		Digest: img,
		Attestations: []imageverify.Attestation{{
			Source:        imageverify.Source{Manifest: digest.FromString("att manifest")},
			PredicateType: "https://slsa.dev/provenance/v1", PayloadDigest: payload,
		}},
	}}
	pol := digest.FromString("policy")
	at := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	b, err := Statement("cgr.dev/chainguard/nginx", res, Options{Version: "v1", PolicyURI: "petra/policy.yaml", PolicyDigest: pol, Time: at})
	if err != nil {
		t.Fatal(err)
	}
	var st importRecord
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	switch {
	case st.Type != "https://in-toto.io/Statement/v1", st.PredicateType != PredicateVSA:
		t.Errorf("statement type %q predicate %q", st.Type, st.PredicateType)
	case len(st.Subject) != 1 || st.Subject[0].Digest["sha256"] != img.Encoded():
		t.Errorf("subject %+v", st.Subject)
	case st.Predicate.VerificationResult != "PASSED" || !st.Predicate.TimeVerified.Equal(at):
		t.Errorf("result %q at %v", st.Predicate.VerificationResult, st.Predicate.TimeVerified)
	case st.Predicate.Policy.Digest["sha256"] != pol.Encoded():
		t.Errorf("policy %+v", st.Predicate.Policy)
	case len(st.Predicate.InputAttestations) != 1 || st.Predicate.InputAttestations[0].Digest["sha256"] != payload.Encoded():
		t.Errorf("inputs %+v", st.Predicate.InputAttestations)
	case st.Predicate.Verifier.ID != VerifierID+"@v1":
		t.Errorf("verifier %q", st.Predicate.Verifier.ID)
	}

	res.Verified = false
	if _, err := Statement("cgr.dev/chainguard/nginx", res, Options{}); !errors.Is(err, oci.ErrInvalid) {
		t.Fatalf("summary of an unverified image: err = %v", err)
	}
}
