// Package scan matches an image's SPDX SBOM against an offline grype vulnerability
// database, with grype used as a library, and decides whether the image passes the
// bundle's thresholds: fail on severity >= X, or on any fixable finding; exceptions as
// OpenVEX documents (not_affected / fixed suppress a finding) and as a list of
// CVE + image glob + reason + expiry (an expired exception no longer applies).
//
// The result is a scanreport.Report (the light package report and inspect read),
// attached to the image as a referrer.
//
// Only this package links grype (with internal/sbom, which links syft).
package scan

import (
	"bytes"
	"context"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/anchore/grype/grype"
	"github.com/anchore/grype/grype/distro"
	"github.com/anchore/grype/grype/match"
	"github.com/anchore/grype/grype/matcher"
	"github.com/anchore/grype/grype/matcher/dpkg"
	"github.com/anchore/grype/grype/matcher/golang"
	"github.com/anchore/grype/grype/matcher/rpm"
	"github.com/anchore/grype/grype/matcher/stock"
	"github.com/anchore/grype/grype/pkg"
	"github.com/anchore/grype/grype/version"
	"github.com/anchore/grype/grype/vulnerability"
	syftPkg "github.com/anchore/syft/syft/pkg"
	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/oci"
)

// Re-exports of the light package.
type (
	Report     = scanreport.Report
	Thresholds = scanreport.Thresholds
	Exception  = scanreport.Exception
	Severity   = scanreport.Severity
)

// Scanner is the name Scan records.
const Scanner = "grype"

// ErrThreshold marks a scan whose verdict is fail (findings over the thresholds in
// enforce mode). Scan returns the report with it. It is scanreport.ErrThreshold, the
// sentinel the analyzer protocol carries across the process boundary.
var ErrThreshold = scanreport.ErrThreshold

// Options configure Scan.
type Options struct {
	// Image is the image's name, repository[:tag] (e.g. cgr.dev/chainguard/nginx:latest);
	// exception globs match it and repository@digest for Digest and IndexDigest.
	Image string
	// Digest is the platform manifest the SBOM describes; IndexDigest the index it
	// belongs to, if any. VEX statements about either apply.
	Digest      digest.Digest
	IndexDigest digest.Digest
	// Platform is recorded in the report.
	Platform string
	// Thresholds decide the verdict.
	Thresholds Thresholds
	// Exceptions are accepted findings.
	Exceptions []Exception
	// VEX are OpenVEX JSON documents.
	VEX [][]byte
	// Now is the clock exceptions expire by and the scan time; default time.Now.
	Now func() time.Time
}

