// Package sbom generates SPDX 2.3 JSON SBOMs for images in a bundle with syft used as
// a library, offline: the image's manifest, config and layers are read from the
// bundle's OCI layout through layout.Fetch (every byte verified against its digest),
// handed to syft as a go-containerregistry image, and catalogued without any network.
//
// This package is the only one that links syft (with internal/scan, which links
// grype). Reading SBOMs (Parse, FromAttestation, the referrer manifest) lives in the
// light package internal/sbom/spdx, re-exported here for convenience.
package sbom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/format"
	"github.com/anchore/syft/syft/format/spdxjson"
	"github.com/anchore/syft/syft/source"
	"github.com/anchore/syft/syft/source/stereoscopesource"
	// syft catalogs newer RPM databases (sqlite) through database/sql and leaves the
	// driver to its importer. This is the driver grype links (through gorm), so a
	// binary linking both registers "sqlite" once; modernc.org/sqlite, which the syft
	// CLI uses, would register the same name again and panic.
	_ "github.com/glebarez/go-sqlite"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/sbom/spdx"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// Re-exports of the light package, so callers that generate need one import.
type (
	Info    = spdx.Info
	Package = spdx.Package
	Origin  = spdx.Origin
)

const (
	OriginGenerated = spdx.OriginGenerated
	OriginCarried   = spdx.OriginCarried
	// SPDXVersion is the SPDX version Generate writes.
	SPDXVersion = "2.3"
	// Generator is the generator Generate records.
	Generator = "syft"
)

// Parse reads an SPDX 2.x JSON document (see spdx.Parse).
func Parse(spdxJSON []byte) ([]Package, error) { return spdx.Parse(spdxJSON) }

// FromAttestation extracts the SPDX document of a Chainguard SPDX in-toto statement
// (see spdx.FromAttestation).
func FromAttestation(statementJSON []byte) ([]byte, error) {
	return spdx.FromAttestation(statementJSON)
}

// Options configure Generate. The zero value is usable.
type Options struct {
	// Name is the image name recorded as the SBOM's subject, e.g.
	// "cgr.dev/chainguard/nginx"; default: the image digest.
	Name string
	// Parallelism bounds syft's concurrent cataloging tasks; 0 is syft's default.
	Parallelism int
	// Cache, when set, keeps uncompressed layers between calls so that a layer shared
	// by several images is extracted once (see NewCache); nil: each call extracts into
	// its own temporary folder, removed before it returns.
	Cache *Cache
}

// maxConfigBytes bounds an image config read whole.
const maxConfigBytes = 8 << 20

