package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/root"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/policy"
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

// verifyImages re-verifies every image of the graph against the pinned policy, reading
// only from the verified store. Every child the bundle carries is given to the rule
// (requireChildSignatures applies to each), whether or not index.json lists it. It
// returns every result and an error joining every failure.
func verifyImages(ctx context.Context, s referrers.Store, g *referrers.Graph, m *layout.Metadata, p *ImagePolicy) ([]*imageverify.Result, error) {
	if err := checkCarriedTrust(m, p); err != nil {
		return nil, err
	}
	var results []*imageverify.Result
	var errs []error
	for _, r := range g.Repositories() {
		grouped := r.Grouped()
		for _, img := range r.Images {
			e := img.Entry
			if err := p.Policy.Allowed(e.Repository); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
				continue
			}
			rule, err := p.Policy.For(e.Repository)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
				continue
			}
			var children []ocispec.Descriptor
			for _, n := range img.Tree()[1:] {
				children = append(children, n.Entry.Descriptor)
			}
			res, err := imageverify.Verify(ctx, s, rule, imageverify.Image{
				Repository: e.Repository, Root: img.Root.Descriptor(), Children: children, Attachments: grouped,
			}, imageverify.Options{TrustedMaterial: p.TrustedMaterial})
			if res != nil {
				results = append(results, res)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
			}
		}
	}
	return results, errors.Join(errs...)
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
