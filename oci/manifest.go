package oci

import (
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Manifest is the union of the fields petra-oci reads from an image manifest or an
// index (OCI or Docker). The bytes it came from are always kept and copied unchanged.
type Manifest struct {
	MediaType    string               `json:"mediaType,omitempty"`
	ArtifactType string               `json:"artifactType,omitempty"`
	Config       *ocispec.Descriptor  `json:"config,omitempty"`
	Layers       []ocispec.Descriptor `json:"layers,omitempty"`
	Manifests    []ocispec.Descriptor `json:"manifests,omitempty"`
	Subject      *ocispec.Descriptor  `json:"subject,omitempty"`
	Annotations  map[string]string    `json:"annotations,omitempty"`
}

// ParseManifest parses b, the content of desc, and checks that its shape agrees with
// desc.MediaType and that every descriptor in it is valid.
func ParseManifest(desc ocispec.Descriptor, b []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrInvalid, desc.Digest, err)
	}
	if m.MediaType != "" && m.MediaType != desc.MediaType {
		return nil, fmt.Errorf("%w: manifest %s says mediaType %q, descriptor says %q", ErrInvalid, desc.Digest, m.MediaType, desc.MediaType)
	}
	if IsIndex(desc.MediaType) {
		if m.Config != nil || len(m.Layers) > 0 {
			return nil, fmt.Errorf("%w: index %s has config or layers", ErrInvalid, desc.Digest)
		}
	} else if len(m.Manifests) > 0 {
		return nil, fmt.Errorf("%w: manifest %s has manifests", ErrInvalid, desc.Digest)
	}
	for _, d := range m.Children() {
		if err := ValidateDescriptor(d); err != nil {
			return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
	}
	if m.Subject != nil {
		if err := ValidateDescriptor(*m.Subject); err != nil {
			return nil, fmt.Errorf("manifest %s subject: %w", desc.Digest, err)
		}
	}
	return &m, nil
}

// Children returns what the manifest points down to: an index's manifests, or a
// manifest's config and layers. The subject is not a child.
func (m *Manifest) Children() []ocispec.Descriptor {
	if len(m.Manifests) > 0 {
		return m.Manifests
	}
	var out []ocispec.Descriptor
	if m.Config != nil {
		out = append(out, *m.Config)
	}
	return append(out, m.Layers...)
}

// Type returns the artifact type: artifactType, else the config media type.
func (m *Manifest) Type() string {
	if m.ArtifactType != "" {
		return m.ArtifactType
	}
	if m.Config != nil {
		return m.Config.MediaType
	}
	return ""
}
