// Package layout reads and writes a petra-oci bundle: an OCI image layout directory.
// Blobs are streamed into a private ingest folder, verified against their digest and
// size while written, and only then renamed into blobs/<alg>/<hex>, so an interrupted
// write never leaves a corrupt blob. index.json is written atomically and in a stable
// order. A Layout implements oras-go's content.Storage, so oras.CopyGraph can copy to
// and from it.
//
// A bundle from elsewhere is opened once with OpenRoot and verified with Root.Verify,
// which returns the verified files pinned: a Pinned is what to copy from afterwards,
// since it reads only the files verified, as verified, and never asks the directory
// what is present.
package layout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

const (
	// IngestDir holds blobs being written; it is removed by Close and never part of a
	// finished bundle.
	IngestDir = ".petra-ingest"
	// IndexFile and LayoutFile are the layout's fixed files.
	IndexFile  = ocispec.ImageIndexFile
	LayoutFile = ocispec.ImageLayoutFile
	BlobsDir   = ocispec.ImageBlobsDir
)

// Layout is an OCI image layout directory.
type Layout struct {
	root string
}

// Create opens dir for writing, creating it and its oci-layout file when missing. An
// existing layout is reused so that a re-run skips the blobs already there.
func Create(dir string) (*Layout, error) {
	if err := os.MkdirAll(filepath.Join(dir, BlobsDir), 0o755); err != nil {
		return nil, fmt.Errorf("creating layout %s: %w", dir, err)
	}
	l := &Layout{root: dir}
	if _, err := os.Stat(l.path(LayoutFile)); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := l.writeFileAtomic(LayoutFile, b); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	} else if err := l.checkLayoutFile(); err != nil {
		return nil, err
	}
	return l, nil
}

// Open opens an existing layout for reading. It checks the oci-layout file only; a
// bundle from elsewhere is verified in full by the bundle verifier, and every blob
// read through Fetch is verified while it is read.
func Open(dir string) (*Layout, error) {
	l := &Layout{root: dir}
	if err := l.checkLayoutFile(); err != nil {
		return nil, err
	}
	return l, nil
}

// Root returns the layout directory.
func (l *Layout) Root() string { return l.root }

func (l *Layout) path(rel ...string) string {
	return filepath.Join(append([]string{l.root}, rel...)...)
}

func (l *Layout) checkLayoutFile() error {
	f, err := openRegular(l.path(LayoutFile))
	if err != nil {
		return fmt.Errorf("%w: %s is not an OCI image layout: %v", oci.ErrInvalid, l.root, err)
	}
	defer f.Close()
	var il ocispec.ImageLayout
	if err := json.NewDecoder(io.LimitReader(f, 4096)).Decode(&il); err != nil {
		return fmt.Errorf("%w: %s: %v", oci.ErrInvalid, l.path(LayoutFile), err)
	}
	if il.Version != ocispec.ImageLayoutVersion {
		return fmt.Errorf("%w: %s: imageLayoutVersion %q", oci.ErrUnsupported, l.path(LayoutFile), il.Version)
	}
	return nil
}

// Close removes the ingest folder. Blobs already renamed into place stay.
func (l *Layout) Close() error {
	if err := os.RemoveAll(l.path(IngestDir)); err != nil {
		return fmt.Errorf("cleaning %s: %w", l.path(IngestDir), err)
	}
	return nil
}

// writeFileAtomic writes b to rel through a temporary file and a rename.
func (l *Layout) writeFileAtomic(rel string, b []byte) error {
	dst := l.path(rel)
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("renaming into %s: %w", dst, err)
	}
	return nil
}

var _ interface {
	Fetch(context.Context, ocispec.Descriptor) (io.ReadCloser, error)
	Push(context.Context, ocispec.Descriptor, io.Reader) error
	Exists(context.Context, ocispec.Descriptor) (bool, error)
} = (*Layout)(nil)
