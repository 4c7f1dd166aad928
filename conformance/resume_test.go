package conformance

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// summary is the blob accounting of the CLI's stderr summary line.
type summary struct {
	copied, mounted, existed, manifests int
}

var (
	packSummary   = regexp.MustCompile(`packed \d+ images into .*: (\d+) blobs copied \(\d+ bytes\), (\d+) already there, (\d+) manifests written`)
	unpackSummary = regexp.MustCompile(`unpacked \d+ images: (\d+) blobs uploaded \(\d+ bytes\), (\d+) mounted, (\d+) already there, (\d+) manifests pushed`)
)

func parseSummary(t *testing.T, r result) summary {
	t.Helper()
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if m := packSummary.FindStringSubmatch(r.stderr); m != nil {
		return summary{copied: atoi(m[1]), existed: atoi(m[2]), manifests: atoi(m[3])}
	}
	if m := unpackSummary.FindStringSubmatch(r.stderr); m != nil {
		return summary{copied: atoi(m[1]), mounted: atoi(m[2]), existed: atoi(m[3]), manifests: atoi(m[4])}
	}
	t.Fatalf("no pack or unpack summary on stderr of %s", r)
	return summary{}
}

// killWhen starts cmd, polls until ready() holds and then SIGKILLs it. It fails the
// test when the process ends on its own first: the point is to interrupt it.
func killWhen(t *testing.T, cmd *exec.Cmd, ready func() bool) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(toolTimeout)
	for {
		select {
		case err := <-done:
			t.Fatalf("%s ended (%v) before it could be interrupted:\n%s", strings.Join(cmd.Args, " "), err, out.String())
		case <-deadline:
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("%s: the condition to interrupt it never held:\n%s", strings.Join(cmd.Args, " "), out.String())
		default:
		}
		if ready() {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s was not killed by SIGKILL (%v):\n%s", strings.Join(cmd.Args, " "), cmd.ProcessState, out.String())
	}
	t.Logf("killed %s", strings.Join(cmd.Args, " "))
}

// countFiles counts the regular files below dir named name ("" for any name).
func countFiles(dir, name string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && (name == "" || d.Name() == name) {
			n++
		}
		return nil
	})
	return n
}

// nonEmptyFiles counts the regular files in dir that hold at least one byte.
func nonEmptyFiles(dir string) int {
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
			n++
		}
	}
	return n
}

func blobNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestInteropKillResume SIGKILLs the petra-oci CLI in the middle of a pack and of an
// unpack of an image with 64 MiB layers, re-runs it, and checks that the re-run
// completes, copies only what was missing, and leaves a bundle (or a registry) equal
// to an uninterrupted run, with no corrupt blob and no leftover ingest file.
func TestInteropKillResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	keys := newBundleKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(context.Background(), t, src.Host, "chainguard/big", "1", fixture.Options{Seed: 23, LayerBytes: 64 << 20})
	ref := img.Repo + ":" + img.Tag

	// an uninterrupted pack: the reference bundle and the total number of blobs
	full := filepath.Join(t.TempDir(), "full")
	total := parseSummary(t, e.petra("pack", "--image", ref, "-o", full, "--plain-http", "--sbom=false", "--key", keys.priv))
	if total.copied == 0 || total.existed != 0 {
		t.Fatalf("a fresh pack reported %+v", total)
	}

	t.Run("pack", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		dir := filepath.Join(t.TempDir(), "bundle")
		blobs := filepath.Join(dir, "blobs", "sha256")
		ingest := filepath.Join(dir, layout.IngestDir)
		// kill once a blob is in place and another is half written
		killWhen(t, e.command("pack", "--image", ref, "-o", dir, "--plain-http", "--sbom=false", "--key", keys.priv, "--concurrency", "1"),
			func() bool { return countFiles(blobs, "") > 0 && nonEmptyFiles(ingest) > 0 })
		if _, err := os.Stat(filepath.Join(dir, "index.json")); !os.IsNotExist(err) {
			t.Fatalf("the interrupted pack wrote index.json (%v): it was not interrupted mid-way", err)
		}
		left := countFiles(blobs, "")
		assertLayoutBlobsVerify(t, dir) // what the kill left is whole
		t.Logf("the kill left %d blobs and %d partly written ingest files", left, nonEmptyFiles(ingest))

		again := parseSummary(t, e.petra("pack", "--image", ref, "-o", dir, "--plain-http", "--sbom=false", "--key", keys.priv))
		if again.existed < left || again.copied >= total.copied || again.copied+again.existed != total.copied {
			t.Errorf("re-run after the kill: %+v, want %d blobs in total with the %d left by the kill not copied again", again, total.copied, left)
		}
		assertLayoutBlobsVerify(t, dir)
		if _, err := os.Stat(filepath.Join(dir, layout.IngestDir)); !os.IsNotExist(err) {
			t.Errorf("%s left in the bundle after the re-run (%v)", layout.IngestDir, err)
		}
		if got, want := blobNames(t, dir), blobNames(t, full); !slices.Equal(got, want) {
			t.Errorf("resumed bundle has blobs %v, an uninterrupted pack %v", got, want)
		}
		got, err := os.ReadFile(filepath.Join(dir, "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(full, "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("resumed bundle's index.json differs from an uninterrupted pack's:\n%s\nwant:\n%s", got, want)
		}
		// petra-oci's own strict check: signed, every file covered and whole, nothing extra
		e.petra("verify", "--key", keys.pub, dir)
	})

	t.Run("unpack", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		dst := registrytest.Start(t, registrytest.Distribution)
		to := dst.Host + "/mirror"
		tagged := to + "/chainguard/big:" + img.Tag
		// distribution keeps a finished blob upload at docker/registry/v2/blobs/<alg>/<xx>/<hex>/data
		stored := filepath.Join(dst.Dir, "docker", "registry", "v2", "blobs")
		killWhen(t, e.command(unpackArgs(keys, to, full, "--concurrency", "1")...),
			func() bool { return countFiles(stored, "data") > 0 })
		// the image tag is pushed last, so it must not exist yet
		if r := e.run(registrytest.ToolPath(t, "crane"), "digest", "--insecure", tagged); r.err == nil {
			t.Errorf("after the kill %s already resolves to %s: a tag points at content that may not all be there", tagged, r.stdout)
		}
		left := countFiles(stored, "data")

		again := parseSummary(t, e.petra(unpackArgs(keys, to, full)...))
		if again.existed < left || again.copied >= total.copied || again.copied+again.mounted+again.existed != total.copied {
			t.Errorf("re-run after the kill: %+v, want %d blobs in total with the %d left by the kill not uploaded again", again, total.copied, left)
		}
		if got := strings.TrimSpace(e.tool("crane", "digest", "--insecure", tagged).stdout); got != img.Index.Digest.String() {
			t.Errorf("%s = %s after the re-run, want %s", tagged, got, img.Index.Digest)
		}
		for _, m := range img.AllManifests {
			assertCraneManifest(t, e, to+"/chainguard/big", m.Digest, "manifest")
		}
		assertReplica(t, img, dst.Repository(t, "mirror/chainguard/big"), true)
		for subject := range img.Signatures {
			if r := e.run(registrytest.ToolPath(t, "crane"), "digest", "--insecure", to+"/chainguard/big:"+oci.CosignTag(subject, ".sig")); r.err != nil {
				t.Errorf("cosign tag of %s missing after the re-run: %s", subject, r)
			}
		}
	})
}
