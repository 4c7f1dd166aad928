package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/internal/report"
	"github.com/petra-oci/petra-oci/internal/sbom"
	"github.com/petra-oci/petra-oci/internal/sbom/sbomtest"
	"github.com/petra-oci/petra-oci/internal/scan"
	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/internal/scan/scantest"
)

// evidenceBundle packs the fixture and attaches, to each platform, a generated SBOM
// and a scan report (warn mode, fail on high; an unexpired exception for the busybox
// CVE, an expired one for the xz CVE) the way pack will.
func evidenceBundle(t *testing.T) *sbomtest.Bundle {
	t.Helper()
	ctx := context.Background()
	b := sbomtest.Pack(t)
	tdb := scantest.WriteDB(t)
	db, _, err := scan.LoadDB(ctx, tdb.Archive, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)
	for _, platform := range []string{"linux/amd64", "linux/arm64"} {
		child := b.Child(t, platform)
		doc, info, err := sbom.Generate(ctx, b.Layout, child, sbom.Options{Name: b.Image.Repo})
		if err != nil {
			t.Fatal(err)
		}
		am, err := sbom.ReferrerManifest(doc, child, info, now)
		if err != nil {
			t.Fatal(err)
		}
		b.Attach(t, am, child)
		r, err := scan.Scan(ctx, db, doc, scan.Options{
			Image: b.Name, Digest: child.Digest, IndexDigest: b.Image.Index.Digest, Platform: platform,
			Thresholds: scanreport.Thresholds{FailOn: scanreport.High, Mode: scanreport.Warn},
			Exceptions: []scanreport.Exception{
				{CVE: scantest.BusyboxAwk, Image: b.Image.Repo + "*", Reason: "awk is not reachable <b>from</b> the entrypoint", Expires: "2025-12-31"},
				{CVE: scantest.XZBackdoor, Image: "*", Reason: "waiver SEC-1 lapsed", Expires: "2025-05-31"},
			},
			Now: func() time.Time { return now },
		})
		if err != nil {
			t.Fatal(err)
		}
		sm, err := r.ReferrerManifest(child)
		if err != nil {
			t.Fatal(err)
		}
		b.Attach(t, sm, child)
	}
	return b
}

func TestBuildAndRender(t *testing.T) {
	b := evidenceBundle(t)
	r, err := report.Build(context.Background(), b.Dir)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if len(r.Images) != 1 {
		t.Fatalf("images = %d, want 1", len(r.Images))
	}
	img := r.Images[0]
	if img.Name != b.Name || img.Digest != b.Image.Index.Digest || len(img.Platforms) != 2 {
		t.Fatalf("image = %+v", img)
	}
	for _, p := range img.Platforms {
		var generated, attached int
		for _, s := range p.SBOMs {
			if s.Packages != 5 {
				t.Errorf("%s SBOM %s (%s) has %d packages, want 5", p.Platform, s.Referrer, s.Origin, s.Packages)
			}
			switch s.Origin {
			case "generated":
				generated++
				if s.Generator != "syft v1.57.1" {
					t.Errorf("generator = %q", s.Generator)
				}
			case report.OriginAttached:
				attached++
			}
		}
		// the fixture carries its own SPDX referrer on amd64 only
		wantAttached := 0
		if p.Platform == "linux/amd64" {
			wantAttached = 1
		}
		if generated != 1 || attached != wantAttached {
			t.Errorf("%s: %d generated, %d attached SBOMs; want 1, %d", p.Platform, generated, attached, wantAttached)
		}
		if len(p.Scans) != 1 || p.Scans[0].Verdict != scanreport.WarnViolation || p.Scans[0].Counts[scanreport.Critical] != 1 {
			t.Errorf("%s scans = %+v", p.Platform, p.Scans)
		}
	}
	if img.Counts[scanreport.Critical] != 2 || img.Counts[scanreport.Medium] != 0 || img.Verdict != scanreport.WarnViolation {
		t.Errorf("image counts %v verdict %s", img.Counts, img.Verdict)
	}
	if r.Counts[scanreport.Critical] != 2 {
		t.Errorf("bundle counts %v", r.Counts)
	}
	var applied, expired int
	for _, e := range r.Exceptions {
		switch {
		case e.CVE == scantest.BusyboxAwk && !e.Expired && e.Expires == "2025-12-31" && strings.Contains(e.Reason, "awk"):
			applied++
		case e.CVE == scantest.XZBackdoor && e.Expired && e.Expires == "2025-05-31":
			expired++
		default:
			t.Errorf("unexpected exception %+v", e)
		}
	}
	if applied != 2 || expired != 2 {
		t.Errorf("exceptions applied %d expired %d, want 2 and 2: %+v", applied, expired, r.Exceptions)
	}

	// the integrator fills signers and the verification flag
	r.Signers = []report.Signer{{Identity: "petra-ops@example.com", Issuer: "https://accounts.example.com", What: "bundle metadata"}}
	r.Images[0].Signers = []report.Signer{{Identity: "https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main", Issuer: "https://token.actions.githubusercontent.com"}}
	r.Verified = true

	var js bytes.Buffer
	if err := report.WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var back report.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Images) != 1 || back.Counts[scanreport.Critical] != 2 {
		t.Errorf("JSON round trip: %v %+v", err, back.Counts)
	}

	var page bytes.Buffer
	if err := report.WriteHTML(&page, r); err != nil {
		t.Fatalf("WriteHTML: %v", err)
	}
	if dir := os.Getenv("PETRA_REPORT_OUT"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, "report.html"), page.Bytes(), 0o644)
	}
	checkHTML(t, page.Bytes(), b.Name)
}

