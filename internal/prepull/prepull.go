// Package prepull writes a verified bundle's images as a pre-pull archive that
// containerd imports (`ctr -n k8s.io images import`, the k3s and RKE2 agent image
// folders): one OCI image layout tar (oci-layout, index.json, blobs/<alg>/<hex>)
// holding only the images and their children, each listed in index.json under the
// name the internal registry gives it (io.containerd.image.name), digests unchanged.
//
// The bundle is verified first, exactly as unpack verifies it (bundle.Open), and
// nothing is written before it verified. Blobs are then streamed one by one through
// the verified store (layout.Pinned), which checks every byte again while it is read,
// so memory stays flat in bundle size. No blob is re-encoded: a platform filter leaves
// the image index as it is and only leaves out the manifests (and their blobs) of the
// other platforms. The archive is deterministic: the same bundle and options give the
// same bytes (entries sorted by name, fixed times and owners, regular files only).
//
// Signatures, attestations and referrers are left out unless WithAttachments: they
// belong in the internal registry, where admission reads them, and containerd 1.6
// fails on them when they are named images (it tries to unpack a DSSE envelope as a
// filesystem layer). With WithAttachments they are carried as unnamed index.json
// entries: containerd imports their blobs but creates no image for them (see
// docs/prepull.md for what it keeps).
package prepull

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/ctxio"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/unpack"
)

// Format is the archive format this package writes.
const Format = "containerd"

// Compression of the whole archive.
type Compression string

const (
	// CompressionNone writes a plain tar: what `ctr images import` reads (it does not
	// decompress its input).
	CompressionNone Compression = ""
	// CompressionZstd writes the tar through zstd (.tar.zst): what the k3s and RKE2
	// agent image folders accept; for ctr, decompress first (zstd -dc | ctr ... import -).
	CompressionZstd Compression = "zstd"
)

// Options configure Export and WriteFile. Verify and Registry are required; every
// other zero value is the safe default (all platforms, no attachments, plain tar).
type Options struct {
	// Dir is the bundle.
	Dir string
	// Registry is the internal registry the images are named for, HOST[:PORT][/PREFIX]
	// as unpack's --to: cgr.dev/chainguard/nginx:1.27 with reg.internal/mirror is
	// named reg.internal/mirror/chainguard/nginx:1.27 (unpack.Destination).
	Registry string
	// Verify says how the bundle is verified before anything is written, as for
	// unpack: the signature over its metadata, the series sequence (checked, never
	// recorded: export pushes nothing), every file, the graph and, with Images, every
	// image against the pinned policy. Required.
	Verify *bundle.VerifyOptions
	// Platform, when set (os/arch[/variant]), keeps of every image index only the
	// child manifests of that platform (variant compared only when given) and those
	// without a platform, which containerd walks whatever platform it imports; the
	// index itself is kept byte for byte. An image with no manifest of that platform
	// is an error (oci.ErrNotFound). Empty keeps every child the bundle carries.
	Platform string
	// WithAttachments also carries the signatures, attestations and referrers of the
	// images (and of the children kept), as unnamed index.json entries: no
	// io.containerd.image.name nor org.opencontainers.image.ref.name, so containerd
	// creates no image for them and never tries to unpack them.
	WithAttachments bool
	// Compression of the archive; zero is a plain tar.
	Compression Compression
	// Log receives progress; nil discards it.
	Log *slog.Logger
	// OnBlob, when set, is told about every blob once it is in the archive.
	OnBlob func(desc ocispec.Descriptor)
}

