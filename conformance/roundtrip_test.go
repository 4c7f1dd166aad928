package conformance

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/pack"
	petraremote "github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/replay"
	"github.com/petra-oci/petra-oci/signing"
	"github.com/petra-oci/petra-oci/unpack"
)

func client(t testing.TB) *petraremote.Client {
	t.Helper()
	c, err := petraremote.NewClient(petraremote.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// bundleKey signs every bundle the library-level tests pack.
var bundleKey = func() signing.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	s, err := signing.NewSigner(k)
	if err != nil {
		panic(err)
	}
	return s
}()

// verifyWith returns unpack verification options for bundles signed with bundleKey.
func verifyWith(t testing.TB) *bundle.VerifyOptions {
	t.Helper()
	pub, err := bundleKey.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	guard, err := replay.New(replay.Options{Path: filepath.Join(t.TempDir(), "series.json")})
	if err != nil {
		t.Fatal(err)
	}
	return &bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: pub}, Replay: guard}
}

// packImages packs refs into a fresh signed bundle and returns its directory.
func packImages(t testing.TB, refs ...string) (string, *pack.Result) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	var specs []pack.ImageSpec
	for _, r := range refs {
		specs = append(specs, pack.ImageSpec{Ref: r})
	}
	res, err := pack.Pack(context.Background(), pack.Options{UnsafeNoPolicy: true, Images: specs, Dir: dir, Client: client(t),
		Seal: bundle.SealOptions{Signer: bundleKey}})
	if err != nil {
		t.Fatalf("pack: %v", err)
	}
	return dir, res
}

// assertReplica checks that every manifest of img is in dst/<prefix>/<path> under its
// source digest, that the tag and every cosign tag resolve, and that every referrer is
// discoverable through whatever the destination offers (API or tag schema).
//
// go-containerregistry's in-process registry reports a referrer's artifactType from
// its config media type only, so for it (exactArtifactType false) only digests count.
func assertReplica(t *testing.T, img *fixture.Image, dstRepo *remote.Repository, exactArtifactType bool) {
	t.Helper()
	ctx := context.Background()
	for _, m := range img.AllManifests {
		d, err := dstRepo.Resolve(ctx, m.Digest.String())
		if err != nil {
			t.Errorf("manifest %s missing at destination: %v", m.Digest, err)
			continue
		}
		if d.Digest != m.Digest || d.Size != m.Size {
			t.Errorf("manifest %s arrived as %s (%d bytes)", m.Digest, d.Digest, d.Size)
		}
	}
	got, err := dstRepo.Resolve(ctx, img.Tag)
	if err != nil || got.Digest != img.Index.Digest {
		t.Errorf("tag %s resolves to %v (%v), want %s", img.Tag, got.Digest, err, img.Index.Digest)
	}
	if _, err := dstRepo.Blobs().Resolve(ctx, img.BaseLayer.Digest.String()); err != nil {
		t.Errorf("shared base layer %s missing: %v", img.BaseLayer.Digest, err)
	}
	for subject, sig := range img.Signatures {
		d, err := dstRepo.Resolve(ctx, oci.CosignTag(subject, ".sig"))
		if err != nil || d.Digest != sig.Digest {
			t.Errorf("cosign .sig tag of %s: %v %v, want %s", subject, d.Digest, err, sig.Digest)
		}
	}
	for subject, att := range img.Attestations {
		d, err := dstRepo.Resolve(ctx, oci.CosignTag(subject, ".att"))
		if err != nil || d.Digest != att.Digest {
			t.Errorf("cosign .att tag of %s: %v %v, want %s", subject, d.Digest, err, att.Digest)
		}
	}
	for subject, want := range img.Referrers {
		var found []ocispec.Descriptor
		err := dstRepo.Referrers(ctx, ocispec.Descriptor{Digest: subject}, "", func(p []ocispec.Descriptor) error {
			found = append(found, p...)
			return nil
		})
		if err != nil {
			t.Errorf("referrers of %s at destination: %v", subject, err)
			continue
		}
		for _, w := range want {
			if !exactArtifactType {
				w.ArtifactType = ""
			}
			if !hasReferrer(found, w) {
				t.Errorf("referrer %s (%s) of %s not discoverable at destination; found %v", w.Digest, w.ArtifactType, subject, found)
			}
		}
	}
}

func hasReferrer(found []ocispec.Descriptor, want ocispec.Descriptor) bool {
	for _, f := range found {
		if f.Digest == want.Digest && (want.ArtifactType == "" || f.ArtifactType == want.ArtifactType) {
			return true
		}
	}
	return false
}

