package layout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// Verify checks the bundle against m, which the caller has parsed from metadata.json
// bytes whose signature it verified. It fails on the first problem, with a *FileError
// wrapping ErrFileChanged, ErrFileMissing, ErrFileExtra, ErrUnsafeFile, ErrBlobDigest
// or ErrNotCovered (or ErrMetadataInvalid when m breaks the format). It walks the tree
// first without following any symlink, refusing an extra entry as soon as it is read,
// then streams every file through SHA-256 in parallel, then walks index.json and the
// manifests it reaches. Nothing is allocated from a size in m.
//
// On success it returns the verified file set, pinned: read the bundle through it, not
// through the directory, from here to the last push.
func (r *Root) Verify(ctx context.Context, m *Metadata, opts VerifyOptions) (*Pinned, *VerifyReport, error) {
	start := time.Now()
	if err := checkMetadata(m); err != nil {
		return nil, nil, err
	}
	want := make(map[string]*File, len(m.Files))
	for i := range m.Files {
		want[m.Files[i].Path] = &m.Files[i]
	}
	jobs, err := r.t.scan(ctx, want)
	if err != nil {
		return nil, nil, err
	}
	files, workers, fromWriter, err := r.t.hash(ctx, jobs, opts.Workers, opts.Written)
	if err != nil {
		return nil, nil, err
	}
	rep := &VerifyReport{Files: len(files), Workers: workers, HashedWhenWritten: fromWriter}
	for _, j := range jobs {
		rep.Bytes += j.info.Size()
		if j.blob != "" {
			rep.Blobs++
		}
	}
	p := newPinned(r.t, jobs, files)
	rep.IndexEntries, rep.Manifests, err = p.coverage(ctx, m)
	if err != nil {
		return nil, nil, err
	}
	rep.Duration = time.Since(start)
	return p, rep, nil
}

// Pinned is the file set of a verified bundle: every file the metadata lists, as it
// was verified (device and inode, size, SHA-256). From verification to the last push,
// read the bundle through a Pinned only: it reads only files in the verified list,
// beneath the root, without following links, without blocking (a FIFO or device
// swapped in is refused at the open), each checked to be the same regular file with
// the same size as verified and hashed again while read. Presence questions (Exists,
// Has) ask the verified list, never the disk, so a file copied into the directory after
// verification does not exist for it.
//
// A Pinned implements the read side of a content store (Fetch, Exists) that
// internal/graphcopy and oras-go copy from. It is safe for concurrent use and reads
// through the Root it came from: it is usable until that Root is closed.
type Pinned struct {
	t     *tree
	files map[string]*pinnedFile
}

// pinnedFile is one verified file.
type pinnedFile struct {
	info   fs.FileInfo // lstat from the walk; the file hashed was this one (os.SameFile)
	size   int64
	sha256 string
}

// newPinned pins jobs, hashed as files (files[i] is jobs[i]).
func newPinned(t *tree, jobs []job, files []File) *Pinned {
	p := &Pinned{t: t, files: make(map[string]*pinnedFile, len(jobs))}
	for i, j := range jobs {
		p.files[j.rel] = &pinnedFile{info: j.info, size: files[i].Size, sha256: files[i].SHA256}
	}
	return p
}

// Len returns how many files are pinned (every file the metadata lists).
func (p *Pinned) Len() int { return len(p.files) }

// Has reports whether rel, a slash-separated path relative to the bundle root, is in
// the verified list.
func (p *Pinned) Has(rel string) bool { return p.files[rel] != nil }

// Exists reports whether desc's blob is in the verified list with desc's size. Nothing
// on disk is consulted. A listed blob with another size is an error wrapping
// oci.ErrSizeMismatch; an invalid descriptor one wrapping oci.ErrInvalid or
// oci.ErrUnsupported.
func (p *Pinned) Exists(_ context.Context, desc ocispec.Descriptor) (bool, error) {
	_, f, err := p.blob(desc)
	return f != nil, err
}

