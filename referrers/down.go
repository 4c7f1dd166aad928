package referrers

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// Down walks what manifests reach downward in a store: the walk along
// oci.Manifest.Successors without the subject that serve serves and prepull archives
// (graphcopy copies the same edges). Its zero value is not usable: Store is required.
type Down struct {
	// Store holds the content (a verified bundle).
	Store Store
	// Seen are the digests walked already; nil means a fresh map. Share one Down (or
	// one map) across roots to visit each digest once.
	Seen map[digest.Digest]bool
	// Parsed caches parsed manifests by digest; nil means a fresh map.
	Parsed map[digest.Digest]*oci.Manifest
}

// Walk visits desc (with its parsed manifest; m, when not nil, is desc's parse) and
// everything it reaches downward that Store holds, each digest once: an index's
// children Store holds (a platform filter leaves some out; manifests are walked in
// turn, anything else is a blob), and a manifest's config and layers, which must be
// there (oci.ErrNotFound otherwise). visit gets every manifest with its parse, parents
// first, and every blob with a nil manifest; an error from it stops the walk.
func (w *Down) Walk(ctx context.Context, desc ocispec.Descriptor, m *oci.Manifest, visit func(d ocispec.Descriptor, m *oci.Manifest) error) error {
	if w.Seen == nil {
		w.Seen = map[digest.Digest]bool{}
	}
	if w.Parsed == nil {
		w.Parsed = map[digest.Digest]*oci.Manifest{}
	}
	bare := ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	if w.Seen[bare.Digest] {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if m == nil {
		m = w.Parsed[bare.Digest]
	}
	if m == nil {
		rc, err := w.Store.Fetch(ctx, bare)
		if err != nil {
			return err
		}
		b, err := oci.ReadAllVerified(rc, bare, oci.MaxManifestBytes)
		if err != nil {
			return err
		}
		if m, err = oci.ParseManifest(bare, b); err != nil {
			return err
		}
	}
	w.Parsed[bare.Digest] = m
	w.Seen[bare.Digest] = true
	if err := visit(bare, m); err != nil {
		return err
	}
	for _, e := range m.Successors() {
		if !e.IsChild() {
			continue
		}
		c := ocispec.Descriptor{MediaType: e.Descriptor.MediaType, Digest: e.Descriptor.Digest, Size: e.Descriptor.Size}
		ok, err := w.Store.Exists(ctx, c)
		if err != nil {
			return fmt.Errorf("%s: child %s: %w", desc.Digest, c.Digest, err)
		}
		switch {
		case !ok && e.Optional():
			continue // an index child left out by a platform filter
		case !ok:
			return fmt.Errorf("%w: %s names blob %s (%s), which the bundle does not hold", oci.ErrNotFound, desc.Digest, c.Digest, c.MediaType)
		case e.Kind == oci.EdgeManifest && oci.IsManifest(c.MediaType):
			if err := w.Walk(ctx, c, nil, visit); err != nil {
				return err
			}
		case !w.Seen[c.Digest]:
			w.Seen[c.Digest] = true
			if err := visit(c, nil); err != nil {
				return err
			}
		}
	}
	return nil
}
