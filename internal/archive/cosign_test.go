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
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/signing"
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

// A key still being decrypted when the archive is written (signing.PendingSigner, the
// CLI's way): a cosign key file other than the bundle's is found out only after the
// small export below is written, and still nothing is signed or left at Out.
func TestExportWaitsForPendingKeyCheck(t *testing.T) {
	dir := newBundle(t, 22, 3000)
	home := t.TempDir()
	cmd := exec.Command(registrytest.ToolPath(t, "cosign"), "generate-key-pair", "--output-key-prefix", filepath.Join(home, "other"))
	cmd.Env = append(os.Environ(), "HOME="+home, "COSIGN_PASSWORD=pw")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	pending, err := signing.LoadSignerInBackground(context.Background(), filepath.Join(home, "other.key"), func() ([]byte, error) { return []byte("pw"), nil })
	must(t, err)
	out := filepath.Join(t.TempDir(), "c")
	_, err = Export(context.Background(), dir, ExportOptions{Out: out, SplitSize: 4096, Signer: pending})
	if err == nil || !strings.Contains(err.Error(), "does not verify "+layout.SignaturePath) {
		t.Fatalf("err = %v, want the key check's error", err)
	}
	if ls := listTree(t, filepath.Dir(out)); len(ls) != 1 {
		t.Errorf("left behind: %q", ls)
	}
}
