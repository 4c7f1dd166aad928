package conformance

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/internal/scan/scantest"
)

// TestPackScanGate runs SBOM generation and the offline CVE scan through the CLI on a
// Chainguard-shaped image with xz 5.6.0 (CVE-2024-3094, critical) against a grype
// database built in the test: the threshold refuses the image with a table of the
// offending CVE; an unexpired exception lets it through and is recorded in the
// reviewer report; an expired one does not.
func TestPackScanGate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	db := scantest.WriteDB(t)
	src := registrytest.Start(t, registrytest.InProcess)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/xz", "5.6", fixture.Options{Seed: 41})
	ref := img.Repo + ":" + img.Tag
	gate := []string{"--vuln-db", db.Archive, "--fail-on", "critical"}

	// refused: exit 40, the CVE in the table on stderr, no sealed bundle
	bad := filepath.Join(t.TempDir(), "bad")
	r := e.run(petraBin, append([]string{"pack", "--image", ref, "-o", bad, "--plain-http", "--key", keys.priv}, gate...)...)
	if r.exitCode != 40 || !strings.Contains(r.stderr, scantest.XZBackdoor) {
		t.Fatalf("pack over the threshold: %s", r)
	}
	if _, err := os.Stat(filepath.Join(bad, "petra", "metadata.json")); !os.IsNotExist(err) {
		t.Errorf("a refused pack sealed its bundle: %v", err)
	}

	// grype's own cache layout (what GRYPE_DB_CACHE_DIR points at: DIR/6/vulnerability.db
	// beside DIR/6/import.json) is a database too: the same refusal, not "holds no
	// vulnerability.db"
	r = e.run(petraBin, "pack", "--image", ref, "-o", filepath.Join(t.TempDir(), "cache"), "--plain-http", "--vuln-db", db.Root, "--fail-on", "critical")
	if r.exitCode != 40 || !strings.Contains(r.stderr, scantest.XZBackdoor) {
		t.Errorf("pack --vuln-db GRYPE_DB_CACHE_DIR: %s", r)
	}

	// an expired exception does not apply
	expired := writeFile(t, filepath.Join(t.TempDir(), "expired.yaml"), []byte(
		"- cve: "+scantest.XZBackdoor+"\n  image: \"*chainguard/xz*\"\n  reason: old waiver\n  expires: \"2020-01-01\"\n"))
	r = e.run(petraBin, append([]string{"pack", "--image", ref, "-o", filepath.Join(t.TempDir(), "b"), "--plain-http", "--exceptions", expired}, gate...)...)
	if r.exitCode != 40 {
		t.Errorf("pack with an expired exception: %s", r)
	}

	// an unexpired exception lets it through, recorded with its reason
	waiver := writeFile(t, filepath.Join(t.TempDir(), "exceptions.yaml"), []byte(
		"- cve: "+scantest.XZBackdoor+"\n  image: \"*chainguard/xz*\"\n  reason: rebuilt with xz 5.6.1-r2 next week\n  expires: \"2099-12-31\"\n"))
	dir, res := packCLI(t, e, keys, ref, append(gate, "--exceptions", waiver)...)
	if res.Images[0].Attachments < 12 { // fixture attachments + SBOM and scan report per platform
		t.Errorf("attachments %d: SBOM and scan referrers missing", res.Images[0].Attachments)
	}
	insp := e.petra("inspect", "--report", filepath.Join(t.TempDir(), "report.html"), dir)
	if strings.Count(insp.stdout, "application/spdx+json") < 2 || strings.Count(insp.stdout, "application/vnd.petra-oci.scan.report.v1+json") != 2 {
		t.Errorf("inspect does not show an SBOM and a scan report per platform:\n%s", insp.stdout)
	}
	html := filepath.Join(t.TempDir(), "r.html")
	e.petra("inspect", "--report", html, dir)
	b, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{scantest.XZBackdoor, "rebuilt with xz 5.6.1-r2 next week", "chainguard/xz"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the reviewer report lacks %q", want)
		}
	}
	// the same thresholds and exception from the policy file
	imageKey := writeFile(t, filepath.Join(t.TempDir(), "image.pub"), img.PublicKeyPEM)
	policyWith := func(vulns string) string {
		return writeFile(t, filepath.Join(t.TempDir(), "policy.yaml"), []byte(`apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["**"]
images:
  - glob: "**"
    authorities:
      - key: {path: `+imageKey+`}
vulnerabilities:
`+vulns))
	}
	strict := policyWith("  failOn: critical\n")
	if r := e.run(petraBin, "pack", "--image", ref, "-o", filepath.Join(t.TempDir(), "p0"), "--plain-http", "--policy", strict); r.exitCode != 2 || !strings.Contains(r.stderr, "--vuln-db") {
		t.Errorf("a policy with thresholds and no --vuln-db: %s", r)
	}
	if r := e.run(petraBin, "pack", "--image", ref, "-o", filepath.Join(t.TempDir(), "p1"), "--plain-http", "--policy", strict, "--vuln-db", db.Archive); r.exitCode != 40 {
		t.Errorf("policy thresholds: %s", r)
	}
	waived := policyWith("  failOn: critical\n  exceptions:\n    - {cve: " + scantest.XZBackdoor + ", image: \"*chainguard/xz*\", reason: from the policy, expires: \"2099-12-31\"}\n")
	packCLI(t, e, keys, ref, "--policy", waived, "--vuln-db", db.Archive)

	// with a policy that verifies the image's SPDX attestations, the carried SBOM is the
	// one attached (no database: nothing generated)
	carriedDir, _ := packCLI(t, e, keys, ref, "--image-key", imageKey, "--sbom", "--no-evidence")
	origins := sbomOrigins(t, carriedDir)
	if origins["carried"] != 2 || origins["generated"] != 0 {
		t.Errorf("SBOM origins with verified SPDX attestations: %v, want 2 carried", origins)
	}
	if o := sbomOrigins(t, dir); o["generated"] != 2 || o["carried"] != 0 {
		t.Errorf("SBOM origins without a policy: %v, want 2 generated", o)
	}
	// SBOMs are the default: a plain pack attaches one per platform
	plain := filepath.Join(t.TempDir(), "plain")
	e.petra("pack", "--image", ref, "-o", plain, "--plain-http", "--key", keys.priv)
	if o := sbomOrigins(t, plain); o["generated"] != 2 {
		t.Errorf("SBOM origins of a default pack: %v, want 2 generated", o)
	}

	// the bundle with its SBOMs and reports verifies and unpacks
	dst := registrytest.Start(t, registrytest.Olareg)
	e.petra(unpackArgs(keys, dst.Host+"/mirror", dir, "--state", filepath.Join(t.TempDir(), "s.json"))...)
}

// sbomOrigins counts the SPDX referrers of a bundle by their origin annotation.
func sbomOrigins(t *testing.T, dir string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			ArtifactType string
			Annotations  map[string]string
		}
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range idx.Manifests {
		if m.ArtifactType == "application/spdx+json" && m.Annotations["dev.petra-oci.sbom.origin"] != "" {
			out[m.Annotations["dev.petra-oci.sbom.origin"]]++
		}
	}
	return out
}
