package scan

import (
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	openvex "github.com/openvex/go-vex/pkg/vex"
	"github.com/package-url/packageurl-go"

	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/oci"
)

// maxVEXBytes bounds one VEX document.
const maxVEXBytes = 16 << 20

// vexStatement is a statement with the document it came from.
type vexStatement struct {
	openvex.Statement
	doc *openvex.VEX
}

// parseVEX parses OpenVEX JSON documents and checks every statement.
func parseVEX(docs [][]byte) ([]*openvex.VEX, error) {
	var out []*openvex.VEX
	for i, b := range docs {
		if len(b) > maxVEXBytes {
			return nil, fmt.Errorf("%w: VEX document %d is over %d bytes", oci.ErrTooLarge, i+1, maxVEXBytes)
		}
		d, err := openvex.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("%w: VEX document %d: %v", oci.ErrInvalid, i+1, err)
		}
		if !strings.HasPrefix(d.Context, "https://openvex.dev/ns") {
			return nil, fmt.Errorf("%w: VEX document %d: @context %q is not OpenVEX", oci.ErrInvalid, i+1, d.Context)
		}
		for j := range d.Statements {
			if err := d.Statements[j].Validate(); err != nil {
				return nil, fmt.Errorf("%w: VEX document %d (%s) statement %d: %v", oci.ErrInvalid, i+1, d.ID, j+1, err)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// vexProducts are the identifiers of the image a VEX statement's product may name:
// the digests (plain, hex only, and repository@digest) of the platform manifest and
// its index, and their pkg:oci package URLs (as grype builds them).
func vexProducts(opts Options) []string {
	var out []string
	repo := repository(opts.Image)
	for _, d := range []digest.Digest{opts.Digest, opts.IndexDigest} {
		if d == "" {
			continue
		}
		out = append(out, d.String(), d.Encoded())
		if repo != "" {
			out = append(out, repo+"@"+d.String())
			name := repo[strings.LastIndex(repo, "/")+1:]
			q := packageurl.QualifiersFromMap(map[string]string{"repository_url": repo})
			out = append(out, packageurl.NewPackageURL("oci", "", name, d.String(), q, "").ToString())
		}
	}
	return out
}

// findVEX returns the latest statement of any document that says m's vulnerability is
// not_affected or fixed, for the image (with m's package as subcomponent, or no
// subcomponent) or for m's package as the product. Statements with another status
// (affected, under_investigation) never suppress; a later affected statement about
// the same product overrides an earlier not_affected one.
func findVEX(docs []*openvex.VEX, m scanreport.Match, products []string) (*vexStatement, string) {
	var best *vexStatement
	var bestProduct string
	var bestTime time.Time
	var sub []string
	if m.PURL != "" {
		sub = []string{m.PURL}
	}
	consider := func(d *openvex.VEX, stmts []openvex.Statement, product string) {
		for i := range stmts {
			t := effectiveTime(d, &stmts[i])
			if best == nil || !t.Before(bestTime) {
				best, bestProduct, bestTime = &vexStatement{Statement: stmts[i], doc: d}, product, t
			}
		}
	}
	for _, d := range docs {
		for _, id := range m.IDs() {
			for _, p := range products {
				consider(d, d.Matches(id, p, sub), p)
			}
			if m.PURL != "" {
				consider(d, d.Matches(id, m.PURL, nil), m.PURL)
			}
		}
	}
	if best == nil || (best.Status != openvex.StatusNotAffected && best.Status != openvex.StatusFixed) {
		return nil, ""
	}
	return best, bestProduct
}

func effectiveTime(d *openvex.VEX, s *openvex.Statement) time.Time {
	switch {
	case s.LastUpdated != nil:
		return *s.LastUpdated
	case s.Timestamp != nil:
		return *s.Timestamp
	case d.LastUpdated != nil:
		return *d.LastUpdated
	case d.Timestamp != nil:
		return *d.Timestamp
	}
	return time.Time{}
}

func stmtTime(s *vexStatement) string {
	t := effectiveTime(s.doc, &s.Statement)
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func vexReason(s *vexStatement) string {
	parts := []string{"VEX " + string(s.Status)}
	if s.Justification != "" {
		parts = append(parts, string(s.Justification))
	}
	if s.ImpactStatement != "" {
		parts = append(parts, s.ImpactStatement)
	}
	if s.StatusNotes != "" {
		parts = append(parts, s.StatusNotes)
	}
	return strings.Join(parts, ": ")
}
