// Package inspect describes a bundle as a tree: images → platforms → attached
// artifacts (and what is attached to those), read from index.json and the manifests.
package inspect

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
)

// Artifact is an attached manifest.
type Artifact struct {
	Kind         oci.Kind      `json:"kind"`
	Digest       digest.Digest `json:"digest"`
	MediaType    string        `json:"mediaType"`
	ArtifactType string        `json:"artifactType,omitempty"`
	Size         int64         `json:"size"`
	Tag          string        `json:"tag,omitempty"`
	// PredicateTypes are the predicateType annotations of a cosign .att manifest's
	// layers (as annotated, not verified).
	PredicateTypes []string   `json:"predicateTypes,omitempty"`
	Attachments    []Artifact `json:"attachments,omitempty"`
}

// Platform is one child of a multi-platform image present in the bundle.
type Platform struct {
	Platform    string        `json:"platform"`
	Digest      digest.Digest `json:"digest"`
	MediaType   string        `json:"mediaType"`
	Size        int64         `json:"size"`
	Attachments []Artifact    `json:"attachments,omitempty"`
}

// Image is one root image.
type Image struct {
	Name        string        `json:"name"`
	Repository  string        `json:"repository"`
	Tag         string        `json:"tag,omitempty"`
	Digest      digest.Digest `json:"digest"`
	MediaType   string        `json:"mediaType"`
	Size        int64         `json:"size"`
	Platforms   []Platform    `json:"platforms,omitempty"`
	Attachments []Artifact    `json:"attachments,omitempty"`
}

// Report describes a bundle.
type Report struct {
	Dir    string  `json:"dir"`
	Images []Image `json:"images"`
}

// Inspect reads the bundle at dir. It shows the bundle's graph (referrers.Build):
// every manifest unpack would push, and it fails, naming the entry, on any entry
// outside that graph, exactly as verify and unpack refuse it.
func Inspect(ctx context.Context, dir string) (*Report, error) {
	l, entries, err := layout.OpenEntries(dir)
	if err != nil {
		return nil, err
	}
	g, err := referrers.Build(ctx, l, entries, referrers.BuildOptions{})
	if err != nil {
		return nil, fmt.Errorf("graph of %s: %w", dir, err)
	}
	rep := &Report{Dir: dir}
	for _, r := range g.Repositories() {
		for _, img := range r.Images {
			e := img.Entry
			out := Image{Name: e.Name(), Repository: e.Repository, Tag: e.Tag, Digest: e.Descriptor.Digest,
				MediaType: e.Descriptor.MediaType, Size: e.Descriptor.Size, Attachments: artifacts(img.Root.Attached)}
			for _, c := range img.Tree()[1:] {
				cd := c.Entry.Descriptor
				p := Platform{Platform: oci.PlatformString(cd.Platform), Digest: cd.Digest, MediaType: cd.MediaType, Size: cd.Size,
					Attachments: artifacts(c.Attached)}
				if p.Platform == "" {
					p.Platform = "unknown"
				}
				out.Platforms = append(out.Platforms, p)
			}
			rep.Images = append(rep.Images, out)
		}
	}
	return rep, nil
}

// artifacts renders attachments and, nested, what is attached to them (the graph has
// no cycles: every attachment is reached once, from its subject).
func artifacts(nodes []*referrers.Node) []Artifact {
	var out []Artifact
	for _, n := range nodes {
		e, m := n.Entry, n.Manifest
		a := Artifact{Kind: e.Kind, Digest: e.Descriptor.Digest, MediaType: e.Descriptor.MediaType,
			ArtifactType: m.Type(), Size: e.Descriptor.Size, Tag: e.Tag, Attachments: artifacts(n.Attached)}
		if e.Kind.IsTagScheme() && len(m.Layers) > 0 {
			// cosign manifests carry a plain image config: what they hold is the layer type
			a.ArtifactType = m.Layers[0].MediaType
		}
		if e.Kind == oci.KindCosignAtt {
			for _, layer := range m.Layers {
				if p := layer.Annotations[oci.AnnotationCosignPredicate]; p != "" {
					a.PredicateTypes = append(a.PredicateTypes, p)
				}
			}
		}
		out = append(out, a)
	}
	return out
}
