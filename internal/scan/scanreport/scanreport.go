// Package scanreport is the light half of internal/scan: the vulnerability scan report
// petra-oci attaches to every image (its JSON form and referrer manifest), severities,
// thresholds, exceptions and the verdict rules. It does not link grype, so the reviewer
// report and inspect can read scan reports without it (internal/scan produces them).
package scanreport

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/report/artifact"
	"github.com/petra-oci/petra-oci/oci"
)

// ArtifactType is the artifactType of a scan report referrer, and MediaType the media
// type of its one layer (this package's Report as JSON).
const (
	ArtifactType = "application/vnd.petra-oci.scan.report.v1+json"
	MediaType    = ArtifactType
)

// Annotations petra-oci writes on a scan report referrer manifest, so a listing shows
// the outcome without fetching the report.
const (
	AnnotationVerdict = "dev.petra-oci.scan.verdict"
	AnnotationDBBuilt = "dev.petra-oci.scan.db-built"
	AnnotationScanner = "dev.petra-oci.scan.scanner"
	// AnnotationCounts is "critical=1,high=0,medium=2,low=0,negligible=0,unknown=0".
	AnnotationCounts = "dev.petra-oci.scan.counts"
)

// MaxReportBytes bounds a scan report read whole.
const MaxReportBytes = 32 << 20

// Severity is a vulnerability severity, lower case as grype names them.
type Severity string

const (
	Unknown    Severity = "unknown"
	Negligible Severity = "negligible"
	Low        Severity = "low"
	Medium     Severity = "medium"
	High       Severity = "high"
	Critical   Severity = "critical"
)

// Severities lists the severities from the most to the least severe.
// ErrThreshold marks an image refused for findings over the thresholds (enforce
// mode). It is the one sentinel on both sides of the analyzer process boundary:
// internal/scan returns it, and internal/analyze/job re-wraps it after the hop, so
// errors.Is holds in petra-oci as in the analyzer.
var ErrThreshold = errors.New("vulnerabilities over threshold")

var Severities = []Severity{Critical, High, Medium, Low, Negligible, Unknown}

// Rank orders severities: unknown 0, negligible 1 ... critical 5.
func (s Severity) Rank() int {
	switch s {
	case Negligible:
		return 1
	case Low:
		return 2
	case Medium:
		return 3
	case High:
		return 4
	case Critical:
		return 5
	}
	return 0
}

// ParseSeverity reads a threshold severity (negligible, low, medium, high, critical;
// any case). "unknown" is not a threshold.
func ParseSeverity(s string) (Severity, error) {
	sev := Severity(strings.ToLower(strings.TrimSpace(s)))
	if sev.Rank() == 0 {
		return "", fmt.Errorf("%w: severity %q (want negligible, low, medium, high or critical)", oci.ErrInvalid, s)
	}
	return sev, nil
}

// NormalizeSeverity maps any severity string grype reports to a Severity; anything it
// does not know is Unknown.
func NormalizeSeverity(s string) Severity {
	sev := Severity(strings.ToLower(strings.TrimSpace(s)))
	if sev.Rank() == 0 {
		return Unknown
	}
	return sev
}

// Mode says what a threshold violation does.
type Mode string

const (
	// Enforce (the default): an image over threshold fails the scan (pack refuses it).
	Enforce Mode = "enforce"
	// Warn: the image is packed and the violation is recorded (verdict "warn").
	Warn Mode = "warn"
)

// Thresholds say which findings fail an image. The zero value fails nothing.
type Thresholds struct {
	// FailOn fails an image with any finding of this severity or worse; empty: none.
	FailOn Severity `json:"failOn,omitempty"`
	// FailOnFixable fails an image with any finding that has a fix, whatever its
	// severity.
	FailOnFixable bool `json:"failOnFixable,omitempty"`
	// Mode is Enforce (default) or Warn.
	Mode Mode `json:"mode,omitempty"`
}

// Validate checks the thresholds.
func (t Thresholds) Validate() error {
	if t.FailOn != "" {
		if _, err := ParseSeverity(string(t.FailOn)); err != nil {
			return err
		}
	}
	switch t.Mode {
	case "", Enforce, Warn:
	default:
		return fmt.Errorf("%w: threshold mode %q (want enforce or warn)", oci.ErrInvalid, t.Mode)
	}
	return nil
}

