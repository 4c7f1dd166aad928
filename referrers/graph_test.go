package referrers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

const repo = "cgr.dev/chainguard/nginx"

// graphFixture is a small bundle: an index with two platform manifests, a referrer on
// the index, a cosign signature on a child, and a referrer on the referrer.
type graphFixture struct {
	t        *testing.T
	l        *layout.Layout
	index    ocispec.Descriptor
	children []ocispec.Descriptor
	entries  []layout.Entry
}

func (f *graphFixture) push(mediaType string, v any) ocispec.Descriptor {
	f.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		f.t.Fatal(err)
	}
	d, err := f.l.PushBytes(context.Background(), mediaType, b)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *graphFixture) blob(mediaType, s string) ocispec.Descriptor {
	f.t.Helper()
	d, err := f.l.PushBytes(context.Background(), mediaType, []byte(s))
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// image pushes a runnable image manifest (image config + a tar layer).
func (f *graphFixture) image(seed string, subject *ocispec.Descriptor) ocispec.Descriptor {
	cfg := f.blob(ocispec.MediaTypeImageConfig, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"seed":"`+seed+`"}`)
	layer := f.blob(ocispec.MediaTypeImageLayerGzip, "layer "+seed)
	return f.push(ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}, Subject: subject})
}

// artifact pushes an artifact manifest with one layer of mediaType, attached to subject.
func (f *graphFixture) artifact(mediaType, content string, subject *ocispec.Descriptor) ocispec.Descriptor {
	layer := f.blob(mediaType, content)
	return f.push(ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, ArtifactType: mediaType, Config: ocispec.DescriptorEmptyJSON,
		Layers: []ocispec.Descriptor{layer}, Subject: subject})
}

// cosign pushes a cosign tag-scheme manifest (image config, layers of mediaType).
func (f *graphFixture) cosign(mediaType, content string) ocispec.Descriptor {
	cfg := f.blob(ocispec.MediaTypeImageConfig, `{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"c":"`+content+`"}`)
	layer := f.blob(mediaType, content)
	return f.push(ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}})
}

func newGraphFixture(t *testing.T) *graphFixture {
	t.Helper()
	l, err := layout.Create(filepath.Join(t.TempDir(), "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	f := &graphFixture{t: t, l: l}
	f.blob(ocispec.DescriptorEmptyJSON.MediaType, "{}")
	for i, arch := range []string{"amd64", "arm64"} {
		d := f.image(fmt.Sprint(i), nil)
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		f.children = append(f.children, d)
	}
	f.index = f.push(ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex, Manifests: f.children})
	ref := f.artifact(oci.MediaTypeSigstoreBundle03, "bundle", &f.index)
	refRef := f.artifact("application/spdx+json", "sbom of the bundle", &ref)
	sig := f.cosign(oci.MediaTypeCosignSimpleSigning, "sig of child 0")
	f.entries = []layout.Entry{
		layout.ImageEntry(f.index, repo, "1.27"),
		layout.ChildEntry(f.children[0], repo),
		layout.AttachmentEntry(refRef, oci.KindReferrer, repo, "", ref.Digest),
		layout.AttachmentEntry(ref, oci.KindReferrer, repo, "", f.index.Digest),
		layout.AttachmentEntry(sig, oci.KindCosignSig, repo, oci.CosignTag(f.children[0].Digest, ".sig"), f.children[0].Digest),
	}
	return f
}

func TestBuildGraph(t *testing.T) {
	f := newGraphFixture(t)
	g, err := Build(context.Background(), f.l, f.entries, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs := g.Repositories()
	if len(rs) != 1 || rs[0].Name != repo || len(rs[0].Images) != 1 {
		t.Fatalf("repositories %+v", rs)
	}
	img := rs[0].Images[0]
	tree := img.Tree()
	if len(tree) != 3 || tree[0].Entry.Descriptor.Digest != f.index.Digest {
		t.Fatalf("tree of %d nodes", len(tree))
	}
	// the second child has no index.json entry: it is in the tree all the same, with its platform
	if tree[2].Entry.Descriptor.Digest != f.children[1].Digest || tree[2].Entry.Kind != oci.KindChild ||
		oci.PlatformString(tree[2].Entry.Descriptor.Platform) != "linux/arm64" {
		t.Fatalf("second child %+v", tree[2].Entry)
	}
	atts := rs[0].Attachments
	if len(atts) != 3 {
		t.Fatalf("%d attachments", len(atts))
	}
	pos := map[digest.Digest]int{}
	for i, n := range atts {
		pos[n.Entry.Descriptor.Digest] = i
	}
	for _, n := range atts {
		if p, ok := pos[n.Entry.Subject]; ok && p > pos[n.Entry.Descriptor.Digest] {
			t.Errorf("%s comes before its subject %s", n.Entry.Descriptor.Digest, n.Entry.Subject)
		}
	}
	if n := len(AttachmentsOf(tree)); n != 3 {
		t.Errorf("AttachmentsOf = %d, want 3", n)
	}
	if got := rs[0].Grouped(); len(got[f.index.Digest]) != 1 || len(got[f.children[0].Digest]) != 1 {
		t.Errorf("Grouped %v", got)
	}
}

// TestBuildGraphPlatformFilter: an index child the store does not hold is left out.
func TestBuildGraphPlatformFilter(t *testing.T) {
	f := newGraphFixture(t)
	rel, _ := layout.BlobPath(f.children[1])
	filtered := filteredStore{Store: f.l, without: f.children[1].Digest}
	g, err := Build(context.Background(), filtered, f.entries, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img := g.Repositories()[0].Images[0]
	if tree := img.Tree(); len(tree) != 2 {
		t.Fatalf("tree of %d nodes, want 2 (%s left out)", len(tree), rel)
	}
	if n := img.LeftOut(); n != 1 {
		t.Errorf("LeftOut() = %d, want 1", n)
	}
	whole, err := Build(context.Background(), f.l, f.entries, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := whole.Repositories()[0].Images[0].LeftOut(); n != 0 {
		t.Errorf("LeftOut() of the whole image = %d, want 0", n)
	}
}

// TestPlatformTree: the tree of one platform holds the root and that platform's child;
// a child the bundle does not carry is never returned, even when it matches.
func TestPlatformTree(t *testing.T) {
	f := newGraphFixture(t)
	g, err := Build(context.Background(), f.l, f.entries, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img := g.Repositories()[0].Images[0]
	for i, c := range f.children {
		nodes, plats := img.PlatformTree(*c.Platform)
		if len(nodes) != 2 || nodes[0] != img.Root || nodes[1].Entry.Descriptor.Digest != f.children[i].Digest {
			t.Errorf("PlatformTree(%s): %d nodes, want the root and %s", oci.PlatformString(c.Platform), len(nodes), c.Digest)
		}
		if len(plats) != 1 || plats[0] != oci.PlatformString(c.Platform) {
			t.Errorf("PlatformTree(%s) platforms = %v", oci.PlatformString(c.Platform), plats)
		}
	}
	if nodes, plats := img.PlatformTree(ocispec.Platform{OS: "windows", Architecture: "amd64"}); len(nodes) != 1 || len(plats) != 0 {
		t.Errorf("PlatformTree(windows/amd64) = %d nodes, %v; want the root alone", len(nodes), plats)
	}
	filtered, err := Build(context.Background(), filteredStore{Store: f.l, without: f.children[1].Digest}, f.entries, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if nodes, plats := filtered.Repositories()[0].Images[0].PlatformTree(*f.children[1].Platform); len(nodes) != 1 || len(plats) != 0 {
		t.Errorf("PlatformTree of a child left out = %d nodes, %v; want the root alone", len(nodes), plats)
	}
}

type filteredStore struct {
	Store
	without digest.Digest
}

func (s filteredStore) Exists(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	if d.Digest == s.without {
		return false, nil
	}
	return s.Store.Exists(ctx, d)
}

func TestBuildGraphRefuses(t *testing.T) {
	cases := []struct {
		name string
		edit func(f *graphFixture) []layout.Entry
		want error
	}{
		{"orphan referrer that is a runnable image", func(f *graphFixture) []layout.Entry {
			ghost := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("nothing"), Size: 7}
			d := f.image("smuggled", &ghost)
			return append(f.entries, layout.AttachmentEntry(d, oci.KindReferrer, "evil.example/x", "", ghost.Digest))
		}, ErrOrphan},
		{"attachment of an image of another repository", func(f *graphFixture) []layout.Entry {
			d := f.artifact("application/spdx+json", "foreign", &f.index)
			return append(f.entries, layout.AttachmentEntry(d, oci.KindReferrer, "cgr.dev/chainguard/other", "", f.index.Digest))
		}, ErrOrphan},
		{"child entry that is no child", func(f *graphFixture) []layout.Entry {
			d := f.image("lone", nil)
			return append(f.entries, layout.ChildEntry(d, repo))
		}, ErrOrphan},
		{"attachment loop reaching no image", func(f *graphFixture) []layout.Entry {
			a := f.cosign(oci.MediaTypeCosignSimpleSigning, "a")
			b := f.cosign(oci.MediaTypeCosignSimpleSigning, "b")
			return append(f.entries,
				layout.AttachmentEntry(a, oci.KindCosignSig, repo, oci.CosignTag(b.Digest, ".sig"), b.Digest),
				layout.AttachmentEntry(b, oci.KindCosignSig, repo, oci.CosignTag(a.Digest, ".sig"), a.Digest))
		}, ErrOrphan},
		{"cosign-sig that is a runnable image", func(f *graphFixture) []layout.Entry {
			d := f.image("runnable", nil)
			es := f.entries[: len(f.entries)-1 : len(f.entries)-1]
			return append(es, layout.AttachmentEntry(d, oci.KindCosignSig, repo, oci.CosignTag(f.children[0].Digest, ".sig"), f.children[0].Digest))
		}, ErrKindMismatch},
		{"cosign-sbom that is a runnable image", func(f *graphFixture) []layout.Entry {
			d := f.image("runnable", nil)
			return append(f.entries, layout.AttachmentEntry(d, oci.KindCosignSBOM, repo, oci.CosignTag(f.index.Digest, ".sbom"), f.index.Digest))
		}, ErrKindMismatch},
		{"cosign-att with a simple-signing layer", func(f *graphFixture) []layout.Entry {
			d := f.cosign(oci.MediaTypeCosignSimpleSigning, "not dsse")
			return append(f.entries, layout.AttachmentEntry(d, oci.KindCosignAtt, repo, oci.CosignTag(f.index.Digest, ".att"), f.index.Digest))
		}, ErrKindMismatch},
		{"referrer without a subject", func(f *graphFixture) []layout.Entry {
			d := f.artifact("application/spdx+json", "no subject", nil)
			return append(f.entries, layout.AttachmentEntry(d, oci.KindReferrer, repo, "", f.index.Digest))
		}, ErrKindMismatch},
		{"referrer listed under another subject", func(f *graphFixture) []layout.Entry {
			d := f.artifact("application/spdx+json", "child sbom", &f.children[1])
			return append(f.entries, layout.AttachmentEntry(d, oci.KindReferrer, repo, "", f.index.Digest))
		}, ErrKindMismatch},
		{"referrer that is a runnable image", func(f *graphFixture) []layout.Entry {
			d := f.image("runnable referrer", &f.index)
			return append(f.entries, layout.AttachmentEntry(d, oci.KindReferrer, repo, "", f.index.Digest))
		}, ErrKindMismatch},
		{"attached index with a runnable child", func(f *graphFixture) []layout.Entry {
			run := f.image("inner", nil)
			d := f.push(ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
				MediaType: ocispec.MediaTypeImageIndex, ArtifactType: "application/x-bag", Manifests: []ocispec.Descriptor{run}, Subject: &f.index})
			return append(f.entries, layout.AttachmentEntry(d, oci.KindReferrer, repo, "", f.index.Digest))
		}, ErrKindMismatch},
		{"repository with ..", func(f *graphFixture) []layout.Entry {
			es := append([]layout.Entry(nil), f.entries...)
			es[0].Repository = "cgr.dev/chainguard/../../esc"
			return es
		}, oci.ErrInvalidName},
		{"uppercase repository", func(f *graphFixture) []layout.Entry {
			es := append([]layout.Entry(nil), f.entries...)
			es[0].Repository = "cgr.dev/Chainguard/nginx"
			return es
		}, oci.ErrInvalidName},
		{"tag outside the grammar", func(f *graphFixture) []layout.Entry {
			es := append([]layout.Entry(nil), f.entries...)
			es[0].Tag = "..x"
			return es
		}, oci.ErrInvalidName},
		{"image whose layer the bundle does not hold", func(f *graphFixture) []layout.Entry {
			missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("absent"), Size: 6}
			cfg := f.blob(ocispec.MediaTypeImageConfig, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
			d := f.push(ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
				MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{missing}})
			return append(f.entries, layout.ImageEntry(d, "cgr.dev/chainguard/broken", "1"))
		}, oci.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newGraphFixture(t)
			_, err := Build(context.Background(), f.l, tc.edit(f), BuildOptions{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestBuildGraphManyAttachments: thousands of attachments, in a chain and side by side,
// build in one pass each (the old unpack ordering was quadratic).
func TestBuildGraphManyAttachments(t *testing.T) {
	f := newGraphFixture(t)
	es := f.entries
	subject := f.index
	const n = 3000
	for i := range n {
		d := f.artifact("application/vnd.example+json", fmt.Sprint("chain ", i), &subject)
		es = append(es, layout.AttachmentEntry(d, oci.KindReferrer, repo, "", subject.Digest))
		side := f.artifact("application/vnd.example+json", fmt.Sprint("side ", i), &f.index)
		es = append(es, layout.AttachmentEntry(side, oci.KindReferrer, repo, "", f.index.Digest))
		subject = d
	}
	g, err := Build(context.Background(), f.l, es, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := g.Repositories()[0]
	if got := len(r.Attachments); got != 2*n+3 {
		t.Fatalf("%d attachments, want %d", got, 2*n+3)
	}
	last := r.Attachments[len(r.Attachments)-1]
	if last.Depth != n {
		t.Errorf("deepest attachment at depth %d, want %d", last.Depth, n)
	}
	if _, err := Build(context.Background(), f.l, es, BuildOptions{MaxNodes: 100}); !errors.Is(err, oci.ErrTooLarge) {
		t.Errorf("MaxNodes 100: err = %v, want ErrTooLarge", err)
	}
}

// TestGraphOrder pins the orders every stage reads from the graph, on a graph whose
// index.json lists attachments deepest first and mixes kinds along one chain (a
// referrer on a child, a cosign signature and a referrer on that referrer, a referrer
// on the signature) and nests an index in the image: Repo.Attachments puts every
// subject before what is attached to it, whatever the order of index.json, with each
// node's Depth one more than its subject's; AttachmentsOf does the same from a tree;
// Image.Tree is the root, then its children in index order, then theirs. Tree and
// AttachmentsOf do not depend on the order of the entries; Attachments keeps its
// rule in any order of them, but among attachments of the same depth it follows
// index.json (which layout.WriteIndex always sorts).
func TestGraphOrder(t *testing.T) {
	f := newGraphFixture(t)
	inner := f.image("inner", nil)
	inner.Platform = &ocispec.Platform{OS: "linux", Architecture: "s390x"}
	nested := f.push(ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{inner}})
	top := f.push(ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{f.children[0], nested, f.children[1]}})
	const other = "cgr.dev/chainguard/nested"
	sbom := f.artifact(oci.MediaTypeSPDXJSON, "sbom of the inner child", &inner)
	sigOnSBOM := f.cosign(oci.MediaTypeCosignSimpleSigning, "sig of the sbom")
	bundleOnSBOM := f.artifact(oci.MediaTypeSigstoreBundle03, "bundle on the sbom", &sbom)
	bundleOnSig := f.artifact(oci.MediaTypeSigstoreBundle03, "bundle on the sig", &sigOnSBOM)
	sigOnTop := f.cosign(oci.MediaTypeCosignSimpleSigning, "sig of the top index")
	entries := append(append([]layout.Entry(nil), f.entries...), // deepest first
		layout.AttachmentEntry(bundleOnSig, oci.KindReferrer, other, "", sigOnSBOM.Digest),
		layout.AttachmentEntry(bundleOnSBOM, oci.KindReferrer, other, "", sbom.Digest),
		layout.AttachmentEntry(sigOnSBOM, oci.KindCosignSig, other, oci.CosignTag(sbom.Digest, ".sig"), sbom.Digest),
		layout.AttachmentEntry(sbom, oci.KindReferrer, other, "", inner.Digest),
		layout.AttachmentEntry(sigOnTop, oci.KindCosignSig, other, oci.CosignTag(top.Digest, ".sig"), top.Digest),
		layout.ImageEntry(top, other, "2"),
	)
	type order struct{ tree, atts, from []digest.Digest }
	orders := func(es []layout.Entry) order {
		t.Helper()
		g, err := Build(context.Background(), f.l, es, BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var r *Repo
		for _, rr := range g.Repositories() {
			if rr.Name == other {
				r = rr
			}
		}
		if r == nil || len(r.Images) != 1 {
			t.Fatalf("repository %s not in the graph as one image", other)
		}
		var o order
		tree := r.Images[0].Tree()
		for _, n := range tree {
			o.tree = append(o.tree, n.Entry.Descriptor.Digest)
		}
		depth := map[digest.Digest]int{}
		for _, n := range tree {
			depth[n.Entry.Descriptor.Digest] = 0
		}
		for _, n := range r.Attachments {
			d := n.Entry.Descriptor.Digest
			sd, ok := depth[n.Entry.Subject]
			if !ok {
				t.Errorf("Attachments: %s %s comes before its subject %s", n.Entry.Kind, d, n.Entry.Subject)
			} else if n.Depth != sd+1 {
				t.Errorf("Attachments: %s at depth %d, its subject at %d", d, n.Depth, sd)
			}
			depth[d] = n.Depth
			o.atts = append(o.atts, d)
		}
		seen := map[digest.Digest]bool{}
		for _, n := range tree {
			seen[n.Entry.Descriptor.Digest] = true
		}
		for _, n := range AttachmentsOf(tree) {
			if !seen[n.Entry.Subject] {
				t.Errorf("AttachmentsOf: %s comes before its subject %s", n.Entry.Descriptor.Digest, n.Entry.Subject)
			}
			seen[n.Entry.Descriptor.Digest] = true
			o.from = append(o.from, n.Entry.Descriptor.Digest)
		}
		return o
	}
	got := orders(entries)
	wantTree := []digest.Digest{top.Digest, f.children[0].Digest, nested.Digest, f.children[1].Digest, inner.Digest}
	if !slices.Equal(got.tree, wantTree) {
		t.Errorf("Tree = %v, want the root, its children in index order (child 0, the nested index, child 1), then the nested index's child %v", got.tree, wantTree)
	}
	if len(got.atts) != 5 || len(got.from) != 5 {
		t.Errorf("%d attachments, %d from the tree, want 5", len(got.atts), len(got.from))
	}
	if last := got.atts[len(got.atts)-1]; last != bundleOnSig.Digest && last != bundleOnSBOM.Digest {
		t.Errorf("last attachment %s, want one at depth 3", last)
	}
	// the same graph from the entries in another order (checked again by orders)
	rev := slices.Clone(entries)
	slices.Reverse(rev)
	again := orders(rev)
	if !slices.Equal(again.tree, got.tree) || !slices.Equal(again.from, got.from) {
		t.Errorf("Tree or AttachmentsOf depend on the order of index.json:\n%v\n%v", got, again)
	}
	if !sameSet(again.atts, got.atts) {
		t.Errorf("Attachments differ with the order of index.json:\n%v\n%v", got.atts, again.atts)
	}
}

func sameSet(a, b []digest.Digest) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
