// Package analyze is what pack does with an image's content once it is in the bundle:
// an SPDX SBOM per platform (generated with syft from the image's layers) and,
// with a vulnerability database, a grype scan of it against thresholds, exceptions
// and VEX. Both are attached to the platform manifest as OCI referrers. It is the only
// package pack's command wires syft and grype in through, so pack itself, verify,
// unpack and inspect do not link them.
package analyze

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/internal/analyze/job"
	"github.com/petra-oci/petra-oci/internal/report/artifact"
	"github.com/petra-oci/petra-oci/internal/sbom"
	"github.com/petra-oci/petra-oci/internal/sbom/spdx"
	"github.com/petra-oci/petra-oci/internal/scan"
	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
)

// Options configure an Analyzer.
type Options struct {
	// VulnDB is the grype database (archive, vulnerability.db or installed
	// directory); empty: SBOMs only, no scan.
	VulnDB string
	// MaxDBAge refuses an older database (0: no limit).
	MaxDBAge time.Duration
	// Thresholds, Exceptions and VEX decide each scan's verdict.
	Thresholds scanreport.Thresholds
	Exceptions []scanreport.Exception
	VEX        [][]byte
	// Now is the pack time (reproducible referrers, exception expiry); default now.
	Now time.Time
	Log *slog.Logger
	// LayerCacheBytes bounds the uncompressed layers kept between images so that a
	// layer shared by several images is extracted once (sbom.Cache, under
	// os.TempDir(), removed by Close); 0: sbom.DefaultCacheBytes, negative: no cache.
	LayerCacheBytes int64
}

// Analyzer generates and scans SBOMs.
type Analyzer struct {
	opts  Options
	db    *scan.DB
	cache *sbom.Cache
	// DB describes the loaded database (zero without one).
	DB scanreport.DBInfo
}

// New loads the vulnerability database, if any, once for the whole pack.
func New(ctx context.Context, opts Options) (*Analyzer, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now().UTC().Truncate(time.Second)
	}
	if err := opts.Thresholds.Validate(); err != nil {
		return nil, err
	}
	for _, e := range opts.Exceptions {
		if err := e.Validate(); err != nil {
			return nil, err
		}
	}
	a := &Analyzer{opts: opts}
	if opts.VulnDB != "" {
		db, info, err := scan.LoadDB(ctx, opts.VulnDB, opts.MaxDBAge)
		if err != nil {
			return nil, err
		}
		a.db, a.DB = db, info
		opts.Log.Info("vulnerability database loaded", "path", opts.VulnDB, "built", info.Built)
	}
	if opts.LayerCacheBytes >= 0 {
		c, err := sbom.NewCache("", opts.LayerCacheBytes)
		if err != nil {
			return nil, errors.Join(err, a.Close())
		}
		a.cache = c
	}
	return a, nil
}

// Close releases the database and removes the layer cache.
func (a *Analyzer) Close() error {
	var errs []error
	if a.db != nil {
		errs = append(errs, a.db.Close())
	}
	if a.cache != nil {
		errs = append(errs, a.cache.Close())
	}
	return errors.Join(errs...)
}

