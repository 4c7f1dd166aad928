package oci

import (
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Manifest media types petra-oci copies. Docker schema 2 types are copied byte for
// byte like the OCI ones; nothing is ever converted.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// Cosign and Sigstore media types.
const (
	MediaTypeCosignSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	MediaTypeDSSEEnvelope        = "application/vnd.dsse.envelope.v1+json"
	MediaTypeSigstoreBundle03    = "application/vnd.dev.sigstore.bundle.v0.3+json"
	MediaTypeSPDXJSON            = "application/spdx+json"
)

// Cosign annotation keys on signature and attestation layers.
const (
	AnnotationCosignSignature   = "dev.cosignproject.cosign/signature"
	AnnotationCosignCertificate = "dev.sigstore.cosign/certificate"
	AnnotationCosignChain       = "dev.sigstore.cosign/chain"
	AnnotationCosignBundle      = "dev.sigstore.cosign/bundle"
	AnnotationCosignPredicate   = "predicateType"
)

// Annotation keys petra-oci writes on index.json entries of a bundle. Together with the
// standard ref.name they let unpack route every manifest back to its repository.
const (
	// AnnotationRepository is the source repository of the entry, with its registry
	// host (e.g. "cgr.dev/chainguard/nginx").
	AnnotationRepository = "dev.petra-oci.repository"
	// AnnotationTag is the source tag of a root image, when it was packed by tag.
	AnnotationTag = "dev.petra-oci.tag"
	// AnnotationKind says what the entry is (see Kind).
	AnnotationKind = "dev.petra-oci.kind"
	// AnnotationSubject is the digest an attached manifest belongs to.
	AnnotationSubject = "dev.petra-oci.subject"
	// AnnotationContainerdName is the full image name containerd imports by.
	AnnotationContainerdName = "io.containerd.image.name"
)

// Kind classifies an index.json entry of a bundle.
type Kind string

const (
	KindImage          Kind = "image"           // a root image (index or manifest) packed from a reference
	KindChild          Kind = "child"           // a child manifest of a packed image index (see below)
	KindReferrer       Kind = "referrer"        // an OCI 1.1 referrer (manifest with subject)
	KindCosignSig      Kind = "cosign-sig"      // cosign tag scheme sha256-<hex>.sig
	KindCosignAtt      Kind = "cosign-att"      // cosign tag scheme sha256-<hex>.att
	KindCosignSBOM     Kind = "cosign-sbom"     // cosign tag scheme sha256-<hex>.sbom
	KindReferrersIndex Kind = "referrers-index" // referrers tag schema index sha256-<hex>, derived
)

// KindChild entries are untagged and only there so that tools which resolve a digest
// in a layout through index.json (oras: `oras discover --oci-layout DIR@<child digest>`)
// find the child as a manifest, as they find every manifest of a layout oras itself
// writes. Children are copied with their image, never on their own.

// Kinds lists every kind, in the order index.json lists entries: images, their
// children, cosign's tag-scheme artifacts, referrers, derived referrers indexes.
var Kinds = []Kind{KindImage, KindChild, KindCosignSig, KindCosignAtt, KindCosignSBOM, KindReferrer, KindReferrersIndex}

// The predicates below are the one place that says what each kind is; consumers ask
// them rather than compare kinds, so that a new kind is classified here once.

// Known reports whether k is one of Kinds.
func (k Kind) Known() bool { return slices.Contains(Kinds, k) }

// IsImage reports whether k is a root image packed from a reference.
func (k Kind) IsImage() bool { return k == KindImage }

// IsChild reports whether k is a child manifest of a packed image index.
func (k Kind) IsChild() bool { return k == KindChild }

// IsTree reports whether k is a manifest of an image's tree: the image itself or one
// of its children (at any depth), copied with the image, never on its own.
func (k Kind) IsTree() bool { return k.IsImage() || k.IsChild() }

// IsAttachment reports whether k is a manifest attached to a subject (an OCI referrer
// or one of cosign's tag-scheme kinds). Referrers indexes are derived, not attachments.
func (k Kind) IsAttachment() bool { return k.IsReferrer() || k.IsTagScheme() }

// IsReferrer reports whether k is an OCI 1.1 referrer: a manifest whose subject field
// names what it is attached to, listed by the referrers API (and untagged).
func (k Kind) IsReferrer() bool { return k == KindReferrer }

// IsTagScheme reports whether k is one of cosign's tag-scheme artifacts: an image
// manifest with a plain config, found by its tag sha256-<hex>.<suffix> (TagSuffix),
// not by a subject field.
func (k Kind) IsTagScheme() bool {
	_, ok := k.TagSuffix()
	return ok
}

// IsDerived reports whether k is derived from other entries (a referrers tag schema
// index): carried for tools that read layouts, never pushed (a registry keeps its own).
func (k Kind) IsDerived() bool { return k == KindReferrersIndex }

// HasSubject reports whether an entry of kind k belongs to a subject digest
// (attachments and derived referrers indexes).
func (k Kind) HasSubject() bool { return k.IsAttachment() || k.IsDerived() }

// TagSuffix returns the cosign tag suffix of a tag-scheme kind (".sig", ".att",
// ".sbom"); ok is false for every other kind.
func (k Kind) TagSuffix() (suffix string, ok bool) {
	for _, s := range CosignSuffixes {
		if s.Kind == k {
			return s.Suffix, true
		}
	}
	return "", false
}

// CosignSuffixes maps each cosign tag-scheme suffix to its kind, in discovery order.
var CosignSuffixes = []struct {
	Suffix string
	Kind   Kind
}{{".sig", KindCosignSig}, {".att", KindCosignAtt}, {".sbom", KindCosignSBOM}}

// CosignTag returns the cosign tag-scheme tag for d with suffix (".sig", ".att", ".sbom").
func CosignTag(d digest.Digest, suffix string) string {
	return ReferrersTag(d) + suffix
}

// ReferrersTag returns the referrers tag schema tag for d: "<alg>-<hex>".
func ReferrersTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded()
}

