package pack

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/petra-oci/petra-oci/oci"
)

func TestLoadSpecFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "images:\n  - ref: cgr.dev/chainguard/nginx:latest\n    platforms: [linux/amd64]\n  - ref: cgr.dev/chainguard/static@sha256:"+
		"0000000000000000000000000000000000000000000000000000000000000000\n")
	specs, err := LoadSpecFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].Platforms[0] != "linux/amd64" || specs[1].Ref == "" {
		t.Fatalf("specs = %+v", specs)
	}
	for name, body := range map[string]string{
		"unknown field": "images:\n  - ref: a.io/b:c\n    platform: linux/amd64\n",
		"no images":     "images: []\n",
		"no ref":        "images:\n  - platforms: [linux/amd64]\n",
		"not yaml":      "images: [\n",
	} {
		if _, err := LoadSpecFile(write(name+".yaml", body)); !errors.Is(err, oci.ErrInvalid) {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
	if _, err := LoadSpecFile(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestParseTargets(t *testing.T) {
	ts, err := parseTargets(Options{Images: []ImageSpec{
		{Ref: "cgr.dev/chainguard/nginx"},
		{Ref: "cgr.dev/chainguard/nginx:1.27@sha256:" + "1111111111111111111111111111111111111111111111111111111111111111"},
	}, Platforms: []string{"linux/arm64"}})
	if err != nil {
		t.Fatal(err)
	}
	if ts[0].tag != "latest" || ts[0].digest != "" || ts[0].platforms[0].Architecture != "arm64" {
		t.Errorf("bare ref: %+v", ts[0])
	}
	if ts[1].tag != "1.27" || ts[1].digest == "" {
		t.Errorf("tag@digest keeps the tag as the name and pins the digest: %+v", ts[1])
	}
	if _, err := parseTargets(Options{Images: []ImageSpec{{Ref: "a.io/b:c", Platforms: []string{"linux"}}}}); !errors.Is(err, oci.ErrInvalid) {
		t.Errorf("bad platform: %v", err)
	}
}
