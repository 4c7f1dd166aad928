// Package artifact builds the OCI 1.1 artifact manifests petra-oci attaches to an image
// as evidence (generated SBOMs, scan reports): one layer holding the content, the OCI
// empty descriptor as config, subject = the image manifest, and a clear artifactType,
// so that `oras discover` lists them and `oras pull` fetches them. It writes blobs
// into a layout but never index.json: listing the referrer there is the caller's job
// (layout.AttachmentEntry with oci.KindReferrer).
package artifact

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// Manifest is an artifact manifest ready to be stored.
type Manifest struct {
	// Bytes are the manifest's bytes; Descriptor describes them as a referrers listing
	// shows a referrer (artifactType and annotations set).
	Bytes      []byte
	Descriptor ocispec.Descriptor
	// Layer describes the content blob; Content holds it.
	Layer   ocispec.Descriptor
	Content []byte
}

// Build returns the artifact manifest attaching content (of layerMediaType) to
// subject. Only the subject's media type, digest and size are kept. created, when not
// zero, is recorded as org.opencontainers.image.created (so a re-run with the same
// time yields the same digest).
func Build(artifactType, layerMediaType string, content []byte, subject ocispec.Descriptor, annotations map[string]string, created time.Time) (*Manifest, error) {
	if artifactType == "" || layerMediaType == "" {
		return nil, fmt.Errorf("%w: artifact without a type", oci.ErrInvalid)
	}
	if err := oci.ValidateDescriptor(subject); err != nil {
		return nil, fmt.Errorf("artifact subject: %w", err)
	}
	if !oci.IsManifest(subject.MediaType) {
		return nil, fmt.Errorf("%w: artifact subject %s has media type %q", oci.ErrInvalid, subject.Digest, subject.MediaType)
	}
	ann := map[string]string{}
	for k, v := range annotations {
		ann[k] = v
	}
	if !created.IsZero() {
		ann[ocispec.AnnotationCreated] = created.UTC().Format(time.RFC3339)
	}
	if len(ann) == 0 {
		ann = nil
	}
	layer := oci.DescriptorFor(layerMediaType, content)
	subj := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       EmptyConfig(),
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &subj,
		Annotations:  ann,
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding artifact manifest: %w", err)
	}
	desc := oci.DescriptorFor(ocispec.MediaTypeImageManifest, b)
	desc.ArtifactType = artifactType
	desc.Annotations = ann
	return &Manifest{Bytes: b, Descriptor: desc, Layer: layer, Content: content}, nil
}

// EmptyConfig is the OCI empty descriptor ("{}") without its inline data, as oras and
// cosign write it.
func EmptyConfig() ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType: ocispec.DescriptorEmptyJSON.MediaType,
		Digest:    ocispec.DescriptorEmptyJSON.Digest,
		Size:      ocispec.DescriptorEmptyJSON.Size,
	}
}

// Push stores the content, the empty config and the manifest in l (each verified and
// renamed into place by layout.Push) and returns the manifest's descriptor. It does
// not touch index.json.
func (m *Manifest) Push(ctx context.Context, l *layout.Layout) (ocispec.Descriptor, error) {
	if _, err := l.PushBytes(ctx, m.Layer.MediaType, m.Content); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("storing artifact content: %w", err)
	}
	if _, err := l.PushBytes(ctx, ocispec.DescriptorEmptyJSON.MediaType, ocispec.DescriptorEmptyJSON.Data); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("storing the empty config: %w", err)
	}
	if _, err := l.PushBytes(ctx, ocispec.MediaTypeImageManifest, m.Bytes); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("storing artifact manifest: %w", err)
	}
	return m.Descriptor, nil
}
