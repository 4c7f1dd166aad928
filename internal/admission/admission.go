// Package admission generates the Kubernetes admission resources that let only what a
// signed bundle carried run in the disconnected cluster, from the same petra policy
// that pack and unpack enforce (docs/admission.md):
//
//   - a policy-controller TrustRoot built from the pinned trusted_root.json (Fulcio
//     chain, Rekor and CT log keys, TSAs), so keyless signatures verify offline;
//   - ClusterImagePolicy objects over the internal registry: one per petra image rule
//     (its publisher authorities, its required attestations with Rego checks of what
//     the petra policy checks), and one requiring petra's verification summary, signed
//     by the bundle key, on everything under the internal registry prefix;
//   - Gatekeeper constraint templates of petra-oci's own and their constraints:
//     images only from the internal registry prefix (with its trailing "/"), and only
//     by digest.
//
// A petra rule that policy-controller cannot express is an error naming the rule
// (ErrUnexpressible), never a weaker policy. The output is deterministic: the same
// inputs give the same bytes.
package admission

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/policy"
)

// Errors; callers test with errors.Is.
var (
	// ErrUnexpressible: a petra policy rule (or what the bundle's images carry) has no
	// policy-controller equivalent at least as strict. The message names the rule.
	ErrUnexpressible = errors.New("cannot be expressed for policy-controller")
	// ErrInvalidOptions: missing or malformed input (registry, keys, trusted root).
	ErrInvalidOptions = errors.New("invalid admission options")
	// ErrNoSummary: an image of the bundle carries no petra verification summary, so
	// the generated policy would refuse it.
	ErrNoSummary = errors.New("image carries no petra verification summary")
)

// Object names and labels.
const (
	// Name names the TrustRoot and prefixes every generated object.
	Name = "petra-oci"
	// LabelManagedBy marks every generated object.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// Annotations on generated objects.
	AnnotationRule         = "petra-oci.dev/rule"
	AnnotationBundleID     = "petra-oci.dev/bundle-id"
	AnnotationSequence     = "petra-oci.dev/bundle-sequence"
	AnnotationPolicyDigest = "petra-oci.dev/policy-digest"
)

// SummaryForm is how petra's verification summary is attached to an image root.
type SummaryForm string

const (
	SummaryNone   SummaryForm = ""
	SummaryLegacy SummaryForm = "cosign-att"      // a layer of the root's cosign .att
	SummaryBundle SummaryForm = "sigstore-bundle" // a Sigstore bundle referrer of the root
)

// Image is one image of the bundle as admission sees it.
type Image struct {
	// Repository is the source repository (host/path), as in the bundle.
	Repository string `json:"repository"`
	// Digest is the image root (index or manifest): what a pod references.
	Digest digest.Digest `json:"digest"`
	// Children are the child manifests the bundle carries.
	Children []digest.Digest `json:"children,omitempty"`
	// Summary is the form of petra's verification summary on the root.
	Summary SummaryForm `json:"summary,omitempty"`
	// ChildSummaries is the form of petra's summary on each child (pack attaches one
	// per child; a bundle packed before it did has none). policy-controller checks
	// the digest a pod names, so a child without a summary in .att form is refused
	// when named by digest: Generate notes each, and the image stays admissible by
	// its root.
	ChildSummaries map[digest.Digest]SummaryForm `json:"childSummaries,omitempty"`
	// Result is what the pinned policy verified on the image (bundle.Verify with the
	// policy); it says in which form each authority's signatures and attestations
	// were found. Required when Options.Policy is set.
	Result *imageverify.Result `json:"-"`
}

// Options configure Generate.
type Options struct {
	// Registry is the internal registry HOST[:PORT][/PREFIX], as unpack's --to.
	Registry string
	// Images are the bundle's images (ImagesFromBundle).
	Images []Image
	// Policy is the pinned petra policy. Nil generates the summary requirement and the
	// Gatekeeper resources only.
	Policy *policy.Policy
	// PolicyDigest is the policy digest petra's summaries must name: default
	// Policy.Digest(); with no policy, the digest of the policy the bundle carries
	// (its SHA-256 in the signed metadata); empty checks no digest.
	PolicyDigest digest.Digest
	// TrustedRoot is the pinned trusted_root.json. Required when the policy has a
	// keyless authority.
	TrustedRoot []byte
	// SummaryKey is the PEM public key petra's summaries are signed with (the bundle
	// key). Required.
	SummaryKey []byte
	// AttestKey, when set, is the PEM public key of the disconnected side (unpack
	// --attest-key): its import record (a verification summary it signs at unpack) is
	// required too, in a ClusterImagePolicy of its own.
	AttestKey []byte
	// BundleID and Sequence are recorded in annotations.
	BundleID string
	Sequence uint64
}