// Scan matches the packages of spdxJSON (an SPDX JSON SBOM of one image platform)
// against db, offline, applies VEX and exceptions, and decides the verdict. A fail
// verdict returns the report and an error wrapping ErrThreshold; a warn verdict returns
// the report and no error.
func Scan(ctx context.Context, db *DB, spdxJSON []byte, opts Options) (*Report, error) {
	if db == nil || db.provider == nil {
		return nil, fmt.Errorf("%w: no vulnerability database", oci.ErrInvalid)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	now := opts.Now()
	if err := opts.Thresholds.Validate(); err != nil {
		return nil, err
	}
	for _, e := range opts.Exceptions {
		if err := e.Validate(); err != nil {
			return nil, err
		}
	}
	vexDocs, err := parseVEX(opts.VEX)
	if err != nil {
		return nil, err
	}

	pkgs, pkgCtx, _, err := pkg.ProvideFromReader(bytes.NewReader(spdxJSON), providerConfig())
	if err != nil {
		return nil, fmt.Errorf("reading the SBOM: %w", err)
	}
	vm := grype.VulnerabilityMatcher{
		VulnerabilityProvider: db.provider,
		Matchers:              matcher.NewDefaultMatchers(matcherConfig()),
		IgnoreRules:           ignoreLinuxKernelHeaders,
	}
	remaining, _, err := vm.FindMatchesContext(ctx, pkgs, pkgCtx)
	if err != nil {
		return nil, fmt.Errorf("matching vulnerabilities: %w", err)
	}

	r := &Report{
		Schema:     scanreport.ArtifactType,
		Image:      opts.Image,
		Digest:     opts.Digest,
		Platform:   opts.Platform,
		SBOM:       digest.FromBytes(spdxJSON),
		Scanner:    scanreport.Tool{Name: Scanner, Version: GrypeVersion()},
		DB:         db.info,
		ScannedAt:  now.UTC().Truncate(time.Second),
		Thresholds: opts.Thresholds,
		Exceptions: opts.Exceptions,
		Matches:    []scanreport.Match{},
	}
	if r.Thresholds.Mode == "" {
		r.Thresholds.Mode = scanreport.Enforce
	}
	if pkgCtx.Distro != nil {
		r.Distro = pkgCtx.Distro.String()
	}
	for _, d := range vexDocs {
		r.VEX = append(r.VEX, d.ID)
	}
	names := imageNames(opts)
	products := vexProducts(opts)
	for _, m := range remaining.Sorted() {
		sm := toMatch(db.provider, m)
		if st, product := findVEX(vexDocs, sm, products); st != nil {
			r.Suppressed = append(r.Suppressed, scanreport.Suppressed{
				Match: sm, By: "vex", Reason: vexReason(st),
				VEX: &scanreport.VEXStatement{Document: st.doc.ID, Author: st.doc.Author, Status: string(st.Status),
					Justification: string(st.Justification), Impact: st.ImpactStatement, Product: product, Timestamp: stmtTime(st)},
			})
			continue
		}
		if e, expired := findException(opts.Exceptions, sm, names, now); e != nil {
			ex := *e
			r.Suppressed = append(r.Suppressed, scanreport.Suppressed{Match: sm, By: "exception", Reason: e.Reason, Exception: &ex})
			continue
		} else {
			for _, x := range expired {
				r.Expired = append(r.Expired, scanreport.ExpiredException{Exception: x, Match: sm})
			}
		}
		r.Matches = append(r.Matches, sm)
	}
	r.Decide()
	r.Sort()
	if r.Verdict == scanreport.Fail {
		return r, fmt.Errorf("%w: %s: %s", ErrThreshold, nameOr(opts), strings.Join(r.OffendingCVEs(), ", "))
	}
	return r, nil
}

func nameOr(opts Options) string {
	if opts.Image != "" {
		return opts.Image
	}
	return opts.Digest.String()
}

// providerConfig is the grype CLI's package provider configuration for an SBOM input
// (grype sbom:FILE), so that the same SBOM yields the same packages.
func providerConfig() pkg.ProviderConfig {
	return pkg.ProviderConfig{
		SynthesisConfig: pkg.SynthesisConfig{
			Distro: pkg.DistroConfig{FixChannels: distro.DefaultFixChannels()},
		},
	}
}

// matcherConfig is the grype CLI's default matcher configuration (grype v0.121.3
// cmd/grype/cli/options defaultMatchConfig), so library and CLI find the same matches.
func matcherConfig() matcher.Config {
	return matcher.Config{
		Golang: golang.MatcherConfig{},
		Stock:  stock.MatcherConfig{UseCPEs: true},
		Dpkg:   dpkg.MatcherConfig{MissingEpochStrategy: version.MissingEpochStrategyZero},
		Rpm:    rpm.MatcherConfig{MissingEpochStrategy: version.MissingEpochStrategyAuto},
	}
}

// ignoreLinuxKernelHeaders are the grype CLI's default ignore rules (kernel header
// packages matched through the upstream kernel).
var ignoreLinuxKernelHeaders = []match.IgnoreRule{
	{Package: match.IgnoreRulePackage{Name: "kernel-headers", UpstreamName: "kernel", Type: string(syftPkg.RpmPkg)}, MatchType: match.ExactIndirectMatch},
	{Package: match.IgnoreRulePackage{Name: "linux(-.*)?-headers-.*", UpstreamName: "linux.*", Type: string(syftPkg.DebPkg)}, MatchType: match.ExactIndirectMatch},
	{Package: match.IgnoreRulePackage{Name: "linux-libc-dev", UpstreamName: "linux", Type: string(syftPkg.DebPkg)}, MatchType: match.ExactIndirectMatch},
	{Package: match.IgnoreRulePackage{Name: "linux-kbuild-.*", UpstreamName: "linux.*", Type: string(syftPkg.DebPkg)}, MatchType: match.ExactIndirectMatch},
}

func toMatch(mp vulnerability.MetadataProvider, m match.Match) scanreport.Match {
	v := m.Vulnerability
	md := v.Metadata
	if md == nil {
		md, _ = mp.VulnerabilityMetadata(v.Reference)
	}
	sm := scanreport.Match{
		CVE:         v.ID,
		Package:     m.Package.Name,
		Version:     m.Package.Version,
		Type:        string(m.Package.Type),
		PURL:        m.Package.PURL,
		Severity:    scanreport.Unknown,
		FixVersions: append([]string(nil), v.Fix.Versions...),
		FixState:    string(v.Fix.State),
		Namespace:   v.Namespace,
	}
	if md != nil {
		sm.Severity = scanreport.NormalizeSeverity(md.Severity)
		sm.Description = md.Description
		sm.DataSource = md.DataSource
	}
	seen := map[string]bool{v.ID: true}
	for _, rv := range v.RelatedVulnerabilities {
		if !seen[rv.ID] {
			seen[rv.ID] = true
			sm.Aliases = append(sm.Aliases, rv.ID)
		}
	}
	sort.Strings(sm.Aliases)
	return sm
}

// imageNames are the names exception globs are matched against.
func imageNames(opts Options) []string {
	names := []string{opts.Image}
	repo := repository(opts.Image)
	if repo != "" {
		if repo != opts.Image {
			names = append(names, repo)
		}
		for _, d := range []digest.Digest{opts.Digest, opts.IndexDigest} {
			if d != "" {
				names = append(names, repo+"@"+d.String())
			}
		}
	}
	return names
}

// repository strips a tag or digest from an image name.
func repository(name string) string {
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i]
	}
	slash := strings.LastIndex(name, "/")
	if c := strings.LastIndex(name, ":"); c > slash {
		name = name[:c]
	}
	return name
}

// findException returns the first unexpired exception for m, or the expired ones
// that would have applied.
func findException(exceptions []Exception, m scanreport.Match, names []string, now time.Time) (*Exception, []Exception) {
	var expired []Exception
	for i, e := range exceptions {
		if !matchesID(e.CVE, m) || !e.MatchesImage(names...) {
			continue
		}
		until, _ := e.ExpiresAt() // validated
		if !now.Before(until) {
			expired = append(expired, e)
			continue
		}
		return &exceptions[i], nil
	}
	return nil, expired
}

func matchesID(id string, m scanreport.Match) bool {
	for _, x := range m.IDs() {
		if strings.EqualFold(strings.TrimSpace(id), x) {
			return true
		}
	}
	return false
}

// GrypeModuleVersion is the grype version go.mod requires. GrypeVersion falls back to
// it where the binary carries no module information (test binaries); a test keeps it
// equal to go.mod.
const GrypeModuleVersion = "v0.121.3"

// GrypeVersion is the version of the grype module linked into this binary, read from
// its build information (GrypeModuleVersion when the binary has none).
func GrypeVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/anchore/grype" {
				if d.Replace != nil && d.Replace.Version != "" {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return GrypeModuleVersion
}
