package receipt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/graphcopy"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/remote"
)

// CollectOptions configure Collect.
type CollectOptions struct {
	// Registry is the destination, HOST[:PORT][/PREFIX].
	Registry string
	// Repositories are the repository paths under the prefix to read (chainguard/nginx).
	Repositories []string
	// Client reads the registry; every operation is retried as the client says.
	Client *remote.Client
	// Bundle, when set, is recorded as the last bundle unpacked.
	Bundle *Bundle
	// ToolVersion is recorded in the receipt.
	ToolVersion string
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// Collect reads what the registry holds in each repository, from the registry
// itself: every tag is resolved, every manifest reachable from it (index children the
// registry has, and the referrers of every manifest, through the referrers API or its
// tag schema) is fetched and checked against its digest, and every config and layer of
// those manifests is asked for (HEAD): only blobs the registry answers for are listed.
// A repository the registry does not know is listed empty.
func Collect(ctx context.Context, opts CollectOptions) (*Receipt, error) {
	if opts.Client == nil {
		return nil, errors.New("receipt: no registry client")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if err := checkRegistry(opts.Registry); err != nil {
		return nil, fmt.Errorf("%w: registry: %v", oci.ErrInvalidName, err)
	}
	host, prefix, _ := strings.Cut(opts.Registry, "/")
	names := slices.Clone(opts.Repositories)
	sort.Strings(names)
	names = slices.Compact(names)
	r := &Receipt{MediaType: MediaType, Registry: opts.Registry, Created: time.Now().UTC().Truncate(time.Second),
		Tool: Tool{Name: "petra-oci", Version: opts.ToolVersion}, Bundle: opts.Bundle, Repositories: []Repository{}}
	for _, name := range names {
		if err := oci.ValidateRepositoryPath(name); err != nil {
			return nil, fmt.Errorf("repository %q: %w", name, err)
		}
		path := name
		if prefix != "" {
			path = prefix + "/" + name
		}
		repo, err := opts.Client.Repository(registry.Reference{Registry: host, Repository: path})
		if err != nil {
			return nil, err
		}
		got, err := collectRepo(ctx, opts, repo)
		if err != nil {
			return nil, fmt.Errorf("reading %s/%s: %w", host, path, err)
		}
		got.Name = name
		opts.Log.Info("read repository", "repository", host+"/"+path, "manifests", len(got.Manifests), "blobs", len(got.Blobs))
		r.Repositories = append(r.Repositories, *got)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

func collectRepo(ctx context.Context, opts CollectOptions, repo *orasremote.Repository) (*Repository, error) {
	retry := opts.Client.Retry
	var tags []string
	err := retry(ctx, "listing the tags of "+repo.Reference.Repository, func(ctx context.Context) error {
		tags = nil
		return repo.Tags(ctx, "", func(t []string) error { tags = append(tags, t...); return nil })
	})
	if errors.Is(err, errdef.ErrNotFound) {
		return &Repository{Manifests: []digest.Digest{}, Blobs: []Blob{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing tags: %w", err)
	}
	manifests := map[digest.Digest]bool{}
	blobs := map[digest.Digest]int64{}
	var queue []ocispec.Descriptor
	for _, t := range tags {
		var d ocispec.Descriptor
		if err := retry(ctx, "resolving "+t, func(ctx context.Context) (err error) { d, err = repo.Resolve(ctx, t); return err }); err != nil {
			if errors.Is(err, errdef.ErrNotFound) {
				continue // deleted since the listing
			}
			return nil, fmt.Errorf("resolving tag %s: %w", t, err)
		}
		queue = append(queue, d)
	}
	candidates := map[digest.Digest]ocispec.Descriptor{}
	// the graph of every tagged manifest (graphcopy walks it down, verified and
	// bounded; an index child the registry does not have, left out by a platform
	// filter, is skipped), then everything attached to it (referrers.Collect, the
	// graph's one discovery walk: referrers API or tag schema, and cosign's tags)
	walker := graphcopy.New(nil, graphcopy.Options{Retry: retry})
	present := func(child ocispec.Descriptor) bool {
		ok, err := repo.Manifests().Exists(ctx, child)
		return err != nil || ok // an error is met again, and reported, by the fetch
	}
	walk := func(ctx context.Context, root ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		if manifests[root.Digest] {
			return nil, nil
		}
		nodes, err := walker.Walk(ctx, repo, root, present)
		if err != nil {
			return nil, err
		}
		var got []ocispec.Descriptor
		for _, n := range nodes {
			d := n.Descriptor
			if manifests[d.Digest] {
				continue
			}
			manifests[d.Digest] = true
			got = append(got, d)
			if oci.IsIndex(d.MediaType) {
				continue
			}
			for _, c := range n.Manifest.Children() {
				if err := oci.ValidateDescriptor(c); err != nil {
					return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
				}
				candidates[c.Digest] = c
			}
		}
		return got, nil
	}
	var roots []ocispec.Descriptor
	for _, d := range queue {
		if !oci.IsManifest(d.MediaType) {
			return nil, fmt.Errorf("%w: %s has media type %q, not a manifest", oci.ErrUnsupported, d.Digest, d.MediaType)
		}
		got, err := walk(ctx, d)
		if err != nil {
			return nil, err
		}
		roots = append(roots, got...)
	}
	if _, err := referrers.Collect(ctx, repo, roots, referrers.CollectOptions{Retry: retry}, func(ctx context.Context, a referrers.Attachment) (referrers.Attachment, error) {
		_, err := walk(ctx, a.Descriptor)
		return a, err
	}); err != nil {
		return nil, fmt.Errorf("attachments: %w", err)
	}
	for _, c := range candidates {
		var ok bool
		err := retry(ctx, "checking blob "+c.Digest.String(), func(ctx context.Context) (err error) {
			ok, err = repo.Blobs().Exists(ctx, c)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("checking blob %s: %w", c.Digest, err)
		}
		if ok {
			blobs[c.Digest] = c.Size
		}
	}
	out := &Repository{Manifests: make([]digest.Digest, 0, len(manifests)), Blobs: make([]Blob, 0, len(blobs))}
	for d := range manifests {
		out.Manifests = append(out.Manifests, d)
	}
	slices.Sort(out.Manifests)
	for d, s := range blobs {
		out.Blobs = append(out.Blobs, Blob{Digest: d, Size: s})
	}
	sort.Slice(out.Blobs, func(i, j int) bool { return out.Blobs[i].Digest < out.Blobs[j].Digest })
	return out, nil
}

// PathOf returns the path a source repository (host/path) has under a destination
// prefix, as unpack maps it and a receipt names it: the path without its host.
func PathOf(sourceRepository string) string {
	_, p, _ := strings.Cut(sourceRepository, "/")
	return p
}
