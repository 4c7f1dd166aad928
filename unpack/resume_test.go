package unpack_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/unpack"
)

// bigBundle is a bundle of one image with two large layers of random bytes.
func bigBundle(t *testing.T, size int) (string, ocispec.Descriptor, []ocispec.Descriptor) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	l, err := layout.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(7, 13))
	var blobs []ocispec.Descriptor
	for i := range 2 {
		b := make([]byte, size+i*12345)
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		d, err := l.PushBytes(ctx, ocispec.MediaTypeImageLayerGzip, b)
		if err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, d)
	}
	cfg, err := l.PushBytes(ctx, ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`))
	if err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: blobs}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.PushBytes(ctx, ocispec.MediaTypeImageManifest, raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteIndex(layout.NewIndex([]ocispec.Descriptor{layout.ImageEntry(img, static, "latest").IndexDescriptor()})); err != nil {
		t.Fatal(err)
	}
	return dir, img, append(blobs, cfg)
}

// TestUnpackResumesUploads unpacks a bundle with two 3 MiB layers through a
// FaultProxy failing 30 % of the blob upload requests (503, 429, drops, request
// bodies cut after 1 MiB, responses lost after the registry acted) on a link that
// also breaks every 2–6 MiB of upload bodies (BreakEvery), into each registry kind,
// twice: with uploads in one request (every failure restarts the blob
// from byte 0) and with chunked uploads that resume where the registry's session
// stands, each with 3 fault seeds. Both complete with every digest equal and no tag
// moved before the last blob write; the chunked one resumes sessions and sends fewer
// bytes (counted at the proxy) than the restarts from zero.
func TestUnpackResumesUploads(t *testing.T) {
	const size, seeds = 3 << 20, 3
	dir, img, blobs := bigBundle(t, size)
	for _, k := range registrytest.All() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			sent := map[string]int64{}
			faults := map[string]int{}
			for run := range 2 * seeds {
				mode := []string{"restart", "chunked"}[run%2]
				seed := uint64(30 + run/2)
				{
					up := remote.UploadOptions{ChunkThreshold: 1 << 20, ChunkSize: 256 << 10}
					if mode == "restart" {
						up.ChunkThreshold = -1
					}
					client, err := remote.NewClient(remote.Options{PlainHTTP: true, Upload: up,
						Retry: remote.RetryOptions{Attempts: 40, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}})
					if err != nil {
						t.Fatal(err)
					}
					r := registrytest.Start(t, k)
					p := registrytest.StartFaultProxy(t, r, registrytest.FaultOptions{Seed: seed, Rate: 0.3, Select: registrytest.BlobUpload, RetryAfter: 1, TruncateAfter: 1 << 20, BreakEvery: 4 << 20})
					// a request log in front of the faults: no tag before the last blob write
					h := registrytest.StartHookProxy(t, &registrytest.Registry{Kind: k, Host: p.Host}, registrytest.HookOptions{})
					res, err := unpack.Unpack(context.Background(), unpack.Options{Dir: dir, To: h.Host + "/mirror", Client: client, UnsafeSkipVerify: true, Concurrency: 2})
					c := p.Counts()
					us := client.UploadStats()
					t.Logf("%s, seed %d: %s; %d upload body bytes for %d bytes of blobs; uploads %+v", mode, seed, c, c.UploadBodyBytes, 2*size+12345, us)
					if err != nil {
						t.Fatalf("%s: unpack through 30 %% upload faults: %v", mode, err)
					}
					if len(res.Images) != 1 || res.Images[0].Digest != img.Digest {
						t.Fatalf("%s: images %+v", mode, res.Images)
					}
					lastBlob, firstTag := -1, -1
					for _, w := range writes(t, h.Requests()) {
						switch {
						case w.blob:
							lastBlob = w.pos
						case w.digest == "" && firstTag < 0:
							firstTag = w.pos
						}
					}
					if lastBlob < 0 || firstTag < 0 || firstTag < lastBlob {
						t.Errorf("%s: a tag moved (request %d) before the last blob write (request %d)", mode, firstTag, lastBlob)
					}
					repo := r.Repository(t, "mirror/chainguard/static")
					ctx := context.Background()
					if d, err := repo.Resolve(ctx, "latest"); err != nil || d.Digest != img.Digest {
						t.Errorf("%s: tag latest = %v (%v), want %s", mode, d.Digest, err, img.Digest)
					}
					for _, b := range blobs {
						rc, err := repo.Fetch(ctx, b)
						if err != nil {
							t.Fatalf("%s: blob %s: %v", mode, b.Digest, err)
						}
						got, err := oci.ReadAllVerified(rc, b, b.Size+1)
						rc.Close()
						if err != nil || digest.FromBytes(got) != b.Digest {
							t.Errorf("%s: blob %s in the registry does not verify: %v", mode, b.Digest, err)
						}
					}
					if c.Injected() == 0 {
						t.Fatalf("%s: no fault injected", mode)
					}
					switch {
					case mode == "chunked" && k == registrytest.InProcess:
						// go-containerregistry's registry cannot say where a session stands
						// (GET on it answers 400): uploads fall back to one request
						if us.Monolithic == 0 {
							t.Errorf("chunked into %s: %+v: no fallback to one request", k, us)
						}
					case mode == "chunked" && (us.Sessions == 0 || us.Resumed == 0):
						t.Errorf("chunked: %+v: no session resumed", us)
					}
					sent[mode] += c.UploadBodyBytes
					faults[mode] += c.Injected()
				}
			}
			if k == registrytest.InProcess {
				return
			}
			// bytes sent beyond the blobs' size, over the 6 seeds
			blobBytes := int64(seeds * (2*size + 12345))
			t.Logf("%s: bytes sent again beyond %d bytes of blobs (%d seeds): restart from zero %d (%d faults), resumed chunks %d (%d faults)",
				k, blobBytes, seeds, sent["restart"]-blobBytes, faults["restart"], sent["chunked"]-blobBytes, faults["chunked"])
			if sent["chunked"] >= sent["restart"] {
				t.Errorf("chunked uploads sent %d bytes, restarts from zero %d: want fewer", sent["chunked"], sent["restart"])
			}
		})
	}
}