// Image attaches an SBOM (and a scan report, with a database) to every platform
// manifest of the image (the root itself when it is a single manifest). An image over
// the thresholds fails with an error wrapping scan.ErrThreshold that holds the table
// of offending CVEs; nothing of it is attached then.
//
// The SBOM attached is the image's own SPDX attestation when the policy verified one
// for that platform (origin "carried"); otherwise one syft generates (origin
// "generated"). The scan always reads a generated SBOM, which is attached too: a
// carried SPDX document may lack what grype needs to pick the distribution.
func (a *Analyzer) Image(ctx context.Context, l *layout.Layout, in job.Request) ([]referrers.Attachment, error) {
	repository, tag, root := in.Repository, in.Tag, in.Root
	platforms := in.Children
	if !oci.IsIndex(root.MediaType) {
		platforms = []ocispec.Descriptor{root}
	}
	name := repository
	if tag != "" {
		name += ":" + tag
	}
	var out []referrers.Attachment
	var errs []error
	for _, p := range platforms {
		p := ocispec.Descriptor{MediaType: p.MediaType, Digest: p.Digest, Size: p.Size, Platform: p.Platform}
		plat := oci.PlatformString(p.Platform)
		if p.Platform == nil {
			// a single-platform image has no index entry to name its platform: the
			// image config does (os/architecture/variant)
			cp, err := sbom.ConfigPlatform(ctx, l, p)
			if err != nil {
				return nil, fmt.Errorf("platform of %s: %w", p.Digest, err)
			}
			plat = cp
		}
		carried, err := carriedSPDX(ctx, l, in, p.Digest)
		if err != nil {
			return nil, err
		}
		if carried != nil {
			d, err := spdx.ParseDocument(carried)
			if err != nil {
				return nil, fmt.Errorf("carried SBOM of %s: %w", p.Digest, err)
			}
			info := spdx.InfoFor(d, sbom.OriginCarried)
			info.Platform = plat
			att, err := attachSBOM(ctx, l, carried, p, info, a.opts.Now)
			if err != nil {
				return nil, err
			}
			out = append(out, att)
			a.opts.Log.Info("carried SBOM attached", "image", name, "platform", plat, "packages", info.Packages)
			if a.db == nil {
				continue
			}
		}
		doc, info, err := sbom.Generate(ctx, l, p, sbom.Options{Name: repository, Cache: a.cache})
		if err != nil {
			return nil, err
		}
		if info.Platform == "" {
			info.Platform = plat
		}
		att, err := attachSBOM(ctx, l, doc, p, info, a.opts.Now)
		if err != nil {
			return nil, err
		}
		out = append(out, att)
		a.opts.Log.Info("SBOM generated", "image", name, "platform", info.Platform, "packages", info.Packages)
		if a.db == nil {
			continue
		}
		var idx ocispec.Descriptor
		if oci.IsIndex(root.MediaType) {
			idx = root
		}
		rep, err := scan.Scan(ctx, a.db, doc, scan.Options{
			Image: name, Digest: p.Digest, IndexDigest: idx.Digest, Platform: info.Platform,
			Thresholds: a.opts.Thresholds, Exceptions: a.opts.Exceptions, VEX: a.opts.VEX,
			Now: func() time.Time { return a.opts.Now },
		})
		if errors.Is(err, scan.ErrThreshold) {
			errs = append(errs, fmt.Errorf("%s %s: %w\n%s", name, info.Platform, err, rep.Table()))
			continue
		}
		if err != nil {
			return nil, err
		}
		sm, err := rep.ReferrerManifest(p)
		if err != nil {
			return nil, err
		}
		if att, err = push(ctx, l, sm, p); err != nil {
			return nil, err
		}
		out = append(out, att)
		a.opts.Log.Info("scanned", "image", name, "platform", info.Platform, "verdict", rep.Verdict)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func attachSBOM(ctx context.Context, l *layout.Layout, doc []byte, subject ocispec.Descriptor, info sbom.Info, now time.Time) (referrers.Attachment, error) {
	m, err := sbom.ReferrerManifest(doc, subject, info, now)
	if err != nil {
		return referrers.Attachment{}, err
	}
	return push(ctx, l, m, subject)
}

// maxEnvelopeBytes bounds a DSSE envelope layer read whole.
const maxEnvelopeBytes = 64 << 20

// carriedSPDX returns the SPDX document of a verified https://spdx.dev/Document
// attestation about subject, re-read from the bundle (a cosign .att layer) and checked
// against the payload digest the verification recorded; nil when there is none.
func carriedSPDX(ctx context.Context, l *layout.Layout, in job.Request, subject digest.Digest) ([]byte, error) {
	if in.Verification == nil {
		return nil, nil
	}
	for _, s := range append([]imageverify.Subject{in.Verification.Root}, in.Verification.Children...) {
		if s.Digest != subject {
			continue
		}
		for _, at := range s.Attestations {
			if at.PredicateType != spdx.PredicateType || at.Form != imageverify.FormCosignAtt {
				continue
			}
			for _, a := range in.Attachments {
				// the verified .att manifest, or the one evidence re-wrote with the same layers
				if a.Descriptor.Digest != at.Manifest && (a.Kind != oci.KindCosignAtt || a.Subject != subject) {
					continue
				}
				b, err := l.FetchManifest(ctx, ocispec.Descriptor{MediaType: a.Descriptor.MediaType, Digest: a.Descriptor.Digest, Size: a.Descriptor.Size})
				if err != nil {
					return nil, err
				}
				m, err := oci.ParseManifest(a.Descriptor, b)
				if err != nil {
					return nil, err
				}
				for _, layer := range m.Layers {
					if layer.Digest != at.Layer {
						continue
					}
					rc, err := l.Fetch(ctx, layer)
					if err != nil {
						return nil, err
					}
					eb, err := oci.ReadAllVerified(rc, layer, maxEnvelopeBytes)
					if err != nil {
						return nil, err
					}
					var env struct{ Payload []byte }
					if err := json.Unmarshal(eb, &env); err != nil {
						return nil, fmt.Errorf("attestation layer %s: %w", layer.Digest, err)
					}
					if digest.FromBytes(env.Payload) != at.PayloadDigest {
						return nil, fmt.Errorf("%w: attestation %s changed since it was verified", oci.ErrDigestMismatch, layer.Digest)
					}
					return sbom.FromAttestation(env.Payload)
				}
			}
		}
	}
	return nil, nil
}

func push(ctx context.Context, l *layout.Layout, m *artifact.Manifest, subject ocispec.Descriptor) (referrers.Attachment, error) {
	desc, err := m.Push(ctx, l)
	if err != nil {
		return referrers.Attachment{}, err
	}
	return referrers.Attachment{Subject: subject.Digest, Descriptor: desc, Kind: oci.KindReferrer}, nil
}
