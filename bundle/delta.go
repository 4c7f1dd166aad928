package bundle

import (
	"context"
	"fmt"
	"sort"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
)

// checkDelta checks a delta bundle's graph against its signed metadata
// (docs/delta.md), after coverage accepted every absent blob only because some
// expected entry names its digest and size:
//   - every config and layer of the images' manifests (the image and the children the
//     bundle carries) is carried, or expected for that image's repository;
//   - every blob of an attachment is carried: signatures, attestations and SBOMs are
//     what the far side verifies offline, so a delta always brings them;
//   - every expected blob is the content of an image manifest of its repository.
//
// Any other state is an error wrapping layout.ErrDelta that names every offending
// blob. A full bundle (no m.Delta) passes untouched.
func checkDelta(ctx context.Context, s referrers.Store, g *referrers.Graph, m *layout.Metadata) error {
	if m.Delta == nil {
		return nil
	}
	expected := m.ExpectedSet()
	used := map[layout.ExpectedKey]bool{}
	var problems []string
	has := func(d ocispec.Descriptor) (bool, error) {
		ok, err := s.Exists(ctx, d)
		if err != nil {
			return false, fmt.Errorf("%w: %s: %w", layout.ErrDelta, d.Digest, err)
		}
		return ok, nil
	}
	for _, r := range g.Repositories() {
		for _, img := range r.Images {
			for _, n := range img.Tree() {
				if n.Manifest == nil || oci.IsIndex(n.Entry.Descriptor.MediaType) {
					continue
				}
				for _, c := range n.Manifest.Children() {
					ok, err := has(c)
					if err != nil {
						return err
					}
					k := layout.ExpectedKey{Repository: r.Name, Digest: c.Digest}
					size, isExpected := expected[k]
					switch {
					case ok:
					case isExpected && size == c.Size:
						used[k] = true
					case isExpected:
						problems = append(problems, fmt.Sprintf("%s %s of manifest %s is expected with %d bytes, the manifest says %d", r.Name, c.Digest, n.Entry.Descriptor.Digest, size, c.Size))
					default:
						problems = append(problems, fmt.Sprintf("%s %s (%d bytes) of manifest %s is neither carried nor expected for its repository", r.Name, c.Digest, c.Size, n.Entry.Descriptor.Digest))
					}
				}
			}
		}
		var walk func(n *referrers.Node) error
		walk = func(n *referrers.Node) error {
			if n.Manifest == nil {
				return nil
			}
			if !oci.IsIndex(n.Entry.Descriptor.MediaType) {
				for _, c := range n.Manifest.Children() {
					ok, err := has(c)
					if err != nil {
						return err
					}
					if !ok {
						problems = append(problems, fmt.Sprintf("%s %s of attachment %s %s is not carried: a delta carries every attachment whole", r.Name, c.Digest, n.Entry.Kind, n.Entry.Descriptor.Digest))
					}
				}
			}
			for _, c := range n.Children {
				if err := walk(c); err != nil {
					return err
				}
			}
			return nil
		}
		for _, a := range r.Attachments {
			if err := walk(a); err != nil {
				return err
			}
		}
	}
	for _, e := range m.Delta.Expected {
		if !used[layout.ExpectedKey{Repository: e.Repository, Digest: e.Digest}] {
			problems = append(problems, fmt.Sprintf("expected %s %s (%d bytes) is not the content of any image manifest of that repository in the bundle", e.Repository, e.Digest, e.Size))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("%w: %d problems:\n  %s", layout.ErrDelta, len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}
