package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/petra-oci/petra-oci/internal/imageverify"
	"github.com/petra-oci/petra-oci/internal/policy"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
)

// ErrTrustMismatch marks a bundle that carries a policy or trusted root other than the
// one this side pinned: a bundle never brings its own trust anchors.
var ErrTrustMismatch = errors.New("bundle trust material differs from the pinned one")

// ImagePolicy is the trust configured on the verifying side: the policy every image
// must pass again, offline, and the trust material for keyless signatures.
type ImagePolicy struct {
	Policy *policy.Policy
	// PolicyFile and TrustedRootFile are the exact bytes pinned on this side; a bundle
	// that carries a policy or trusted root must carry these very bytes.
	PolicyFile, TrustedRootFile []byte
	TrustedMaterial             root.TrustedMaterial
}

// checkCarriedTrust refuses a bundle whose carried policy or trusted root (listed in
// the signed metadata) differs from the pinned bytes.
func checkCarriedTrust(m *layout.Metadata, p *ImagePolicy) error {
	for _, tf := range m.Trust {
		var pinned []byte
		switch tf.Role {
		case layout.RolePolicy:
			pinned = p.PolicyFile
		case layout.RoleTrustedRoot:
			pinned = p.TrustedRootFile
		default:
			continue
		}
		if pinned == nil {
			return fmt.Errorf("%w: the bundle carries %s (%s) and nothing is pinned here to compare it with", ErrTrustMismatch, tf.Path, tf.Role)
		}
		sum := sha256.Sum256(pinned)
		if hex.EncodeToString(sum[:]) != tf.SHA256 {
			return fmt.Errorf("%w: %s (%s) has sha256 %s, the pinned one %s", ErrTrustMismatch, tf.Path, tf.Role, tf.SHA256, hex.EncodeToString(sum[:]))
		}
	}
	return nil
}

// verifyImages re-verifies every image of the bundle against the pinned policy,
// reading only from the (already verified) layout. It returns every result and an
// error joining every failure.
func verifyImages(ctx context.Context, dir string, m *layout.Metadata, p *ImagePolicy) ([]*imageverify.Result, error) {
	if err := checkCarriedTrust(m, p); err != nil {
		return nil, err
	}
	l, err := layout.Open(dir)
	if err != nil {
		return nil, err
	}
	idx, err := l.ReadIndexPinned(fileSHA256(m, layout.IndexFile))
	if err != nil {
		return nil, err
	}
	entries, err := layout.ParseEntries(idx)
	if err != nil {
		return nil, err
	}
	var (
		atts     []referrers.Attachment
		children = map[string][]ocispec.Descriptor{} // repository -> child manifests
	)
	for _, e := range entries {
		switch e.Kind {
		case oci.KindImage, oci.KindReferrersIndex:
		case oci.KindChild:
			children[e.Repository] = append(children[e.Repository], e.Descriptor)
		default:
			atts = append(atts, referrers.Attachment{Subject: e.Subject, Descriptor: e.Descriptor, Kind: e.Kind, Tag: e.Tag})
		}
	}
	grouped := imageverify.Group(atts)
	var results []*imageverify.Result
	var errs []error
	for _, e := range entries {
		if e.Kind != oci.KindImage {
			continue
		}
		if err := p.Policy.Allowed(e.Repository); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		rule, err := p.Policy.For(e.Repository)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		root := ocispec.Descriptor{MediaType: e.Descriptor.MediaType, Digest: e.Descriptor.Digest, Size: e.Descriptor.Size}
		res, err := imageverify.Verify(ctx, l, rule, imageverify.Image{
			Repository: e.Repository, Root: root, Children: childrenOf(ctx, l, root, children[e.Repository]), Attachments: grouped,
		}, imageverify.Options{TrustedMaterial: p.TrustedMaterial})
		if res != nil {
			results = append(results, res)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
		}
	}
	return results, errors.Join(errs...)
}

// childrenOf returns the children of root (an index) among the packed child
// manifests, in the index's order and with its platforms.
func childrenOf(ctx context.Context, l *layout.Layout, root ocispec.Descriptor, packed []ocispec.Descriptor) []ocispec.Descriptor {
	if !oci.IsIndex(root.MediaType) {
		return nil
	}
	b, err := l.FetchManifest(ctx, root)
	if err != nil {
		return nil
	}
	m, err := oci.ParseManifest(root, b)
	if err != nil {
		return nil
	}
	have := map[digest.Digest]bool{}
	for _, d := range packed {
		have[d.Digest] = true
	}
	var out []ocispec.Descriptor
	for _, c := range m.Manifests {
		if have[c.Digest] {
			out = append(out, c)
		}
	}
	return out
}

// fileSHA256 returns the SHA-256 the metadata lists for path ("" when absent, which
// no file matches).
func fileSHA256(m *layout.Metadata, path string) string {
	for _, f := range m.Files {
		if f.Path == path {
			return f.SHA256
		}
	}
	return ""
}
