package signing

import (
	"context"
	"crypto"
	"fmt"
	"slices"

	"github.com/sigstore/sigstore/pkg/signature/kms"
	"github.com/sigstore/sigstore/pkg/signature/options"

	// The KMS providers linked in; each registers its scheme with kms.AddProvider.
	_ "github.com/sigstore/sigstore/pkg/signature/kms/aws"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/azure"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/gcp"
	_ "github.com/sigstore/sigstore/pkg/signature/kms/hashivault"
)

// kmsSchemes are the KMS reference schemes LoadSigner accepts, exactly the
// providers imported above. sigstore's kms.Get would otherwise run an external
// "sigstore-kms-<scheme>" plugin from $PATH for any other scheme; that is never
// wanted here.
var kmsSchemes = []string{"awskms", "azurekms", "gcpkms", "hashivault"}

// KMSSchemes lists the KMS reference schemes LoadSigner accepts (without "://").
func KMSSchemes() []string { return slices.Clone(kmsSchemes) }

func loadKMSSigner(ctx context.Context, ref, scheme string) (Signer, error) {
	if !slices.Contains(kmsSchemes, scheme) {
		return nil, fmt.Errorf("signing: %w: %q: unknown key scheme %q (accepted: a cosign key file, or %v://...)", ErrKeyRef, ref, scheme, kmsSchemes)
	}
	// sigstore's KMS clients take the hash at creation; cosign asks for
	// SHA-256 and so do we, then re-open with the key's own hash if it differs
	// (P-384 and P-521 keys).
	sv, err := kms.Get(ctx, ref, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("signing: %w: opening %s: %w", ErrKeyRef, ref, err)
	}
	pub, err := sv.PublicKey(options.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("signing: %w: reading the public key of %s: %w", ErrKeyRef, ref, err)
	}
	hashFn, err := keyHash(pub, ref)
	if err != nil {
		return nil, err
	}
	if hashFn != crypto.SHA256 {
		if sv, err = kms.Get(ctx, ref, hashFn); err != nil {
			return nil, fmt.Errorf("signing: %w: opening %s with %v: %w", ErrKeyRef, ref, hashFn, err)
		}
	}
	return newKeySigner(sv, pub, hashFn, ref)
}
