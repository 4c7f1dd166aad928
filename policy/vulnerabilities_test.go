package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const vulnBase = `apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["cgr.dev/chainguard/**"]
images:
  - glob: "**"
    authorities:
      - keyless: {issuer: https://token.actions.githubusercontent.com, identity: "https://github.com/chainguard-images/images/.github/workflows/release.yaml@refs/heads/main"}
`

func TestVulnerabilities(t *testing.T) {
	p, err := Parse([]byte(vulnBase+`vulnerabilities:
  failOn: High
  failOnFixable: true
  mode: warn
  maxDBAge: 120h
  exceptions:
    - {cve: CVE-2024-3094, image: "cgr.dev/chainguard/*", reason: "rebuilt next week", expires: "2099-01-31"}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	v := p.Vulnerabilities
	if v == nil || v.Thresholds().FailOn != "high" || !v.FailOnFixable || v.Thresholds().Mode != "warn" || v.DBMaxAge() != 120*time.Hour || len(v.Exceptions) != 1 {
		t.Fatalf("vulnerabilities = %+v", v)
	}
	again, err := Parse(p.Bytes(), "")
	if err != nil || again.Digest() != p.Digest() {
		t.Fatalf("canonical form does not round trip: %v", err)
	}
	for name, section := range map[string]string{
		"bad severity":         "vulnerabilities: {failOn: severe}\n",
		"bad mode":             "vulnerabilities: {mode: lenient}\n",
		"bad age":              "vulnerabilities: {maxDBAge: forever}\n",
		"exception, no expiry": "vulnerabilities:\n  exceptions: [{cve: CVE-1, image: x, reason: r}]\n",
		"exception, no reason": "vulnerabilities:\n  exceptions: [{cve: CVE-1, image: x, expires: \"2099-01-01\"}]\n",
		"unknown field":        "vulnerabilities: {failOnSeverity: high}\n",
	} {
		if _, err := Parse([]byte(vulnBase+section), ""); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("%s: err = %v, want invalid policy", name, err)
		} else if !strings.Contains(err.Error(), "vulnerabilities") && name != "unknown field" {
			t.Errorf("%s: error does not name the section: %v", name, err)
		}
	}
}
