package referrers

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// Store is what a graph is read from: a verified bundle (layout.Pinned, whose Exists
// answers from the verified file list) or an open layout. Every read is verified
// against its descriptor.
type Store interface {
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
	Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error)
}

// Graph is the subject graph of a bundle, built once from its index.json entries and
// the manifests they reach, with one rule: a manifest belongs to the graph when it is
// a packed image of its repository, a child (at any depth) of such an image that the
// bundle carries, or an attachment whose subject chain reaches one of those in the
// same repository. Build refuses every entry outside that rule, and every entry
// whose content does not match its kind, so that what the graph holds is exactly
// what unpack pushes and what verify and inspect show.
type Graph struct {
	repos []*Repo
}

// Repo is the graph of one source repository.
type Repo struct {
	// Name is the source repository, host/path.
	Name string
	// Images are the repository's image entries, in index.json order.
	Images []*Image
	// Attachments are the repository's attachments, every subject before what is
	// attached to it.
	Attachments []*Node
	// Derived are the referrers tag schema indexes the bundle carries for tools that
	// read layouts; they are never pushed (a registry keeps its own).
	Derived []layout.Entry

	tree map[digest.Digest]*Node // image roots and their descendants
	att  map[digest.Digest][]*Node
}

// Image is an image entry of the bundle.
type Image struct {
	Entry layout.Entry
	// Root is the image's manifest or index, with its tree.
	Root *Node
}

// Node is a manifest of the graph.
type Node struct {
	// Entry is the index.json entry (for children without one: the descriptor from
	// their index, kind child).
	Entry layout.Entry
	// Manifest is the parsed manifest.
	Manifest *oci.Manifest
	// Children are the index children the bundle carries, in index order (with their
	// platforms); a platform filter leaves the others out.
	Children []*Node
	// Attached are the attachments whose subject is this node, by kind and digest.
	Attached []*Node
	// Depth is 0 for images and their children, and one more than its subject's for
	// an attachment.
	Depth int
}

// Descriptor returns the node's manifest descriptor without annotations: the bytes
// it is pushed as.
func (n *Node) Descriptor() ocispec.Descriptor {
	d := n.Entry.Descriptor
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
}

// Repositories returns the graph per repository, sorted by name.
func (g *Graph) Repositories() []*Repo { return g.repos }

