// Package analyze is what pack does with an image's content once it is in the bundle:
// an SPDX SBOM per platform (generated with syft from the image's layers) and,
// with a vulnerability database, a grype scan of it against thresholds, exceptions
// and VEX. Both are attached to the platform manifest as OCI referrers. It is the only
// package pack's command wires syft and grype in through, so pack itself, verify,
// unpack and inspect do not link them.
package analyze

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/report/artifact"
	"github.com/petra-oci/petra-oci/internal/sbom"
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
}

// Analyzer generates and scans SBOMs.
type Analyzer struct {
	opts Options
	db   *scan.DB
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
	return a, nil
}

// Close releases the database.
func (a *Analyzer) Close() error {
	if a.db == nil {
		return nil
	}
	return a.db.Close()
}

// Image attaches an SBOM (and a scan report, with a database) to every platform
// manifest of the image (the root itself when it is a single manifest). An image over
// the thresholds fails with an error wrapping scan.ErrThreshold that holds the table
// of offending CVEs; nothing of it is attached then.
func (a *Analyzer) Image(ctx context.Context, l *layout.Layout, repository, tag string, root ocispec.Descriptor, children []ocispec.Descriptor) ([]referrers.Attachment, error) {
	platforms := children
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
		doc, info, err := sbom.Generate(ctx, l, p, sbom.Options{Name: repository})
		if err != nil {
			return nil, err
		}
		if info.Platform == "" {
			info.Platform = oci.PlatformString(p.Platform)
		}
		m, err := sbom.ReferrerManifest(doc, p, info, a.opts.Now)
		if err != nil {
			return nil, err
		}
		att, err := push(ctx, l, m, p)
		if err != nil {
			return nil, err
		}
		out = append(out, att)
		a.opts.Log.Info("SBOM attached", "image", name, "platform", info.Platform, "packages", info.Packages)
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

func push(ctx context.Context, l *layout.Layout, m *artifact.Manifest, subject ocispec.Descriptor) (referrers.Attachment, error) {
	desc, err := m.Push(ctx, l)
	if err != nil {
		return referrers.Attachment{}, err
	}
	return referrers.Attachment{Subject: subject.Digest, Descriptor: desc, Kind: oci.KindReferrer}, nil
}
