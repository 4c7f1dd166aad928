package sbom_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/sbom"
	"github.com/petra-oci/petra-oci/layout"
)

type tfile struct{ name, data string }

func tarLayer(t *testing.T, l *layout.Layout, files ...tfile) ocispec.Descriptor {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}
		if f.name[len(f.name)-1] == '/' {
			h = &tar.Header{Name: f.name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := l.PushBytes(context.Background(), ocispec.MediaTypeImageLayer, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func imageOf(t *testing.T, l *layout.Layout, layers ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	var diffs []digest.Digest
	for _, d := range layers {
		diffs = append(diffs, d.Digest)
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": diffs}})
	cd, err := l.PushBytes(context.Background(), ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		t.Fatal(err)
	}
	man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: layers})
	md, err := l.PushBytes(context.Background(), ocispec.MediaTypeImageManifest, man)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

func apkDB(pkgs ...string) string {
	var s string
	for i := 0; i+1 < len(pkgs); i += 2 {
		s += "P:" + pkgs[i] + "\nV:" + pkgs[i+1] + "\nA:x86_64\nL:MIT\nT:test package\n\n"
	}
	return s
}

// comparable strips what differs between two runs of syft on the same image (creation
// time and the document namespace, a fresh UUID).
func comparable(t *testing.T, doc []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "creationInfo")
	delete(m, "documentNamespace")
	return m
}

// TestCacheSharedLayersSameSBOM: with a shared layer cache, each distinct layer is
// extracted once however many images share it, and every image's SBOM is the one
// syft's squashed catalog gives without the cache: a shared base layer, an upper layer
// that replaces the package database, and one whose whiteout deletes it.
func TestCacheSharedLayersSameSBOM(t *testing.T) {
	ctx := context.Background()
	l, err := layout.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	osRelease := tfile{"etc/os-release", "ID=wolfi\nNAME=\"Wolfi\"\nVERSION_ID=\"20230201\"\n"}
	base := tarLayer(t, l, tfile{"etc/", ""}, osRelease, tfile{"lib/", ""}, tfile{"lib/apk/", ""}, tfile{"lib/apk/db/", ""},
		tfile{"lib/apk/db/installed", apkDB("busybox", "1.36.1-r2", "xz", "5.6.0-r0")})
	upgrade := tarLayer(t, l, tfile{"lib/", ""}, tfile{"lib/apk/", ""}, tfile{"lib/apk/db/", ""},
		tfile{"lib/apk/db/installed", apkDB("busybox", "1.36.1-r2", "xz", "5.6.1-r2", "glibc", "2.39-r1")})
	deleted := tarLayer(t, l, tfile{"lib/", ""}, tfile{"lib/apk/", ""}, tfile{"lib/apk/db/", ""},
		tfile{"lib/apk/db/.wh.installed", ""}, tfile{"usr/", ""}, tfile{"usr/share/note", "apk database removed"})
	images := map[string]ocispec.Descriptor{
		"base":     imageOf(t, l, base),
		"upgraded": imageOf(t, l, base, upgrade),
		"deleted":  imageOf(t, l, base, deleted),
	}
	order := []string{"base", "upgraded", "deleted"}

	want := map[string][]byte{}
	for _, name := range order {
		doc, _, err := sbom.Generate(ctx, l, images[name], sbom.Options{Name: "example.test/" + name})
		if err != nil {
			t.Fatal(err)
		}
		want[name] = doc
	}
	cache, err := sbom.NewCache(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		for _, name := range order {
			doc, info, err := sbom.Generate(ctx, l, images[name], sbom.Options{Name: "example.test/" + name, Cache: cache})
			if err != nil {
				t.Fatal(err)
			}
			if got, w := comparable(t, doc), comparable(t, want[name]); !reflect.DeepEqual(got, w) {
				gj, _ := json.MarshalIndent(got, "", " ")
				wj, _ := json.MarshalIndent(w, "", " ")
				t.Errorf("round %d, image %s: SBOM with the layer cache differs from syft's squashed catalog:\n%s\nwant\n%s", round, name, gj, wj)
			}
			pkgs, err := sbom.Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range pkgs {
				names = append(names, p.Name+"@"+p.Version)
			}
			slices.Sort(names)
			wantNames := map[string][]string{
				"base":     {"busybox@1.36.1-r2", "xz@5.6.0-r0"},
				"upgraded": {"busybox@1.36.1-r2", "glibc@2.39-r1", "xz@5.6.1-r2"},
				"deleted":  nil,
			}[name]
			if content := filterContent(names); !slices.Equal(content, wantNames) {
				t.Errorf("round %d, image %s: packages %v, want %v (info %+v)", round, name, content, wantNames, info)
			}
		}
	}
	// the base layer was extracted once, at index 0, for all three images; the two
	// upper layers once each
	ents, err := os.ReadDir(cache.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 3 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("cache holds %v, want the 3 distinct layers once each", names)
	}
	if err := cache.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cache.Dir()); !os.IsNotExist(err) {
		t.Errorf("Close left %s", cache.Dir())
	}
}

// filterContent drops the image's own package (versioned by its digest).
func filterContent(names []string) []string {
	var out []string
	for _, n := range names {
		if strings.Contains(n, "@sha256:") {
			continue
		}
		out = append(out, n)
	}
	return out
}

// TestPlatformFromConfig: Info.Platform is the config's os/architecture[/variant], and
// empty, never "/", for a config that names neither.
func TestPlatformFromConfig(t *testing.T) {
	ctx := context.Background()
	l, err := layout.Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	layer := tarLayer(t, l, tfile{"etc/", ""}, tfile{"etc/hostname", "x\n"})
	for cfg, want := range map[string]string{
		`{"architecture":"arm","os":"linux","variant":"v7"}`: "linux/arm/v7",
		`{}`: "",
	} {
		var c map[string]any
		_ = json.Unmarshal([]byte(cfg), &c)
		c["rootfs"] = map[string]any{"type": "layers", "diff_ids": []digest.Digest{layer.Digest}}
		cb, _ := json.Marshal(c)
		cd, err := l.PushBytes(ctx, ocispec.MediaTypeImageConfig, cb)
		if err != nil {
			t.Fatal(err)
		}
		man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{layer}})
		md, err := l.PushBytes(ctx, ocispec.MediaTypeImageManifest, man)
		if err != nil {
			t.Fatal(err)
		}
		_, info, err := sbom.Generate(ctx, l, md, sbom.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if info.Platform != want {
			t.Errorf("config %s: platform %q, want %q", cfg, info.Platform, want)
		}
		if p, err := sbom.ConfigPlatform(ctx, l, md); err != nil || p != want {
			t.Errorf("ConfigPlatform(%s) = %q, %v; want %q", cfg, p, err, want)
		}
	}
}
