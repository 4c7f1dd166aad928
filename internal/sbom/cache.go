package sbom

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
)

// Cache is a folder of uncompressed layers shared by Generate calls (Options.Cache):
// stereoscope writes each layer it reads there, named by the layer's position and
// digest, and a later image with the same layer at the same position reads it again
// instead of extracting it. Each layer is written only once its bytes were read to
// the end and matched their digest (layout.Fetch verifies while reading; stereoscope
// renames a complete copy into place), so what a later image reads was verified.
//
// The folder holds at most about MaxBytes of layers between calls: after each
// Generate the least recently used layers are removed (a layer in use stays readable:
// stereoscope keeps it open). Close removes the folder.
type Cache struct {
	dir string
	max int64
	mu  sync.RWMutex // Read (fetch) under R; eviction under W

	lmu  sync.Mutex
	tick int64
	last map[string]int64 // file name -> last use
}

// DefaultCacheBytes bounds a Cache made with maxBytes 0.
const DefaultCacheBytes = 1 << 30

// NewCache makes a layer cache in a new folder under parent (os.TempDir() when
// empty) holding about maxBytes (0: DefaultCacheBytes) between calls.
func NewCache(parent string, maxBytes int64) (*Cache, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultCacheBytes
	}
	dir, err := os.MkdirTemp(parent, "petra-oci-sbom-layers-")
	if err != nil {
		return nil, fmt.Errorf("creating the SBOM layer cache: %w", err)
	}
	return &Cache{dir: dir, max: maxBytes, last: map[string]int64{}}, nil
}

// Dir is the cache's folder.
func (c *Cache) Dir() string { return c.dir }

// Close removes the cache's folder.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return os.RemoveAll(c.dir)
}

// used records the layers of img as just used and trims the cache.
func (c *Cache) used(img *image.Image) {
	c.lmu.Lock()
	c.tick++
	for _, l := range img.Layers {
		// stereoscope's name for the layer's uncompressed copy (image.Layer's
		// uncompressedCache); a name that no longer matches only makes eviction
		// oldest-first instead of least recently used
		c.last[fmt.Sprintf("%d-%s", l.Metadata.Index, strings.ReplaceAll(l.Metadata.Digest, ":", "-"))] = c.tick
	}
	c.lmu.Unlock()
	c.trim()
}

// trim removes least recently used layers until the folder holds at most max bytes.
func (c *Cache) trim() {
	c.mu.Lock()
	defer c.mu.Unlock()
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type f struct {
		name string
		size int64
		last int64
	}
	var files []f
	var total int64
	c.lmu.Lock()
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "partial-") {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		files = append(files, f{e.Name(), fi.Size(), c.last[e.Name()]})
		total += fi.Size()
	}
	c.lmu.Unlock()
	slices.SortFunc(files, func(a, b f) int { return int(a.last - b.last) })
	for _, x := range files {
		if total <= c.max {
			break
		}
		if os.Remove(filepath.Join(c.dir, x.name)) == nil {
			total -= x.size
			c.lmu.Lock()
			delete(c.last, x.name)
			c.lmu.Unlock()
		}
	}
}

// licenseContext holds syft's license scanner, built once per process: syft builds
// one for every CreateSBOM whose context has none, and that is most of the time of an
// SBOM for a small image. The scanner is read-only once built (syft shares one between
// its parallel catalogers) and configured as syft's default.
var licenseContext = sync.OnceValues(func() (context.Context, error) {
	ctx, err := syft.SetContextLicenseScanner(context.Background(), syft.DefaultCreateSBOMConfig().Licenses)
	if err != nil {
		return nil, errors.Join(errors.New("building syft's license scanner"), err)
	}
	return ctx, nil
})

// valuesFrom is Context with the values of values where Context has none: the
// caller's cancellation and deadline, and the process-wide license scanner.
type valuesFrom struct {
	context.Context
	values context.Context
}

func (v valuesFrom) Value(key any) any {
	if x := v.Context.Value(key); x != nil {
		return x
	}
	return v.values.Value(key)
}
