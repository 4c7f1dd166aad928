// Package referrers works on the subject graph: what is attached to a manifest. It
// discovers attachments in a registry (OCI 1.1 referrers through the API or the
// referrers tag schema, and cosign's tag scheme sha256-<hex>.sig/.att/.sbom), builds
// the referrers tag schema index a layout carries for tools that look there, and walks
// the attachments of a layout's entries.
package referrers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/petra-oci/petra-oci/oci"
)

// Attachment is a manifest attached to a subject.
type Attachment struct {
	// Subject is the digest the attachment belongs to.
	Subject digest.Digest
	// Descriptor is the attached manifest. For referrers it carries the artifactType
	// and annotations the registry reported.
	Descriptor ocispec.Descriptor
	// Kind is how it is attached: an OCI referrer or one of cosign's tags.
	Kind oci.Kind
	// Tag is the cosign tag (sha256-<hex>.sig ...) for tag-scheme attachments.
	Tag string
}

// Source is what discovery needs from a registry repository.
type Source interface {
	Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error)
	Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func([]ocispec.Descriptor) error) error
}

// Retry runs op, one whole operation against a registry, and decides whether and when
// it runs again (remote.Client.Retry); what names it. nil runs op once.
type Retry = func(ctx context.Context, what string, op func(context.Context) error) error

// Discover lists what is attached directly to subject in src: its OCI referrers (the
// registry's API, or the tag schema when it has none; oras-go decides per registry)
// and the cosign tag-scheme manifests. The result is in a stable order.
func Discover(ctx context.Context, src Source, subject ocispec.Descriptor) ([]Attachment, error) {
	return DiscoverRetry(ctx, src, subject, nil)
}

// DiscoverRetry is Discover with each registry operation run through retry: the
// referrers listing (all its pages again on each try) and each cosign tag resolved.
func DiscoverRetry(ctx context.Context, src Source, subject ocispec.Descriptor, retry Retry) ([]Attachment, error) {
	if retry == nil {
		retry = func(ctx context.Context, _ string, op func(context.Context) error) error { return op(ctx) }
	}
	var out []Attachment
	err := retry(ctx, "listing referrers of "+subject.Digest.String(), func(ctx context.Context) error {
		out = out[:0]
		return src.Referrers(ctx, subject, "", func(page []ocispec.Descriptor) error {
			for _, d := range page {
				if err := oci.ValidateDescriptor(d); err != nil {
					return fmt.Errorf("referrer of %s: %w", subject.Digest, err)
				}
				if !oci.IsManifest(d.MediaType) {
					return fmt.Errorf("%w: referrer %s of %s has media type %q", oci.ErrInvalid, d.Digest, subject.Digest, d.MediaType)
				}
				out = append(out, Attachment{Subject: subject.Digest, Descriptor: d, Kind: oci.KindReferrer})
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, errdef.ErrNotFound) {
		return nil, fmt.Errorf("listing referrers of %s: %w", subject.Digest, err)
	}
	for _, s := range oci.CosignSuffixes {
		tag := oci.CosignTag(subject.Digest, s.Suffix)
		var d ocispec.Descriptor
		err := retry(ctx, "resolving cosign tag "+tag, func(ctx context.Context) (err error) {
			d, err = src.Resolve(ctx, tag)
			return err
		})
		if errors.Is(err, errdef.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("resolving cosign tag %s: %w", tag, err)
		}
		if err := oci.ValidateDescriptor(d); err != nil {
			return nil, fmt.Errorf("cosign tag %s: %w", tag, err)
		}
		out = append(out, Attachment{Subject: subject.Digest, Descriptor: d, Kind: s.Kind, Tag: tag})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Descriptor.Digest < out[j].Descriptor.Digest
	})
	return dedupe(out), nil
}

func dedupe(in []Attachment) []Attachment {
	seen := map[string]bool{}
	out := in[:0]
	for _, a := range in {
		k := string(a.Kind) + a.Tag + a.Descriptor.Digest.String()
		if !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// Probe asks repo whether its registry serves the OCI 1.1 referrers API and records the
// answer on repo, so later pushes of manifests with a subject either rely on the API or
// maintain the referrers tag schema index. The repository must exist.
func Probe(ctx context.Context, repo *remote.Repository) (bool, error) {
	scheme := "https"
	if repo.PlainHTTP {
		scheme = "http"
	}
	zero := digest.NewDigestFromEncoded(digest.SHA256, "0000000000000000000000000000000000000000000000000000000000000000")
	url := fmt.Sprintf("%s://%s/v2/%s/referrers/%s", scheme, repo.Reference.Host(), repo.Reference.Repository, zero)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	client := repo.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, fmt.Errorf("probing referrers API of %s: %w", repo.Reference.Host(), err)
	}
	defer resp.Body.Close()
	var supported bool
	switch resp.StatusCode {
	case http.StatusOK:
		supported = resp.Header.Get("Content-Type") == ocispec.MediaTypeImageIndex
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusBadRequest:
		supported = false
	default:
		// an errcode.ErrorResponse, so that callers can tell a 503 (retry) from a 401
		return false, fmt.Errorf("probing referrers API of %s: %w", repo.Reference.Host(),
			&errcode.ErrorResponse{Method: req.Method, URL: req.URL, StatusCode: resp.StatusCode})
	}
	if err := repo.SetReferrersCapability(supported); err != nil && !errors.Is(err, remote.ErrReferrersCapabilityAlreadySet) {
		return false, err
	}
	return supported, nil
}

// Index builds the referrers tag schema index for a subject: an OCI image index whose
// manifests are the referrer descriptors (with artifactType and annotations), as a
// registry's referrers API would answer. Layouts carry it under the tag sha256-<hex> so
// that tools reading the tag schema (regctl) find the referrers that tools scanning
// index.json (oras) find too.
func Index(referrers []ocispec.Descriptor) ([]byte, error) {
	ms := append([]ocispec.Descriptor(nil), referrers...)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Digest < ms[j].Digest })
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: ms,
	}
	return json.Marshal(idx)
}

// Descriptor returns the descriptor a referrers listing shows for a referrer manifest:
// media type, digest, size, artifactType (artifactType field or config media type) and
// the manifest's annotations.
func Descriptor(desc ocispec.Descriptor, m *oci.Manifest) ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType:    desc.MediaType,
		Digest:       desc.Digest,
		Size:         desc.Size,
		ArtifactType: m.Type(),
		Annotations:  m.Annotations,
	}
}

