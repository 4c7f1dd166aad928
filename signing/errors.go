package signing

import "errors"

// Sentinel errors. Every error returned by VerifyBlob wraps exactly one of the
// verification sentinels (or ErrInvalidOptions when the call itself is wrong), so
// callers map failures to messages and exit codes with errors.Is.
var (
	// ErrBadSignature: the signature does not verify over the content (a changed
	// byte, a changed signature, another key), or the signed digest / statement
	// subject does not match the artifact.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrIdentity: the certificate is valid but its identity (SAN) or OIDC
	// issuer is not the one the policy asks for.
	ErrIdentity = errors.New("certificate identity or issuer does not match the policy")
	// ErrUntrustedChain: the certificate does not chain to a Fulcio CA of the
	// trusted root at the signing time, or lacks a valid SCT from a CT log of
	// the trusted root.
	ErrUntrustedChain = errors.New("certificate is not trusted by the trusted root")
	// ErrNoTimestamp: keyless verification found no transparency-log entry, or
	// the entries / signed timestamps do not verify against the trusted root.
	ErrNoTimestamp = errors.New("no verified transparency-log entry or signed timestamp")
	// ErrMalformedBundle: the bundle is not a valid Sigstore bundle (v0.1-v0.3),
	// or it is larger than MaxBundleSize.
	ErrMalformedBundle = errors.New("malformed Sigstore bundle")
	// ErrWrongKeyType: the key or verification material is not of an accepted
	// kind: a certificate where a key was asked for or the reverse, or a key
	// algorithm / size that is refused (RSA below 2048 bits, unknown curves).
	ErrWrongKeyType = errors.New("key or verification material of the wrong type")

	// ErrInvalidOptions: the call is wrong: keyless without an identity and an
	// issuer, an unanchored regexp, a key and an identity at once, a bad
	// artifact digest, an unparsable public key or trusted root.
	ErrInvalidOptions = errors.New("invalid verification options")

	// ErrKeyRef: LoadSigner cannot use the key reference (unknown scheme,
	// unreadable or non-cosign key file, KMS unreachable).
	ErrKeyRef = errors.New("unusable signing key reference")
	// ErrKeyDecrypt: the cosign key file does not decrypt with the password
	// (wrong password or corrupted file).
	ErrKeyDecrypt = errors.New("cannot decrypt the private key (wrong password?)")
)