// TestRoundTrip: a multi-arch image with signatures on index and children, two
// attestations and referrers (one with a referrer of its own) goes registry → pack →
// unpack → registry with every digest equal and every attachment discoverable, for
// every pairing of a referrers-API registry and a tag-schema one.
func TestRoundTrip(t *testing.T) {
	pairs := [][2]registrytest.Kind{
		{registrytest.Olareg, registrytest.Distribution},
		{registrytest.Distribution, registrytest.Olareg},
		{registrytest.InProcess, registrytest.InProcess},
		{registrytest.Olareg, registrytest.Olareg},
		{registrytest.Distribution, registrytest.Distribution},
	}
	for _, p := range pairs {
		t.Run(fmt.Sprintf("%s-to-%s", p[0], p[1]), func(t *testing.T) {
			ctx := context.Background()
			src := registrytest.Start(t, p[0])
			dst := registrytest.Start(t, p[1])
			img := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 1})

			dir, res := packImages(t, img.Repo+":"+img.Tag)
			if len(res.Images) != 1 || res.Images[0].Digest != img.Index.Digest {
				t.Fatalf("pack result %+v, want index %s", res.Images, img.Index.Digest)
			}
			if got := len(res.Images[0].Platforms); got != len(img.Children) {
				t.Errorf("packed %d platforms, want %d", got, len(img.Children))
			}
			wantAtt := len(img.Signatures) + len(img.Attestations)
			for _, rs := range img.Referrers {
				wantAtt += len(rs)
			}
			if res.Images[0].Attachments != wantAtt {
				t.Errorf("packed %d attachments, want %d", res.Images[0].Attachments, wantAtt)
			}
			// the shared base layer is stored once and every layout blob hashes to its name
			assertLayoutBlobsVerify(t, dir)

			verify := verifyWith(t)
			ures, err := unpack.Unpack(ctx, unpack.Options{Dir: dir, To: dst.Host + "/mirror", Client: client(t), Verify: verify})
			if err != nil {
				t.Fatalf("unpack: %v", err)
			}
			want := dst.Host + "/mirror/chainguard/nginx:1.27"
			if len(ures.Images) != 1 || ures.Images[0].Destination != want {
				t.Fatalf("unpack mapping %+v, want %s", ures.Images, want)
			}
			if api := ures.Repositories[0].ReferrersAPI; api != (p[1] != registrytest.Distribution) {
				t.Errorf("destination referrers API detected as %v on %s", api, p[1])
			}
			assertReplica(t, img, dst.Repository(t, "mirror/chainguard/nginx"), p[1] != registrytest.InProcess)

			// the same bundle again is a replay: refused, nothing pushed
			if _, err := unpack.Unpack(ctx, unpack.Options{Dir: dir, To: dst.Host + "/other", Client: client(t), Verify: verify}); !errors.Is(err, replay.ErrReplay) {
				t.Fatalf("second unpack of the same bundle: err = %v, want replay refused", err)
			}
			// a second unpack (fresh replay state) finds everything there and uploads nothing
			again, err := unpack.Unpack(ctx, unpack.Options{Dir: dir, To: dst.Host + "/mirror", Client: client(t), Verify: verifyWith(t)})
			if err != nil {
				t.Fatalf("second unpack: %v", err)
			}
			if again.Stats.BlobsCopied != 0 || again.Stats.Manifests != 0 {
				t.Errorf("second unpack uploaded %d blobs and %d manifests, want none", again.Stats.BlobsCopied, again.Stats.Manifests)
			}
		})
	}
}

// TestRoundTripPublicGood carries the real public-good Sigstore attestation on
// go-containerregistry's empty image through pack and unpack unchanged.
func TestRoundTripPublicGood(t *testing.T) {
	ctx := context.Background()
	src := registrytest.Start(t, registrytest.Olareg)
	dst := registrytest.Start(t, registrytest.Distribution)
	subject, ref := fixture.PublicGoodEmptyImage(ctx, t, src.Host, "test/empty")
	dir, _ := packImages(t, src.Host+"/test/empty@"+subject.Digest.String())
	if _, err := unpack.Unpack(ctx, unpack.Options{Dir: dir, To: dst.Host, Client: client(t), Verify: verifyWith(t)}); err != nil {
		t.Fatalf("unpack: %v", err)
	}
	repo := dst.Repository(t, "test/empty")
	var found []ocispec.Descriptor
	if err := repo.Referrers(ctx, subject, "", func(p []ocispec.Descriptor) error { found = append(found, p...); return nil }); err != nil {
		t.Fatal(err)
	}
	if !hasReferrer(found, ref) {
		t.Fatalf("public-good bundle referrer %s not at destination: %v", ref.Digest, found)
	}
	b, err := fetchAll(ctx, repo, ref)
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(b) != ref.Digest {
		t.Fatalf("referrer bytes changed")
	}
}