// Tree returns an image's root and every descendant the bundle carries, root first,
// breadth first.
func (img *Image) Tree() []*Node {
	out := []*Node{img.Root}
	seen := map[digest.Digest]bool{img.Root.Entry.Descriptor.Digest: true}
	for i := 0; i < len(out); i++ {
		for _, c := range out[i].Children {
			if !seen[c.Entry.Descriptor.Digest] {
				seen[c.Entry.Descriptor.Digest] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// PlatformTree returns the manifests of the image's tree that serve platform want: the
// root index, the children of every index (nested ones too) whose platform matches
// want or that name no platform, in index order, each once; and the platforms of the
// matching children. Children the bundle does not carry are skipped. For a root that
// is no index it returns the root alone and no platform (the caller reads its config).
func (img *Image) PlatformTree(want ocispec.Platform) ([]*Node, []string) {
	root := img.Root
	out := []*Node{root}
	var plats []string
	seen := map[digest.Digest]bool{root.Entry.Descriptor.Digest: true}
	for i := 0; i < len(out); i++ {
		n := out[i]
		if n.Manifest == nil || !oci.IsIndex(n.Entry.Descriptor.MediaType) {
			continue
		}
		carried := make(map[digest.Digest]*Node, len(n.Children))
		for _, c := range n.Children {
			carried[c.Entry.Descriptor.Digest] = c
		}
		for _, d := range n.Manifest.Manifests {
			c := carried[d.Digest]
			if c == nil || seen[d.Digest] {
				continue // left out by pack's platform filter, or listed twice
			}
			switch {
			case d.Platform == nil:
			case oci.PlatformMatches(d.Platform, want):
				plats = append(plats, oci.PlatformString(d.Platform))
			default:
				continue
			}
			seen[d.Digest] = true
			out = append(out, c)
		}
	}
	return out, plats
}

// LeftOut counts the index children of the image's tree that the bundle does not
// carry (a platform filter left them out).
func (img *Image) LeftOut() int {
	n := 0
	for _, node := range img.Tree() {
		n += len(node.LeftOut())
	}
	return n
}

// LeftOut returns the children an index node names that the bundle does not carry,
// in the index's order (nil for a manifest that is no index, or a whole index).
func (n *Node) LeftOut() []ocispec.Descriptor {
	if n.Manifest == nil || !oci.IsIndex(n.Entry.Descriptor.MediaType) || len(n.Children) == len(n.Manifest.Manifests) {
		return nil
	}
	have := make(map[digest.Digest]bool, len(n.Children))
	for _, c := range n.Children {
		have[c.Entry.Descriptor.Digest] = true
	}
	var out []ocispec.Descriptor
	for _, c := range n.Manifest.Manifests {
		if !have[c.Digest] {
			out = append(out, c)
		}
	}
	return out
}

// AttachmentsOf returns every attachment reachable from nodes (what is attached to
// them, and to that, …), subjects first.
func AttachmentsOf(nodes []*Node) []*Node {
	var out []*Node
	seen := map[*Node]bool{}
	queue := append([]*Node(nil), nodes...)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, a := range n.Attached {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
				queue = append(queue, a)
			}
		}
	}
	return out
}

// Grouped returns the repository's attachments by subject digest (BySubject), as
// imageverify reads them.
func (r *Repo) Grouped() map[digest.Digest][]Attachment {
	atts := make([]Attachment, 0, len(r.Attachments))
	for _, n := range r.Attachments {
		e := n.Entry
		atts = append(atts, Attachment{Subject: e.Subject, Descriptor: e.Descriptor, Kind: e.Kind, Tag: e.Tag})
	}
	return BySubject(atts)
}

// BuildOptions configure Build. The zero value refuses nothing but what the graph
// rule refuses.
type BuildOptions struct {
	// MaxNodes bounds the manifests read; <= 0 means DefaultMaxNodes.
	MaxNodes int
	// Expected, when set, accepts a config or layer that s does not hold: a delta
	// bundle's blob its signed metadata expects at the destination (the caller checks
	// which repository needs it). nil accepts none.
	Expected func(blob ocispec.Descriptor) bool
}

// DefaultMaxNodes bounds the manifests of one graph.
const DefaultMaxNodes = 1 << 20

// Build builds the graph of entries (a bundle's parsed index.json) reading manifests
// from s. It fails, naming the entry, on the first entry outside the graph
// (ErrOrphan), whose content does not match its kind (ErrKindMismatch), whose name
// breaks the grammar (oci.ErrInvalidName), or whose content is not all in s
// (oci.ErrNotFound); index children s does not hold are left out.
func Build(ctx context.Context, s Store, entries []layout.Entry, opts BuildOptions) (*Graph, error) {
	b := &builder{ctx: ctx, s: s, manifests: map[digest.Digest]*oci.Manifest{}, max: opts.MaxNodes, expected: opts.Expected}
	if b.max <= 0 {
		b.max = DefaultMaxNodes
	}
	repos := map[string]*Repo{}
	repo := func(name string) *Repo {
		r := repos[name]
		if r == nil {
			r = &Repo{Name: name, tree: map[digest.Digest]*Node{}, att: map[digest.Digest][]*Node{}}
			repos[name] = r
		}
		return r
	}
	for _, e := range entries {
		if err := checkNames(e); err != nil {
			return nil, err
		}
	}
	// 1. images and their trees
	for _, e := range entries {
		if !e.Kind.IsImage() {
			continue
		}
		r := repo(e.Repository)
		root, err := b.tree(r, e)
		if err != nil {
			return nil, err
		}
		r.Images = append(r.Images, &Image{Entry: e, Root: root})
	}
	// 2. attachments, reached from the trees through their subjects (one pass per
	// depth: linear in the entries)
	pending := map[string]map[digest.Digest][]layout.Entry{} // repo -> subject -> entries
	for _, e := range entries {
		switch {
		case e.Kind.IsChild():
			r := repos[e.Repository]
			if r == nil || r.tree[e.Descriptor.Digest] == nil {
				return nil, fmt.Errorf("%w: index.json child entry %s in %s is no child of an image of that repository the bundle carries", ErrOrphan, e.Descriptor.Digest, e.Repository)
			}
		case e.Kind.IsAttachment():
			if pending[e.Repository] == nil {
				pending[e.Repository] = map[digest.Digest][]layout.Entry{}
			}
			pending[e.Repository][e.Subject] = append(pending[e.Repository][e.Subject], e)
		case e.Kind.IsDerived(), e.Kind.IsImage():
		default:
			return nil, fmt.Errorf("%w: index.json entry %s in %s has kind %q", ErrKindMismatch, e.Descriptor.Digest, e.Repository, e.Kind)
		}
	}
	for name, bySubject := range pending {
		r := repos[name]
		if r == nil {
			for _, es := range bySubject {
				return nil, orphan(es[0])
			}
		}
		var frontier []*Node
		for _, d := range sortedKeys(r.tree) {
			frontier = append(frontier, r.tree[d])
		}
		for len(frontier) > 0 {
			var next []*Node
			for _, subj := range frontier {
				d := subj.Entry.Descriptor.Digest
				es := bySubject[d]
				delete(bySubject, d)
				for _, e := range es {
					n, err := b.attachment(e, subj)
					if err != nil {
						return nil, err
					}
					subj.Attached = append(subj.Attached, n)
					r.Attachments = append(r.Attachments, n)
					r.att[e.Descriptor.Digest] = append(r.att[e.Descriptor.Digest], n)
					next = append(next, n)
				}
				sortNodes(subj.Attached)
			}
			frontier = next
		}
		for _, d := range sortedKeys(bySubject) {
			return nil, orphan(bySubject[d][0])
		}
	}
	// 3. referrers tag schema indexes: derived, but only for subjects in the graph
	for _, e := range entries {
		if !e.Kind.IsDerived() {
			continue
		}
		r := repos[e.Repository]
		if r == nil || (r.tree[e.Subject] == nil && r.att[e.Subject] == nil) {
			return nil, orphan(e)
		}
		r.Derived = append(r.Derived, e)
	}
	g := &Graph{}
	for _, name := range sortedKeys(repos) {
		g.repos = append(g.repos, repos[name])
	}
	return g, nil
}

func orphan(e layout.Entry) error {
	return fmt.Errorf("%w: %s %s in %s is attached to %s, which is no image, child or attachment of that repository in the bundle", ErrOrphan, e.Kind, e.Descriptor.Digest, e.Repository, e.Subject)
}

// checkNames checks the repository and tag of an entry against the distribution-spec
// grammar.
func checkNames(e layout.Entry) error {
	if err := oci.ValidateRepository(e.Repository); err != nil {
		return fmt.Errorf("index.json entry %s (%s): %w", e.Descriptor.Digest, e.Kind, err)
	}
	if e.Tag != "" {
		if err := oci.ValidateTag(e.Tag); err != nil {
			return fmt.Errorf("index.json entry %s (%s) in %s: %w", e.Descriptor.Digest, e.Kind, e.Repository, err)
		}
	}
	return nil
}

type builder struct {
	ctx       context.Context
	s         Store
	manifests map[digest.Digest]*oci.Manifest
	max       int
	expected  func(ocispec.Descriptor) bool
}

// manifest reads, parses and checks a manifest once: its blobs must all be in the
// store with their sizes (index children may be left out: ok false).
func (b *builder) manifest(desc ocispec.Descriptor, what string) (*oci.Manifest, error) {
	if m := b.manifests[desc.Digest]; m != nil {
		return m, nil
	}
	if err := b.ctx.Err(); err != nil {
		return nil, err
	}
	if len(b.manifests) >= b.max {
		return nil, fmt.Errorf("%w: more than %d manifests", oci.ErrTooLarge, b.max)
	}
	bare := ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	rc, err := b.s.Fetch(b.ctx, bare)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, desc.Digest, err)
	}
	raw, err := oci.ReadAllVerified(rc, bare, oci.MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, desc.Digest, err)
	}
	m, err := oci.ParseManifest(bare, raw)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, desc.Digest, err)
	}
	if !oci.IsIndex(desc.MediaType) {
		for _, c := range m.Children() {
			ok, err := b.s.Exists(b.ctx, c)
			if err != nil {
				return nil, fmt.Errorf("%s %s: blob %s: %w", what, desc.Digest, c.Digest, err)
			}
			if !ok && (b.expected == nil || !b.expected(c)) {
				return nil, fmt.Errorf("%w: %s %s names blob %s (%s), which the bundle does not hold", oci.ErrNotFound, what, desc.Digest, c.Digest, c.MediaType)
			}
		}
	}
	b.manifests[desc.Digest] = m
	return m, nil
}

