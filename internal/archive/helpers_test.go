package archive

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/signing"
)

var specsV2 = specs.Versioned{SchemaVersion: 2}

var testKey = func() signing.Signer {
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

var otherKey = func() signing.Signer {
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

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newBundle packs a signed bundle of one image with layers of the given sizes
// (pseudo-random content from seed) into a fresh directory.
func newBundle(t testing.TB, seed uint64, layers ...int) string {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "bundle")
	l, err := layout.Create(dir)
	must(t, err)
	rng := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	var descs []ocispec.Descriptor
	var diffs []string
	for _, n := range layers {
		b := make([]byte, n)
		rng.Read(b)
		d, err := l.PushBytes(ctx, ocispec.MediaTypeImageLayer, b)
		must(t, err)
		descs = append(descs, d)
		diffs = append(diffs, d.Digest.String())
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": diffs}})
	cd, err := l.PushBytes(ctx, ocispec.MediaTypeImageConfig, cfg)
	must(t, err)
	man, _ := json.Marshal(ocispec.Manifest{Versioned: specsV2, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: descs})
	md, err := l.PushBytes(ctx, ocispec.MediaTypeImageManifest, man)
	must(t, err)
	const repo = "registry.example/team/app"
	must(t, l.WriteIndex(layout.NewIndex([]ocispec.Descriptor{layout.ImageEntry(md, repo, "v1").IndexDescriptor()})))
	must(t, l.Close())
	_, err = bundle.Seal(ctx, dir, bundle.SealOptions{Signer: testKey, ToolVersion: "test",
		Images: []layout.MetadataImage{{Source: repo + ":v1", Repository: repo, Tag: "v1", Digest: md.Digest, MediaType: md.MediaType}}})
	must(t, err)
	return dir
}

// verifyOpts verifies bundles signed with testKey.
func verifyOpts(t testing.TB) bundle.VerifyOptions {
	t.Helper()
	pub, err := testKey.PublicKeyPEM()
	must(t, err)
	return bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: pub}}
}

// listTree returns every path under dir (relative, slash-separated), for checking that
// nothing was written where it must not be.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

func wantErr(t testing.TB, err error, kind error, names ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("error %v, want %v", err, kind)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Fatalf("error %q does not name %q", err, n)
		}
	}
}
