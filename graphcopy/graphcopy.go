// Package graphcopy copies manifest graphs (index → manifests → config and layers)
// between content stores, children before parents, so a manifest only ever appears in
// the destination after everything it points to. Blobs are streamed, verified while
// read, copied at most once per destination even when several graphs share them, and
// transferred with bounded concurrency. With Options.Retry, every operation that fails
// with a transient error is run again whole: a blob is opened again at the source and
// its upload restarted, a manifest fetched or pushed again.
package graphcopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/petra-oci/petra-oci/oci"
)

// Source is where content is read from; every read is verified against its descriptor.
type Source interface {
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// Target is where content is written.
type Target interface {
	Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error)
	Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error
}

// Mounter is a Target that can mount a blob from another repository of its registry.
type Mounter interface {
	Mount(ctx context.Context, desc ocispec.Descriptor, fromRepo string, getContent func() (io.ReadCloser, error)) error
}

// Resumer is a Target whose large blob uploads resume (remote.Repository).
// ResumableUpload returns, for desc, one upload that every try of its transfer
// continues: each call resumes where the target holds the upload, reading the
// content from that offset on through open; nil uploads desc with Push.
type Resumer interface {
	ResumableUpload(desc ocispec.Descriptor) func(ctx context.Context, open func(ctx context.Context, offset int64) (io.ReadCloser, error)) error
}

// Options configure a Copier. The zero value copies everything with 4 blob transfers
// at once.
type Options struct {
	// Concurrency bounds blob transfers in flight; <= 0 means 4.
	Concurrency int
	// MountFrom names repositories of the target's registry that may already hold the
	// blob; they are tried with a cross-repository mount before uploading.
	MountFrom func(desc ocispec.Descriptor) []string
	// OnBlob is told about every blob once it is in the target (copied, mounted or
	// already there).
	OnBlob func(desc ocispec.Descriptor, how How)
	// Retry, when set, runs each operation: fetching a manifest (read whole and
	// verified), writing a manifest (checked first: one already there is not written
	// again), and copying a blob (checked in the target, mounted or opened at the
	// source and uploaded, all again on each try, with a blob transfer slot held
	// only while trying). It decides whether and when op runs again
	// (remote.Client.Retry); what names the operation. nil runs each operation once.
	Retry func(ctx context.Context, what string, op func(context.Context) error) error
}

// How says how a blob came to be in the target.
type How int

const (
	Copied How = iota
	Existed
	Mounted // a cross-repository mount was asked for (the registry may have taken an upload instead)
)

// Node is a manifest of a copied graph.
type Node struct {
	Descriptor ocispec.Descriptor
	Manifest   *oci.Manifest
	// Parent is the index the node was reached through, or nil for the root.
	Parent *ocispec.Descriptor
	// Position is the node's place in its parent's manifests list.
	Position int
}

// Stats count what a Copier did (the "stats" of pack's and unpack's --output json).
type Stats struct {
	BlobsCopied  int64 `json:"blobsCopied"`
	BlobsExisted int64 `json:"blobsExisted"`
	BlobsMounted int64 `json:"blobsMounted"`
	Manifests    int64 `json:"manifests"`
	BytesCopied  int64 `json:"bytesCopied"`
}

// Copier copies graphs into one target.
type Copier struct {
	dst  Target
	opts Options
	sem  chan struct{}

	mu       sync.Mutex
	inflight map[digest.Digest]*call

	blobsCopied, blobsExisted, blobsMounted, manifests, bytesCopied atomic.Int64
}

// retry runs op through Options.Retry, or once.
func (c *Copier) retry(ctx context.Context, what string, op func(context.Context) error) error {
	if c.opts.Retry == nil {
		return op(ctx)
	}
	return c.opts.Retry(ctx, what, op)
}

type call struct {
	done chan struct{}
	err  error
}

