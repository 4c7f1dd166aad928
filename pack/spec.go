package pack

import (
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/petra-oci/petra-oci/oci"
)

// ImageSpec names one image to pack.
type ImageSpec struct {
	// Ref is a fully qualified reference: host/path:tag, host/path@digest or both.
	Ref string `json:"ref"`
	// Platforms keeps only these children of a multi-platform image (os/arch[/variant]);
	// empty keeps all.
	Platforms []string `json:"platforms,omitempty"`
}

// SpecFile is the images.yaml format:
//
//	images:
//	  - ref: cgr.dev/chainguard/nginx:latest
//	    platforms: [linux/amd64]
//	  - ref: cgr.dev/chainguard/static@sha256:...
type SpecFile struct {
	Images []ImageSpec `json:"images"`
}

// maxSpecBytes bounds the images file.
const maxSpecBytes = 4 << 20

// LoadSpecFile reads an images file strictly: unknown fields are errors.
func LoadSpecFile(path string) ([]ImageSpec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening images file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSpecBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading images file %s: %w", path, err)
	}
	if len(b) > maxSpecBytes {
		return nil, fmt.Errorf("%w: images file %s is over %d bytes", oci.ErrTooLarge, path, maxSpecBytes)
	}
	var sf SpecFile
	if err := yaml.UnmarshalStrict(b, &sf); err != nil {
		return nil, fmt.Errorf("%w: images file %s: %v", oci.ErrInvalid, path, err)
	}
	if len(sf.Images) == 0 {
		return nil, fmt.Errorf("%w: images file %s lists no images", oci.ErrInvalid, path)
	}
	for i, im := range sf.Images {
		if im.Ref == "" {
			return nil, fmt.Errorf("%w: images file %s: image %d has no ref", oci.ErrInvalid, path, i+1)
		}
	}
	return sf.Images, nil
}