// IsIndex reports whether mediaType is an OCI index or a Docker manifest list.
func IsIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == MediaTypeDockerManifestList
}

// IsManifest reports whether mediaType is any manifest petra-oci understands
// (image manifest or index, OCI or Docker).
func IsManifest(mediaType string) bool {
	switch mediaType {
	case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
		return true
	}
	return IsIndex(mediaType)
}

// PlatformString renders p as os/arch[/variant], or "" for nil.
func PlatformString(p *ocispec.Platform) string {
	if p == nil {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ParsePlatform parses os/arch[/variant].
func ParsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return ocispec.Platform{}, fmt.Errorf("%w: platform %q is not os/arch[/variant]", ErrInvalid, s)
	}
	p := ocispec.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// PlatformMatches reports whether have satisfies want (variant only compared when
// want names one).
func PlatformMatches(have *ocispec.Platform, want ocispec.Platform) bool {
	if have == nil {
		return false
	}
	return have.OS == want.OS && have.Architecture == want.Architecture &&
		(want.Variant == "" || have.Variant == want.Variant)
}

// IsFilesystemLayer reports whether mediaType is a container filesystem layer (an OCI
// or Docker tar layer, compressed or not, distributable or not): what makes a manifest
// a runnable image.
func IsFilesystemLayer(mediaType string) bool {
	switch mediaType {
	case "application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
		return true
	}
	for _, p := range []string{ocispec.MediaTypeImageLayer, "application/vnd.oci.image.layer.nondistributable.v1.tar"} {
		if mediaType == p || strings.HasPrefix(mediaType, p+"+") {
			return true
		}
	}
	return false
}

// IsImageConfig reports whether mediaType is a container image config (OCI or Docker),
// the config of a manifest a runtime would run.
func IsImageConfig(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageConfig || mediaType == "application/vnd.docker.container.image.v1+json"
}