// tree reads an image and every descendant the store holds into r.tree.
func (b *builder) tree(r *Repo, e layout.Entry) (*Node, error) {
	if n := r.tree[e.Descriptor.Digest]; n != nil {
		if !n.Entry.Kind.IsImage() {
			n.Entry = e // a child listed as an image too: the image entry names it
		}
		return n, nil
	}
	m, err := b.manifest(e.Descriptor, "image "+e.Repository)
	if err != nil {
		return nil, err
	}
	root := &Node{Entry: e, Manifest: m}
	r.tree[e.Descriptor.Digest] = root
	queue := []*Node{root}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if !oci.IsIndex(n.Entry.Descriptor.MediaType) {
			continue
		}
		for _, c := range n.Manifest.Manifests {
			ok, err := b.s.Exists(b.ctx, c)
			if err != nil {
				return nil, fmt.Errorf("image %s@%s: child %s: %w", e.Repository, e.Descriptor.Digest, c.Digest, err)
			}
			if !ok {
				continue // left out by a platform filter
			}
			if !oci.IsManifest(c.MediaType) {
				return nil, fmt.Errorf("%w: image %s@%s: index child %s has media type %q, not a manifest", oci.ErrUnsupported, e.Repository, e.Descriptor.Digest, c.Digest, c.MediaType)
			}
			if cn := r.tree[c.Digest]; cn != nil {
				n.Children = append(n.Children, cn)
				continue
			}
			cm, err := b.manifest(c, "child of "+e.Repository+"@"+e.Descriptor.Digest.String())
			if err != nil {
				return nil, err
			}
			cn := &Node{Entry: layout.ChildEntry(c, e.Repository), Manifest: cm}
			r.tree[c.Digest] = cn
			n.Children = append(n.Children, cn)
			queue = append(queue, cn)
		}
	}
	return root, nil
}