// New returns a Copier into dst.
func New(dst Target, opts Options) *Copier {
	n := opts.Concurrency
	if n <= 0 {
		n = 4
	}
	return &Copier{dst: dst, opts: opts, sem: make(chan struct{}, n), inflight: map[digest.Digest]*call{}}
}

// Stats returns the counts so far.
func (c *Copier) Stats() Stats {
	return Stats{
		BlobsCopied: c.blobsCopied.Load(), BlobsExisted: c.blobsExisted.Load(), BlobsMounted: c.blobsMounted.Load(),
		Manifests: c.manifests.Load(), BytesCopied: c.bytesCopied.Load(),
	}
}

// Copy copies the graph rooted at root from src and returns its manifests, root first,
// then the index children that were included, depth first in index order (a nested
// index's children right after it). include decides which children of an
// index are copied; nil keeps all. Manifests are always read and walked,
// even when already in the target, so an interrupted copy is completed on re-run.
func (c *Copier) Copy(ctx context.Context, src Source, root ocispec.Descriptor, include func(child ocispec.Descriptor) bool) ([]Node, error) {
	return c.graph(ctx, src, root, include, true)
}

// Walk reads the manifests of the graph rooted at root from src, verified and bounded
// as Copy reads them, and returns them as Copy would, without writing anything or
// reading a config or layer: pack verifies an image's signatures on them before it
// downloads a layer.
func (c *Copier) Walk(ctx context.Context, src Source, root ocispec.Descriptor, include func(child ocispec.Descriptor) bool) ([]Node, error) {
	return c.graph(ctx, src, root, include, false)
}