// File is one generated file.
type File struct {
	Name string `json:"name"`
	Data []byte `json:"-"`
	// Objects are the Kubernetes objects in the file, "Kind/name".
	Objects []string `json:"objects"`
}

// Files is what Generate returns: the files in apply order (kustomization.yaml last)
// and notes for whoever applies them.
type Files struct {
	Files []File   `json:"files"`
	Notes []string `json:"notes,omitempty"`
}

// Generate builds the admission resources. It reads nothing but opts.
func Generate(ctx context.Context, opts Options) (*Files, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	reg, err := parseRegistry(opts.Registry)
	if err != nil {
		return nil, err
	}
	summaryKey, err := normalizeKey("summary key", opts.SummaryKey)
	if err != nil {
		return nil, err
	}
	var attestKey string
	if len(opts.AttestKey) > 0 {
		if attestKey, err = normalizeKey("attest key", opts.AttestKey); err != nil {
			return nil, err
		}
	}
	g := &generator{opts: opts, reg: reg, summaryKey: summaryKey, attestKey: attestKey}
	if g.policyDigest = opts.PolicyDigest; g.policyDigest == "" && opts.Policy != nil {
		g.policyDigest = opts.Policy.Digest()
	}
	if g.policyDigest != "" {
		if err := g.policyDigest.Validate(); err != nil || g.policyDigest.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("%w: policy digest %q: want sha256:<hex>", ErrInvalidOptions, g.policyDigest)
		}
	}
	images := append([]Image(nil), opts.Images...)
	sort.Slice(images, func(i, j int) bool {
		if images[i].Repository != images[j].Repository {
			return images[i].Repository < images[j].Repository
		}
		return images[i].Digest < images[j].Digest
	})
	g.images = images
	return g.generate()
}

type generator struct {
	opts         Options
	reg          internalRegistry
	summaryKey   string
	attestKey    string
	policyDigest digest.Digest
	images       []Image
	trust        *trustedRoot
	notes        []string
}

func (g *generator) generate() (*Files, error) {
	for _, im := range g.images {
		if err := im.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("%w: image %s: digest %q: %v", ErrInvalidOptions, im.Repository, im.Digest, err)
		}
		switch im.Summary {
		case SummaryLegacy:
		case SummaryBundle:
			return nil, fmt.Errorf("%w: petra's verification summary on %s@%s is a Sigstore bundle (the form of the publisher's signatures there, docs/evidence.md), signed by the bundle key; policy-controller v0.13.1 refuses the bundle format for key authorities (docs/admission.md), so the summary requirement has no equivalent",
				ErrUnexpressible, im.Repository, im.Digest)
		default:
			return nil, fmt.Errorf("%w: %s@%s (pack it with --policy and --key: the generated policy requires the summary on every image)", ErrNoSummary, im.Repository, im.Digest)
		}
		for _, c := range im.Children {
			switch f := im.ChildSummaries[c]; f {
			case SummaryLegacy:
			case SummaryBundle:
				g.notes = append(g.notes, fmt.Sprintf("%s@%s: the summary on its child %s is a Sigstore bundle, which policy-controller v0.13.1 does not verify: the child is refused when a pod names it by digest; name the image %s",
					im.Repository, im.Digest, c, im.Digest))
			default:
				g.notes = append(g.notes, fmt.Sprintf("%s@%s: its child %s carries no petra summary (packed by a petra-oci that attached the summary to the image root only): the child is refused when a pod names it by digest; name the image %s, or pack again",
					im.Repository, im.Digest, c, im.Digest))
			}
		}
	}
	var files []File
	if len(g.opts.TrustedRoot) > 0 {
		tr, notes, err := parseTrustedRoot(g.opts.TrustedRoot)
		if err != nil {
			return nil, err
		}
		f, err := trustRootFile(tr)
		if err != nil {
			return nil, err
		}
		g.trust = tr
		g.notes = append(g.notes, notes...)
		files = append(files, f)
	}
	cips, err := g.clusterImagePolicies(g.trust != nil)
	if err != nil {
		return nil, err
	}
	files = append(files, cips)
	gk, err := g.gatekeeper()
	if err != nil {
		return nil, err
	}
	files = append(files, gk...)
	k, err := kustomization(files)
	if err != nil {
		return nil, err
	}
	files = append(files, k)
	return &Files{Files: files, Notes: g.notes}, nil
}

// normalizeKey parses a PEM public key and returns its canonical PEM.
func normalizeKey(what string, pemKey []byte) (string, error) {
	if len(bytes.TrimSpace(pemKey)) == 0 {
		return "", fmt.Errorf("%w: no %s (PEM public key)", ErrInvalidOptions, what)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemKey)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrInvalidOptions, what, err)
	}
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrInvalidOptions, what, err)
	}
	return string(b), nil
}
