package report

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
)

// WriteHTML renders r as one self-contained HTML page: inline style, no script, no
// external asset, so it opens the same on an air-gapped workstation.
func WriteHTML(w io.Writer, r *Report) error {
	return page.Execute(w, r)
}

var funcs = template.FuncMap{
	"severities": func() []Severity { return scanreport.Severities },
	"count":      func(c map[Severity]int, s Severity) int { return c[s] },
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"join": strings.Join,
	"applied": func(es []Exception) int {
		n := 0
		for _, e := range es {
			if !e.Expired {
				n++
			}
		}
		return n
	},
	"expired": func(es []Exception) int {
		n := 0
		for _, e := range es {
			if e.Expired {
				n++
			}
		}
		return n
	},
	"short": func(s fmt.Stringer) string {
		v := s.String()
		if i := strings.Index(v, ":"); i >= 0 && len(v) > i+13 {
			return v[:i+13]
		}
		return v
	},
	"orDash": func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	},
	"latest": func(s []Scan) *Scan {
		if len(s) == 0 {
			return nil
		}
		return &s[len(s)-1]
	},
	"total": func(c map[Severity]int) int {
		n := 0
		for _, v := range c {
			n += v
		}
		return n
	},
	"failOn": func(t scanreport.Thresholds) string {
		var p []string
		if t.FailOn != "" {
			p = append(p, "severity >= "+string(t.FailOn))
		}
		if t.FailOnFixable {
			p = append(p, "any fixable")
		}
		if len(p) == 0 {
			return "none"
		}
		return strings.Join(p, ", ") + " (" + string(t.Mode) + ")"
	},
}

