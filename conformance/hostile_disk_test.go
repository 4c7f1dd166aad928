package conformance

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/oci"
)

// TestHostileAfterVerify changes the bundle on disk after it verified, at the moment
// unpack sends its first request to the destination (a registrytest.HookProxy hook):
// what is pushed is decided by the verified file list, never by the disk, and a file
// swapped for a FIFO makes unpack fail promptly, without hanging and without a tag.
func TestHostileAfterVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newHostileKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 51})
	ref := img.Repo + ":" + img.Tag
	full, _ := packCLI(t, e, keys.bundleKeys, ref)
	filtered, _ := packCLI(t, e, keys.bundleKeys, ref, "--platform", "linux/amd64")
	amd, arm := img.Children["linux/amd64"], img.Children["linux/arm64"]
	const dstRepo = "pfx/team/chainguard/nginx"

	// the left-out linux/arm64 child, as the source registry has it: manifest, config
	// and layers; and which of its blobs linux/amd64 does not share
	srcRepo := src.Repository(t, "chainguard/nginx")
	armBlobs := map[digest.Digest][]byte{}
	manifestOf := func(d ocispec.Descriptor) *oci.Manifest {
		b, err := fetchAll(ctx, srcRepo, d)
		must(t, err)
		m, err := oci.ParseManifest(d, b)
		must(t, err)
		armBlobs[d.Digest] = b
		return m
	}
	armM, amdM := manifestOf(arm), manifestOf(amd)
	delete(armBlobs, amd.Digest)
	var armOnly []digest.Digest
	for _, d := range armM.Children() {
		b, err := fetchAll(ctx, srcRepo, d)
		must(t, err)
		armBlobs[d.Digest] = b
		if !slices.ContainsFunc(amdM.Children(), func(a ocispec.Descriptor) bool { return a.Digest == d.Digest }) {
			armOnly = append(armOnly, d.Digest)
		}
	}
	if len(armOnly) == 0 {
		t.Fatal("test bug: linux/arm64 shares every blob with linux/amd64")
	}

	// fifo replaces the blob d of dir with a FIFO nobody writes to.
	fifo := func(t *testing.T, dir string, d digest.Digest) {
		p := blobFile(dir, d)
		if err := os.Remove(p); err != nil {
			t.Errorf("hook: %v", err)
			return
		}
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Errorf("hook: %v", err)
		}
	}

	for _, k := range hostileKinds {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()

			// The control: a platform-filtered bundle keeps its original index, which
			// lacks the left-out child; olareg and distribution (by default) refuse such
			// an index, so unpack refuses the bundle before it sends anything, naming
			// the index and the child (exit 29), and nothing reaches the registry.
			t.Run("control: platform-filtered bundle refused as sparse before anything is pushed", func(t *testing.T) {
				t.Parallel()
				dst := registrytest.Start(t, k)
				proxy := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{})
				r := runPetra(t, e, unpackArgs(keys.bundleKeys, proxy.Host+"/pfx/team", filtered, "--state", filepath.Join(t.TempDir(), "s.json"))...)
				if r.exitCode != exitSparseIndex || !strings.Contains(r.stderr, "index "+img.Repo+"@"+img.Index.Digest.String()) ||
					!strings.Contains(r.stderr, arm.Digest.String()+" (linux/arm64)") || !strings.Contains(r.stderr, "--allow-sparse-index") {
					t.Errorf("unpack of the untouched platform-filtered bundle: exit %d, want 35 naming the index and the left-out child:\n%s", r.exitCode, r)
				}
				if reqs := proxy.Requests(); len(reqs) != 0 {
					t.Errorf("the refused bundle sent %d requests to the registry:\n%s", len(reqs), strings.Join(reqs, "\n"))
				}
				if got := resolveAt(t, dst, dstRepo, img.Tag); got != "" {
					t.Errorf("refused, yet tag %s is set (%s)", img.Tag, got)
				}
				if blobAt(t, dst, dstRepo, img.BaseLayer.Digest) {
					t.Error("refused, yet the base layer was pushed")
				}
			})

			t.Run("left-out child copied in after verification is not pushed", func(t *testing.T) {
				t.Parallel()
				// The tampered copy must end exactly as the untouched bundle does (copying
				// the child in changes nothing), and the child never reaches the registry.
				// --allow-sparse-index takes both past the sparse-index refusal to the
				// registry (which then refuses the index, or stores it).
				ctl := runPetra(t, e, unpackArgs(keys.bundleKeys, registrytest.Start(t, k).Host+"/pfx/team", filtered, "--state", filepath.Join(t.TempDir(), "s.json"), "--allow-sparse-index")...)
				b := copyBundle(t, filtered, keys.signer)
				if _, err := os.Stat(blobFile(b.dir, arm.Digest)); err == nil {
					t.Fatal("test bug: the filtered bundle holds the linux/arm64 child")
				}
				dst := registrytest.Start(t, k)
				proxy := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{Hook: func(*http.Request) {
					for d, data := range armBlobs {
						if err := os.WriteFile(blobFile(b.dir, d), data, 0o644); err != nil {
							t.Errorf("hook: %v", err)
						}
					}
				}})
				r := runPetra(t, e, unpackArgs(keys.bundleKeys, proxy.Host+"/pfx/team", b.dir, "--state", filepath.Join(t.TempDir(), "s.json"), "--allow-sparse-index")...)
				assertHooked(t, proxy, r)
				if r.exitCode != ctl.exitCode {
					t.Errorf("with the child copied in after verification unpack exits %d, the untouched bundle %d:\n%s", r.exitCode, ctl.exitCode, r)
				}
				if got := resolveAt(t, dst, dstRepo, arm.Digest.String()); got != "" {
					t.Errorf("the child %s, not in the verified file list, was pushed:\n%s", arm.Digest, r)
				}
				for _, d := range armOnly {
					if blobAt(t, dst, dstRepo, d) {
						t.Errorf("blob %s of the left-out child, not in the verified file list, was pushed", d)
					}
				}
				switch got := resolveAt(t, dst, dstRepo, img.Tag); {
				case r.exitCode == 0 && got != img.Index.Digest:
					t.Errorf("unpack succeeded but tag %s is %q, want %s", img.Tag, got, img.Index.Digest)
				case r.exitCode != 0 && got != "":
					t.Errorf("unpack failed but set tag %s (%s)", img.Tag, got)
				}
				if r.exitCode == 0 {
					if got := resolveAt(t, dst, dstRepo, amd.Digest.String()); got != amd.Digest {
						t.Errorf("the packed child %s is not at the destination", amd.Digest)
					}
				}
			})

			// Files unpack reads after its first request to the destination. Not a child
			// manifest: unpack walks an image's tree (index, then its children) before it
			// sends anything, so a child manifest is read before the hook can swap it and
			// the case would not happen (or would race).
			for _, sw := range []struct {
				what string
				d    digest.Digest
			}{
				{"layer blob", img.BaseLayer.Digest},
				{"index manifest", img.Index.Digest},
				{"cosign signature manifest of the index", img.Signatures[img.Index.Digest].Digest},
			} {
				t.Run(sw.what+" swapped for a FIFO after verification", func(t *testing.T) {
					t.Parallel()
					b := copyBundle(t, full, keys.signer)
					dst := registrytest.Start(t, k)
					proxy := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{Hook: func(*http.Request) { fifo(t, b.dir, sw.d) }})
					start := time.Now()
					r := runPetra(t, e, unpackArgs(keys.bundleKeys, proxy.Host+"/pfx/team", b.dir, "--state", filepath.Join(t.TempDir(), "s.json"))...)
					took := time.Since(start)
					assertHooked(t, proxy, r)
					lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
					t.Logf("exit %d after %s: %s", r.exitCode, took.Round(time.Millisecond), lines[len(lines)-1])
					if r.exitCode != 23 && r.exitCode != 20 {
						t.Errorf("unpack with a FIFO in place of %s %s: exit %d after %s, want 23 or 20:\n%s", sw.what, sw.d, r.exitCode, took.Round(time.Millisecond), r)
					} else if !containsAny(r.stderr, []string{sw.d.Encoded()}) {
						t.Errorf("stderr does not name %s:\n%s", sw.d, r)
					}
					if got := resolveAt(t, dst, dstRepo, img.Tag); got != "" {
						t.Errorf("tag %s was set (%s) although %s was a FIFO", img.Tag, got, sw.d)
					}
				})
			}
		})
	}
}