// TestPlatformFilter keeps one platform and its attachments only.
func TestPlatformFilter(t *testing.T) {
	ctx := context.Background()
	src := registrytest.Start(t, registrytest.InProcess)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/static", "latest", fixture.Options{Seed: 2})
	dir := filepath.Join(t.TempDir(), "bundle")
	res, err := pack.Pack(ctx, pack.Options{UnsafeNoPolicy: true,
		Images: []pack.ImageSpec{{Ref: img.Repo + ":latest"}}, Platforms: []string{"linux/arm64"},
		Dir: dir, Client: client(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Images[0].Platforms; len(got) != 1 || got[0] != "linux/arm64" {
		t.Fatalf("platforms %v, want [linux/arm64]", got)
	}
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	amd, arm := img.Children["linux/amd64"], img.Children["linux/arm64"]
	if ok, _ := l.Exists(ctx, amd); ok {
		t.Errorf("linux/amd64 child was packed")
	}
	if ok, _ := l.Exists(ctx, arm); !ok {
		t.Errorf("linux/arm64 child missing")
	}
	if ok, _ := l.Exists(ctx, img.Signatures[amd.Digest]); ok {
		t.Errorf("signature of the filtered-out child was packed")
	}
	if ok, _ := l.Exists(ctx, img.Signatures[arm.Digest]); !ok {
		t.Errorf("signature of the kept child missing")
	}
	if _, err := pack.Pack(ctx, pack.Options{UnsafeNoPolicy: true,
		Images: []pack.ImageSpec{{Ref: img.Repo + ":latest", Platforms: []string{"linux/s390x"}}},
		Dir:    filepath.Join(t.TempDir(), "b2"), Client: client(t),
	}); !errors.Is(err, oci.ErrNotFound) {
		t.Fatalf("pack for a platform the image lacks: err = %v, want not found", err)
	}
}

// TestRepackSkipsAndResumes: a re-run copies nothing again; a pack interrupted half
// way completes on re-run and never leaves a corrupt blob.
func TestRepackSkipsAndResumes(t *testing.T) {
	ctx := context.Background()
	src := registrytest.Start(t, registrytest.InProcess)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/python", "3", fixture.Options{Seed: 3, LayerBytes: 8 << 20})
	ref := img.Repo + ":3"
	dir := filepath.Join(t.TempDir(), "bundle")
	opts := pack.Options{UnsafeNoPolicy: true, Images: []pack.ImageSpec{{Ref: ref}}, Dir: dir, Client: client(t), Concurrency: 1,
		Seal: bundle.SealOptions{Signer: bundleKey}}

	// interrupt: cancel as soon as the first blob is in place
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		for cctx.Err() == nil {
			if entries, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256")); len(entries) > 0 {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	o := opts
	_, err := pack.Pack(cctx, o)
	cancel()
	if err == nil {
		t.Log("pack finished before it could be interrupted; the resume part proves less")
	}
	assertLayoutBlobsVerify(t, dir)

	first, err := pack.Pack(ctx, opts)
	if err != nil {
		t.Fatalf("resumed pack: %v", err)
	}
	second, err := pack.Pack(ctx, opts)
	if err != nil {
		t.Fatalf("repack: %v", err)
	}
	if second.Stats.BlobsCopied != 0 || second.Stats.Manifests != 0 {
		t.Errorf("repack copied %d blobs, %d manifests; want none", second.Stats.BlobsCopied, second.Stats.Manifests)
	}
	if second.Stats.BlobsExisted == 0 || first.Images[0].Digest != second.Images[0].Digest {
		t.Errorf("repack stats %+v / %+v", first.Stats, second.Stats)
	}
	assertLayoutBlobsVerify(t, dir)
	if _, err := os.Stat(filepath.Join(dir, layout.IngestDir)); !os.IsNotExist(err) {
		t.Errorf("ingest folder left in the bundle: %v", err)
	}
}

func TestPackRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	src := registrytest.Start(t, registrytest.InProcess)
	for name, ref := range map[string]string{
		"no registry host": "chainguard/nginx:latest",
		"missing tag":      src.Host + "/nothing/here:latest",
		"wrong digest":     src.Host + "/nothing/here@sha256:" + strings.Repeat("0", 64),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pack.Pack(ctx, pack.Options{UnsafeNoPolicy: true, Images: []pack.ImageSpec{{Ref: ref}}, Dir: filepath.Join(t.TempDir(), "b"), Client: client(t)})
			if err == nil {
				t.Fatalf("pack %s succeeded", ref)
			}
		})
	}
}

// assertLayoutBlobsVerify reads every blob of the layout and checks it hashes to its name.
func assertLayoutBlobsVerify(t *testing.T, dir string) {
	t.Helper()
	root := filepath.Join(dir, "blobs", "sha256")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(root, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if got := digest.FromBytes(b).Encoded(); got != e.Name() {
			t.Errorf("blob %s hashes to %s", e.Name(), got)
		}
	}
}
