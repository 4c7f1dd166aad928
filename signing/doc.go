// Package signing signs and verifies blobs as Sigstore bundles (v0.3, the format
// `cosign sign-blob --new-bundle-format` writes), offline: petra-oci's bundle metadata,
// chunk indexes, audit checkpoints and evidence are all signed here.
//
// A Signer comes from a key (NewSigner), a cosign key file or a KMS URI (LoadSigner,
// KMS schemes from an allowlist). VerifyBlob takes VerifyOptions whose zero value
// verifies nothing and is refused: exactly one of a public key or a trusted root with
// an issuer and an identity must be given, and the thresholds (one verified log entry
// or timestamp, one SCT) are explicit, never implied. Errors are sorted into the
// sentinels of errors.go (ErrBadSignature, ...) so callers can tell an unsigned artifact
// from a forged one.
package signing