// Generate returns an SPDX 2.3 JSON SBOM of image, a single-platform image manifest
// held in l, made by syft from the image's layers. Nothing is fetched from the network
// and nothing is left behind: syft's (stereoscope's) unpacked layers go to a temporary
// folder under os.TempDir() that is removed before Generate returns.
func Generate(ctx context.Context, l *layout.Layout, img ocispec.Descriptor, opts Options) ([]byte, Info, error) {
	if img.MediaType != ocispec.MediaTypeImageManifest && img.MediaType != oci.MediaTypeDockerManifest {
		return nil, Info{}, fmt.Errorf("%w: SBOM of %s: media type %q is not a single-platform image manifest", oci.ErrInvalid, img.Digest, img.MediaType)
	}
	core, err := newLayoutImage(ctx, l, img)
	if err != nil {
		return nil, Info{}, fmt.Errorf("SBOM of %s: %w", img.Digest, err)
	}
	v1img, err := partial.CompressedToImage(core)
	if err != nil {
		return nil, Info{}, fmt.Errorf("SBOM of %s: %w", img.Digest, err)
	}
	name := opts.Name
	if name == "" {
		name = img.Digest.String()
	}

	// the license scanner syft builds for every CreateSBOM (a DFA of all SPDX license
	// texts) is built once per process and handed to each call through its context
	lctx, err := licenseContext()
	if err != nil {
		return nil, Info{}, fmt.Errorf("SBOM of %s: %w", img.Digest, err)
	}
	ctx = valuesFrom{Context: ctx, values: lctx}

	tmp := file.NewTempDirGenerator("petra-oci-sbom")
	cleanup := func() error { return tmp.Cleanup() }
	var simg *image.Image
	meta := []image.AdditionalMetadata{image.WithManifestDigest(img.Digest.String()), image.WithManifest(core.manifest)}
	if c := opts.Cache; c != nil {
		// stereoscope keeps an uncompressed layer in its content folder under the
		// layer's index and digest and uses it again when it is there: a folder
		// shared by every image extracts a shared layer once. No TempDirGenerator,
		// so that the image's Cleanup leaves the shared folder to the Cache.
		simg = image.New(v1img, nil, c.dir, meta...)
		c.mu.RLock()
		err = simg.Read(ctx)
		c.mu.RUnlock()
		if err == nil {
			c.used(simg)
		}
	} else {
		contentDir, derr := tmp.NewDirectory("image")
		if derr != nil {
			return nil, Info{}, errors.Join(fmt.Errorf("SBOM of %s: %w", img.Digest, derr), cleanup())
		}
		simg = image.New(v1img, tmp, contentDir, meta...)
		err = simg.Read(ctx)
	}
	if err != nil {
		return nil, Info{}, errors.Join(fmt.Errorf("SBOM of %s: reading layers: %w", img.Digest, err), simg.Cleanup(), cleanup())
	}
	src := stereoscopesource.New(simg, stereoscopesource.ImageConfig{
		Reference: name + "@" + img.Digest.String(),
		Alias:     source.Alias{Name: name, Version: img.Digest.String()},
	})
	// Close removes stereoscope's folders (simg.Cleanup); cleanup covers the root.
	closed := false
	closeAll := func() error {
		if closed {
			return nil
		}
		closed = true
		return errors.Join(src.Close(), cleanup())
	}
	defer func() { _ = closeAll() }()

	cfg := syft.DefaultCreateSBOMConfig().WithTool(Generator, SyftVersion())
	if opts.Parallelism > 0 {
		cfg = cfg.WithParallelism(opts.Parallelism)
	}
	s, err := syft.CreateSBOM(ctx, src, cfg)
	if err != nil {
		return nil, Info{}, fmt.Errorf("SBOM of %s: %w", img.Digest, err)
	}
	enc, err := spdxjson.NewFormatEncoderWithConfig(spdxjson.EncoderConfig{Version: SPDXVersion, DefaultVersion: SPDXVersion})
	if err != nil {
		return nil, Info{}, err
	}
	out, err := format.Encode(*s, enc)
	if err != nil {
		return nil, Info{}, fmt.Errorf("SBOM of %s: encoding SPDX: %w", img.Digest, err)
	}
	if err := closeAll(); err != nil {
		return nil, Info{}, fmt.Errorf("SBOM of %s: cleaning up: %w", img.Digest, err)
	}
	doc, err := spdx.ParseDocument(out)
	if err != nil {
		return nil, Info{}, fmt.Errorf("SBOM of %s: syft wrote an SPDX document that does not parse: %w", img.Digest, err)
	}
	info := spdx.InfoFor(doc, OriginGenerated)
	info.Generator, info.GeneratorVersion = Generator, SyftVersion()
	info.Platform = core.platform
	return out, info, nil
}

// SyftModuleVersion is the syft version go.mod requires. SyftVersion falls back to it
// where the binary carries no module information (test binaries); a test keeps it
// equal to go.mod.
const SyftModuleVersion = "v1.57.1"

// SyftVersion is the version of the syft module linked into this binary, read from its
// build information (SyftModuleVersion when the binary has none).
func SyftVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/anchore/syft" {
				if d.Replace != nil && d.Replace.Version != "" {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return SyftModuleVersion
}

// layoutImage is a go-containerregistry image (partial.CompressedImageCore) whose
// manifest, config and layers are read from the bundle layout, verified.
type layoutImage struct {
	ctx       context.Context
	l         *layout.Layout
	desc      ocispec.Descriptor
	manifest  []byte
	config    []byte
	layers    map[v1.Hash]ocispec.Descriptor
	platform  string
	mediaType types.MediaType
}

