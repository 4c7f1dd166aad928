package conformance

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
)

// TestUnpackEmitAdmission: unpack --emit-admission writes, once everything is pushed,
// exactly what `petra-oci admission` writes for the same bundle and registry; a policy
// the resources cannot express refuses the bundle before anything is pushed.
func TestUnpackEmitAdmission(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/legacy", "1", fixture.Options{Seed: 61, Signing: fixture.SigningLegacy})
	publisher := writeFile(t, filepath.Join(t.TempDir(), "publisher.pub"), img.PublicKeyPEM)
	dir, _ := packCLI(t, e, keys, img.Repo+":"+img.Tag, "--image-key", publisher)

	dst := registrytest.Start(t, registrytest.Olareg)
	to := dst.Host + "/mirror"
	emitted := filepath.Join(t.TempDir(), "emitted")
	state := filepath.Join(t.TempDir(), "s.json")
	e.must(petraBin, unpackArgs(keys, to, dir, "--image-key", publisher, "--state", state, "--emit-admission", emitted)...)
	direct := filepath.Join(t.TempDir(), "direct")
	e.must(petraBin, "admission", dir, "--registry", to, "-o", direct, "--key", keys.pub, "--image-key", publisher, "--state", state)
	want, err := os.ReadDir(direct)
	must(t, err)
	if len(want) < 5 {
		t.Fatalf("admission wrote %d files", len(want))
	}
	for _, f := range want {
		a, err := os.ReadFile(filepath.Join(direct, f.Name()))
		must(t, err)
		b, err := os.ReadFile(filepath.Join(emitted, f.Name()))
		if err != nil {
			t.Errorf("unpack --emit-admission did not write %s: %v", f.Name(), err)
			continue
		}
		if string(a) != string(b) {
			t.Errorf("%s differs between unpack --emit-admission and admission", f.Name())
		}
	}

	// a rule policy-controller cannot express: refused before the first push
	pol := writeFile(t, filepath.Join(t.TempDir(), "policy.yaml"), []byte(`apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["**"]
images:
  - glob: "**"
    countAttestationsAsSignatures: true
    authorities:
      - key:
          path: `+publisher+`
`))
	dir2, _ := packCLI(t, e, keys, img.Repo+":"+img.Tag, "--policy", pol)
	dst2 := registrytest.Start(t, registrytest.Olareg)
	r := e.run(petraBin, unpackArgs(keys, dst2.Host+"/mirror", dir2, "--policy", pol, "--state", filepath.Join(t.TempDir(), "s.json"),
		"--emit-admission", filepath.Join(t.TempDir(), "out"))...)
	if r.exitCode != 33 {
		t.Errorf("unpack --emit-admission with an unexpressible rule: exit %d, want 33:\n%s", r.exitCode, r)
	}
	if cat := dst2.Catalog(t); len(cat) != 0 {
		t.Errorf("the registry received %v", cat)
	}
}
