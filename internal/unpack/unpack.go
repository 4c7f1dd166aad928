// Package unpack pushes a bundle into a registry with every digest unchanged. Per
// destination repository it pushes blobs, then child manifests, then indexes (graph
// order), then attached manifests (subjects before what is attached to them) and cosign
// tags, and the image tags last, so no tag ever points at content that is not all there.
// Blobs the registry already has are skipped; blobs pushed to another repository of the
// same registry are mounted instead of uploaded again.
package unpack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/internal/bundle"
	"github.com/petra-oci/petra-oci/internal/graphcopy"
	"github.com/petra-oci/petra-oci/internal/remote"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
)

// Options configure Unpack.
type Options struct {
	// Dir is the bundle.
	Dir string
	// To is the destination: host[:port][/prefix].
	To string
	// Client opens destination repositories.
	Client *remote.Client
	// Concurrency bounds blob transfers in flight per repository.
	Concurrency int
	// Log receives progress.
	Log *slog.Logger
	// Verify says how the whole bundle is verified before anything is pushed: the
	// signature over its metadata, the series sequence and every file. Required
	// unless UnsafeSkipVerify.
	Verify *bundle.VerifyOptions
	// OnBlob, when set, is told about every blob once it is in the registry (progress).
	OnBlob func(desc ocispec.Descriptor, how graphcopy.How)
	// UnsafeSkipVerify pushes an unverified bundle. Never the default; the command
	// that sets it says so loudly.
	UnsafeSkipVerify bool
}

// Mapping says where one image went.
type Mapping struct {
	Source      string        `json:"source"`
	Destination string        `json:"destination"`
	Digest      digest.Digest `json:"digest"`
	Attachments int           `json:"attachments"`
}

// Repository says how one destination repository was written.
type Repository struct {
	Name string `json:"name"`
	// ReferrersAPI is true when the registry serves the referrers API; false means
	// the referrers tag schema index was maintained instead.
	ReferrersAPI bool `json:"referrersAPI"`
}

// Result is what Unpack did.
type Result struct {
	// Verification is what was proved before the first push (nil when skipped).
	Verification *bundle.Report  `json:"verification,omitempty"`
	Images       []Mapping       `json:"images"`
	Repositories []Repository    `json:"repositories"`
	Stats        graphcopy.Stats `json:"stats"`
}

// Destination returns the destination repository for a source repository: the
// destination prefix joined with the source path without its registry host.
func Destination(to, sourceRepository string) (registry.Reference, error) {
	to = strings.TrimSuffix(to, "/")
	host, prefix, _ := strings.Cut(to, "/")
	_, srcPath, ok := strings.Cut(sourceRepository, "/")
	if !ok || srcPath == "" {
		return registry.Reference{}, fmt.Errorf("%w: source repository %q has no path", oci.ErrInvalid, sourceRepository)
	}
	ref := registry.Reference{Registry: host, Repository: path.Join(prefix, srcPath)}
	if err := ref.Validate(); err != nil {
		return registry.Reference{}, fmt.Errorf("%w: destination %s/%s: %v", oci.ErrInvalid, host, ref.Repository, err)
	}
	return ref, nil
}