// Image is one image of the archive.
type Image struct {
	// Source is the image as packed: host/path:tag or host/path@digest.
	Source string `json:"source"`
	// Names are the containerd image names it is listed under: the internal
	// registry's host/prefix/path:tag (when packed by tag) and host/prefix/path@digest.
	Names     []string      `json:"names"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	// Platforms are the platforms of the child manifests carried (an index's).
	Platforms []string `json:"platforms,omitempty"`
	// Attachments is how many attachments of the image the archive carries.
	Attachments int `json:"attachments"`
	// AttachmentsLeftOut is how many attachments of the image the bundle holds and
	// the archive does not carry.
	AttachmentsLeftOut int `json:"attachmentsLeftOut"`
}

// Result is what was exported.
type Result struct {
	// Verification is what was proved before anything was written.
	Verification *bundle.Report `json:"verification,omitempty"`
	Format       string         `json:"format"`
	Registry     string         `json:"registry"`
	Platform     string         `json:"platform,omitempty"`
	Compression  Compression    `json:"compression,omitempty"`
	// Output is the file written (WriteFile), empty for a stream.
	Output string  `json:"output,omitempty"`
	Images []Image `json:"images"`
	// Blobs and BlobBytes count the blobs in the archive (manifests included).
	Blobs     int   `json:"blobs"`
	BlobBytes int64 `json:"blobBytes"`
	// ArchiveBytes and ArchiveSHA256 describe the bytes written (after compression).
	ArchiveBytes  int64  `json:"archiveBytes"`
	ArchiveSHA256 string `json:"archiveSHA256"`
}

// entryTime is the modification time of every archive entry.
var entryTime = time.Unix(0, 0).UTC()

// Export verifies the bundle at opts.Dir and writes its pre-pull archive to w.
// Nothing is written to w before the bundle verified and every name was checked. A
// failure while streaming (a blob changed on disk after verification) leaves a
// truncated archive in w: callers writing a file use WriteFile, which removes it.
func Export(ctx context.Context, w io.Writer, opts Options) (*Result, error) {
	p, res, err := prepare(ctx, opts)
	if p != nil {
		defer p.v.Close()
	}
	if err != nil {
		return res, err
	}
	if err := p.write(ctx, w, res); err != nil {
		return res, fmt.Errorf("writing the archive of %s: %w", opts.Dir, err)
	}
	return res, nil
}

// WriteFile is Export into the file path: the archive is written to a temporary
// sibling, synced and renamed over path only once complete; on any failure the
// temporary file is removed and path is left as it was. Nothing is created before the
// bundle verified.
func WriteFile(ctx context.Context, path string, opts Options) (*Result, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: no output file", oci.ErrInvalid)
	}
	p, res, err := prepare(ctx, opts)
	if p != nil {
		defer p.v.Close()
	}
	if err != nil {
		return res, err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return res, fmt.Errorf("creating the archive next to %s: %w", path, err)
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := p.write(ctx, f, res); err != nil {
		return res, fmt.Errorf("writing the archive of %s to %s (removed): %w", opts.Dir, path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return res, fmt.Errorf("archive %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return res, fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return res, fmt.Errorf("renaming the archive to %s: %w", path, err)
	}
	done = true
	res.Output = path
	return res, nil
}

// plan is what the archive holds, decided before a byte is written.
type plan struct {
	v     *bundle.Verified
	opts  Options
	index []byte
	blobs []blob // sorted by path
}

type blob struct {
	path string // blobs/<alg>/<hex>
	desc ocispec.Descriptor
}

// prepare checks the options, verifies the bundle and plans the archive. On a
// verification failure it returns the result with the report (when there is one).
func prepare(ctx context.Context, opts Options) (*plan, *Result, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	res := &Result{Format: Format, Registry: opts.Registry, Platform: opts.Platform, Compression: opts.Compression}
	if opts.Verify == nil {
		return nil, nil, fmt.Errorf("%w: export needs the bundle's key or identity to verify it", oci.ErrInvalid)
	}
	if opts.Registry == "" {
		return nil, nil, fmt.Errorf("%w: no registry to name the images for", oci.ErrInvalid)
	}
	switch opts.Compression {
	case CompressionNone, CompressionZstd:
	default:
		return nil, nil, fmt.Errorf("%w: compression %q (want none or zstd)", oci.ErrInvalid, opts.Compression)
	}
	var want *ocispec.Platform
	if opts.Platform != "" {
		p, err := oci.ParsePlatform(opts.Platform)
		if err != nil {
			return nil, nil, err
		}
		want = &p
	}
	// nothing of the bundle is read before its signature verifies
	v, err := bundle.Open(ctx, opts.Dir, *opts.Verify)
	if v != nil {
		res.Verification = v.Report
	}
	if err != nil {
		if v != nil {
			v.Close()
		}
		return nil, res, fmt.Errorf("verifying bundle %s (nothing was written): %w", opts.Dir, err)
	}
	p := &plan{v: v, opts: opts}
	rep := v.Report
	opts.Log.Info("bundle verified", "bundleID", rep.BundleID, "sequence", rep.Sequence, "files", rep.Files.Files, "bytes", rep.Files.Bytes)
	if err := p.build(ctx, want, res); err != nil {
		return p, res, fmt.Errorf("bundle %s (nothing was written): %w", opts.Dir, err)
	}
	return p, res, nil
}

// build plans index.json and the blobs.
func (p *plan) build(ctx context.Context, want *ocispec.Platform, res *Result) error {
	store := p.v.Store
	blobs := map[digest.Digest]ocispec.Descriptor{}
	add := func(d ocispec.Descriptor) error {
		if have, ok := blobs[d.Digest]; ok {
			if have.Size != d.Size {
				return fmt.Errorf("%w: blob %s is named with sizes %d and %d", oci.ErrSizeMismatch, d.Digest, have.Size, d.Size)
			}
			return nil
		}
		blobs[d.Digest] = ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
		return nil
	}
	// addManifest adds a manifest and, for an image manifest, its config and layers
	// (the graph checked they are all in the bundle).
	addManifest := func(n *referrers.Node) error {
		if err := add(n.Descriptor()); err != nil {
			return err
		}
		if oci.IsIndex(n.Entry.Descriptor.MediaType) {
			return nil
		}
		for _, c := range n.Manifest.Children() {
			if err := add(c); err != nil {
				return err
			}
		}
		return nil
	}
	var images, attachments []ocispec.Descriptor
	named := map[string]bool{}
	attached := map[digest.Digest]bool{}
	for _, r := range p.v.Graph.Repositories() {
		ref, err := unpack.Destination(p.opts.Registry, r.Name)
		if err != nil {
			return fmt.Errorf("%s: %w", r.Name, err)
		}
		dest := ref.Registry + "/" + ref.Repository
		for _, img := range r.Images {
			e := img.Entry
			nodes, plats, err := selectTree(ctx, store, img, want)
			if err != nil {
				return err
			}
			for _, n := range nodes {
				if err := addManifest(n); err != nil {
					return err
				}
			}
			out := Image{Source: e.Name(), Digest: e.Descriptor.Digest, MediaType: e.Descriptor.MediaType, Platforms: plats}
			desc := img.Root.Descriptor()
			type imageName struct{ name, tag string }
			names := []imageName{{name: dest + "@" + e.Descriptor.Digest.String()}}
			if e.Tag != "" {
				names = append([]imageName{{name: dest + ":" + e.Tag, tag: e.Tag}}, names...)
			}
			for _, n := range names {
				if named[n.name] {
					continue // the same image under a second tag: one digest name
				}
				named[n.name] = true
				out.Names = append(out.Names, n.name)
				ann := map[string]string{
					oci.AnnotationContainerdName: n.name,
					oci.AnnotationKind:           string(oci.KindImage),
					oci.AnnotationRepository:     e.Repository,
				}
				if n.tag != "" {
					ann[ocispec.AnnotationRefName] = n.name
					ann[oci.AnnotationTag] = n.tag
				}
				d := desc
				d.Annotations = ann
				images = append(images, d)
			}
			all := referrers.AttachmentsOf(img.Tree())
			if !p.opts.WithAttachments {
				out.AttachmentsLeftOut = len(all)
				res.Images = append(res.Images, out)
				continue
			}
			kept := referrers.AttachmentsOf(nodes)
			out.Attachments = len(kept)
			out.AttachmentsLeftOut = len(all) - len(kept)
			for _, n := range kept {
				if err := p.addAttachment(ctx, n, add); err != nil {
					return err
				}
				if attached[n.Entry.Descriptor.Digest] {
					continue
				}
				attached[n.Entry.Descriptor.Digest] = true
				attachments = append(attachments, attachmentDescriptor(n))
			}
			res.Images = append(res.Images, out)
		}
	}
	sort.SliceStable(attachments, func(i, j int) bool { return attachments[i].Digest < attachments[j].Digest })
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: append(images, attachments...),
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	p.index = b
	for _, d := range blobs {
		rel, err := layout.BlobPath(d)
		if err != nil {
			return err
		}
		p.blobs = append(p.blobs, blob{path: filepath.ToSlash(rel), desc: d})
		res.BlobBytes += d.Size
	}
	sort.Slice(p.blobs, func(i, j int) bool { return p.blobs[i].path < p.blobs[j].path })
	res.Blobs = len(p.blobs)
	return nil
}

// addAttachment adds an attachment manifest with everything it points down to that
// the bundle holds (an attached index's children may be left out).
func (p *plan) addAttachment(ctx context.Context, n *referrers.Node, add func(ocispec.Descriptor) error) error {
	w := referrers.Down{Store: p.v.Store}
	return w.Walk(ctx, n.Descriptor(), n.Manifest, func(d ocispec.Descriptor, _ *oci.Manifest) error { return add(d) })
}

// attachmentDescriptor is the index.json entry of an attachment: no name containerd
// or the OCI layout would import it by, and petra-oci's annotations saying what it is.
func attachmentDescriptor(n *referrers.Node) ocispec.Descriptor {
	e := n.Entry
	ann := map[string]string{}
	for k, v := range e.Descriptor.Annotations {
		ann[k] = v
	}
	// a referrer's own annotations could carry either name: never here
	delete(ann, oci.AnnotationContainerdName)
	delete(ann, ocispec.AnnotationRefName)
	ann[oci.AnnotationKind] = string(e.Kind)
	ann[oci.AnnotationRepository] = e.Repository
	ann[oci.AnnotationSubject] = e.Subject.String()
	if e.Tag != "" {
		ann[oci.AnnotationTag] = e.Tag
	}
	d := n.Descriptor()
	d.ArtifactType = e.Descriptor.ArtifactType
	d.Annotations = ann
	return d
}

// selectTree returns the manifests of img the archive carries: all of its tree, or
// with want the root, the index children of that platform and those without a
// platform (with their own children, for nested indexes), and the platforms kept.
func selectTree(ctx context.Context, store referrers.Store, img *referrers.Image, want *ocispec.Platform) ([]*referrers.Node, []string, error) {
	if want == nil {
		tree := img.Tree()
		var plats []string
		for _, n := range tree[1:] {
			if s := oci.PlatformString(n.Entry.Descriptor.Platform); s != "" {
				plats = append(plats, s)
			}
		}
		return tree, plats, nil
	}
	root := img.Root
	if !oci.IsIndex(root.Entry.Descriptor.MediaType) {
		have, err := configPlatform(ctx, store, root.Manifest)
		if err != nil {
			return nil, nil, fmt.Errorf("image %s: %w", img.Entry.Name(), err)
		}
		if !oci.PlatformMatches(have, *want) {
			return nil, nil, fmt.Errorf("%w: image %s is a single %s manifest, not %s", oci.ErrNotFound, img.Entry.Name(), platformOrUnknown(have), oci.PlatformString(want))
		}
		return []*referrers.Node{root}, []string{oci.PlatformString(have)}, nil
	}
	out, plats := img.PlatformTree(*want)
	matched := len(plats)
	if matched == 0 {
		return nil, nil, fmt.Errorf("%w: image %s has no %s manifest in the bundle", oci.ErrNotFound, img.Entry.Name(), oci.PlatformString(want))
	}
	return out, plats, nil
}

func platformOrUnknown(p *ocispec.Platform) string {
	if s := oci.PlatformString(p); s != "" {
		return s
	}
	return "platform-less"
}

// configPlatform reads the platform of an image manifest from its config (bounded).
func configPlatform(ctx context.Context, store referrers.Store, m *oci.Manifest) (*ocispec.Platform, error) {
	if m.Config == nil || !oci.IsImageConfig(m.Config.MediaType) {
		return nil, nil
	}
	cfg := ocispec.Descriptor{MediaType: m.Config.MediaType, Digest: m.Config.Digest, Size: m.Config.Size}
	rc, err := store.Fetch(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg.Digest, err)
	}
	b, err := oci.ReadAllVerified(rc, cfg, oci.MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", cfg.Digest, err)
	}
	var p ocispec.Platform
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: config %s: %v", oci.ErrInvalid, cfg.Digest, err)
	}
	if p.OS == "" || p.Architecture == "" {
		return nil, nil
	}
	return &p, nil
}

func readManifest(ctx context.Context, store referrers.Store, d ocispec.Descriptor) (*oci.Manifest, error) {
	rc, err := store.Fetch(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	b, err := oci.ReadAllVerified(rc, d, oci.MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
	}
	return oci.ParseManifest(d, b)
}

// write streams the archive to w: the blobs, read through the verified store, then
// index.json and oci-layout, every entry sorted by name.
func (p *plan) write(ctx context.Context, w io.Writer, res *Result) error {
	cw := &ctxio.HashingWriter{W: w, H: sha256.New()}
	var out io.Writer = cw
	var zw *zstd.Encoder
	if p.opts.Compression == CompressionZstd {
		var err error
		// one encoder goroutine: bounded memory and the same bytes on every run
		zw, err = zstd.NewWriter(cw, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return err
		}
		out = zw
	}
	tw := tar.NewWriter(out)
	buf := make([]byte, 1<<20)
	for _, b := range p.blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.writeBlob(ctx, tw, b, buf); err != nil {
			return err
		}
		if p.opts.OnBlob != nil {
			p.opts.OnBlob(b.desc)
		}
	}
	layoutFile, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{layout.IndexFile, p.index}, {layout.LayoutFile, layoutFile}} {
		if err := tw.WriteHeader(header(f.name, int64(len(f.b)))); err != nil {
			return err
		}
		if _, err := tw.Write(f.b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return err
		}
	}
	res.ArchiveBytes = cw.N
	res.ArchiveSHA256 = hex.EncodeToString(cw.H.Sum(nil))
	p.opts.Log.Info("archive written", "images", len(res.Images), "blobs", res.Blobs, "blobBytes", res.BlobBytes, "archiveBytes", res.ArchiveBytes)
	return nil
}

func (p *plan) writeBlob(ctx context.Context, tw *tar.Writer, b blob, buf []byte) error {
	rc, err := p.v.Store.Fetch(ctx, b.desc)
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.desc.Digest, err)
	}
	defer rc.Close()
	if err := tw.WriteHeader(header(b.path, b.desc.Size)); err != nil {
		return err
	}
	// the pinned reader yields exactly desc.Size bytes and fails instead of io.EOF on
	// any mismatch with the verified content
	n, err := io.CopyBuffer(tw, rc, buf)
	if err != nil {
		return fmt.Errorf("blob %s: %w", b.desc.Digest, err)
	}
	if n != b.desc.Size {
		return fmt.Errorf("%w: blob %s: %d bytes, want %d", oci.ErrSizeMismatch, b.desc.Digest, n, b.desc.Size)
	}
	return nil
}

// header is the header of a regular file of the archive: fixed time, owner and mode.
func header(name string, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  entryTime,
	}
}