// Violates reports whether m breaks the thresholds, and why.
func (t Thresholds) Violates(m Match) (bool, string) {
	var why []string
	if t.FailOn != "" && m.Severity.Rank() >= t.FailOn.Rank() {
		why = append(why, fmt.Sprintf("severity %s >= %s", m.Severity, t.FailOn))
	}
	if t.FailOnFixable && m.Fixable() {
		why = append(why, "fixed in "+strings.Join(m.FixVersions, ", "))
	}
	return len(why) > 0, strings.Join(why, "; ")
}

// Exception is an accepted finding: CVE in images whose name matches Image (a glob, see
// globRegexp, over "repository", "repository:tag" and "repository@digest"), for
// Reason, until Expires.
type Exception struct {
	CVE    string `json:"cve"`
	Image  string `json:"image"`
	Reason string `json:"reason"`
	// Expires is a date (2006-01-02, valid through the end of that day, UTC) or an
	// RFC 3339 time. Required: an exception that never expires is refused.
	Expires string `json:"expires"`
}

// ExpiresAt returns the first instant at which the exception no longer applies.
func (e Exception) ExpiresAt() (time.Time, error) {
	s := strings.TrimSpace(e.Expires)
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		return d.AddDate(0, 0, 1), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: exception %s: expires %q is neither a date (2006-01-02) nor RFC 3339", oci.ErrInvalid, e.CVE, e.Expires)
	}
	return t, nil
}

// Validate checks that the exception is complete and its glob and date parse.
func (e Exception) Validate() error {
	if strings.TrimSpace(e.CVE) == "" {
		return fmt.Errorf("%w: exception without a cve", oci.ErrInvalid)
	}
	if strings.TrimSpace(e.Image) == "" {
		return fmt.Errorf("%w: exception %s: no image glob (use \"*\" for every image)", oci.ErrInvalid, e.CVE)
	}
	if _, err := globRegexp(e.Image); err != nil {
		return fmt.Errorf("%w: exception %s: image glob %q: %v", oci.ErrInvalid, e.CVE, e.Image, err)
	}
	if strings.TrimSpace(e.Reason) == "" {
		return fmt.Errorf("%w: exception %s: no reason", oci.ErrInvalid, e.CVE)
	}
	if _, err := e.ExpiresAt(); err != nil {
		return err
	}
	return nil
}

// MatchesImage reports whether the exception's glob matches any of names.
func (e Exception) MatchesImage(names ...string) bool {
	re, err := globRegexp(e.Image)
	if err != nil {
		return false
	}
	for _, n := range names {
		if n != "" && re.MatchString(n) {
			return true
		}
	}
	return false
}

