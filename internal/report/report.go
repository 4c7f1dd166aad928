// Package report builds the reviewer report of a bundle: what a CDS officer reads
// before approving a transfer. Per image: its platforms, who signed it, the SBOM of
// every platform (origin and package count), the CVEs found by severity, the verdict
// against the thresholds, and the exceptions applied with their reasons and expiries.
// It reads the bundle's OCI layout only (SBOM and scan-report referrers), renders JSON
// and a self-contained HTML page, and links neither syft nor grype.
package report

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/sbom/spdx"
	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
)

// Severity re-exports scanreport.Severity.
type Severity = scanreport.Severity

// Signer is who signed an image or the bundle, as verification established it.
// Build leaves signers empty: the caller fills them from its verification result
// (signature checks are not the report's job, and an unverified claim must not
// appear as a signer).
type Signer struct {
	// Identity is the certificate identity (SAN) or the key id.
	Identity string `json:"identity"`
	// Issuer is the OIDC issuer of a keyless signature; empty for a key.
	Issuer string `json:"issuer,omitempty"`
	// Kind says what was verified: "keyless", "key", ...
	Kind string `json:"kind,omitempty"`
	// What names the signed thing: "bundle metadata", "image", "attestation <type>".
	What string `json:"what,omitempty"`
}

// SBOM is an SBOM attached to a platform.
type SBOM struct {
	// Referrer is the digest of the referrer manifest, Content the SPDX document's.
	Referrer digest.Digest `json:"referrer"`
	Content  digest.Digest `json:"content"`
	// Origin is "generated", "carried", or "attached" (an SPDX referrer that came with
	// the image from its registry, without petra-oci's annotations).
	Origin      string `json:"origin"`
	Generator   string `json:"generator,omitempty"`
	SPDXVersion string `json:"spdxVersion,omitempty"`
	// Packages counts the content packages of the document (the image itself not
	// counted).
	Packages int `json:"packages"`
}

// OriginAttached is the origin of an SPDX referrer without petra-oci annotations.
const OriginAttached = "attached"

// Scan is a scan report attached to a platform.
type Scan struct {
	Referrer   digest.Digest                 `json:"referrer"`
	Verdict    scanreport.Verdict            `json:"verdict"`
	Scanner    scanreport.Tool               `json:"scanner"`
	DB         scanreport.DBInfo             `json:"db"`
	ScannedAt  time.Time                     `json:"scannedAt"`
	Distro     string                        `json:"distro,omitempty"`
	Thresholds scanreport.Thresholds         `json:"thresholds"`
	Counts     map[Severity]int              `json:"counts"`
	Matches    []scanreport.Match            `json:"matches"`
	Violations []scanreport.Violation        `json:"violations,omitempty"`
	Suppressed []scanreport.Suppressed       `json:"suppressed,omitempty"`
	Expired    []scanreport.ExpiredException `json:"expired,omitempty"`
}

// Platform is one platform manifest of an image (the image itself when it is not an
// index).
type Platform struct {
	Platform string        `json:"platform,omitempty"`
	Digest   digest.Digest `json:"digest"`
	SBOMs    []SBOM        `json:"sboms,omitempty"`
	Scans    []Scan        `json:"scans,omitempty"`
}

