// Package artifact builds the OCI 1.1 artifact manifests petra-oci attaches to an image
// as evidence (generated SBOMs, scan reports): one layer holding the content, the OCI
// empty descriptor as config, subject = the image manifest, and a clear artifactType,
// so that `oras discover` lists them and `oras pull` fetches them (the layer is titled,
// Title). The manifest is written by referrers.NewArtifact, the one writer of
// attachments. It writes blobs into a layout but never index.json: listing the
// referrer there is the caller's job (layout.AttachmentEntry with oci.KindReferrer).
package artifact

import (
	"context"
	"fmt"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
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

	artifact *referrers.Artifact
}

// Build returns the artifact manifest attaching content (of layerMediaType) to
// subject, written by referrers.NewArtifact with one file titled for its type (Title),
// so that `oras pull` writes it. Only the subject's media type, digest and size are
// kept. created, when not zero, is recorded as org.opencontainers.image.created (so a
// re-run with the same time yields the same digest).
func Build(artifactType, layerMediaType string, content []byte, subject ocispec.Descriptor, annotations map[string]string, created time.Time) (*Manifest, error) {
	if artifactType == "" || layerMediaType == "" {
		return nil, fmt.Errorf("%w: artifact without a type", oci.ErrInvalid)
	}
	a, err := referrers.NewArtifact(subject, artifactType, referrers.ArtifactOptions{Annotations: annotations, Created: created},
		referrers.File{Title: Title(layerMediaType), MediaType: layerMediaType, Data: content})
	if err != nil {
		return nil, err
	}
	return &Manifest{Bytes: a.Manifest, Descriptor: a.Descriptor, Layer: a.Layers[0].Descriptor, Content: content, artifact: a}, nil
}

// Titles are the file names of the evidence petra-oci generates, by layer media type:
// what `oras pull` writes them as.
var Titles = map[string]string{
	oci.MediaTypeSPDXJSON:                           "sbom.spdx.json",
	"application/vnd.petra-oci.scan.report.v1+json": "scan-report.json",
}

// Title returns the file name of content of mediaType: its entry in Titles, else
// "content.json" for a JSON type and "content" for anything else.
func Title(mediaType string) string {
	if t, ok := Titles[mediaType]; ok {
		return t
	}
	if mediaType == "application/json" || strings.HasSuffix(mediaType, "+json") {
		return "content.json"
	}
	return "content"
}

// EmptyConfig is the OCI empty descriptor ("{}") without its inline data, as oras and
// cosign write it.
func EmptyConfig() ocispec.Descriptor { return referrers.EmptyConfig() }

// Push stores the content, the empty config and the manifest in l (each verified and
// renamed into place by layout.Push) and returns the manifest's descriptor. It does
// not touch index.json.
func (m *Manifest) Push(ctx context.Context, l *layout.Layout) (ocispec.Descriptor, error) {
	if m.artifact == nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: artifact manifest not made by Build", oci.ErrInvalid)
	}
	return m.artifact.Push(ctx, l)
}