// BySubject groups attachments by the digest of their subject, in their order.
func BySubject(atts []Attachment) map[digest.Digest][]Attachment {
	m := map[digest.Digest][]Attachment{}
	for _, a := range atts {
		m[a.Subject] = append(m[a.Subject], a)
	}
	return m
}

// CollectOptions configure Collect. The zero value is safe: at most DefaultMaxNodes
// attachments.
type CollectOptions struct {
	// MaxNodes bounds the attachments collected; <= 0 means DefaultMaxNodes.
	MaxNodes int
	// Retry, when set, runs each discovery operation (DiscoverRetry); nil runs each
	// once.
	Retry Retry
}

// Collect discovers in src everything attached to roots, and to what is attached to
// that, breadth first, so every subject comes before what is attached to it. It
// keeps the graph's one cycle rule: each manifest is visited once (an attachment
// already seen, or one of roots, is recorded but not walked again). visit is called
// once per attachment, in order, before that attachment's own attachments are
// discovered (pack copies it there); what it returns is recorded in its place (the
// referrer descriptor with its manifest's artifactType, say). More than MaxNodes
// attachments is an error, not a silent cut.
func Collect(ctx context.Context, src Source, roots []ocispec.Descriptor, opts CollectOptions, visit func(context.Context, Attachment) (Attachment, error)) ([]Attachment, error) {
	max := opts.MaxNodes
	if max <= 0 {
		max = DefaultMaxNodes
	}
	seen := map[digest.Digest]bool{}
	queue := make([]ocispec.Descriptor, 0, len(roots))
	for _, r := range roots {
		seen[r.Digest] = true
		queue = append(queue, r)
	}
	var out []Attachment
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		subject := queue[0]
		queue = queue[1:]
		atts, err := DiscoverRetry(ctx, src, subject, opts.Retry)
		if err != nil {
			return nil, err
		}
		for _, a := range atts {
			if len(out) >= max {
				return nil, fmt.Errorf("%w: more than %d attachments below %s", oci.ErrInvalid, max, roots[0].Digest)
			}
			if visit != nil {
				if a, err = visit(ctx, a); err != nil {
					return nil, err
				}
			}
			out = append(out, a)
			if !seen[a.Descriptor.Digest] {
				seen[a.Descriptor.Digest] = true
				queue = append(queue, a.Descriptor)
			}
		}
	}
	return out, nil
}

// SubjectReferrers are the OCI referrers of one subject, for its referrers tag schema
// index (Index).
type SubjectReferrers struct {
	Subject digest.Digest
	// Repository is the repository of the first entry naming the subject.
	Repository string
	// Referrers are the referrer manifests, each once, in entry order.
	Referrers []ocispec.Descriptor
}