var page = template.Must(template.New("report").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>petra-oci bundle report{{with .Bundle.ID}} {{.}}{{end}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1b1f24;max-width:78rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
h3{font-size:1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em}
.sev{display:inline-block;min-width:1.6rem;text-align:center;border-radius:.6rem;padding:0 .4rem;font-weight:600}
.critical{background:#8b0000;color:#fff}.high{background:#d73a49;color:#fff}.medium{background:#f0a020}
.low{background:#ffd33d}.negligible{background:#e1e4e8}.unknown{background:#e1e4e8}
.verdict{font-weight:700;text-transform:uppercase}.pass{color:#1a7f37}.fail{color:#cf222e}.warn{color:#9a6700}
.note{color:#57606a;font-size:.9rem}.banner{padding:.5rem .8rem;border-radius:.4rem;margin:.8rem 0}
.nowrap{white-space:nowrap}.ok{background:#dafbe1}.bad{background:#ffebe9}
</style>
</head>
<body>
<h1>Bundle report</h1>
<p class="note">Generated {{time .GeneratedAt}} from <code>{{.Dir}}</code>{{with .Bundle.ID}} · bundle <code>{{.}}</code>{{end}}{{if .Bundle.Sequence}} · sequence {{.Bundle.Sequence}}{{end}}{{with .Bundle.ToolVersion}} · petra-oci {{.}}{{end}}</p>
{{if .Verified}}<div class="banner ok" id="verified">The bundle's signature and every file were verified before this report was made.</div>
{{else}}<div class="banner bad" id="verified">This report was made from a bundle that was not verified: nothing in it is established.</div>{{end}}

<h2>Summary</h2>
<table id="summary">
<tr><th>Images</th><td>{{len .Images}}</td></tr>
<tr><th>Bundle signed</th><td>{{if .Bundle.Signed}}yes{{else}}no{{end}}</td></tr>
<tr><th>Bundle signers</th><td>{{range .Signers}}<div>{{.Identity}}{{with .Issuer}} ({{.}}){{end}}{{with .What}} · {{.}}{{end}}</div>{{else}}-{{end}}</td></tr>
<tr><th>CVEs by severity</th><td>{{$c := .Counts}}{{range severities}}<span class="sev {{.}}" title="{{.}}">{{count $c .}}</span> {{.}} &nbsp;{{end}}</td></tr>
<tr><th>Exceptions applied</th><td id="applied">{{applied .Exceptions}}{{with expired .Exceptions}} ({{.}} expired, not applied){{end}}</td></tr>
</table>

<h2>Images</h2>
<table id="images">
<tr><th>Image</th><th>Digest</th><th>Platforms</th><th>Attachments</th><th>Signers</th><th>CVEs</th><th>Verdict</th></tr>
{{range .Images}}<tr>
<td><a href="#img-{{.Digest.Encoded}}">{{.Name}}</a></td><td><code title="{{.Digest}}">{{short .Digest}}</code></td>
<td>{{range .Platforms}}{{orDash .Platform}}<br>{{end}}</td>
<td class="attachments">{{.Attachments}}</td>
<td>{{range .Signers}}<div>{{.Identity}}{{with .Issuer}} ({{.}}){{end}}</div>{{else}}<span class="note">not recorded</span>{{end}}</td>
<td class="nowrap">{{$c := .Counts}}{{range severities}}<span class="sev {{.}}" title="{{.}}">{{count $c .}}</span> {{end}}</td>
<td class="verdict {{.Verdict}}">{{if .Verdict}}{{.Verdict}}{{else}}not scanned{{end}}</td>
</tr>{{end}}
</table>

{{range .Images}}{{$img := .}}
<h2 id="img-{{.Digest.Encoded}}">{{.Name}}</h2>
<p class="note"><code>{{.Repository}}@{{.Digest}}</code> · {{.MediaType}}</p>
{{range .Platforms}}
<h3>{{if .Platform}}{{.Platform}}{{else}}image{{end}} <code class="note">{{.Digest}}</code></h3>
<table class="sboms">
<tr><th>SBOM</th><th>Origin</th><th>Generator</th><th>Packages</th></tr>
{{range .SBOMs}}<tr><td><code title="{{.Content}}">{{short .Referrer}}</code></td><td>{{.Origin}}</td><td>{{orDash .Generator}}</td><td class="packages">{{.Packages}}</td></tr>
{{else}}<tr><td colspan="4" class="note">no SBOM</td></tr>{{end}}
</table>
{{with latest .Scans}}
<p>Scan: <span class="verdict {{.Verdict}}">{{.Verdict}}</span> · {{.Scanner.Name}} {{.Scanner.Version}} · database built {{time .DB.Built}} · scanned {{time .ScannedAt}}{{with .Distro}} · {{.}}{{end}} · fail on: {{failOn .Thresholds}}</p>
<table class="findings">
<tr><th>CVE</th><th>Severity</th><th>Package</th><th>Version</th><th>Fixed in</th><th>Namespace</th></tr>
{{range .Matches}}<tr><td class="cve">{{.CVE}}</td><td><span class="sev {{.Severity}}">{{.Severity}}</span></td><td>{{.Package}}</td><td>{{.Version}}</td><td>{{orDash (join .FixVersions ", ")}}</td><td>{{orDash .Namespace}}</td></tr>
{{else}}<tr><td colspan="6" class="note">no findings</td></tr>{{end}}
</table>
{{if .Violations}}<p><strong>Offending:</strong></p><table class="violations"><tr><th>CVE</th><th>Package</th><th>Why</th></tr>
{{range .Violations}}<tr><td class="cve">{{.Match.CVE}}</td><td>{{.Match.Package}} {{.Match.Version}}</td><td>{{.Reason}}</td></tr>{{end}}</table>{{end}}
{{else}}<p class="note">Not scanned.</p>{{end}}
{{end}}
{{end}}

<h2>Exceptions</h2>
<table id="exceptions">
<tr><th>Image</th><th>Platform</th><th>CVE</th><th>Package</th><th>Severity</th><th>By</th><th>Reason</th><th>Expires</th><th>Status</th></tr>
{{range .Exceptions}}<tr><td>{{.Image}}</td><td>{{orDash .Platform}}</td><td class="cve">{{.CVE}}</td><td>{{.Package}} {{.Version}}</td><td><span class="sev {{.Severity}}">{{.Severity}}</span></td><td>{{.By}}</td><td>{{.Reason}}</td><td>{{orDash .Expires}}</td><td>{{if .Expired}}<span class="fail">expired, not applied</span>{{else}}applied{{end}}</td></tr>
{{else}}<tr><td colspan="9" class="note">none</td></tr>{{end}}
</table>
</body>
</html>
`))
