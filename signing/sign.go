package signing

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/petra-oci/petra-oci/internal/ctxio"
)

// MediaTypeBundleV03 is the media type of the bundles SignBlob writes.
const MediaTypeBundleV03 = "application/vnd.dev.sigstore.bundle.v0.3+json"

// SignBlob signs content with s, offline, and returns a Sigstore bundle v0.3
// (JSON) holding a messageSignature (the content's digest and the signature)
// and verificationMaterial.publicKey with s's hint: the bundle
// `cosign sign-blob --key K --new-bundle-format --tlog-upload=false` writes.
// It has no transparency-log entry and no timestamp.
//
// content is streamed once (never held in memory). The signature is checked
// against s's public key before the bundle is returned, so a KMS that signs
// with another key fails here rather than at verification.
func SignBlob(ctx context.Context, s Signer, content io.Reader) ([]byte, error) {
	if s == nil {
		return nil, errors.New("signing: SignBlob: nil Signer")
	}
	if content == nil {
		return nil, errors.New("signing: SignBlob: nil content")
	}
	hashFn := s.hash()
	h := hashFn.New()
	if _, err := io.Copy(h, ctxio.Reader(ctx, content)); err != nil {
		return nil, fmt.Errorf("signing: reading the content to sign: %w", err)
	}
	digest := h.Sum(nil)
	sig, err := s.signDigest(ctx, digest)
	if err != nil {
		return nil, err
	}
	v, err := signature.LoadVerifier(s.PublicKey(), hashFn)
	if err != nil {
		return nil, fmt.Errorf("signing: %s: %w", s, err)
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(nil), options.WithDigest(digest)); err != nil {
		return nil, fmt.Errorf("signing: %s returned a signature its public key does not verify: %w", s, err)
	}
	alg, err := protoHash(hashFn)
	if err != nil {
		return nil, err
	}
	b := &protobundle.Bundle{
		MediaType: MediaTypeBundleV03,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{
				PublicKey: &protocommon.PublicKeyIdentifier{Hint: s.KeyID()},
			},
		},
		Content: &protobundle.Bundle_MessageSignature{
			MessageSignature: &protocommon.MessageSignature{
				MessageDigest: &protocommon.HashOutput{Algorithm: alg, Digest: digest},
				Signature:     sig,
			},
		},
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("signing: encoding the bundle: %w", err)
	}
	return out, nil
}

func protoHash(h crypto.Hash) (protocommon.HashAlgorithm, error) {
	switch h {
	case crypto.SHA256:
		return protocommon.HashAlgorithm_SHA2_256, nil
	case crypto.SHA384:
		return protocommon.HashAlgorithm_SHA2_384, nil
	case crypto.SHA512:
		return protocommon.HashAlgorithm_SHA2_512, nil
	}
	return 0, fmt.Errorf("signing: %w: hash %v", ErrWrongKeyType, h)
}