// checkHTML parses the page with an HTML5 parser and checks what a reviewer must see.
func checkHTML(t *testing.T, page []byte, image string) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("HTML does not parse: %v", err)
	}
	var text strings.Builder
	cells := map[string][]string{} // class -> text of elements with that class
	var walk func(n *html.Node)
	var textOf func(n *html.Node) string
	textOf = func(n *html.Node) string {
		if n.Type == html.TextNode {
			return n.Data
		}
		var s strings.Builder
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			s.WriteString(textOf(c))
		}
		return s.String()
	}
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "iframe", "object", "embed", "link", "img":
				t.Errorf("page has a <%s> element: it must be self-contained and inert", n.Data)
			}
			for _, a := range n.Attr {
				if (a.Key == "href" || a.Key == "src") && !strings.HasPrefix(a.Val, "#") {
					t.Errorf("page refers to %s=%q: no external assets or links", a.Key, a.Val)
				}
				if a.Key == "class" {
					for _, c := range strings.Fields(a.Val) {
						cells[c] = append(cells[c], strings.TrimSpace(textOf(n)))
					}
				}
				if strings.HasPrefix(a.Key, "on") {
					t.Errorf("event handler attribute %s", a.Key)
				}
			}
		}
		if n.Type == html.TextNode {
			text.WriteString(n.Data)
			text.WriteString(" ")
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	all := text.String()
	for _, want := range []string{image, scantest.XZBackdoor, scantest.BusyboxAwk, "linux/amd64", "linux/arm64",
		"syft v1.57.1", "grype v0.121.3", "2025-12-31", "2025-05-31", "expired, not applied",
		"awk is not reachable <b>from</b> the entrypoint", // escaped, shown as text
		"petra-ops@example.com", "token.actions.githubusercontent.com", "verified before this report"} {
		if !strings.Contains(all, want) {
			t.Errorf("page text lacks %q", want)
		}
	}
	if bytes.Contains(page, []byte("<b>from</b>")) {
		t.Error("a reason was rendered as markup, not escaped")
	}
	// the findings tables list the xz CVE once per platform (busybox is excepted)
	var xz, bb int
	for _, c := range cells["cve"] {
		switch c {
		case scantest.XZBackdoor:
			xz++
		case scantest.BusyboxAwk:
			bb++
		}
	}
	// xz: 2 findings rows + 2 violations rows + 2 expired-exception rows; busybox: 2 exception rows
	if xz != 6 || bb != 2 {
		t.Errorf("cve cells: xz %d busybox %d, want 6 and 2 (%v)", xz, bb, cells["cve"])
	}
	if got := cells["packages"]; len(got) != 3 || got[0] != "5" {
		t.Errorf("package count cells = %v, want 3 SBOMs of 5 packages", got)
	}
	if got := byID(doc, "applied"); got != "2 (2 expired, not applied)" {
		t.Errorf("exceptions applied = %q", got)
	}
	if got := strings.Join(cells["verdict"], " "); !strings.Contains(got, "warn") {
		t.Errorf("verdict cells = %q", got)
	}
}

