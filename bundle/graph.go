package bundle

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
)

// Repository is what a bundle holds for one source repository: everything unpack
// pushes there.
type Repository struct {
	Name   string         `json:"name"`
	Images []ContentImage `json:"images"`
}

// ContentImage is one image and everything of it that is pushed.
type ContentImage struct {
	Name      string        `json:"name"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	// Children are the platform manifests the bundle carries.
	Children []Manifest `json:"children,omitempty"`
	// Attachments are every manifest attached to the image, its children, or to
	// another attachment, subjects first.
	Attachments []Manifest `json:"attachments,omitempty"`
}

// Manifest is one manifest of the graph.
type Manifest struct {
	Kind      oci.Kind      `json:"kind"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Platform  string        `json:"platform,omitempty"`
	Tag       string        `json:"tag,omitempty"`
	Subject   digest.Digest `json:"subject,omitempty"`
}

// buildGraph builds the subject graph of the verified index and checks that its images
// are exactly the images the signed metadata lists (ErrNotCovered otherwise), so that
// nothing is pushed that verify did not show.
func buildGraph(ctx context.Context, s referrers.Store, idx ocispec.Index, m *layout.Metadata) (*referrers.Graph, error) {
	entries, err := layout.ParseEntries(idx)
	if err != nil {
		return nil, err
	}
	var bo referrers.BuildOptions
	if m.Delta != nil {
		// absent blobs the signed metadata expects at the destination (checkDelta then
		// checks that the repository needing each is the one it names)
		sizes := map[digest.Digest]map[int64]bool{}
		for _, e := range m.Delta.Expected {
			if sizes[e.Digest] == nil {
				sizes[e.Digest] = map[int64]bool{}
			}
			sizes[e.Digest][e.Size] = true
		}
		bo.Expected = func(d ocispec.Descriptor) bool { return !oci.IsManifest(d.MediaType) && sizes[d.Digest][d.Size] }
	}
	g, err := referrers.Build(ctx, s, entries, bo)
	if err != nil {
		return nil, err
	}
	type key struct {
		repo, tag string
		d         digest.Digest
	}
	listed := map[key]bool{}
	for i, im := range m.Images {
		if err := oci.ValidateRepository(im.Repository); err != nil {
			return nil, fmt.Errorf("metadata image %d (%s): %w", i, im.Source, err)
		}
		if im.Tag != "" {
			if err := oci.ValidateTag(im.Tag); err != nil {
				return nil, fmt.Errorf("metadata image %d (%s): %w", i, im.Source, err)
			}
		}
		listed[key{im.Repository, im.Tag, im.Digest}] = true
	}
	inIndex := map[key]bool{}
	tags := map[string]digest.Digest{}
	for _, r := range g.Repositories() {
		for _, img := range r.Images {
			e := img.Entry
			k := key{e.Repository, e.Tag, e.Descriptor.Digest}
			if !listed[k] {
				return nil, &layout.FileError{Path: layout.IndexFile, Kind: layout.ErrNotCovered,
					Detail: fmt.Sprintf("image %s (%s) is not in the signed metadata's image list", e.Name(), e.Descriptor.Digest)}
			}
			inIndex[k] = true
			if e.Tag != "" {
				name := e.Repository + ":" + e.Tag
				if d, ok := tags[name]; ok && d != e.Descriptor.Digest {
					return nil, fmt.Errorf("%w: index.json names %s twice, as %s and %s", oci.ErrInvalid, name, d, e.Descriptor.Digest)
				}
				tags[name] = e.Descriptor.Digest
			}
		}
	}
	for _, im := range m.Images {
		if !inIndex[key{im.Repository, im.Tag, im.Digest}] {
			return nil, &layout.FileError{Path: layout.MetadataPath, Kind: layout.ErrNotCovered,
				Detail: fmt.Sprintf("image %s (%s) of the signed metadata has no image entry in index.json", im.Source, im.Digest)}
		}
	}
	return g, nil
}

// contents renders the graph as the report lists it.
func contents(g *referrers.Graph) []Repository {
	var out []Repository
	for _, r := range g.Repositories() {
		repo := Repository{Name: r.Name}
		for _, img := range r.Images {
			ci := ContentImage{Name: img.Entry.Name(), Digest: img.Entry.Descriptor.Digest, MediaType: img.Entry.Descriptor.MediaType}
			tree := img.Tree()
			for _, n := range tree[1:] {
				ci.Children = append(ci.Children, manifestOf(n))
			}
			for _, n := range referrers.AttachmentsOf(tree) {
				ci.Attachments = append(ci.Attachments, manifestOf(n))
			}
			repo.Images = append(repo.Images, ci)
		}
		out = append(out, repo)
	}
	return out
}

func manifestOf(n *referrers.Node) Manifest {
	e := n.Entry
	return Manifest{Kind: e.Kind, Digest: e.Descriptor.Digest, MediaType: e.Descriptor.MediaType,
		Platform: oci.PlatformString(e.Descriptor.Platform), Tag: e.Tag, Subject: e.Subject}
}