// Unpack pushes the bundle at opts.Dir to opts.To.
func Unpack(ctx context.Context, opts Options) (*Result, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		return nil, errors.New("unpack: no registry client")
	}
	if opts.To == "" {
		return nil, fmt.Errorf("%w: no destination", oci.ErrInvalid)
	}
	res := &Result{}
	var (
		l   *layout.Layout
		idx ocispec.Index
		err error
	)
	switch {
	case opts.UnsafeSkipVerify:
		opts.Log.Warn("UNSAFE: pushing a bundle whose signature and files were NOT verified", "dir", opts.Dir)
		if l, err = layout.Open(opts.Dir); err != nil {
			return nil, err
		}
		if idx, err = l.ReadIndex(); err != nil {
			return nil, err
		}
	case opts.Verify == nil:
		return nil, fmt.Errorf("%w: unpack needs the bundle's key or identity to verify it", oci.ErrInvalid)
	default:
		// nothing of the bundle, not even oci-layout, is read before this passes
		if res.Verification, err = bundle.Verify(ctx, opts.Dir, *opts.Verify); err != nil || res.Verification == nil {
			return nil, fmt.Errorf("verifying bundle %s (nothing was pushed): %w", opts.Dir, err)
		}
		opts.Log.Info("bundle verified", "bundleID", res.Verification.BundleID, "sequence", res.Verification.Sequence,
			"files", res.Verification.Files.Files, "bytes", res.Verification.Files.Bytes)
		if l, err = layout.Open(opts.Dir); err != nil {
			return nil, err
		}
		if idx, err = l.ReadIndexPinned(res.Verification.IndexSHA256()); err != nil {
			return nil, err
		}
	}
	entries, err := layout.ParseEntries(idx)
	if err != nil {
		return nil, err
	}
	if err := preflight(ctx, l, entries); err != nil {
		return nil, err
	}

	byRepo := map[string][]layout.Entry{}
	var repos []string
	for _, e := range entries {
		if e.Kind == oci.KindReferrersIndex {
			continue // derived; the destination keeps its own
		}
		if e.Kind == oci.KindChild {
			continue // pushed with its image
		}
		if _, ok := byRepo[e.Repository]; !ok {
			repos = append(repos, e.Repository)
		}
		byRepo[e.Repository] = append(byRepo[e.Repository], e)
	}
	sort.Strings(repos)

	mounts := &mountIndex{where: map[digest.Digest][]string{}}
	for _, srcRepo := range repos {
		ref, err := Destination(opts.To, srcRepo)
		if err != nil {
			return res, err
		}
		repo, err := opts.Client.Repository(ref)
		if err != nil {
			return res, err
		}
		stats, api, maps, err := unpackRepo(ctx, opts, l, repo, mounts, byRepo[srcRepo])
		addStats(&res.Stats, stats)
		res.Images = append(res.Images, maps...)
		res.Repositories = append(res.Repositories, Repository{Name: ref.Registry + "/" + ref.Repository, ReferrersAPI: api})
		if err != nil {
			return res, fmt.Errorf("unpacking %s to %s/%s: %w", srcRepo, ref.Registry, ref.Repository, err)
		}
	}
	if v := res.Verification; v != nil && opts.Verify.Replay != nil {
		if err := opts.Verify.Replay.Accept(v.BundleID, v.Sequence); err != nil {
			return res, fmt.Errorf("recording bundle %s sequence %d as accepted: %w", v.BundleID, v.Sequence, err)
		}
	}
	return res, nil
}

func addStats(a *graphcopy.Stats, b graphcopy.Stats) {
	a.BlobsCopied += b.BlobsCopied
	a.BlobsExisted += b.BlobsExisted
	a.BlobsMounted += b.BlobsMounted
	a.Manifests += b.Manifests
	a.BytesCopied += b.BytesCopied
}

type mountIndex struct {
	mu    sync.Mutex
	where map[digest.Digest][]string
}

func (m *mountIndex) add(d digest.Digest, repo string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.where[d] {
		if r == repo {
			return
		}
	}
	m.where[d] = append(m.where[d], repo)
}

func (m *mountIndex) from(d digest.Digest, except string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.where[d] {
		if r != except {
			out = append(out, r)
		}
	}
	if len(out) > 2 {
		out = out[:2]
	}
	return out
}

func unpackRepo(ctx context.Context, opts Options, l *layout.Layout, repo *orasremote.Repository, mounts *mountIndex, entries []layout.Entry) (graphcopy.Stats, bool, []Mapping, error) {
	name := repo.Reference.Repository
	copier := graphcopy.New(repo, graphcopy.Options{
		Concurrency: opts.Concurrency,
		MountFrom:   func(d ocispec.Descriptor) []string { return mounts.from(d.Digest, name) },
		OnBlob: func(d ocispec.Descriptor, how graphcopy.How) {
			mounts.add(d.Digest, name)
			if opts.OnBlob != nil {
				opts.OnBlob(d, how)
			}
		},
	})
	present := func(child ocispec.Descriptor) bool {
		ok, err := l.Exists(ctx, child)
		return err == nil && ok
	}
	dest := repo.Reference.Registry + "/" + name

	// 1. images: blobs, child manifests, indexes
	var images []layout.Entry
	trees := map[digest.Digest]map[digest.Digest]bool{}
	for _, e := range entries {
		if e.Kind != oci.KindImage {
			continue
		}
		images = append(images, e)
		if trees[e.Descriptor.Digest] != nil {
			continue
		}
		opts.Log.Info("pushing image", "source", e.Name(), "to", dest)
		// children a platform filter left out of the bundle are not pushed
		nodes, err := copier.Copy(ctx, l, bare(e.Descriptor), present)
		if err != nil {
			return copier.Stats(), false, nil, err
		}
		tree := map[digest.Digest]bool{}
		for _, n := range nodes {
			tree[n.Descriptor.Digest] = true
		}
		trees[e.Descriptor.Digest] = tree
	}
	// 2. referrers API or tag schema, decided by the registry
	api, err := referrers.Probe(ctx, repo)
	if err != nil {
		return copier.Stats(), false, nil, err
	}
	// 3. attachments, subjects first; cosign tags as they land
	atts := orderAttachments(entries)
	for _, e := range atts {
		if _, err := copier.Copy(ctx, l, bare(e.Descriptor), present); err != nil {
			return copier.Stats(), api, nil, fmt.Errorf("%s %s of %s: %w", e.Kind, e.Descriptor.Digest, e.Subject, err)
		}
		if e.Tag != "" {
			if err := tag(ctx, l, repo, e.Descriptor, e.Tag); err != nil {
				return copier.Stats(), api, nil, err
			}
		}
	}
	// 4. image tags last
	var maps []Mapping
	for _, e := range images {
		m := Mapping{Source: e.Name(), Digest: e.Descriptor.Digest, Destination: dest + "@" + e.Descriptor.Digest.String()}
		if e.Tag != "" {
			if err := tag(ctx, l, repo, e.Descriptor, e.Tag); err != nil {
				return copier.Stats(), api, maps, err
			}
			m.Destination = dest + ":" + e.Tag
		}
		m.Attachments = countTree(trees[e.Descriptor.Digest], atts)
		maps = append(maps, m)
		opts.Log.Info("pushed", "source", m.Source, "destination", m.Destination, "digest", m.Digest)
	}
	return copier.Stats(), api, maps, nil
}