// TestReportDoesNotLinkSyftOrGrype keeps the report (and the light halves of sbom and
// scan it reads) free of syft and grype, so inspect stays small.
func TestReportDoesNotLinkSyftOrGrype(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found: %v", err)
	}
	for _, p := range []string{"internal/report", "internal/report/artifact", "internal/sbom/spdx", "internal/scan/scanreport"} {
		out, err := exec.Command(goBin, "list", "-deps", "github.com/petra-oci/petra-oci/"+p).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", p, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/anchore/syft") || strings.HasPrefix(dep, "github.com/anchore/grype") ||
				strings.HasPrefix(dep, "github.com/anchore/stereoscope") {
				t.Errorf("%s depends on %s", p, dep)
			}
		}
	}
}

// TestHTMLLoadsInChromium renders the report in headless Chromium: the DOM it dumps
// holds the report's content (the page loaded and parsed), and a screenshot is a
// real picture (not blank).
func TestHTMLLoadsInChromium(t *testing.T) {
	chromium := registrytest.ToolPath(t, "chromium")
	b := evidenceBundle(t)
	r, err := report.Build(context.Background(), b.Dir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pagePath := filepath.Join(dir, "report.html")
	f, err := os.Create(pagePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := report.WriteHTML(f, r); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	run := func(extra ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir()}, extra...)
		args = append(args, "file://"+pagePath)
		cmd := exec.CommandContext(ctx, chromium, args...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
		}
		return out
	}
	dom := run("--dump-dom")
	for _, want := range []string{b.Name, scantest.XZBackdoor, scantest.BusyboxAwk, "Bundle report", "expired, not applied"} {
		if !bytes.Contains(dom, []byte(want)) {
			t.Errorf("Chromium's DOM lacks %q", want)
		}
	}
	shot := filepath.Join(dir, "report.png")
	run("--screenshot="+shot, "--window-size=1280,2000", "--hide-scrollbars")
	pf, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer pf.Close()
	img, err := png.Decode(pf)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	bounds := img.Bounds()
	if bounds.Dx() < 1000 || bounds.Dy() < 1000 {
		t.Errorf("screenshot is %v", bounds)
	}
	// a rendered page has dark text on a light background and the red critical badges
	var dark, red int
	for y := bounds.Min.Y; y < bounds.Max.Y; y += 2 {
		for x := bounds.Min.X; x < bounds.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			if r < 80 && g < 80 && bl < 80 {
				dark++
			}
			if r > 120 && g < 40 && bl < 40 {
				red++
			}
		}
	}
	if dark < 500 || red < 50 {
		t.Errorf("screenshot looks blank: %d dark and %d red sampled pixels", dark, red)
	}
}

// byID returns the text of the element with id.
func byID(n *html.Node, id string) string {
	if n.Type == html.ElementNode {
		for _, a := range n.Attr {
			if a.Key == "id" && a.Val == id {
				var b strings.Builder
				var text func(*html.Node)
				text = func(n *html.Node) {
					if n.Type == html.TextNode {
						b.WriteString(n.Data)
					}
					for c := n.FirstChild; c != nil; c = c.NextSibling {
						text(c)
					}
				}
				text(n)
				return strings.TrimSpace(b.String())
			}
		}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if s := byID(c, id); s != "" {
			return s
		}
	}
	return ""
}