// globRegexp compiles an image glob: "*" matches any run of characters, "/" and ":"
// included (so "*" is every image and "cgr.dev/chainguard/*" every image under it),
// "?" one character, "[...]" a character class; everything else is literal.
func globRegexp(glob string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; c {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		case '[':
			j := strings.IndexByte(glob[i+1:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated [")
			}
			class := glob[i+1 : i+1+j]
			if class == "" || strings.ContainsAny(class, "[\\") {
				return nil, fmt.Errorf("bad character class [%s]", class)
			}
			if class[0] == '!' {
				class = "^" + class[1:]
			}
			b.WriteString("[" + class + "]")
			i += j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// Match is one finding: a vulnerability in a package of the image.
type Match struct {
	// CVE is the vulnerability id as the database names it (a CVE id, or a GHSA/distro
	// id whose CVE aliases are in Aliases).
	CVE     string   `json:"cve"`
	Aliases []string `json:"aliases,omitempty"`
	Package string   `json:"package"`
	Version string   `json:"version"`
	// Type is the package type (apk, deb, go-module, ...); PURL its package URL.
	Type        string   `json:"type,omitempty"`
	PURL        string   `json:"purl,omitempty"`
	Severity    Severity `json:"severity"`
	FixVersions []string `json:"fixVersions,omitempty"`
	// FixState is grype's fix state: fixed, not-fixed, wont-fix, unknown.
	FixState string `json:"fixState,omitempty"`
	// Namespace is the database namespace that matched, e.g. "wolfi:distro:wolfi:rolling".
	Namespace   string `json:"namespace,omitempty"`
	Description string `json:"description,omitempty"`
	DataSource  string `json:"dataSource,omitempty"`
}

// Fixable reports whether a fixed version is known.
func (m Match) Fixable() bool { return m.FixState == "fixed" && len(m.FixVersions) > 0 }

// IDs returns the match's id and aliases.
func (m Match) IDs() []string { return append([]string{m.CVE}, m.Aliases...) }

// Key identifies a match: id, package, version.
func (m Match) Key() string { return m.CVE + " " + m.Package + "@" + m.Version }

// Suppressed is a finding an exception or a VEX statement let through.
type Suppressed struct {
	Match Match `json:"match"`
	// By is "exception" or "vex".
	By     string `json:"by"`
	Reason string `json:"reason"`
	// Exception is set when By is "exception".
	Exception *Exception `json:"exception,omitempty"`
	// VEX is set when By is "vex".
	VEX *VEXStatement `json:"vex,omitempty"`
}

// VEXStatement records the OpenVEX statement that suppressed a finding.
type VEXStatement struct {
	// Document is the VEX document's @id.
	Document      string `json:"document,omitempty"`
	Author        string `json:"author,omitempty"`
	Status        string `json:"status"`
	Justification string `json:"justification,omitempty"`
	Impact        string `json:"impactStatement,omitempty"`
	// Product is the product identifier the statement matched (image digest, purl).
	Product   string `json:"product,omitempty"`
	Timestamp string `json:"timestamp,omitempty"`
}

// ExpiredException is an exception that would have matched a finding but had expired.
type ExpiredException struct {
	Exception Exception `json:"exception"`
	Match     Match     `json:"match"`
}

// Violation is a finding that breaks the thresholds.
type Violation struct {
	Match  Match  `json:"match"`
	Reason string `json:"reason"`
}

// Verdict is the outcome of a scan.
type Verdict string

const (
	Pass Verdict = "pass"
	Fail Verdict = "fail"
	// WarnViolation: findings broke the thresholds in warn mode; the image is packed and
	// the violation recorded.
	WarnViolation Verdict = "warn"
)

// DBInfo describes the vulnerability database a scan used.
type DBInfo struct {
	Built         time.Time `json:"built"`
	SchemaVersion string    `json:"schemaVersion,omitempty"`
	// Checksum is the database file's digest (xxh64 as grype records it in import.json).
	Checksum string `json:"checksum,omitempty"`
	// Source is the path the database was loaded from (an archive, a .db file or an
	// installed database directory).
	Source string `json:"source,omitempty"`
}

// Tool names the scanner.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Report is one scan of one image platform.
type Report struct {
	// Schema is ArtifactType.
	Schema string `json:"schema"`
	// Image is the image name (repository[:tag]); Digest the platform manifest scanned.
	Image    string        `json:"image,omitempty"`
	Digest   digest.Digest `json:"digest,omitempty"`
	Platform string        `json:"platform,omitempty"`
	// SBOM is the digest of the SPDX document the scan read.
	SBOM      digest.Digest `json:"sbom,omitempty"`
	Scanner   Tool          `json:"scanner"`
	DB        DBInfo        `json:"db"`
	ScannedAt time.Time     `json:"scannedAt"`
	// Distro is the distribution grype detected, e.g. "wolfi rolling".
	Distro     string     `json:"distro,omitempty"`
	Thresholds Thresholds `json:"thresholds"`
	// Exceptions are the exceptions given (all of them, applied or not); VEX names the
	// VEX documents given.
	Exceptions []Exception `json:"exceptions,omitempty"`
	VEX        []string    `json:"vex,omitempty"`
	// Matches are the findings that remain after exceptions and VEX.
	Matches []Match `json:"matches"`
	// Suppressed are findings let through, with the exception or statement that did it.
	Suppressed []Suppressed `json:"suppressed,omitempty"`
	// Expired are exceptions that matched a finding but no longer apply.
	Expired []ExpiredException `json:"expired,omitempty"`
	// Counts are the remaining findings by severity.
	Counts     map[Severity]int `json:"counts"`
	Verdict    Verdict          `json:"verdict"`
	Violations []Violation      `json:"violations,omitempty"`
}

// Decide sets Counts, Violations and Verdict from Matches and Thresholds.
func (r *Report) Decide() {
	r.Counts = map[Severity]int{}
	for _, s := range Severities {
		r.Counts[s] = 0
	}
	r.Violations = nil
	for _, m := range r.Matches {
		r.Counts[m.Severity]++
		if bad, why := r.Thresholds.Violates(m); bad {
			r.Violations = append(r.Violations, Violation{Match: m, Reason: why})
		}
	}
	switch {
	case len(r.Violations) == 0:
		r.Verdict = Pass
	case r.Thresholds.Mode == Warn:
		r.Verdict = WarnViolation
	default:
		r.Verdict = Fail
	}
}

// Sort orders matches and suppressed findings by severity (worst first), then id and
// package, so that reports are stable.
func (r *Report) Sort() {
	less := func(a, b Match) bool {
		if a.Severity.Rank() != b.Severity.Rank() {
			return a.Severity.Rank() > b.Severity.Rank()
		}
		if a.CVE != b.CVE {
			return a.CVE < b.CVE
		}
		if a.Package != b.Package {
			return a.Package < b.Package
		}
		return a.Version < b.Version
	}
	sort.SliceStable(r.Matches, func(i, j int) bool { return less(r.Matches[i], r.Matches[j]) })
	sort.SliceStable(r.Suppressed, func(i, j int) bool { return less(r.Suppressed[i].Match, r.Suppressed[j].Match) })
	sort.SliceStable(r.Expired, func(i, j int) bool { return less(r.Expired[i].Match, r.Expired[j].Match) })
	sort.SliceStable(r.Violations, func(i, j int) bool { return less(r.Violations[i].Match, r.Violations[j].Match) })
}

// OffendingCVEs returns the sorted ids of the violations.
func (r *Report) OffendingCVEs() []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range r.Violations {
		if !seen[v.Match.CVE] {
			seen[v.Match.CVE] = true
			out = append(out, v.Match.CVE)
		}
	}
	sort.Strings(out)
	return out
}

// Table renders the violations as a plain text table (for pack to print when it
// refuses an image).
func (r *Report) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s %-9s %-24s %-16s %-16s %s\n", "CVE", "SEVERITY", "PACKAGE", "VERSION", "FIXED IN", "WHY")
	for _, v := range r.Violations {
		fix := strings.Join(v.Match.FixVersions, ",")
		if fix == "" {
			fix = "-"
		}
		fmt.Fprintf(&b, "%-20s %-9s %-24s %-16s %-16s %s\n", v.Match.CVE, v.Match.Severity, v.Match.Package, v.Match.Version, fix, v.Reason)
	}
	return b.String()
}

// Marshal returns the report as indented JSON.
func (r *Report) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding scan report: %w", err)
	}
	return append(b, '\n'), nil
}