// assertHooked fails when the proxy's hook never ran: unpack never reached the
// destination, so the case did not happen.
func assertHooked(t testing.TB, p *registrytest.HookProxy, r result) {
	t.Helper()
	select {
	case <-p.Hooked():
	default:
		t.Fatalf("unpack never reached the destination, so the disk was not changed after verification:\n%s", r)
	}
}

// TestHostileFiles: refusals of verification itself that an attacker aims at the
// verifier: a bundle root reached through a symlink, a flood of extra files, and
// --unsafe-skip-verify combined with the flags of a verification it would skip.
func TestHostileFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newHostileKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 52})
	plain, _ := packCLI(t, e, keys.bundleKeys, img.Repo+":"+img.Tag)

	for _, sub := range []struct{ name, suffix string }{
		{"bundle root DIR/ where DIR is a symlink", "/"},
		{"bundle root DIR is a symlink", ""},
	} {
		t.Run(sub.name, func(t *testing.T) {
			t.Parallel()
			link := filepath.Join(t.TempDir(), "link")
			must(t, os.Symlink(plain, link))
			dir := link + sub.suffix
			r := runPetra(t, e, "verify", "--key", keys.pub, "--state", filepath.Join(t.TempDir(), "s.json"), dir)
			assertExit(t, "verify "+dir, r, 23, link)
			for _, k := range hostileKinds {
				dst := registrytest.Start(t, k)
				r := runPetra(t, e, unpackArgs(keys.bundleKeys, dst.Host+"/pfx/team", dir, "--state", filepath.Join(t.TempDir(), "s.json"))...)
				assertExit(t, fmt.Sprintf("unpack %s to %s", dir, k), r, 23, link)
				assertNothingPushed(t, dst)
			}
		})
	}

	t.Run("20000 extra files", func(t *testing.T) {
		t.Parallel()
		b := copyBundle(t, plain, keys.signer)
		var names []string
		for i := range 20000 {
			data := []byte(fmt.Sprintf("smuggled %d\n", i))
			d := digest.FromBytes(data)
			writeFile(t, blobFile(b.dir, d), data)
			names = append(names, d.Encoded())
		}
		start := time.Now()
		r := runPetra(t, e, "verify", "--key", keys.pub, "--state", filepath.Join(t.TempDir(), "s.json"), b.dir)
		t.Logf("verify refused in %s, %d bytes of stderr", time.Since(start).Round(time.Millisecond), len(r.stderr))
		assertExit(t, "verify", r, 22, names...)
		for _, k := range hostileKinds {
			dst := registrytest.Start(t, k)
			r := runPetra(t, e, unpackArgs(keys.bundleKeys, dst.Host+"/pfx/team", b.dir, "--state", filepath.Join(t.TempDir(), "s.json"))...)
			assertExit(t, "unpack to "+string(k), r, 22, names...)
			assertNothingPushed(t, dst)
		}
	})

	t.Run("--unsafe-skip-verify with a verification flag", func(t *testing.T) {
		t.Parallel()
		_, imgPub, _ := fixture.KeyPair(t)
		imageKey := writeFile(t, filepath.Join(t.TempDir(), "image.pub"), imgPub)
		pol := writeFile(t, filepath.Join(t.TempDir(), "policy.yaml"), []byte(`apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["**"]
images:
  - glob: "**"
    authorities:
      - key:
          path: `+imageKey+`
`))
		trustedRoot := filepath.Join(fixture.SharedTestdata(t), "sigstore-public-good", "trusted_root.json")
		for _, flags := range [][]string{
			{"--key", keys.pub},
			{"--policy", pol},
			{"--image-key", imageKey},
			{"--state", filepath.Join(t.TempDir(), "s.json")},
			{"--trusted-root", trustedRoot},
			{"--certificate-identity", "someone@example.com", "--certificate-oidc-issuer", "https://accounts.example.com"},
		} {
			for _, k := range hostileKinds {
				dst := registrytest.Start(t, k)
				args := append([]string{"unpack", "--to", dst.Host + "/pfx/team", "--plain-http", "--unsafe-skip-verify"}, flags...)
				r := runPetra(t, e, append(args, plain)...)
				assertExit(t, fmt.Sprintf("unpack --unsafe-skip-verify %v to %s", flags, k), r, exitUsageCode, "unsafe-skip-verify")
				assertNothingPushed(t, dst)
			}
		}
		// control: alone, the flag is accepted (and pushes)
		dst := registrytest.Start(t, registrytest.Olareg)
		r := runPetra(t, e, "unpack", "--to", dst.Host+"/pfx/team", "--plain-http", "--unsafe-skip-verify", plain)
		assertExit(t, "unpack --unsafe-skip-verify alone", r, 0)
	})
}
