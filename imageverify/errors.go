package imageverify

import "errors"

// Sentinel errors. Verify's error joins one error per failure; each wraps one of
// these (a refused signature or attestation may wrap several: the subject's
// ErrNoValidSignature and the reason, e.g. ErrIdentity). Test with errors.Is.
var (
	// ErrNoValidSignature: the image (root) has no signature that one of the
	// rule's authorities verifies.
	ErrNoValidSignature = errors.New("no valid signature")
	// ErrIdentity: a certificate is valid but its identity or issuer is not one
	// the rule's keyless authorities accept.
	ErrIdentity = errors.New("certificate identity or issuer not accepted")
	// ErrDigestMismatch: a signature or attestation names another digest than
	// the image's (legacy payload docker-manifest-digest, bundle message digest,
	// in-toto statement subjects).
	ErrDigestMismatch = errors.New("signed digest is not the image digest")
	// ErrMissingAttestation: a required attestation is not there, or none of its
	// kind verifies.
	ErrMissingAttestation = errors.New("required attestation missing")
	// ErrAttestationCheck: a verified attestation fails a content check of the
	// policy (builder or build type not allowed, SBOM not parseable).
	ErrAttestationCheck = errors.New("attestation check failed")
	// ErrChildUnsigned: the rule requires every child of an index to be signed
	// and a child has no valid signature of its own.
	ErrChildUnsigned = errors.New("child manifest has no valid signature of its own")
	// ErrCertificateRequired: the signature is made with a bare key, and only
	// keyless authorities (certificates) are accepted.
	ErrCertificateRequired = errors.New("signed with a bare key, a certificate is required")
	// ErrNoTrustedTime: a keyless signature has no transparency-log entry (SET)
	// or timestamp proving it was made while its certificate was valid.
	ErrNoTrustedTime = errors.New("no trusted signing time within the certificate's validity")
	// ErrTlog: a transparency-log entry does not verify: its SET does not match
	// the entry, or its log is not in the trusted root.
	ErrTlog = errors.New("transparency-log entry does not verify")
	// ErrTrustedMaterialRequired: the rule has keyless authorities and no
	// trusted root was given. Nothing is verified.
	ErrTrustedMaterialRequired = errors.New("keyless authorities need a trusted root")
	// ErrMalformed: a signature, attestation or bundle cannot be read (bad
	// encoding, missing annotation, wrong media type, too large).
	ErrMalformed = errors.New("malformed signature or attestation")
)
