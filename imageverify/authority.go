package imageverify

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/signing"
)

// authority is a policy authority ready to verify.
type authority struct {
	label   string
	keyless *policy.Keyless
	// key authorities
	pubPEM []byte
	raw    signature.Verifier // cosign's legacy verifier: SHA-256, pure Ed25519
	keyID  string
}

func newAuthority(a policy.Authority) (authority, error) {
	au := authority{label: a.Label(), keyless: a.Keyless}
	switch {
	case a.Keyless != nil && a.Key == nil:
		return au, nil
	case a.Key != nil && a.Keyless == nil:
	default:
		return au, fmt.Errorf("%w: an authority needs exactly one of keyless and key", policy.ErrInvalidPolicy)
	}
	au.pubPEM = []byte(a.Key.PublicKey)
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(au.pubPEM)
	if err != nil {
		return au, fmt.Errorf("%w: public key: %v", policy.ErrInvalidPolicy, err)
	}
	if err := cryptoutils.ValidatePubKey(pub); err != nil {
		return au, fmt.Errorf("%w: public key: %v", policy.ErrInvalidPolicy, err)
	}
	// cosign sign --key / attest --key: ECDSA and RSA over SHA-256, Ed25519 pure.
	if au.raw, err = signature.LoadVerifier(pub, crypto.SHA256); err != nil {
		return au, fmt.Errorf("%w: public key: %v", policy.ErrInvalidPolicy, err)
	}
	if au.keyID, err = signing.KeyID(pub); err != nil {
		return au, fmt.Errorf("%w: public key: %v", policy.ErrInvalidPolicy, err)
	}
	return au, nil
}

// keylessOptions are the signing options of a keyless authority.
func (a authority) keylessOptions(artifactDigest string) signing.VerifyOptions {
	return signing.VerifyOptions{
		CertificateIdentity:         a.keyless.Identity,
		CertificateIdentityRegexp:   a.keyless.IdentityRegexp,
		CertificateOIDCIssuer:       a.keyless.Issuer,
		CertificateOIDCIssuerRegexp: a.keyless.IssuerRegexp,
		ArtifactDigest:              artifactDigest,
	}
}

// viaBundle verifies a Sigstore bundle (parsed, or built from a legacy
// signature) with sigstore-go through internal/signing, for authority a, over
// content or, when content is nil, over artifactDigest.
func (v *verifier) viaBundle(ctx context.Context, a authority, b *bundle.Bundle, content []byte, artifactDigest string) (Signer, error) {
	opts := signing.VerifyOptions{PublicKey: a.pubPEM, ArtifactDigest: artifactDigest}
	if a.keyless != nil {
		opts = a.keylessOptions(artifactDigest)
	}
	var r io.Reader
	if content != nil {
		r = bytes.NewReader(content)
		opts.ArtifactDigest = ""
	}
	res, err := signing.VerifyBundle(ctx, b, r, opts, signing.Trust{Material: v.opts.TrustedMaterial, SkipSCTs: v.opts.skipSCTs})
	if err != nil {
		return Signer{}, mapSigningError(err)
	}
	return Signer{
		Authority:  a.label,
		Mode:       res.Mode,
		Identity:   res.Identity,
		Issuer:     res.Issuer,
		KeyID:      res.KeyID,
		SignedAt:   res.SignedAt,
		TimeSource: res.TimeSource,
	}, nil
}

// mapSigningError adds this package's sentinel to an internal/signing error
// where one applies; the signing sentinel stays in the chain.
func mapSigningError(err error) error {
	switch {
	case errors.Is(err, signing.ErrIdentity):
		return fmt.Errorf("%w: %w", ErrIdentity, err)
	case errors.Is(err, signing.ErrNoTimestamp):
		// sigstore-go checks the log entries first: an entry whose SET does not
		// verify is skipped and the threshold is not met. Without any entry, or
		// with an integrated time outside the certificate's validity, there is
		// no trusted time at all.
		msg := err.Error()
		if strings.Contains(msg, "failed to verify log inclusion") && !strings.Contains(msg, "outside certificate validity") {
			return fmt.Errorf("%w: %w", ErrTlog, err)
		}
		return fmt.Errorf("%w: %w", ErrNoTrustedTime, err)
	case errors.Is(err, signing.ErrMalformedBundle):
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return err
}

// tryAuthorities runs verify for every authority until one accepts; it returns
// the accepting signer or every authority's refusal.
func (v *verifier) tryAuthorities(verify func(a authority) (Signer, error)) (Signer, error) {
	var errs []error
	for _, a := range v.auths {
		s, err := verify(a)
		if err == nil {
			return s, nil
		}
		errs = append(errs, fmt.Errorf("authority %s: %w", a.label, err))
	}
	return Signer{}, errors.Join(errs...)
}
