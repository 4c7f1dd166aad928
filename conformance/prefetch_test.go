package conformance

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/internal/scan/scantest"
)

// TestPackRefusesBeforeDownloading: with a policy, pack reads the image's manifests,
// signatures and attestations and verifies them before it copies a config or a layer.
// An image the policy refuses costs no config or layer request at the source (counted
// at a proxy in front of it); the same image under the right key fetches them, which
// shows the proxy sees pack's traffic.
func TestPackRefusesBeforeDownloading(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	src := registrytest.Start(t, registrytest.Distribution)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/busybox", "1.37", fixture.Options{Seed: 71})
	imageKey := writeFile(t, filepath.Join(t.TempDir(), "image.pub"), img.PublicKeyPEM)
	_, otherPEM, _ := fixture.KeyPair(t)
	otherKey := writeFile(t, filepath.Join(t.TempDir(), "other.pub"), otherPEM)

	// the configs and layers of every platform, read from the registry directly
	rref, err := registry.ParseReference(img.Repo)
	must(t, err)
	repo, err := client(t).Repository(rref)
	must(t, err)
	heavy := map[digest.Digest]bool{}
	for _, child := range img.Children {
		b, err := fetchAll(ctx, repo, child)
		must(t, err)
		var m ocispec.Manifest
		must(t, json.Unmarshal(b, &m))
		heavy[m.Config.Digest] = true
		for _, l := range m.Layers {
			heavy[l.Digest] = true
		}
	}
	heavyGets := func(p *registrytest.HookProxy) []string {
		var out []string
		for _, r := range p.Requests() {
			method, path, _ := strings.Cut(r, " ")
			if method != "GET" || !strings.Contains(path, "/blobs/") {
				continue
			}
			if d := digest.Digest(path[strings.LastIndex(path, "/")+1:]); heavy[d] {
				out = append(out, r)
			}
		}
		return out
	}
	ref := func(p *registrytest.HookProxy) string {
		return p.Host + strings.TrimPrefix(img.Repo, src.Host) + ":" + img.Tag
	}

	refused := registrytest.StartHookProxy(t, src, registrytest.HookOptions{})
	r := e.run(petraBin, "pack", "--image", ref(refused), "-o", filepath.Join(t.TempDir(), "refused"), "--plain-http",
		"--key", keys.priv, "--image-key", otherKey, "--sbom=false")
	if r.exitCode != 30 {
		t.Fatalf("pack under another image key: want exit 30, got %s", r)
	}
	if got := heavyGets(refused); len(got) > 0 {
		t.Errorf("a refused image cost %d config/layer downloads: %v", len(got), got)
	}
	if len(refused.Requests()) == 0 {
		t.Fatal("the refused pack sent nothing through the proxy")
	}

	admitted := registrytest.StartHookProxy(t, src, registrytest.HookOptions{})
	r = e.run(petraBin, "pack", "--image", ref(admitted), "-o", filepath.Join(t.TempDir(), "admitted"), "--plain-http",
		"--key", keys.priv, "--image-key", imageKey, "--sbom=false")
	if r.exitCode != 0 {
		t.Fatalf("pack under the publisher key: %s", r)
	}
	if got := heavyGets(admitted); len(got) < len(heavy) {
		t.Errorf("the admitted pack fetched %d of the %d configs and layers through the proxy: %v", len(got), len(heavy), got)
	}
}

// TestPackChecksVulnDBFirst: the vulnerability database is loaded and checked before
// pack sends its first request to the source, so a missing one costs nothing.
func TestPackChecksVulnDBFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/static", "latest", fixture.Options{Seed: 72})
	p := registrytest.StartHookProxy(t, src, registrytest.HookOptions{})
	ref := p.Host + strings.TrimPrefix(img.Repo, src.Host) + ":" + img.Tag
	missing := filepath.Join(t.TempDir(), "no-such-db.tar.gz")
	r := e.run(petraBin, "pack", "--image", ref, "-o", filepath.Join(t.TempDir(), "b"), "--plain-http", "--vuln-db", missing)
	if r.exitCode == 0 || !strings.Contains(r.stderr, "no-such-db") {
		t.Fatalf("pack with a missing vulnerability database: want a refusal naming it, got %s", r)
	}
	if got := p.Requests(); len(got) > 0 {
		t.Errorf("pack reached the source before checking the database: %v", got)
	}
	// a grype cache directory whose database does not match its import.json checksum:
	// refused the same way, before any request
	db := scantest.WriteDB(t)
	bad := t.TempDir()
	if err := os.Mkdir(filepath.Join(bad, "6"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(db.Dir, "vulnerability.db"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(bad, "6", "vulnerability.db"), b)
	writeFile(t, filepath.Join(bad, "6", "import.json"), []byte(`{"digest":"xxh64:0123456789abcdef","source":"x","client_version":"x"}`))
	r = e.run(petraBin, "pack", "--image", ref, "-o", filepath.Join(t.TempDir(), "b2"), "--plain-http", "--vuln-db", bad)
	if r.exitCode == 0 || !strings.Contains(r.stderr, "checksum") {
		t.Fatalf("pack with a corrupt grype cache dir: want a checksum refusal, got %s", r)
	}
	if got := p.Requests(); len(got) > 0 {
		t.Errorf("pack reached the source before checking the cache-dir database: %v", got)
	}
}
