package admission

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petra-oci/petra-oci/internal/registrytest"
)

// TestGatorSuite runs testdata/gator/suite.yaml through the real gator (Gatekeeper's
// CLI, pinned in scripts/install-tools.sh) against the Gatekeeper resources generated
// for --registry reg.internal: a pod whose images all come from the internal registry
// by digest is admitted; a public-registry image, a look-alike host, a tag-only
// reference, and a bad init or ephemeral container are each refused. It fails when
// gator is missing.
func TestGatorSuite(t *testing.T) {
	gator := registrytest.ToolPath(t, "gator")
	if v := registrytest.ToolModuleVersion(t, gator, registrytest.GatorModule); v != registrytest.GatorVersion {
		t.Fatalf("%s is gatekeeper %s, want %s (run scripts/install-tools.sh)", gator, v, registrytest.GatorVersion)
	}
	registrytest.CheckScriptPin(t, "GATOR_VERSION", registrytest.GatorVersion)

	dir := t.TempDir()
	copyTree(t, filepath.Join("testdata", "gator"), dir)
	opts := chainguardOptions(t)
	opts.Registry = "reg.internal"
	if err := WriteDir(filepath.Join(dir, "out"), generate(t, opts)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, gator, "verify", "-v", filepath.Join(dir, "suite.yaml"))
	out, err := cmd.CombinedOutput()
	t.Logf("gator verify:\n%s", out)
	if err != nil {
		t.Fatalf("gator verify: %v", err)
	}
	// every case ran: gator prints one "ok" line per case with -v
	for _, c := range []string{"internal-by-digest", "public-registry", "look-alike-host", "tag-only",
		"bad-init-container", "bad-ephemeral-container", "tagged-init-container", "tagged-ephemeral-container", "internal-by-digest-refused"} {
		if !strings.Contains(string(out), c) {
			t.Errorf("gator output does not mention case %s", c)
		}
	}
}

// TestGatorSuiteFailsOnWrongConstraint checks that the suite has teeth: with the
// allowed-repos constraint naming another registry, gator verify fails.
func TestGatorSuiteFailsOnWrongConstraint(t *testing.T) {
	gator := registrytest.ToolPath(t, "gator")
	dir := t.TempDir()
	copyTree(t, filepath.Join("testdata", "gator"), dir)
	opts := chainguardOptions(t)
	opts.Registry = "reg.internal.evil.example"
	if err := WriteDir(filepath.Join(dir, "out"), generate(t, opts)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, gator, "verify", "--run", "^allowed-repos$//^internal-by-digest$", filepath.Join(dir, "suite.yaml")).CombinedOutput()
	if err == nil {
		t.Fatalf("gator verify passed with the constraint for another registry:\n%s", out)
	}
	if !strings.Contains(string(out), "internal-by-digest") {
		t.Errorf("gator output does not name the failing case:\n%s", out)
	}
}

func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
