package layout

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// WriteFile writes b atomically to rel, a slash-separated path inside the bundle's
// petra/ folder (the signature, the carried policy and trusted root). Nothing else of
// a layout is written this way.
func (l *Layout) WriteFile(rel string, b []byte) error {
	clean := path.Clean(rel)
	if clean != rel || !strings.HasPrefix(rel, PetraDir+"/") || strings.Contains(rel, "..") {
		return fmt.Errorf("%w: %q is not a file under %s/", oci.ErrInvalid, rel, PetraDir)
	}
	dir := filepath.Dir(l.path(filepath.FromSlash(rel)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return l.writeFileAtomic(filepath.FromSlash(rel), b)
}

// ReadIndexPinned reads index.json like ReadIndex, and refuses it unless its SHA-256 is
// sha256Hex: after a bundle is verified, the index the copy follows is the verified
// one even if the file was swapped in between (every blob it reaches is then verified
// against its digest while read).
func (l *Layout) ReadIndexPinned(sha256Hex string) (ocispec.Index, error) {
	b, err := l.readIndexBytes()
	if err != nil {
		return ocispec.Index{}, err
	}
	if got := digest.FromBytes(b).Encoded(); got != sha256Hex {
		return ocispec.Index{}, fmt.Errorf("%w: %s changed since it was verified", ErrFileChanged, l.path(IndexFile))
	}
	return ParseIndex(b)
}