// Fetch opens desc's blob for reading. A blob not in the verified list is refused with
// an error wrapping oci.ErrNotFound. The file is opened beneath the root without
// following links or blocking, and refused (*FileError, ErrUnsafeFile or
// ErrFileChanged) unless it is the regular file verified, with the size verified. The
// reader yields exactly desc.Size bytes and, instead of io.EOF, fails with a *FileError
// wrapping ErrFileChanged (and oci.ErrDigestMismatch or oci.ErrSizeMismatch) when the
// content no longer matches desc or the SHA-256 the metadata lists. It stops with
// ctx's error once ctx is done.
func (p *Pinned) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rel, f, err := p.blob(desc)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, fmt.Errorf("%w: blob %s is not in the verified bundle %s", oci.ErrNotFound, desc.Digest, p.t.dir)
	}
	return p.reader(ctx, rel, f, desc)
}

// FetchManifest reads a manifest-sized blob whole, like Fetch, refusing anything larger
// than oci.MaxManifestBytes before it is opened.
func (p *Pinned) FetchManifest(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	rel, f, err := p.blob(desc)
	if err != nil {
		return nil, err
	}
	if desc.Size > oci.MaxManifestBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", oci.ErrTooLarge, desc.Digest, desc.Size, oci.MaxManifestBytes)
	}
	if f == nil {
		return nil, fmt.Errorf("%w: manifest %s is not in the verified bundle %s", oci.ErrNotFound, desc.Digest, p.t.dir)
	}
	return p.readAll(ctx, rel, f, desc)
}

// ReadIndex reads index.json through the pin (at most MaxIndexBytes, the SHA-256 the
// metadata lists) and parses it with ParseIndex.
func (p *Pinned) ReadIndex() (ocispec.Index, error) {
	b, err := p.readFile(context.Background(), IndexFile, MaxIndexBytes)
	if err != nil {
		return ocispec.Index{}, err
	}
	idx, err := ParseIndex(b)
	if err != nil {
		return ocispec.Index{}, fmt.Errorf("%s: %w", filepath.Join(p.t.dir, IndexFile), err)
	}
	return idx, nil
}

// blob returns the path of desc's blob and its pinned file (nil when not listed).
func (p *Pinned) blob(desc ocispec.Descriptor) (string, *pinnedFile, error) {
	rel, err := BlobPath(desc)
	if err != nil {
		return "", nil, err
	}
	rel = filepath.ToSlash(rel)
	f := p.files[rel]
	if f != nil && f.size != desc.Size {
		return rel, nil, fmt.Errorf("%w: blob %s is %d bytes in the verified bundle, descriptor says %d", oci.ErrSizeMismatch, desc.Digest, f.size, desc.Size)
	}
	return rel, f, nil
}

// readFile reads a pinned file whole, bounded by limit, checked against its size and
// SHA-256.
func (p *Pinned) readFile(ctx context.Context, rel string, limit int64) ([]byte, error) {
	f := p.files[rel]
	if f == nil {
		return nil, &FileError{Path: rel, Kind: ErrNotCovered, Detail: "not listed in the metadata"}
	}
	if f.size > limit {
		return nil, &FileError{Path: rel, Kind: oci.ErrTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", f.size, limit)}
	}
	desc := ocispec.Descriptor{Digest: digest.NewDigestFromEncoded(digest.SHA256, f.sha256), Size: f.size}
	return p.readAll(ctx, rel, f, desc)
}

// readAll reads f whole (f.size is at most a limit the caller checked).
func (p *Pinned) readAll(ctx context.Context, rel string, f *pinnedFile, desc ocispec.Descriptor) ([]byte, error) {
	rc, err := p.reader(ctx, rel, f, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, f.size))
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// open opens a pinned file and checks it is the very file verified.
func (p *Pinned) open(rel string, pf *pinnedFile) (*os.File, error) {
	fh, err := p.t.openNoFollow(rel)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, &FileError{Path: rel, Kind: ErrFileMissing, Detail: "removed after verification", Err: err}
		case errors.Is(err, fs.ErrPermission), errors.Is(err, os.ErrClosed):
			return nil, fmt.Errorf("opening %s of %s: %w", rel, p.t.dir, err)
		}
		// a symlink swapped in on the way, a loop, …
		return nil, &FileError{Path: rel, Kind: ErrUnsafeFile, Detail: "changed after verification: cannot be opened safely", Err: err}
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("stat %s of %s: %w", rel, p.t.dir, err)
	}
	switch {
	case !fi.Mode().IsRegular():
		fh.Close()
		return nil, &FileError{Path: rel, Kind: ErrUnsafeFile, Detail: "changed after verification: is a " + fileType(fi.Mode())}
	case !os.SameFile(fi, pf.info):
		fh.Close()
		return nil, &FileError{Path: rel, Kind: ErrFileChanged, Detail: "changed after verification: replaced by another file"}
	case fi.Size() != pf.size:
		fh.Close()
		return nil, &FileError{Path: rel, Kind: ErrFileChanged, Detail: fmt.Sprintf("changed after verification: %d bytes, verified %d", fi.Size(), pf.size)}
	}
	return fh, nil
}

