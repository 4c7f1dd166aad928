package sbom_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/sbom"
	"github.com/petra-oci/petra-oci/layout"
)

// benchLayer is an uncompressed tar layer of one file of n pseudo-random bytes, what
// bench/run.sh pushes.
func benchLayer(t testing.TB, l *layout.Layout, name string, n int, seed uint64) ocispec.Descriptor {
	t.Helper()
	data := make([]byte, n)
	rng := mrand.NewChaCha8([32]byte{byte(seed)})
	_, _ = rng.Read(data)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(n), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(data)
	_ = tw.Close()
	d, err := l.PushBytes(context.Background(), ocispec.MediaTypeImageLayer, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func benchImages(t testing.TB, n, baseMB, uniqueMB int) (*layout.Layout, []ocispec.Descriptor) {
	t.Helper()
	l, err := layout.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := benchLayer(t, l, "base.bin", baseMB<<20, 0)
	var out []ocispec.Descriptor
	for i := 1; i <= n; i++ {
		u := benchLayer(t, l, fmt.Sprintf("unique-%d.bin", i), uniqueMB<<20, uint64(i))
		cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
			"rootfs": map[string]any{"type": "layers", "diff_ids": []digest.Digest{base.Digest, u.Digest}}})
		cd, err := l.PushBytes(context.Background(), ocispec.MediaTypeImageConfig, cfg)
		if err != nil {
			t.Fatal(err)
		}
		man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{base, u}})
		md, err := l.PushBytes(context.Background(), ocispec.MediaTypeImageManifest, man)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, md)
	}
	return l, out
}

// BenchmarkGenerateBenchImage generates the SBOM of one bench/run.sh-shaped image
// (40 MiB shared base + 16 MiB unique, uncompressed tar layers): the profile of what
// pack's analyzer spends per image.
func BenchmarkGenerateBenchImage(b *testing.B) {
	l, imgs := benchImages(b, 4, 40, 16)
	ctx := context.Background()
	for _, cached := range []bool{false, true} {
		b.Run(fmt.Sprintf("cache=%v", cached), func(b *testing.B) {
			opts := sbom.Options{Name: "bench"}
			if cached {
				c, err := sbom.NewCache(b.TempDir(), 0)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				opts.Cache = c
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := sbom.Generate(ctx, l, imgs[i%len(imgs)], opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
