package layout

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

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
