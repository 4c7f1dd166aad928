package archive

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petra-oci/petra-oci/internal/registrytest"
)

// TestCosignVerifiesChunkIndex: the signature beside the chunk index is a standard
// Sigstore bundle: the real cosign verify-blob (v2.6.5 and v3.1.3) accepts
// chunks.sigstore.json over chunks.json with the bundle's public key, and refuses the
// index with one byte flipped.
func TestCosignVerifiesChunkIndex(t *testing.T) {
	dir := newBundle(t, 21, 40<<10, 3000)
	ex := export(t, dir, filepath.Join(t.TempDir(), "chunks"), 16<<10, 1, false)
	work := t.TempDir()
	pub, err := testKey.PublicKeyPEM()
	must(t, err)
	pubPath := filepath.Join(work, "bundle.pub")
	must(t, os.WriteFile(pubPath, pub, 0o644))
	index, sig := filepath.Join(ex.Out, IndexFile), filepath.Join(ex.Out, IndexSignatureFile)
	b := readFile(t, index)
	flipped := filepath.Join(work, "chunks-flipped.json")
	b[len(b)/2] ^= 0x01
	must(t, os.WriteFile(flipped, b, 0o644))

	for _, name := range []string{"cosign", "cosign3"} {
		t.Run(name, func(t *testing.T) {
			bin := registrytest.ToolPath(t, name)
			home := t.TempDir()
			run := func(args ...string) (string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, args...)
				cmd.Dir = home
				cmd.Env = append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, ".sigstore"))
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			// an empty trusted root: cosign then accepts a key-signed bundle without a log entry
			root := filepath.Join(home, "empty-trusted-root.json")
			if out, err := run("trusted-root", "create", "--out", root); err != nil {
				t.Fatalf("%s trusted-root create: %v\n%s", name, err, out)
			}
			verify := func(file string) (string, error) {
				return run("verify-blob", "--new-bundle-format", "--insecure-ignore-tlog", "--trusted-root", root,
					"--key", pubPath, "--bundle", sig, file)
			}
			if out, err := verify(index); err != nil || !strings.Contains(out, "Verified OK") {
				t.Fatalf("%s verify-blob refused %s: %v\n%s", name, IndexSignatureFile, err, out)
			}
			if out, err := verify(flipped); err == nil {
				t.Fatalf("%s verify-blob accepted the chunk index with a flipped byte:\n%s", name, out)
			}
		})
	}
}