// bare strips annotations and platform: the manifest is pushed as the bytes it is.
func bare(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
}

func tag(ctx context.Context, l *layout.Layout, repo *orasremote.Repository, desc ocispec.Descriptor, t string) error {
	b, err := l.FetchManifest(ctx, bare(desc))
	if err != nil {
		return err
	}
	if err := repo.PushReference(ctx, bare(desc), strings.NewReader(string(b)), t); err != nil {
		return fmt.Errorf("tagging %s as %s: %w", desc.Digest, t, err)
	}
	return nil
}

// orderAttachments returns the attachment entries ordered so that every subject that
// is itself an attachment comes before what is attached to it.
func orderAttachments(entries []layout.Entry) []layout.Entry {
	depth := map[digest.Digest]int{}
	for _, e := range entries {
		if e.Kind == oci.KindImage {
			depth[e.Descriptor.Digest] = 0
		}
	}
	var atts []layout.Entry
	for _, e := range entries {
		if e.Kind != oci.KindImage && e.Kind != oci.KindReferrersIndex {
			atts = append(atts, e)
		}
	}
	var depthOf func(d digest.Digest, seen int) int
	depthOf = func(d digest.Digest, seen int) int {
		if v, ok := depth[d]; ok {
			return v
		}
		if seen > len(atts) {
			return seen
		}
		for _, e := range atts {
			if e.Descriptor.Digest == d {
				v := depthOf(e.Subject, seen+1) + 1
				depth[d] = v
				return v
			}
		}
		return 0 // a child of an image
	}
	sort.SliceStable(atts, func(i, j int) bool {
		return depthOf(atts[i].Subject, 0) < depthOf(atts[j].Subject, 0)
	})
	return atts
}

// countTree counts the attachments of an image: those whose subject is in its tree
// (root and children) or is itself such an attachment. atts is in subject-first order.
func countTree(tree map[digest.Digest]bool, atts []layout.Entry) int {
	in := make(map[digest.Digest]bool, len(tree))
	for d := range tree {
		in[d] = true
	}
	n := 0
	for _, e := range atts {
		if in[e.Subject] {
			n++
			in[e.Descriptor.Digest] = true
		}
	}
	return n
}

// preflight checks, before anything is pushed, that every manifest every entry
// reaches is in the bundle and parses, and that every blob it names is present with
// its size. Contents are verified again while they are pushed.
func preflight(ctx context.Context, l *layout.Layout, entries []layout.Entry) error {
	seen := map[digest.Digest]bool{}
	var walk func(d ocispec.Descriptor, optional bool) error
	walk = func(d ocispec.Descriptor, optional bool) error {
		if seen[d.Digest] {
			return nil
		}
		ok, err := l.Exists(ctx, d)
		if err != nil {
			return err
		}
		if !ok {
			if optional {
				return nil // an index child left out by a platform filter
			}
			return fmt.Errorf("%w: bundle %s lacks %s (%s)", oci.ErrNotFound, l.Root(), d.Digest, d.MediaType)
		}
		seen[d.Digest] = true
		if !oci.IsManifest(d.MediaType) {
			return nil
		}
		b, err := l.FetchManifest(ctx, bare(d))
		if err != nil {
			return err
		}
		m, err := oci.ParseManifest(d, b)
		if err != nil {
			return err
		}
		for _, c := range m.Children() {
			if err := walk(c, oci.IsIndex(d.MediaType)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, e := range entries {
		if err := walk(bare(e.Descriptor), false); err != nil {
			return err
		}
	}
	return nil
}