// Parse reads a scan report.
func Parse(b []byte) (*Report, error) {
	if len(b) > MaxReportBytes {
		return nil, fmt.Errorf("%w: scan report over %d bytes", oci.ErrTooLarge, MaxReportBytes)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: scan report: %v", oci.ErrInvalid, err)
	}
	if r.Schema != ArtifactType {
		return nil, fmt.Errorf("%w: scan report schema %q, want %q", oci.ErrInvalid, r.Schema, ArtifactType)
	}
	return &r, nil
}

// Annotations returns the referrer manifest annotations summarizing r.
func (r *Report) Annotations() map[string]string {
	var counts []string
	for _, s := range Severities {
		counts = append(counts, string(s)+"="+strconv.Itoa(r.Counts[s]))
	}
	ann := map[string]string{
		AnnotationVerdict: string(r.Verdict),
		AnnotationCounts:  strings.Join(counts, ","),
		AnnotationScanner: strings.TrimSpace(r.Scanner.Name + " " + r.Scanner.Version),
	}
	if !r.DB.Built.IsZero() {
		ann[AnnotationDBBuilt] = r.DB.Built.UTC().Format(time.RFC3339)
	}
	return ann
}

// ReferrerManifest returns the referrer manifest attaching the report (as JSON) to
// subject, the image manifest scanned. created is recorded as the creation time
// (the scan time when zero).
func (r *Report) ReferrerManifest(subject ocispec.Descriptor) (*artifact.Manifest, error) {
	b, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	return artifact.Build(ArtifactType, MediaType, b, subject, r.Annotations(), r.ScannedAt)
}
