package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/pack"
)

// faultRetryFlags bound the fault suite's retries: more tries than the default and
// short waits, so the suite stays fast (the proxy's Retry-After of 1 s is honoured
// all the same).
var faultRetryFlags = []string{"--retries", "12", "--retry-backoff", "10ms", "--retry-max-backoff", "200ms", "--retry-max-time", "1m"}

// faultRate is the share of requests the fault suite fails.
const faultRate = 0.3

// TestFaults: pack (source behind a fault proxy) and unpack (destination behind one)
// finish in one run while 30 % of the requests fail — 503s, 429s with Retry-After,
// dropped connections, request and response bodies cut after 512 bytes — with 5–10 ms
// of latency on every request, on both registry kinds. The faulted bundle holds
// exactly the blobs of a pack without faults, every one of them whole, and verifies;
// the faulted registry holds every manifest and blob of the source under its digest,
// with every tag and referrer.
func TestFaults(t *testing.T) {
	t.Parallel()
	keys := newBundleKeys(t)
	for i, k := range []registrytest.Kind{registrytest.Olareg, registrytest.Distribution} {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			e := newEnv(t)
			src := registrytest.Start(t, k)
			img := fixture.Chainguard(ctx, t, src.Host, interopRepo, interopTag, fixture.Options{Seed: int64(91 + i)})
			publisher := writeFile(t, filepath.Join(t.TempDir(), "publisher.pub"), img.PublicKeyPEM)
			// signatures verified against the publisher's key (reads through the proxy
			// too); no summary, whose signature would differ from run to run
			policyFlags := []string{"--image-key", publisher, "--no-evidence"}
			clean, _ := packCLI(t, e, keys, img.Repo+":"+img.Tag, policyFlags...)

			t.Run("pack", func(t *testing.T) {
				t.Parallel()
				p := registrytest.StartFaultProxy(t, src, registrytest.FaultOptions{Seed: uint64(1300 + i), Rate: faultRate, Latency: 10 * time.Millisecond})
				dir := filepath.Join(t.TempDir(), "bundle")
				args := append([]string{"pack", "--image", p.Host + "/" + interopRepo + ":" + interopTag, "-o", dir, "--plain-http",
					"--key", keys.priv, "--output", "json", "--sbom=false"}, policyFlags...)
				var res pack.Result
				decodeJSON(t, e.petra(append(args, faultRetryFlags...)...), &res)
				c := p.Counts()
				t.Logf("pack through the fault proxy: %s", c)
				assertFaultsInjected(t, c)
				if len(res.Images) != 1 || res.Images[0].Digest != img.Index.Digest {
					t.Fatalf("pack result %+v, want %s", res.Images, img.Index.Digest)
				}
				assertLayoutBlobsVerify(t, dir)
				if got, want := blobNames(t, dir), blobNames(t, clean); !slices.Equal(got, want) {
					t.Errorf("bundle packed through faults has blobs %v, without faults %v", got, want)
				}
				if got, want := indexDigests(t, dir), indexDigests(t, clean); !slices.Equal(got, want) {
					t.Errorf("bundle packed through faults lists %v, without faults %v", got, want)
				}
				if _, err := os.Stat(filepath.Join(dir, layout.IngestDir)); !os.IsNotExist(err) {
					t.Errorf("%s left in the bundle (%v)", layout.IngestDir, err)
				}
				e.petra("verify", "--key", keys.pub, dir)
			})

			t.Run("unpack", func(t *testing.T) {
				t.Parallel()
				dst := registrytest.Start(t, k)
				p := registrytest.StartFaultProxy(t, dst, registrytest.FaultOptions{Seed: uint64(1400 + i), Rate: faultRate, Latency: 10 * time.Millisecond})
				r := e.petra(unpackArgs(keys, p.Host+"/mirror", clean, append([]string{"--image-key", publisher}, faultRetryFlags...)...)...)
				c := p.Counts()
				t.Logf("unpack through the fault proxy: %s", c)
				assertFaultsInjected(t, c)
				if !strings.Contains(r.stderr, "retrying") {
					t.Errorf("unpack logged no retry:\n%s", r.stderr)
				}
				// read straight from the registry, not through the proxy
				repo := dst.Repository(t, "mirror/"+interopRepo)
				assertReplica(t, img, repo, true)
				assertContentEqual(t, img, repo)
			})

			// every blob of 1 KiB or more in chunks of 512 bytes, through the same faults:
			// broken uploads resume where the registry's session stands
			t.Run("unpack, chunked uploads", func(t *testing.T) {
				t.Parallel()
				dst := registrytest.Start(t, k)
				p := registrytest.StartFaultProxy(t, dst, registrytest.FaultOptions{Seed: uint64(1500 + i), Rate: faultRate, Latency: 10 * time.Millisecond})
				extra := append([]string{"--image-key", publisher, "--upload-chunk-threshold", "1024", "--upload-chunk-size", "512",
					"--state", filepath.Join(t.TempDir(), "state.json")}, faultRetryFlags...) // its own replay state: the unpack beside it accepts the same bundle
				e.petra(unpackArgs(keys, p.Host+"/mirror", clean, extra...)...)
				c := p.Counts()
				t.Logf("unpack with chunked uploads through the fault proxy: %s", c)
				assertFaultsInjected(t, c)
				repo := dst.Repository(t, "mirror/"+interopRepo)
				assertReplica(t, img, repo, true)
				assertContentEqual(t, img, repo)
			})
		})
	}
}