// reader opens a pinned file and returns a reader verifying desc and the pinned
// SHA-256 while read.
func (p *Pinned) reader(ctx context.Context, rel string, pf *pinnedFile, desc ocispec.Descriptor) (io.ReadCloser, error) {
	fh, err := p.open(rel, pf)
	if err != nil {
		return nil, err
	}
	r := &pinnedReader{ctx: ctx, rel: rel, want: pf.sha256, vr: oci.NewVerifiedReader(fh, desc)}
	if desc.Digest != digest.NewDigestFromEncoded(digest.SHA256, pf.sha256) {
		r.sha = sha256.New() // a sha512 blob: the metadata's SHA-256 is checked too
	}
	return r, nil
}

// pinnedReader reads a pinned file through a verified reader (exact size, no trailing
// data, digest), checks the SHA-256 the metadata lists when the digest is not that,
// and stops once ctx is done.
type pinnedReader struct {
	ctx  context.Context
	rel  string
	want string
	vr   io.ReadCloser
	sha  hash.Hash // nil when the verified reader's digest is the pinned SHA-256
	err  error
}

func (r *pinnedReader) Read(b []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		r.err = fmt.Errorf("reading %s: %w", r.rel, err)
		return 0, r.err
	}
	n, err := r.vr.Read(b)
	if r.sha != nil {
		r.sha.Write(b[:n])
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		if r.sha != nil {
			if got := hex.EncodeToString(r.sha.Sum(nil)); got != r.want {
				r.err = &FileError{Path: r.rel, Kind: ErrFileChanged, Detail: fmt.Sprintf("changed after verification: content has sha256 %s, metadata says %s", got, r.want)}
				return n, r.err
			}
		}
		r.err = io.EOF
	case errors.Is(err, oci.ErrDigestMismatch), errors.Is(err, oci.ErrSizeMismatch):
		r.err = &FileError{Path: r.rel, Kind: ErrFileChanged, Detail: "changed after verification", Err: err}
	default:
		r.err = fmt.Errorf("reading %s: %w", r.rel, err)
	}
	return n, r.err
}

func (r *pinnedReader) Close() error { return r.vr.Close() }