// Image is one root image of the bundle.
type Image struct {
	Name       string        `json:"name"`
	Repository string        `json:"repository"`
	Tag        string        `json:"tag,omitempty"`
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"mediaType"`
	// Signers is filled by the caller from verification (see Signer).
	Signers   []Signer   `json:"signers"`
	Platforms []Platform `json:"platforms"`
	// Attachments counts every manifest attached to the image, its platforms or
	// another attachment: what unpack pushes with it.
	Attachments int `json:"attachments"`
	// SBOMs and Scans attached to the index itself.
	SBOMs []SBOM `json:"sboms,omitempty"`
	Scans []Scan `json:"scans,omitempty"`
	// Counts are the CVEs by severity over the latest scan of every platform.
	Counts map[Severity]int `json:"counts"`
	// Verdict is the worst verdict of the latest scans ("" when nothing was scanned).
	Verdict scanreport.Verdict `json:"verdict,omitempty"`
}

// Exception is an exception or VEX statement that let a finding through, or an
// expired exception that no longer did, with the image it concerns.
type Exception struct {
	Image    string `json:"image"`
	Platform string `json:"platform,omitempty"`
	CVE      string `json:"cve"`
	Package  string `json:"package"`
	Version  string `json:"version"`
	Severity string `json:"severity"`
	// By is "exception" or "vex".
	By      string `json:"by"`
	Reason  string `json:"reason"`
	Expires string `json:"expires,omitempty"`
	// Expired is true for an exception that matched but no longer applies.
	Expired bool `json:"expired,omitempty"`
}

// Bundle is what the bundle's metadata says about itself (when it has metadata).
type Bundle struct {
	ID          string `json:"id,omitempty"`
	Sequence    uint64 `json:"sequence,omitempty"`
	ToolVersion string `json:"toolVersion,omitempty"`
	Signed      bool   `json:"signed"`
}

// Report is the reviewer report of a bundle.
type Report struct {
	Dir         string    `json:"dir"`
	GeneratedAt time.Time `json:"generatedAt"`
	Bundle      Bundle    `json:"bundle"`
	// Signers of the bundle itself; filled by the caller from verification.
	Signers    []Signer         `json:"signers"`
	Images     []Image          `json:"images"`
	Counts     map[Severity]int `json:"counts"`
	Exceptions []Exception      `json:"exceptions"`
	// Verified is set by the caller when the bundle was verified before the report was
	// built; the HTML says so prominently either way.
	Verified bool `json:"verified"`
}

// Options configure Build.
type Options struct {
	// Now is the report time; default time.Now.
	Now func() time.Time
}

// Build reads the bundle at dir and returns its report. It verifies every blob it reads
// against its digest, but not the bundle's signature: verify first (bundle.Verify),
// then fill Signers and Verified from the result.
func Build(ctx context.Context, dir string) (*Report, error) {
	return BuildWithOptions(ctx, dir, Options{})
}

// BuildWithOptions is Build with options.
func BuildWithOptions(ctx context.Context, dir string, opts Options) (*Report, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l, entries, err := layout.OpenEntries(dir)
	if err != nil {
		return nil, err
	}
	r := &Report{Dir: dir, GeneratedAt: opts.Now().UTC().Truncate(time.Second), Signers: []Signer{}, Images: []Image{},
		Counts: zeroCounts(), Exceptions: []Exception{}}
	if b, err := layout.ReadMetadataBytes(dir); err == nil {
		if m, err := layout.ParseMetadata(b); err == nil {
			r.Bundle = Bundle{ID: m.BundleID, Sequence: m.Sequence, ToolVersion: m.Tool.Version}
		}
		if _, err := layout.ReadSignatureBytes(dir); err == nil {
			r.Bundle.Signed = true
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}

	// the bundle's graph: what unpack would push; an entry outside it refuses the report
	g, err := referrers.Build(ctx, l, entries, referrers.BuildOptions{})
	if err != nil {
		return nil, fmt.Errorf("graph of %s: %w", dir, err)
	}
	rd := &reader{ctx: ctx, l: l}
	for _, repo := range g.Repositories() {
		for _, gi := range repo.Images {
			img, err := rd.image(gi)
			if err != nil {
				return nil, fmt.Errorf("report of %s: %w", gi.Entry.Name(), err)
			}
			r.Images = append(r.Images, *img)
		}
	}
	sort.SliceStable(r.Images, func(i, j int) bool { return r.Images[i].Name < r.Images[j].Name })
	for _, img := range r.Images {
		for s, n := range img.Counts {
			r.Counts[s] += n
		}
		r.Exceptions = append(r.Exceptions, exceptionsOf(img)...)
	}
	return r, nil
}

func zeroCounts() map[Severity]int {
	c := map[Severity]int{}
	for _, s := range scanreport.Severities {
		c[s] = 0
	}
	return c
}

type reader struct {
	ctx context.Context
	l   *layout.Layout
}

func (rd *reader) manifest(d ocispec.Descriptor) (*oci.Manifest, error) {
	b, err := rd.l.FetchManifest(rd.ctx, ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size})
	if err != nil {
		return nil, err
	}
	return oci.ParseManifest(d, b)
}

func (rd *reader) blob(d ocispec.Descriptor, max int64) ([]byte, error) {
	rc, err := rd.l.Fetch(rd.ctx, d)
	if err != nil {
		return nil, err
	}
	return oci.ReadAllVerified(rc, d, max)
}

func (rd *reader) image(gi *referrers.Image) (*Image, error) {
	e := gi.Entry
	img := &Image{Name: e.Name(), Repository: e.Repository, Tag: e.Tag, Digest: e.Descriptor.Digest,
		MediaType: e.Descriptor.MediaType, Signers: []Signer{}, Platforms: []Platform{}, Counts: zeroCounts()}
	tree := gi.Tree()
	img.Attachments = len(referrers.AttachmentsOf(tree))
	var plats []Platform
	nodes := tree[1:]
	if oci.IsIndex(e.Descriptor.MediaType) {
		var err error
		if img.SBOMs, img.Scans, err = rd.evidence(gi.Root.Attached); err != nil {
			return nil, err
		}
	} else {
		nodes = tree[:1]
	}
	for _, n := range nodes {
		p := Platform{Platform: oci.PlatformString(n.Entry.Descriptor.Platform), Digest: n.Entry.Descriptor.Digest}
		var err error
		if p.SBOMs, p.Scans, err = rd.evidence(n.Attached); err != nil {
			return nil, err
		}
		plats = append(plats, p)
	}
	img.Platforms = plats
	for _, p := range append([]Platform{{Scans: img.Scans}}, plats...) {
		if len(p.Scans) == 0 {
			continue
		}
		latest := p.Scans[len(p.Scans)-1]
		for s, n := range latest.Counts {
			img.Counts[s] += n
		}
		img.Verdict = worse(img.Verdict, latest.Verdict)
	}
	return img, nil
}

// worse returns the worse of two verdicts (fail > warn > pass > none).
func worse(a, b scanreport.Verdict) scanreport.Verdict {
	rank := map[scanreport.Verdict]int{"": 0, scanreport.Pass: 1, scanreport.WarnViolation: 2, scanreport.Fail: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// evidence reads the SBOM and scan-report referrers among refs. Scans are ordered by
// scan time, oldest first.
func (rd *reader) evidence(attached []*referrers.Node) ([]SBOM, []Scan, error) {
	var sboms []SBOM
	var scans []Scan
	for _, n := range attached {
		e, m := n.Entry, n.Manifest
		if !e.Kind.IsReferrer() {
			continue
		}
		switch m.Type() {
		case spdx.ArtifactType:
			s, err := rd.sbom(e.Descriptor.Digest, m)
			if err != nil {
				return nil, nil, err
			}
			sboms = append(sboms, *s)
		case scanreport.ArtifactType:
			s, err := rd.scan(e.Descriptor.Digest, m)
			if err != nil {
				return nil, nil, err
			}
			scans = append(scans, *s)
		}
	}
	sort.SliceStable(sboms, func(i, j int) bool { return sboms[i].Referrer < sboms[j].Referrer })
	sort.SliceStable(scans, func(i, j int) bool { return scans[i].ScannedAt.Before(scans[j].ScannedAt) })
	return sboms, scans, nil
}

func layerOf(m *oci.Manifest, mediaType string) (ocispec.Descriptor, bool) {
	for _, l := range m.Layers {
		if l.MediaType == mediaType {
			return l, true
		}
	}
	return ocispec.Descriptor{}, false
}

func (rd *reader) sbom(ref digest.Digest, m *oci.Manifest) (*SBOM, error) {
	layer, ok := layerOf(m, spdx.MediaType)
	if !ok {
		return nil, fmt.Errorf("%w: SBOM referrer %s has no %s layer", oci.ErrInvalid, ref, spdx.MediaType)
	}
	b, err := rd.blob(layer, spdx.MaxDocumentBytes)
	if err != nil {
		return nil, err
	}
	doc, err := spdx.ParseDocument(b)
	if err != nil {
		return nil, fmt.Errorf("SBOM referrer %s: %w", ref, err)
	}
	s := &SBOM{Referrer: ref, Content: layer.Digest, Origin: OriginAttached, SPDXVersion: doc.Version,
		Packages: len(spdx.ContentPackages(doc.Packages))}
	if info, ok := spdx.InfoFromAnnotations(m.Annotations); ok {
		s.Origin, s.Generator = string(info.Origin), info.Generator
	}
	if s.Generator == "" && len(doc.Creators) > 0 {
		s.Generator = joinCreators(doc.Creators)
	}
	return s, nil
}

func joinCreators(c []string) string {
	out := ""
	for i, s := range c {
		if i > 0 {
			out += ", "
		}
		out += s
	}
	return out
}

func (rd *reader) scan(ref digest.Digest, m *oci.Manifest) (*Scan, error) {
	layer, ok := layerOf(m, scanreport.MediaType)
	if !ok {
		return nil, fmt.Errorf("%w: scan referrer %s has no %s layer", oci.ErrInvalid, ref, scanreport.MediaType)
	}
	b, err := rd.blob(layer, scanreport.MaxReportBytes)
	if err != nil {
		return nil, err
	}
	sr, err := scanreport.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("scan referrer %s: %w", ref, err)
	}
	counts := zeroCounts()
	for s, n := range sr.Counts {
		counts[s] = n
	}
	return &Scan{Referrer: ref, Verdict: sr.Verdict, Scanner: sr.Scanner, DB: sr.DB, ScannedAt: sr.ScannedAt, Distro: sr.Distro,
		Thresholds: sr.Thresholds, Counts: counts, Matches: sr.Matches, Violations: sr.Violations,
		Suppressed: sr.Suppressed, Expired: sr.Expired}, nil
}

func exceptionsOf(img Image) []Exception {
	var out []Exception
	add := func(platform string, scans []Scan) {
		if len(scans) == 0 {
			return
		}
		s := scans[len(scans)-1]
		for _, x := range s.Suppressed {
			e := Exception{Image: img.Name, Platform: platform, CVE: x.Match.CVE, Package: x.Match.Package, Version: x.Match.Version,
				Severity: string(x.Match.Severity), By: x.By, Reason: x.Reason}
			if x.Exception != nil {
				e.Expires = x.Exception.Expires
			}
			out = append(out, e)
		}
		for _, x := range s.Expired {
			out = append(out, Exception{Image: img.Name, Platform: platform, CVE: x.Match.CVE, Package: x.Match.Package,
				Version: x.Match.Version, Severity: string(x.Match.Severity), By: "exception", Reason: x.Exception.Reason,
				Expires: x.Exception.Expires, Expired: true})
		}
	}
	add("", img.Scans)
	for _, p := range img.Platforms {
		add(p.Platform, p.Scans)
	}
	return out
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
