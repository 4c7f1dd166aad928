package imageverify

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// Forms a signature or attestation is carried in (Source.Form).
const (
	FormCosignSig      = "cosign-sig"      // legacy cosign .sig manifest, simple-signing layer
	FormCosignAtt      = "cosign-att"      // legacy cosign .att manifest, DSSE layer
	FormSigstoreBundle = "sigstore-bundle" // OCI referrer holding a Sigstore bundle (v0.1-v0.3)
)

// Verification modes (Signer.Mode).
const (
	ModeKey     = "key"
	ModeKeyless = "keyless"
)

// Result is what Verify found for one image. It is complete even when Verify
// returns an error: Verified is then false and Failures lists every failure.
type Result struct {
	Repository string        `json:"repository,omitempty"`
	Digest     digest.Digest `json:"digest"`
	// Rule is the glob of the policy rule applied.
	Rule string `json:"rule"`
	// Verified is true when every requirement of the rule is met.
	Verified bool      `json:"verified"`
	Root     Subject   `json:"root"`
	Children []Subject `json:"children,omitempty"`
	// Failures is the text of every failure (the parts of Verify's error).
	Failures []string `json:"failures,omitempty"`
}

// Subject is what was verified on one manifest: the root or a child.
type Subject struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType,omitempty"`
	Platform  string        `json:"platform,omitempty"`
	// Signatures that verified against one of the rule's authorities.
	Signatures []Signature `json:"signatures,omitempty"`
	// Attestations that verified (signature, and the image digest among the
	// statement's subjects), whether the rule requires them or not.
	Attestations []Attestation `json:"attestations,omitempty"`
	// Checks are the rule's attestation requirements evaluated on this subject.
	Checks []Check `json:"checks,omitempty"`
	// Rejected lists signatures and attestations that did not verify, and why.
	// They fail the image only through the requirements they leave unmet.
	Rejected []Rejection `json:"rejected,omitempty"`
}

// Source says where a signature or attestation was found.
type Source struct {
	// Form is FormCosignSig, FormCosignAtt or FormSigstoreBundle.
	Form string `json:"form"`
	// Manifest is the digest of the .sig / .att / referrer manifest.
	Manifest digest.Digest `json:"manifest"`
	// Layer is the digest of the layer holding the payload, envelope or bundle.
	Layer digest.Digest `json:"layer,omitempty"`
}

// Signer says who signed, proven how and when.
type Signer struct {
	// Authority is the label of the policy authority that verified it.
	Authority string `json:"authority"`
	Mode      string `json:"mode"`
	// Identity and Issuer are the certificate's SAN and OIDC issuer (keyless).
	Identity string `json:"identity,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	// KeyID is base64(SHA-256(PKIX)) of the verifying key (or certificate key).
	KeyID string `json:"keyID,omitempty"`
	// SignedAt is the verified signing time: the transparency log's integrated
	// time (under its SET) or an RFC 3161 timestamp; zero for key signatures,
	// which carry no verified time.
	SignedAt   time.Time `json:"signedAt,omitzero"`
	TimeSource string    `json:"timeSource,omitempty"` // "tlog" or "rfc3161"
}

// Signature is a verified signature over the subject's digest.
type Signature struct {
	Source
	Signer
	// DockerReference is the repository named in a legacy payload (informative:
	// images move between registries, the digest is what is signed).
	DockerReference string `json:"dockerReference,omitempty"`
}

// Attestation is a verified in-toto statement about the subject.
type Attestation struct {
	Source
	Signer
	// PredicateType is read from the signed statement.
	PredicateType string `json:"predicateType"`
	// PayloadDigest is the SHA-256 of the signed statement (the DSSE payload).
	PayloadDigest digest.Digest `json:"payloadDigest"`
}

// Check is one attestation requirement evaluated on a subject.
type Check struct {
	PredicateType string `json:"predicateType"`
	Passed        bool   `json:"passed"`
	// Detail says what was checked, or why it failed.
	Detail string `json:"detail"`
}

// Rejection is a signature or attestation that did not verify.
type Rejection struct {
	Source
	Reason string `json:"reason"`
}
