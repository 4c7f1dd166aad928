package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petra-oci/petra-oci/internal/registrytest"
)

// petraBin is the petra-oci CLI built once by TestMain for the interop suite.
var petraBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "petra-oci-conformance-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		return 1
	}
	petraBin = filepath.Join(tmp, "petra-oci")
	// petra-oci-analyze beside petra-oci, where pack looks for it
	build := exec.Command("go", "build", "-o", tmp+string(filepath.Separator), "./cmd/petra-oci", "./cmd/petra-oci-analyze")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "conformance: building the petra-oci CLI: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// repoRoot is the directory of the module's go.mod.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	return filepath.Abs("..")
}

// toolTimeout bounds every external command; a hung tool fails its test, not the run.
const toolTimeout = 3 * time.Minute

// env is a hermetic environment for external tools: a throwaway HOME, docker, regctl,
// containers and sigstore configuration that point into it, so no tool reads or
// writes the user's credentials or caches.
type env struct {
	t    testing.TB
	home string
	vars []string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	home := t.TempDir()
	for _, d := range []string{".docker", ".config", ".cache", ".local/share", ".local/state", "run", ".sigstore/root", "registries.d"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// skopeo: accept any image (the policy is not what is tested) and read no system
	// registries configuration.
	policy := filepath.Join(home, "policy.json")
	registries := filepath.Join(home, "registries.conf")
	writeFile(t, policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`))
	writeFile(t, registries, []byte("unqualified-search-registries = []\n"))

	drop := map[string]bool{}
	for _, k := range []string{"HOME", "DOCKER_CONFIG", "REGCTL_CONFIG", "XDG_CONFIG_HOME", "XDG_CACHE_HOME",
		"XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "REGISTRY_AUTH_FILE", "CONTAINERS_REGISTRIES_CONF",
		"CONTAINERS_POLICY_JSON", "TUF_ROOT", "SIGSTORE_NO_CACHE", "COSIGN_PASSWORD", "COSIGN_EXPERIMENTAL",
		"COSIGN_REPOSITORY", "SIGSTORE_ROOT_FILE"} {
		drop[k] = true
	}
	var vars []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			vars = append(vars, kv)
		}
	}
	vars = append(vars,
		"HOME="+home,
		"DOCKER_CONFIG="+filepath.Join(home, ".docker"),
		"REGCTL_CONFIG="+filepath.Join(home, ".regctl", "config.json"),
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"XDG_DATA_HOME="+filepath.Join(home, ".local/share"),
		"XDG_STATE_HOME="+filepath.Join(home, ".local/state"),
		"XDG_RUNTIME_DIR="+filepath.Join(home, "run"),
		"REGISTRY_AUTH_FILE="+filepath.Join(home, "auth.json"),
		"CONTAINERS_REGISTRIES_CONF="+registries,
		"TUF_ROOT="+filepath.Join(home, ".sigstore", "root"),
		"SIGSTORE_NO_CACHE=true",
		"COSIGN_PASSWORD=",
		"COSIGN_EXPERIMENTAL=0",
		"NO_COLOR=1",
	)
	return &env{t: t, home: home, vars: vars}
}

// result is a finished command.
type result struct {
	args           []string
	stdout, stderr string
	err            error
	exitCode       int
}

func (r result) String() string {
	return fmt.Sprintf("%s: %v (exit %d)\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.err, r.exitCode, r.stdout, r.stderr)
}

// run runs bin with args in the hermetic environment.
func (e *env) run(bin string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = e.vars
	cmd.Dir = e.home
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: append([]string{filepath.Base(bin)}, args...), stdout: stdout.String(), stderr: stderr.String(), err: err, exitCode: cmd.ProcessState.ExitCode()}
	return r
}

// must runs bin and fails the test unless it exits 0.
func (e *env) must(bin string, args ...string) result {
	e.t.Helper()
	r := e.run(bin, args...)
	if r.err != nil {
		e.t.Fatalf("%s", r)
	}
	return r
}

// tool runs a tool found with registrytest.ToolPath and requires success.
func (e *env) tool(name string, args ...string) result {
	e.t.Helper()
	return e.must(registrytest.ToolPath(e.t, name), args...)
}

// petra runs the petra-oci CLI and requires success.
func (e *env) petra(args ...string) result {
	e.t.Helper()
	return e.must(petraBin, args...)
}

// command returns an unstarted petra-oci command in the hermetic environment.
func (e *env) command(args ...string) *exec.Cmd {
	cmd := exec.Command(petraBin, args...)
	cmd.Env = e.vars
	cmd.Dir = e.home
	return cmd
}

// decodeJSON decodes the stdout of r into v, failing the test on any error.
func decodeJSON(t testing.TB, r result, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding the JSON output of %s: %v", r, err)
	}
	if dec.More() {
		t.Fatalf("trailing data after the JSON output of %s", r)
	}
	// every petra-oci document is versioned (docs/json-output.md)
	if len(r.args) == 0 || r.args[0] != filepath.Base(petraBin) {
		return
	}
	var head struct{ APIVersion, Kind string }
	if err := json.Unmarshal([]byte(r.stdout), &head); err != nil || head.APIVersion != "petra-oci.dev/v1" || !strings.HasSuffix(head.Kind, "Result") {
		t.Fatalf("the JSON output of %s has apiVersion %q and kind %q (%v): want petra-oci.dev/v1 and a …Result kind", r, head.APIVersion, head.Kind, err)
	}
}

func writeFile(t testing.TB, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