// assertFaultsInjected checks that the proxy failed requests of every kind.
func assertFaultsInjected(t *testing.T, c registrytest.FaultCounts) {
	t.Helper()
	if c.Requests == 0 || float64(c.Injected()) < faultRate/3*float64(c.Requests) {
		t.Errorf("the proxy injected %d faults into %d requests, want about %.0f%%", c.Injected(), c.Requests, faultRate*100)
	}
	if c.Unavailable == 0 || c.TooMany == 0 || c.Dropped == 0 || c.TruncatedRequests+c.TruncatedResponses == 0 {
		t.Errorf("a kind of fault was never injected: %s", c)
	}
	if c.Delayed != c.Requests {
		t.Errorf("%d of %d requests delayed", c.Delayed, c.Requests)
	}
}

// indexDigests returns the sorted manifest digests index.json lists.
func indexDigests(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range idx.Manifests {
		out = append(out, d.Digest.String())
	}
	slices.Sort(out)
	return out
}

// assertContentEqual reads every manifest of img from repo, and every blob they
// name, verified against its digest (oras-go's FetchAll), so everything the fixture
// pushed is in repo byte for byte.
func assertContentEqual(t *testing.T, img *fixture.Image, repo *remote.Repository) {
	t.Helper()
	ctx := context.Background()
	blobs := 0
	for _, m := range img.AllManifests {
		b, err := fetchAll(ctx, repo, m)
		if err != nil {
			t.Errorf("manifest %s at the destination: %v", m.Digest, err)
			continue
		}
		man, err := oci.ParseManifest(m, b)
		if err != nil {
			t.Errorf("manifest %s: %v", m.Digest, err)
			continue
		}
		if oci.IsIndex(m.MediaType) {
			continue
		}
		for _, d := range man.Children() {
			if _, err := content.FetchAll(ctx, repo.Blobs(), d); err != nil {
				t.Errorf("blob %s of %s at the destination: %v", d.Digest, m.Digest, err)
			}
			blobs++
		}
	}
	if blobs == 0 {
		t.Errorf("no blob checked")
	}
}

// TestFaultsGiveUp: an operation that keeps failing gives up within its bounds with
// a message that says what gave up, after how many attempts and why, and exit 70 (exitGaveUpCode).
// Unpack, every blob upload answered 503: no manifest and no tag reaches the
// registry. Pack, every blob download answered 503: no metadata is written (the
// bundle cannot verify) and no partial blob is left.
func TestFaultsGiveUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := newBundleKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, interopRepo, interopTag, fixture.Options{Seed: 97})
	clean, _ := packCLI(t, newEnv(t), keys, img.Repo+":"+img.Tag)
	giveUp := []string{"--retries", "3", "--retry-backoff", "10ms", "--retry-max-backoff", "50ms", "--retry-max-time", "20s"}
	const bound = 60 * time.Second // 3 tries of each operation, and of each request, with waits of 50 ms at most

	assertGaveUp := func(t *testing.T, r result, took time.Duration) {
		t.Helper()
		if r.exitCode != exitGaveUpCode {
			t.Errorf("exit %d, want %d (gave up):\n%s", r.exitCode, exitGaveUpCode, r)
		}
		if !strings.Contains(r.stderr, "gave up after 3 attempts") || !strings.Contains(r.stderr, "503") || !strings.Contains(r.stderr, "blob sha256:") {
			t.Errorf("the error does not say which blob gave up, after how many attempts and why:\n%s", r.stderr)
		}
		if took > bound {
			t.Errorf("gave up after %s, beyond %s", took, bound)
		}
	}

	t.Run("unpack", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		dst := registrytest.Start(t, registrytest.Distribution)
		p := registrytest.StartFaultProxy(t, dst, registrytest.FaultOptions{Seed: 5, Rate: 1, Faults: []registrytest.Fault{registrytest.FaultUnavailable}, Select: registrytest.BlobUpload})
		start := time.Now()
		r := e.run(petraBin, unpackArgs(keys, p.Host+"/mirror", clean, giveUp...)...)
		assertGaveUp(t, r, time.Since(start))
		c := p.Counts()
		t.Logf("%s\n%s", c, r.stderr)
		if c.Unavailable < 3 {
			t.Errorf("only %d uploads refused: nothing was retried", c.Unavailable)
		}
		repo := dst.Repository(t, "mirror/"+interopRepo)
		if d, err := repo.Resolve(ctx, interopTag); !errors.Is(err, errdef.ErrNotFound) {
			t.Errorf("tag %s resolves to %v (%v) after a failed unpack", interopTag, d.Digest, err)
		}
		for _, m := range img.AllManifests {
			if ok, err := repo.Exists(ctx, m); err != nil || ok {
				t.Errorf("manifest %s at the destination after every upload failed (%v, %v)", m.Digest, ok, err)
			}
		}
	})

	t.Run("pack", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		p := registrytest.StartFaultProxy(t, src, registrytest.FaultOptions{Seed: 6, Rate: 1, Faults: []registrytest.Fault{registrytest.FaultUnavailable}, Select: registrytest.BlobRead})
		dir := filepath.Join(t.TempDir(), "bundle")
		start := time.Now()
		r := e.run(petraBin, append([]string{"pack", "--image", p.Host + "/" + interopRepo + ":" + interopTag, "-o", dir, "--plain-http",
			"--key", keys.priv, "--sbom=false"}, giveUp...)...)
		assertGaveUp(t, r, time.Since(start))
		t.Logf("%s\n%s", p.Counts(), r.stderr)
		if _, err := os.Stat(filepath.Join(dir, layout.MetadataPath)); !os.IsNotExist(err) {
			t.Errorf("a pack that gave up wrote %s (%v)", layout.MetadataPath, err)
		}
		if _, err := os.Stat(filepath.Join(dir, layout.IngestDir)); !os.IsNotExist(err) {
			t.Errorf("%s left in the bundle (%v)", layout.IngestDir, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256")); err == nil {
			assertLayoutBlobsVerify(t, dir)
		}
	})
}
