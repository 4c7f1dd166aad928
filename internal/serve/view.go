package serve

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/unpack"
)

// view is what one verification of the bundle serves: per destination repository, the
// manifests, blobs, tags and referrers unpack would push there. Everything in it comes
// from the verified graph; content is read through the pinned store on every request.
// A view is retired when a reload swaps in a newer one and closed once its last request
// is done.
type view struct {
	v      *bundle.Verified
	store  referrers.Store
	repos  map[string]*repo
	names  []string // sorted
	report *bundle.Report

	mu      sync.Mutex
	refs    int
	retired bool
	closed  bool
}

// repo is one destination repository.
type repo struct {
	name      string
	tags      map[string]ocispec.Descriptor
	tagList   []string // sorted
	manifests map[digest.Digest]ocispec.Descriptor
	blobs     map[digest.Digest]ocispec.Descriptor
	// referrers lists, per subject, the OCI referrers as the referrers API shows them
	// (artifactType, annotations), sorted by digest.
	referrers map[digest.Digest][]ocispec.Descriptor
	// generated holds the referrers tag schema indexes (tag sha256-<hex>), built from
	// the verified referrers as unpack builds them for a registry without the API.
	generated map[digest.Digest][]byte
}

// Repository is one served repository and its tags (for rendering).
type Repository struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
	// Manifests and Blobs count what is served by digest.
	Manifests int `json:"manifests"`
	Blobs     int `json:"blobs"`
}

// placeholderHost stands for the registry host when naming destination repositories
// with unpack.Destination: serve is the registry, so only the path is kept.
const placeholderHost = "localhost"

// newView builds the served view of a verified bundle: every repository of the graph,
// named as unpack names it under prefix, with the closure of every image tree and
// attachment the verified store holds.
func newView(ctx context.Context, v *bundle.Verified, prefix string) (*view, error) {
	vw := &view{v: v, store: v.Store, repos: map[string]*repo{}, report: v.Report}
	to := placeholderHost
	if prefix != "" {
		to += "/" + prefix
	}
	// manifests already parsed by the graph
	parsed := map[digest.Digest]*oci.Manifest{}
	for _, r := range v.Graph.Repositories() {
		for _, img := range r.Images {
			for _, n := range img.Tree() {
				parsed[n.Entry.Descriptor.Digest] = n.Manifest
			}
		}
		for _, n := range r.Attachments {
			parsed[n.Entry.Descriptor.Digest] = n.Manifest
		}
	}
	for _, r := range v.Graph.Repositories() {
		ref, err := unpack.Destination(to, r.Name)
		if err != nil {
			return nil, fmt.Errorf("naming %s: %w", r.Name, err)
		}
		dst := vw.repos[ref.Repository]
		if dst == nil {
			dst = &repo{name: ref.Repository, tags: map[string]ocispec.Descriptor{}, manifests: map[digest.Digest]ocispec.Descriptor{},
				blobs: map[digest.Digest]ocispec.Descriptor{}, referrers: map[digest.Digest][]ocispec.Descriptor{}, generated: map[digest.Digest][]byte{}}
			vw.repos[ref.Repository] = dst
			vw.names = append(vw.names, ref.Repository)
		}
		w := walker{ctx: ctx, down: referrers.Down{Store: v.Store, Parsed: parsed}, dst: dst}
		for _, img := range r.Images {
			if err := w.walk(img.Root.Descriptor()); err != nil {
				return nil, fmt.Errorf("%s@%s: %w", r.Name, img.Entry.Descriptor.Digest, err)
			}
			if err := dst.tag(img.Entry.Tag, img.Root.Descriptor(), r.Name); err != nil {
				return nil, err
			}
		}
		for _, n := range r.Attachments {
			if err := w.walk(n.Descriptor()); err != nil {
				return nil, fmt.Errorf("%s %s in %s: %w", n.Entry.Kind, n.Entry.Descriptor.Digest, r.Name, err)
			}
			if err := dst.tag(n.Entry.Tag, n.Descriptor(), r.Name); err != nil {
				return nil, err
			}
			if n.Entry.Kind.IsReferrer() {
				s := n.Entry.Subject
				d := referrers.Descriptor(n.Descriptor(), n.Manifest)
				if !slices.ContainsFunc(dst.referrers[s], func(x ocispec.Descriptor) bool { return x.Digest == d.Digest }) {
					dst.referrers[s] = append(dst.referrers[s], d)
				}
			}
		}
	}
	slices.Sort(vw.names)
	for _, dst := range vw.repos {
		for s, list := range dst.referrers {
			slices.SortStableFunc(list, func(a, b ocispec.Descriptor) int { return compare(a.Digest, b.Digest) })
			b, err := referrers.Index(list)
			if err != nil {
				return nil, err
			}
			desc := oci.DescriptorFor(ocispec.MediaTypeImageIndex, b)
			if err := dst.tag(oci.ReferrersTag(s), desc, dst.name); err != nil {
				return nil, err
			}
			dst.generated[desc.Digest] = b
			dst.manifests[desc.Digest] = desc
		}
		for t := range dst.tags {
			dst.tagList = append(dst.tagList, t)
		}
		slices.Sort(dst.tagList)
	}
	return vw, nil
}

func compare(a, b digest.Digest) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// tag sets tag (if any) to desc, refusing two contents under one tag (two source
// repositories that land in one destination repository with clashing tags).
func (r *repo) tag(tag string, desc ocispec.Descriptor, source string) error {
	if tag == "" {
		return nil
	}
	if old, ok := r.tags[tag]; ok && old.Digest != desc.Digest {
		return fmt.Errorf("%w: %s:%s would name both %s and %s (from %s)", oci.ErrInvalidName, r.name, tag, old.Digest, desc.Digest, source)
	}
	r.tags[tag] = desc
	return nil
}

// walker collects the manifests and blobs reachable from a root that the verified
// store holds, as unpack copies them (referrers.Down: index children left out by a
// platform filter are skipped; a manifest's config and layers are all there, the
// graph checked it).
type walker struct {
	ctx  context.Context
	down referrers.Down
	dst  *repo
}

func (w *walker) walk(desc ocispec.Descriptor) error {
	return w.down.Walk(w.ctx, desc, nil, func(d ocispec.Descriptor, m *oci.Manifest) error {
		if m != nil {
			w.dst.manifests[d.Digest] = d
		} else {
			w.dst.blobs[d.Digest] = d
		}
		return nil
	})
}

// contents lists the served repositories, sorted, with their tags.
func (vw *view) contents() []Repository {
	out := make([]Repository, 0, len(vw.names))
	for _, n := range vw.names {
		r := vw.repos[n]
		out = append(out, Repository{Name: n, Tags: slices.Clone(r.tagList), Manifests: len(r.manifests), Blobs: len(r.blobs)})
	}
	return out
}

// acquire takes a reference on vw unless it is retired.
func (vw *view) acquire() bool {
	vw.mu.Lock()
	defer vw.mu.Unlock()
	if vw.retired {
		return false
	}
	vw.refs++
	return true
}

// release drops a reference; the last one of a retired view closes it.
func (vw *view) release() {
	vw.mu.Lock()
	defer vw.mu.Unlock()
	vw.refs--
	vw.closeIfDone()
}

// retire stops new references; the view closes once the last request on it is done.
func (vw *view) retire() {
	vw.mu.Lock()
	defer vw.mu.Unlock()
	vw.retired = true
	vw.closeIfDone()
}

func (vw *view) closeIfDone() {
	if vw.retired && vw.refs == 0 && !vw.closed {
		vw.closed = true
		_ = vw.v.Close()
	}
}