// coverage checks that oci-layout is a v1.0.0 layout, that every index.json entry and
// every blob reachable from it is pinned (index children are optional: a platform
// filter leaves some out; subjects are optional), and that every image is. It reads
// index.json and the manifests through the pin, bounded, so they are checked again
// against the metadata and their digests. In a delta bundle (m.Delta), a config or
// layer that is not pinned must be in m.Delta.Expected with the size its descriptor
// gives (ErrDelta otherwise); which repository needs it is checked on the graph
// (bundle.Open), which knows the repositories.
func (p *Pinned) coverage(ctx context.Context, m *Metadata) (entries, manifests int, err error) {
	images := m.Images
	expected := map[digest.Digest]map[int64]bool{}
	if m.Delta != nil {
		for _, e := range m.Delta.Expected {
			if expected[e.Digest] == nil {
				expected[e.Digest] = map[int64]bool{}
			}
			expected[e.Digest][e.Size] = true
		}
	}
	if err := p.checkLayoutVersion(ctx); err != nil {
		return 0, 0, err
	}
	idxBytes, err := p.readFile(ctx, IndexFile, MaxIndexBytes)
	if err != nil {
		return 0, 0, err
	}
	idx, err := ParseIndex(idxBytes)
	if err != nil {
		return 0, 0, &FileError{Path: IndexFile, Kind: oci.ErrInvalid, Err: err}
	}
	seen := map[digest.Digest]bool{}
	var walk func(d ocispec.Descriptor, from string, optional bool) error
	walk = func(d ocispec.Descriptor, from string, optional bool) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := BlobPath(d)
		if err != nil {
			return &FileError{Path: from, Kind: oci.ErrInvalid, Err: err}
		}
		rel = filepath.ToSlash(rel)
		f := p.files[rel]
		if f == nil {
			if optional {
				return nil
			}
			if m.Delta != nil && !oci.IsManifest(d.MediaType) {
				if expected[d.Digest][d.Size] {
					return nil
				}
				return &FileError{Path: rel, Kind: ErrDelta, Detail: fmt.Sprintf("%s %s (%d bytes) named by %s is neither in the bundle nor in the signed metadata's expected blobs", d.MediaType, d.Digest, d.Size, from)}
			}
			return &FileError{Path: rel, Kind: ErrNotCovered, Detail: fmt.Sprintf("%s %s named by %s is not listed in the metadata", d.MediaType, d.Digest, from)}
		}
		if f.size != d.Size {
			return &FileError{Path: rel, Kind: ErrNotCovered, Detail: fmt.Sprintf("%s names it with size %d, the listed blob is %d bytes", from, d.Size, f.size)}
		}
		if seen[d.Digest] || !oci.IsManifest(d.MediaType) {
			seen[d.Digest] = true
			return nil
		}
		seen[d.Digest] = true
		manifests++
		b, err := p.FetchManifest(ctx, d)
		if err != nil {
			if _, ok := errors.AsType[*FileError](err); ok || ctx.Err() != nil {
				return err
			}
			return &FileError{Path: rel, Kind: oci.ErrInvalid, Err: err}
		}
		man, err := oci.ParseManifest(d, b)
		if err != nil {
			return &FileError{Path: rel, Kind: oci.ErrInvalid, Err: err}
		}
		// children first, then the subject (the order fixes which error a bundle broken
		// twice gets; conformance pins it)
		succ := man.Successors()
		for _, pass := range []bool{true, false} {
			for _, e := range succ {
				if e.IsChild() != pass {
					continue
				}
				from := rel
				if e.Kind == oci.EdgeSubject {
					from += " (subject)"
				}
				if err := walk(e.Descriptor, from, e.Optional()); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for i, d := range idx.Manifests {
		if err := walk(d, fmt.Sprintf("%s entry %d", IndexFile, i), false); err != nil {
			return 0, 0, err
		}
	}
	for i, img := range images {
		desc := ocispec.Descriptor{MediaType: img.MediaType, Digest: img.Digest}
		rel, err := BlobPath(desc)
		if err != nil {
			return 0, 0, err
		}
		if p.files[filepath.ToSlash(rel)] == nil {
			return 0, 0, &FileError{Path: filepath.ToSlash(rel), Kind: ErrNotCovered, Detail: fmt.Sprintf("image %d (%s) is not listed in the metadata", i, img.Source)}
		}
	}
	return len(idx.Manifests), manifests, nil
}

// checkLayoutVersion checks oci-layout says imageLayoutVersion 1.0.0.
func (p *Pinned) checkLayoutVersion(ctx context.Context) error {
	b, err := p.readFile(ctx, LayoutFile, 4096)
	if err != nil {
		return err
	}
	var il ocispec.ImageLayout
	if err := json.Unmarshal(b, &il); err != nil {
		return &FileError{Path: LayoutFile, Kind: oci.ErrInvalid, Err: err}
	}
	if il.Version != ocispec.ImageLayoutVersion {
		return &FileError{Path: LayoutFile, Kind: oci.ErrUnsupported, Detail: fmt.Sprintf("imageLayoutVersion %q", il.Version)}
	}
	return nil
}

var _ interface {
	Fetch(context.Context, ocispec.Descriptor) (io.ReadCloser, error)
	Exists(context.Context, ocispec.Descriptor) (bool, error)
} = (*Pinned)(nil)
