package layout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// BlobPath returns the path of desc's blob relative to the layout root, after checking
// that the digest is one petra-oci verifies (so the path cannot escape blobs/).
func BlobPath(desc ocispec.Descriptor) (string, error) {
	if err := oci.ValidateDescriptor(desc); err != nil {
		return "", err
	}
	return filepath.Join(BlobsDir, desc.Digest.Algorithm().String(), desc.Digest.Encoded()), nil
}

// Exists reports whether the blob is present with the expected size. Blobs only appear
// under their name after their digest was verified, so presence means verified at
// write time; Fetch verifies again on every read.
func (l *Layout) Exists(_ context.Context, desc ocispec.Descriptor) (bool, error) {
	rel, err := BlobPath(desc)
	if err != nil {
		return false, err
	}
	fi, err := os.Lstat(l.path(rel))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("checking blob %s: %w", desc.Digest, err)
	case !fi.Mode().IsRegular():
		return false, fmt.Errorf("%w: blob %s is not a regular file", oci.ErrInvalid, desc.Digest)
	case fi.Size() != desc.Size:
		return false, fmt.Errorf("%w: blob %s is %d bytes on disk, descriptor says %d", oci.ErrSizeMismatch, desc.Digest, fi.Size(), desc.Size)
	}
	return true, nil
}

// Fetch opens the blob; the reader fails instead of ending when the content does not
// match desc's size and digest.
func (l *Layout) Fetch(_ context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rel, err := BlobPath(desc)
	if err != nil {
		return nil, err
	}
	f, err := openRegular(l.path(rel))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: blob %s in %s", oci.ErrNotFound, desc.Digest, l.root)
		}
		return nil, fmt.Errorf("opening blob %s: %w", desc.Digest, err)
	}
	return oci.NewVerifiedReader(f, desc), nil
}

// FetchManifest reads a manifest-sized blob whole, verified, refusing anything larger
// than oci.MaxManifestBytes.
func (l *Layout) FetchManifest(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
	rc, err := l.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	return oci.ReadAllVerified(rc, desc, oci.MaxManifestBytes)
}

// Push streams r into the layout: to a temporary file in the ingest folder, verified
// against desc while written, synced, then renamed into place. A blob already present
// is left alone and r is not read.
func (l *Layout) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	rel, err := BlobPath(desc)
	if err != nil {
		return err
	}
	if ok, err := l.Exists(ctx, desc); err != nil || ok {
		return err
	}
	ingest := l.path(IngestDir)
	if err := os.MkdirAll(ingest, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", ingest, err)
	}
	tmp, err := os.CreateTemp(ingest, desc.Digest.Encoded()+"-*")
	if err != nil {
		return fmt.Errorf("ingesting %s: %w", desc.Digest, err)
	}
	defer os.Remove(tmp.Name())
	// r verified against desc already (graphcopy hands a verified reader) is hashed once
	if !oci.Verifies(r, desc) {
		r = oci.NewVerifiedReader(io.NopCloser(r), desc)
	}
	buf := copyBuffers.Get().(*[]byte)
	_, err = io.CopyBuffer(writerOnly{tmp}, r, *buf)
	copyBuffers.Put(buf)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing blob %s: %w", desc.Digest, err)
	}
	dst := l.path(rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(dst), err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("writing blob %s: %w", desc.Digest, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("renaming blob %s into place: %w", desc.Digest, err)
	}
	return nil
}

// copyBuffers are Push's copy buffers: larger than io.Copy's 32 KiB, so a blob takes
// fewer read and write calls.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// writerOnly hides the file's ReadFrom, which would copy through its own 32 KiB buffer.
type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }

// PushBytes stores b as desc.
func (l *Layout) PushBytes(ctx context.Context, mediaType string, b []byte) (ocispec.Descriptor, error) {
	desc := oci.DescriptorFor(mediaType, b)
	return desc, l.Push(ctx, desc, bytes.NewReader(b))
}

// openRegular opens path for reading and refuses anything but a regular file (no
// symlink is followed: the final component is opened with O_NOFOLLOW; a FIFO does not
// block the open: O_NONBLOCK, which reads of a regular file ignore).
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a regular file", oci.ErrInvalid, path)
	}
	return f, nil
}