// attachment reads an attachment and checks its content against its kind.
func (b *builder) attachment(e layout.Entry, subject *Node) (*Node, error) {
	what := fmt.Sprintf("%s %s", e.Kind, e.Repository)
	m, err := b.manifest(e.Descriptor, what)
	if err != nil {
		return nil, err
	}
	if err := b.checkKind(e, m); err != nil {
		return nil, err
	}
	return &Node{Entry: e, Manifest: m, Depth: subject.Depth + 1}, nil
}

// Layer media types of cosign's tag-scheme artifacts.
var cosignLayers = map[oci.Kind]string{
	oci.KindCosignSig: oci.MediaTypeCosignSimpleSigning,
	oci.KindCosignAtt: oci.MediaTypeDSSEEnvelope,
}

// checkKind refuses an attachment whose content is not what its kind says: a referrer
// must name the subject it is listed under; a cosign artifact is one image manifest
// of its kind's layers; no attachment, nor anything in it, is a runnable image.
func (b *builder) checkKind(e layout.Entry, m *oci.Manifest) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s %s in %s (attached to %s): %s", ErrKindMismatch, e.Kind, e.Descriptor.Digest, e.Repository, e.Subject, fmt.Sprintf(format, a...))
	}
	switch {
	case e.Kind.IsReferrer():
		if m.Subject == nil || m.Subject.Digest != e.Subject {
			got := "no subject"
			if m.Subject != nil {
				got = "subject " + m.Subject.Digest.String()
			}
			return bad("the manifest has %s", got)
		}
	default:
		if oci.IsIndex(e.Descriptor.MediaType) {
			return bad("a cosign artifact is an image manifest, this is an index")
		}
		if want, ok := cosignLayers[e.Kind]; ok {
			for _, l := range m.Layers {
				if l.MediaType != want {
					return bad("layer %s has media type %q, want %q", l.Digest, l.MediaType, want)
				}
			}
		}
	}
	// nothing attached is runnable, down to the children of an attached index
	queue := []*oci.Manifest{m}
	seen := map[digest.Digest]bool{e.Descriptor.Digest: true}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur.Config != nil && oci.IsImageConfig(cur.Config.MediaType) {
			for _, l := range cur.Layers {
				if oci.IsFilesystemLayer(l.MediaType) {
					return bad("it is a runnable image (filesystem layer %s, %s)", l.Digest, l.MediaType)
				}
			}
		}
		for _, c := range cur.Manifests {
			if seen[c.Digest] {
				continue
			}
			seen[c.Digest] = true
			ok, err := b.s.Exists(b.ctx, c)
			if err != nil {
				return fmt.Errorf("%s %s: child %s: %w", e.Kind, e.Descriptor.Digest, c.Digest, err)
			}
			if !ok || !oci.IsManifest(c.MediaType) {
				continue
			}
			cm, err := b.manifest(c, "child of "+string(e.Kind)+" "+e.Descriptor.Digest.String())
			if err != nil {
				return err
			}
			queue = append(queue, cm)
		}
	}
	return nil
}

func sortNodes(ns []*Node) {
	sort.SliceStable(ns, func(i, j int) bool {
		a, b := ns[i].Entry, ns[j].Entry
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Descriptor.Digest < b.Descriptor.Digest
	})
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ReferrersBySubject returns, for every subject that OCI referrers among entries name,
// its referrers, each once, in the order the subjects first appear. Tags are unique
// in a layout, so a subject held by several repositories gets one list, merged.
func ReferrersBySubject(entries []layout.Entry) []SubjectReferrers {
	at := map[digest.Digest]int{}
	// (subject, referrer) pairs already listed: one map lookup per entry, not a scan of
	// the subject's list (quadratic in the referrers of one subject)
	listed := map[[2]digest.Digest]bool{}
	var out []SubjectReferrers
	for _, e := range entries {
		if !e.Kind.IsReferrer() {
			continue
		}
		i, ok := at[e.Subject]
		if !ok {
			i = len(out)
			at[e.Subject] = i
			out = append(out, SubjectReferrers{Subject: e.Subject, Repository: e.Repository})
		}
		if k := [2]digest.Digest{e.Subject, e.Descriptor.Digest}; !listed[k] {
			listed[k] = true
			out[i].Referrers = append(out[i].Referrers, e.Descriptor)
		}
	}
	return out
}