// graph walks the graph rooted at root; with write, it copies it.
func (c *Copier) graph(ctx context.Context, src Source, root ocispec.Descriptor, include func(child ocispec.Descriptor) bool, write bool) ([]Node, error) {
	var mu sync.Mutex
	var nodes []Node
	err := c.copyManifest(ctx, src, root, nil, 0, include, write, func(n Node) {
		mu.Lock()
		nodes = append(nodes, n)
		mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	// root first, then depth first in index order (copies finish in any order)
	sortNodes(nodes)
	out := nodes
	return out, nil
}

func (c *Copier) copyManifest(ctx context.Context, src Source, desc ocispec.Descriptor, parent *ocispec.Descriptor, position int, include func(ocispec.Descriptor) bool, write bool, visit func(Node)) error {
	if !oci.IsManifest(desc.MediaType) {
		return fmt.Errorf("%w: %s has media type %q, not a manifest", oci.ErrUnsupported, desc.Digest, desc.MediaType)
	}
	var b []byte
	err := c.retry(ctx, "fetching manifest "+desc.Digest.String(), func(ctx context.Context) error {
		rc, err := src.Fetch(ctx, desc)
		if err != nil {
			return fmt.Errorf("fetching manifest %s: %w", desc.Digest, err)
		}
		if b, err = oci.ReadAllVerified(rc, desc, oci.MaxManifestBytes); err != nil {
			return fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	m, err := oci.ParseManifest(desc, b)
	if err != nil {
		return err
	}
	visit(Node{Descriptor: desc, Manifest: m, Parent: parent, Position: position})

	// the successors of oci.Manifest.Successors, but the subject: a tree is copied
	// down, and what it is attached to is copied before it, by the caller's order
	g, gctx := newGroup(ctx)
	nth := 0 // the child's place in the index's manifests
	for _, e := range m.Successors() {
		child := e.Descriptor
		switch e.Kind {
		case oci.EdgeSubject:
			continue
		case oci.EdgeManifest:
			i := nth
			nth++
			if include != nil && !include(child) {
				continue
			}
			if oci.IsManifest(child.MediaType) {
				g.Go(func() error { return c.copyManifest(gctx, src, child, &desc, i, include, write, visit) })
				continue
			}
		}
		if write {
			g.Go(func() error { return c.copyBlob(gctx, src, child) })
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if !write {
		return nil
	}
	return c.retry(ctx, "writing manifest "+desc.Digest.String(), func(ctx context.Context) error {
		// a try whose answer was lost may have written it: checked on every try
		if ok, err := c.dst.Exists(ctx, desc); err != nil {
			return fmt.Errorf("checking manifest %s in target: %w", desc.Digest, err)
		} else if ok {
			return nil
		}
		if err := c.dst.Push(ctx, desc, bytes.NewReader(b)); err != nil {
			return fmt.Errorf("writing manifest %s: %w", desc.Digest, err)
		}
		c.manifests.Add(1)
		return nil
	})
}

// copyBlob copies one blob once per Copier; concurrent callers for the same digest
// wait for the first. A caller whose wait ends in the other caller's failure (its
// context cancelled, its retries spent, its source broken) does not inherit that
// failure: it transfers the blob itself, under its own context and retry bounds.
func (c *Copier) copyBlob(ctx context.Context, src Source, desc ocispec.Descriptor) error {
	if err := oci.ValidateDescriptor(desc); err != nil {
		return err
	}
	c.mu.Lock()
	for {
		cl, ok := c.inflight[desc.Digest]
		if !ok {
			break
		}
		c.mu.Unlock()
		select {
		case <-cl.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if cl.err == nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// the other transfer failed (and left the map): try it ourselves
		c.mu.Lock()
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[desc.Digest] = cl
	c.mu.Unlock()

	cl.err = c.transfer(ctx, src, desc)
	if cl.err != nil {
		// a failed transfer may be retried by a later call
		c.mu.Lock()
		delete(c.inflight, desc.Digest)
		c.mu.Unlock()
	}
	close(cl.done)
	return cl.err
}

// transfer copies one blob, every try whole: checked in the target, mounted or
// opened at the source and uploaded (a streamed upload cannot be replayed, so it is
// restarted from the source).
// A Resumer target keeps one upload across the tries, each resuming it.
func (c *Copier) transfer(ctx context.Context, src Source, desc ocispec.Descriptor) error {
	var resume func(context.Context, func(context.Context, int64) (io.ReadCloser, error)) error
	if r, ok := c.dst.(Resumer); ok {
		resume = r.ResumableUpload(desc)
	}
	return c.retry(ctx, "copying blob "+desc.Digest.String(), func(ctx context.Context) error {
		return c.transferOnce(ctx, src, desc, resume)
	})
}

// openAt opens desc at src for a resumed upload: the content from offset on, verified
// whole. The bytes before offset are read again and hashed, not sent, so what the
// upload sends is checked against the digest end to end (the registry checks the
// digest of what it holds when the upload finishes).
func openAt(ctx context.Context, src Source, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	if offset < 0 || offset > desc.Size {
		return nil, fmt.Errorf("%w: resuming %s at %d of %d bytes", oci.ErrInvalid, desc.Digest, offset, desc.Size)
	}
	rc, err := src.Fetch(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", desc.Digest, err)
	}
	vr := oci.NewVerifiedReader(rc, desc)
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, vr, offset); err != nil {
			vr.Close()
			return nil, fmt.Errorf("reading blob %s up to %d: %w", desc.Digest, offset, err)
		}
	}
	return vr, nil
}

func (c *Copier) transferOnce(ctx context.Context, src Source, desc ocispec.Descriptor, resume func(context.Context, func(context.Context, int64) (io.ReadCloser, error)) error) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.sem }()

	ok, err := c.dst.Exists(ctx, desc)
	if err != nil {
		return fmt.Errorf("checking blob %s in target: %w", desc.Digest, err)
	}
	if ok {
		c.blobsExisted.Add(1)
		c.report(desc, Existed)
		return nil
	}
	if m, ok := c.dst.(Mounter); ok && c.opts.MountFrom != nil {
		getContent := func() (io.ReadCloser, error) {
			rc, err := src.Fetch(ctx, desc)
			if err != nil {
				return nil, err
			}
			return oci.NewVerifiedReader(rc, desc), nil
		}
		for _, from := range c.opts.MountFrom(desc) {
			// A registry that declines the mount gets the upload from src (never from
			// the other repository) within the same call.
			if err := m.Mount(ctx, desc, from, getContent); err == nil {
				c.blobsMounted.Add(1)
				c.report(desc, Mounted)
				return nil
			}
		}
	}
	if resume != nil {
		open := func(ctx context.Context, offset int64) (io.ReadCloser, error) { return openAt(ctx, src, desc, offset) }
		if err := resume(ctx, open); err != nil {
			return fmt.Errorf("writing blob %s: %w", desc.Digest, err)
		}
	} else {
		rc, err := src.Fetch(ctx, desc)
		if err != nil {
			return fmt.Errorf("fetching blob %s: %w", desc.Digest, err)
		}
		defer rc.Close()
		if err := c.dst.Push(ctx, desc, oci.NewVerifiedReader(rc, desc)); err != nil {
			return fmt.Errorf("writing blob %s: %w", desc.Digest, err)
		}
	}
	c.blobsCopied.Add(1)
	c.bytesCopied.Add(desc.Size)
	c.report(desc, Copied)
	return nil
}

func (c *Copier) report(desc ocispec.Descriptor, how How) {
	if c.opts.OnBlob != nil {
		c.opts.OnBlob(desc, how)
	}
}

// sortNodes orders the nodes of one graph root first, then depth first in index
// order: by the positions on the way from the root to each node. A manifest listed
// in several indexes of the graph is reached (and listed) once per place; its
// children sort under the first.
func sortNodes(nodes []Node) {
	paths := make([][]int, len(nodes))
	byDigest := map[digest.Digest][]int{} // node indexes per manifest digest
	for i, n := range nodes {
		byDigest[n.Descriptor.Digest] = append(byDigest[n.Descriptor.Digest], i)
	}
	var path func(i, depth int) []int
	path = func(i, depth int) []int {
		if paths[i] != nil || nodes[i].Parent == nil || depth > len(nodes) {
			return paths[i]
		}
		var parent []int
		for _, j := range byDigest[nodes[i].Parent.Digest] {
			if p := path(j, depth+1); parent == nil || slices.Compare(p, parent) < 0 {
				parent = p
			}
		}
		paths[i] = append(slices.Clip(parent), nodes[i].Position)
		return paths[i]
	}
	for i := range nodes {
		path(i, 0)
	}
	idx := make([]int, len(nodes))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return slices.Compare(paths[a], paths[b]) })
	sorted := make([]Node, len(nodes))
	for k, i := range idx {
		sorted[k] = nodes[i]
	}
	copy(nodes, sorted)
}

// group is an errgroup whose Wait returns the error that made the group stop, not an
// error a sibling saw only because the group's context was cancelled: when one blob
// gives up, the others of its graph end with context.Canceled, and the error reported
// must be the one that gave up, whichever goroutine returns first.
type group struct {
	g      *errgroup.Group
	parent context.Context
	mu     sync.Mutex
	err    error
}

func newGroup(ctx context.Context) (*group, context.Context) {
	g, gctx := errgroup.WithContext(ctx)
	return &group{g: g, parent: ctx}, gctx
}

func (g *group) Go(f func() error) {
	g.g.Go(func() error {
		err := f()
		if err != nil {
			g.mu.Lock()
			if g.err == nil || (g.cancelled(g.err) && !g.cancelled(err)) {
				g.err = err
			}
			g.mu.Unlock()
		}
		return err
	})
}

// cancelled reports whether err is only the group's own cancellation (the parent
// context still runs).
func (g *group) cancelled(err error) bool {
	return g.parent.Err() == nil && errors.Is(err, context.Canceled)
}

func (g *group) Wait() error {
	_ = g.g.Wait()
	return g.err
}
