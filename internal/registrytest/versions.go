package registrytest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ToolModuleVersion returns the version of module the Go binary bin was built from.
func ToolModuleVersion(t testing.TB, bin, module string) string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", bin, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && (f[0] == "mod" || f[0] == "dep") && f[1] == module {
			return f[2]
		}
	}
	t.Fatalf("%s is not built from %s", bin, module)
	return ""
}

// The cosign CLIs the conformance suites run, as scripts/install-tools.sh pins them:
// v2 installed as "cosign" (COSIGN_VERSION), v3 as "cosign3" (COSIGN3_VERSION).
const (
	CosignModule   = "github.com/sigstore/cosign/v2"
	CosignVersion  = "v2.6.5"
	Cosign3Module  = "github.com/sigstore/cosign/v3"
	Cosign3Version = "v3.1.3"
)

// Gatekeeper's CLI, gator, that runs the internal/admission suites, as
// scripts/install-tools.sh pins it (GATOR_VERSION).
const (
	GatorModule  = "github.com/open-policy-agent/gatekeeper/v3"
	GatorVersion = "v3.23.1"
)

// CheckPinned fails the test unless go.mod requires module at version and
// scripts/install-tools.sh pins the matching CLI as scriptVar=version: the library and
// the CLI compared with it must stay in step.
func CheckPinned(t testing.TB, module, version, scriptVar string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", module, err)
	}
	if got := strings.TrimSpace(string(out)); got != version {
		t.Errorf("go.mod requires %s %s, the code says %s", module, got, version)
	}
	CheckScriptPin(t, scriptVar, version)
}

// CheckScriptPin fails the test unless scripts/install-tools.sh pins
// scriptVar=version.
func CheckScriptPin(t testing.TB, scriptVar, version string) {
	t.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(filepath.Dir(strings.TrimSpace(string(root))), "scripts", "install-tools.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), scriptVar+"="+version+"\n") {
		t.Errorf("scripts/install-tools.sh does not pin %s=%s", scriptVar, version)
	}
}

// policy-controller's tester, installed as policy-tester, that runs the generated
// ClusterImagePolicies and TrustRoot against a registry, as scripts/install-tools.sh
// pins it (POLICY_CONTROLLER_VERSION). It is built from the module's directory, so
// `go version -m` shows no module version; the version is stamped with
// policy-controller's own ldflag and read back with `policy-tester -version`.
const (
	PolicyTesterPackage = "github.com/sigstore/policy-controller/cmd/tester"
	PolicyTesterVersion = "v0.13.1"
)
