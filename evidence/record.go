package evidence

import (
	"fmt"
	"strconv"
	"time"

	vsa "github.com/in-toto/attestation/go/predicates/vsa/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/opencontainers/go-digest"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// VerifierImportID names petra-oci's unpack as the verifier of an import record (the
// pack-side summary names VerifierID), so a reader tells the two apart.
const VerifierImportID = VerifierID + "/import"

// Levels an import record lists in verifiedLevels (docs/evidence.md).
const (
	// LevelBundleVerified: the bundle's signature, series sequence, every file and
	// its graph verified before anything was pushed (always).
	LevelBundleVerified = "PETRA_BUNDLE_VERIFIED"
	// LevelPolicyPassed: the image verified again against the policy pinned on the
	// disconnected side (also what the pack-side summary lists).
	LevelPolicyPassed = "PETRA_POLICY_PASSED"
	// LevelEvidenceVerified: the image's pack-side summary verified with the bundle
	// key (CheckSummary).
	LevelEvidenceVerified = "PETRA_EVIDENCE_VERIFIED"
)

// PolicyNoneURI is the policy URI of an import record when no policy was pinned.
const PolicyNoneURI = "urn:petra-oci:policy:none"

// Record is what an import record states about one image at the destination.
type Record struct {
	// Repository is the destination repository (host[:port]/path); Image the
	// image's digest there (the same as in the bundle).
	Repository string
	Image      digest.Digest
	// Version of petra-oci, recorded in the verifier id.
	Version string
	// Time is when the import verified (default now).
	Time time.Time
	// BundleID, Sequence and Metadata identify the bundle: its series, its place in
	// it and the digest of the exact petra/metadata.json bytes whose signature verified.
	BundleID string
	Sequence uint64
	Metadata digest.Digest
	// Summary is the pack-side summary checked for the image (nil when none was).
	Summary *Summary
	// PolicyURI and PolicyDigest name the policy pinned on this side that the image
	// verified against again (empty when none was pinned).
	PolicyURI    string
	PolicyDigest digest.Digest
}

// BundleURI names a bundle's signed metadata in an import record's inputAttestations:
// urn:petra-oci:bundle:<bundle id>:<sequence>:petra/metadata.json.
func BundleURI(bundleID string, sequence uint64) string {
	return "urn:petra-oci:bundle:" + bundleID + ":" + strconv.FormatUint(sequence, 10) + ":petra/metadata.json"
}

// ImportStatement returns the in-toto statement of an import record: the SLSA
// Verification Summary predicate (https://slsa.dev/verification_summary/v1) with
// verifier VerifierImportID@version, timeVerified, resourceUri and subject the image
// in the destination repository, the pinned policy (or PolicyNoneURI), as
// inputAttestations the bundle's signed metadata (BundleURI, its digest) and the
// pack-side summary checked (repository@manifest#predicate, its statement's digest),
// result PASSED, and the levels proved (LevelBundleVerified, LevelPolicyPassed,
// LevelEvidenceVerified). See docs/evidence.md.
func ImportStatement(r Record) ([]byte, error) {
	if err := oci.ValidateRepository(r.Repository); err != nil {
		return nil, fmt.Errorf("import record: %w", err)
	}
	if err := r.Image.Validate(); err != nil {
		return nil, fmt.Errorf("%w: import record: image digest %q: %v", oci.ErrInvalid, r.Image, err)
	}
	if err := r.Metadata.Validate(); err != nil {
		return nil, fmt.Errorf("%w: import record: metadata digest %q: %v", oci.ErrInvalid, r.Metadata, err)
	}
	if r.BundleID == "" || r.Sequence == 0 {
		return nil, fmt.Errorf("%w: import record: no bundle id or sequence", oci.ErrInvalid)
	}
	at := r.Time
	if at.IsZero() {
		at = time.Now()
	}
	verifier := VerifierImportID
	if r.Version != "" {
		verifier += "@" + r.Version
	}
	pol := &vsa.VerificationSummary_Policy{Uri: PolicyNoneURI}
	levels := []string{LevelBundleVerified}
	if r.PolicyDigest != "" {
		uri := r.PolicyURI
		if uri == "" {
			uri = layout.PolicyPath
		}
		pol = &vsa.VerificationSummary_Policy{Uri: uri, Digest: digestMap(r.PolicyDigest)}
		levels = append(levels, LevelPolicyPassed)
	}
	inputs := []*vsa.VerificationSummary_InputAttestation{{Uri: BundleURI(r.BundleID, r.Sequence), Digest: digestMap(r.Metadata)}}
	if r.Summary != nil {
		inputs = append(inputs, &vsa.VerificationSummary_InputAttestation{
			Uri:    r.Repository + "@" + r.Summary.Manifest.String() + "#" + PredicateVSA,
			Digest: digestMap(r.Summary.Statement),
		})
		levels = append(levels, LevelEvidenceVerified)
	}
	pred := &vsa.VerificationSummary{
		Verifier:           &vsa.VerificationSummary_Verifier{Id: verifier},
		TimeVerified:       timestamppb.New(at.UTC()),
		ResourceUri:        r.Repository + "@" + r.Image.String(),
		Policy:             pol,
		InputAttestations:  inputs,
		VerificationResult: "PASSED",
		VerifiedLevels:     levels,
		SlsaVersion:        "1.0",
	}
	pb, err := protojson.Marshal(pred)
	if err != nil {
		return nil, fmt.Errorf("encoding the import record: %w", err)
	}
	var ps structpb.Struct
	if err := protojson.Unmarshal(pb, &ps); err != nil {
		return nil, fmt.Errorf("encoding the import record: %w", err)
	}
	st := &intoto.Statement{
		Type:          intoto.StatementTypeUri,
		Subject:       []*intoto.ResourceDescriptor{{Name: r.Repository, Digest: digestMap(r.Image)}},
		PredicateType: PredicateVSA,
		Predicate:     &ps,
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("import record statement: %w", err)
	}
	return protojson.Marshal(st)
}
