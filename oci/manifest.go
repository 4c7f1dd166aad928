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
	for _, e := range m.Successors() {
		if err := ValidateDescriptor(e.Descriptor); err != nil {
			if e.Kind == EdgeSubject {
				return nil, fmt.Errorf("manifest %s subject: %w", desc.Digest, err)
			}
			return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
		}
	}
	return &m, nil
}

// EdgeKind says how a manifest points at a successor.
type EdgeKind uint8

const (
	// EdgeSubject is the manifest's subject: what it is attached to.
	EdgeSubject EdgeKind = iota + 1
	// EdgeConfig is an image manifest's config blob.
	EdgeConfig
	// EdgeLayer is one of an image manifest's layers.
	EdgeLayer
	// EdgeManifest is one of an index's manifests (its children).
	EdgeManifest
)

// Edge is one successor of a manifest and how it is reached.
type Edge struct {
	Kind       EdgeKind
	Descriptor ocispec.Descriptor
}

// IsChild reports whether the edge points down (config, layer, index child), not
// across to a subject.
func (e Edge) IsChild() bool { return e.Kind != EdgeSubject }

// Optional reports whether a bundle may lack the edge's target: an index child (a
// platform filter leaves some out) or a subject (an attachment's subject may live
// elsewhere). A config or layer is never optional: without it the manifest is
// incomplete.
func (e Edge) Optional() bool { return e.Kind == EdgeManifest || e.Kind == EdgeSubject }

// Successors returns every descriptor m points at, the one definition of the graph's
// edges that every walk of petra-oci uses (after oras-go's content.Successors): the
// subject first when there is one, then an index's manifests, or a manifest's config
// and layers, in manifest order.
func (m *Manifest) Successors() []Edge {
	out := make([]Edge, 0, 2+len(m.Layers)+len(m.Manifests))
	if m.Subject != nil {
		out = append(out, Edge{Kind: EdgeSubject, Descriptor: *m.Subject})
	}
	if len(m.Manifests) > 0 {
		for _, d := range m.Manifests {
			out = append(out, Edge{Kind: EdgeManifest, Descriptor: d})
		}
		return out
	}
	if m.Config != nil {
		out = append(out, Edge{Kind: EdgeConfig, Descriptor: *m.Config})
	}
	for _, d := range m.Layers {
		out = append(out, Edge{Kind: EdgeLayer, Descriptor: d})
	}
	return out
}

// Children returns what the manifest points down to: its successors without the
// subject (an index's manifests, or a manifest's config and layers).
func (m *Manifest) Children() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, e := range m.Successors() {
		if e.IsChild() {
			out = append(out, e.Descriptor)
		}
	}
	return out
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
