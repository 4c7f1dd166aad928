// Package inspect describes a bundle as a tree: images → platforms → attached
// artifacts (and what is attached to those), read from index.json and the manifests.
package inspect

import (
	"context"
	"sort"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
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

// Inspect reads the bundle at dir.
func Inspect(ctx context.Context, dir string) (*Report, error) {
	l, entries, err := layout.OpenEntries(dir)
	if err != nil {
		return nil, err
	}
	bySubject := map[digest.Digest][]layout.Entry{}
	for _, e := range entries {
		if e.Kind != oci.KindImage && e.Kind != oci.KindReferrersIndex {
			bySubject[e.Subject] = append(bySubject[e.Subject], e)
		}
	}
	manifest := func(d ocispec.Descriptor) (*oci.Manifest, error) {
		b, err := l.FetchManifest(ctx, ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size})
		if err != nil {
			return nil, err
		}
		return oci.ParseManifest(d, b)
	}
	var attached func(d digest.Digest, depth int) ([]Artifact, error)
	attached = func(d digest.Digest, depth int) ([]Artifact, error) {
		if depth > 16 {
			return nil, nil
		}
		var out []Artifact
		for _, e := range bySubject[d] {
			m, err := manifest(e.Descriptor)
			if err != nil {
				return nil, err
			}
			a := Artifact{Kind: e.Kind, Digest: e.Descriptor.Digest, MediaType: e.Descriptor.MediaType,
				ArtifactType: m.Type(), Size: e.Descriptor.Size, Tag: e.Tag}
			if e.Kind != oci.KindReferrer && len(m.Layers) > 0 {
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
			if a.Attachments, err = attached(e.Descriptor.Digest, depth+1); err != nil {
				return nil, err
			}
			out = append(out, a)
		}
		sort.SliceStable(out, func(i, j int) bool {
			if out[i].Kind != out[j].Kind {
				return out[i].Kind < out[j].Kind
			}
			return out[i].Digest < out[j].Digest
		})
		return out, nil
	}

	rep := &Report{Dir: dir}
	for _, e := range entries {
		if e.Kind != oci.KindImage {
			continue
		}
		img := Image{Name: e.Name(), Repository: e.Repository, Tag: e.Tag, Digest: e.Descriptor.Digest,
			MediaType: e.Descriptor.MediaType, Size: e.Descriptor.Size}
		if img.Attachments, err = attached(e.Descriptor.Digest, 0); err != nil {
			return nil, err
		}
		if oci.IsIndex(e.Descriptor.MediaType) {
			m, err := manifest(e.Descriptor)
			if err != nil {
				return nil, err
			}
			for _, c := range m.Manifests {
				if ok, err := l.Exists(ctx, c); err != nil || !ok {
					continue // left out by a platform filter
				}
				p := Platform{Platform: oci.PlatformString(c.Platform), Digest: c.Digest, MediaType: c.MediaType, Size: c.Size}
				if p.Platform == "" {
					p.Platform = "unknown"
				}
				if p.Attachments, err = attached(c.Digest, 0); err != nil {
					return nil, err
				}
				img.Platforms = append(img.Platforms, p)
			}
		}
		rep.Images = append(rep.Images, img)
	}
	return rep, nil
}