func newLayoutImage(ctx context.Context, l *layout.Layout, desc ocispec.Descriptor) (*layoutImage, error) {
	raw, err := l.FetchManifest(ctx, desc)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", oci.ErrInvalid, desc.Digest, err)
	}
	if _, err := oci.ParseManifest(desc, raw); err != nil {
		return nil, err
	}
	if m.Config.Size > maxConfigBytes {
		return nil, fmt.Errorf("%w: config %s is %d bytes", oci.ErrTooLarge, m.Config.Digest, m.Config.Size)
	}
	rc, err := l.Fetch(ctx, m.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := oci.ReadAllVerified(rc, m.Config, maxConfigBytes)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	li := &layoutImage{ctx: ctx, l: l, desc: desc, manifest: raw, config: cfg,
		layers: map[v1.Hash]ocispec.Descriptor{}, mediaType: types.MediaType(desc.MediaType)}
	li.platform = platformOf(cfg)
	for _, ld := range m.Layers {
		h, err := v1.NewHash(ld.Digest.String())
		if err != nil {
			return nil, fmt.Errorf("%w: layer %s: %v", oci.ErrInvalid, ld.Digest, err)
		}
		li.layers[h] = ld
	}
	return li, nil
}

// platformOf renders the os/architecture[/variant] of an image config; "" when the
// config does not name both (never "/").
func platformOf(config []byte) string {
	var ic ocispec.Image
	if err := json.Unmarshal(config, &ic); err != nil || ic.OS == "" || ic.Architecture == "" {
		return ""
	}
	return oci.PlatformString(&ic.Platform)
}

// ConfigPlatform returns the platform (os/architecture[/variant]) the config of img, a
// single-platform image manifest in l, records; "" when it names none. Manifest and
// config are read verified.
func ConfigPlatform(ctx context.Context, l *layout.Layout, img ocispec.Descriptor) (string, error) {
	if img.MediaType != ocispec.MediaTypeImageManifest && img.MediaType != oci.MediaTypeDockerManifest {
		return "", fmt.Errorf("%w: %s: media type %q is not a single-platform image manifest", oci.ErrInvalid, img.Digest, img.MediaType)
	}
	li, err := newLayoutImage(ctx, l, img)
	if err != nil {
		return "", err
	}
	return li.platform, nil
}

func (li *layoutImage) RawManifest() ([]byte, error)        { return li.manifest, nil }
func (li *layoutImage) RawConfigFile() ([]byte, error)      { return li.config, nil }
func (li *layoutImage) MediaType() (types.MediaType, error) { return li.mediaType, nil }

func (li *layoutImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	d, ok := li.layers[h]
	if !ok {
		return nil, fmt.Errorf("%w: layer %s is not in image %s", oci.ErrNotFound, h, li.desc.Digest)
	}
	return &layoutLayer{li: li, desc: d, hash: h}, nil
}

// layoutLayer is one compressed layer, streamed from the layout and verified as read.
type layoutLayer struct {
	li   *layoutImage
	desc ocispec.Descriptor
	hash v1.Hash
}

func (ll *layoutLayer) Digest() (v1.Hash, error) { return ll.hash, nil }
func (ll *layoutLayer) Size() (int64, error)     { return ll.desc.Size, nil }
func (ll *layoutLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(ll.desc.MediaType), nil
}
func (ll *layoutLayer) Compressed() (io.ReadCloser, error) {
	return ll.li.l.Fetch(ll.li.ctx, ll.desc)
}

// ReferrerManifest builds the referrer manifest attaching sbom to subject (see
// spdx.ReferrerManifest).
var ReferrerManifest = spdx.ReferrerManifest

// GeneratedAt is a helper for callers that want reproducible referrers: it returns t
// truncated to seconds in UTC (the precision of org.opencontainers.image.created).
func GeneratedAt(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }
