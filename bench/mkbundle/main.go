// Command mkbundle writes a signed petra-oci bundle of one image with pseudo-random
// layers, offline, for bench/transfer.sh: mkbundle -o DIR -key cosign.key -mb 2048.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/signing"
)

func main() {
	out := flag.String("o", "", "bundle directory to create")
	key := flag.String("key", "", "cosign private key (password from COSIGN_PASSWORD)")
	mb := flag.Int64("mb", 1024, "MiB of layers")
	layerMB := flag.Int64("layer-mb", 64, "MiB per layer")
	flag.Parse()
	if err := run(context.Background(), *out, *key, *mb, *layerMB); err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir, keyPath string, mb, layerMB int64) error {
	signer, err := signing.LoadSigner(ctx, keyPath, signing.PasswordFromEnv)
	if err != nil {
		return err
	}
	l, err := layout.Create(dir)
	if err != nil {
		return err
	}
	rng := mrand.NewChaCha8([32]byte{42})
	var layers []ocispec.Descriptor
	var diffs []string
	for left := mb << 20; left > 0; left -= layerMB << 20 {
		d, err := writeBlob(dir, io.LimitReader(rng, min(left, layerMB<<20)))
		if err != nil {
			return err
		}
		d.MediaType = ocispec.MediaTypeImageLayer
		layers = append(layers, d)
		diffs = append(diffs, d.Digest.String())
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": diffs}})
	cd, err := l.PushBytes(ctx, ocispec.MediaTypeImageConfig, cfg)
	if err != nil {
		return err
	}
	man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: layers})
	md, err := l.PushBytes(ctx, ocispec.MediaTypeImageManifest, man)
	if err != nil {
		return err
	}
	const repo = "bench.example/transfer/app"
	if err := l.WriteIndex(layout.NewIndex([]ocispec.Descriptor{layout.ImageEntry(md, repo, "v1").IndexDescriptor()})); err != nil {
		return err
	}
	if err := l.Close(); err != nil {
		return err
	}
	_, err = bundle.Seal(ctx, dir, bundle.SealOptions{Signer: signer, ToolVersion: "bench",
		Images: []layout.MetadataImage{{Source: repo + ":v1", Repository: repo, Tag: "v1", Digest: md.Digest, MediaType: md.MediaType}}})
	return err
}

// writeBlob streams r into blobs/sha256/<digest> through a temporary file.
func writeBlob(dir string, r io.Reader) (ocispec.Descriptor, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return ocispec.Descriptor{}, err
	}
	tmp, err := os.CreateTemp(filepath.Join(dir, "blobs", "sha256"), ".tmp-*")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	h := sha256.New()
	w := bufio.NewWriterSize(tmp, 1<<20)
	n, err := io.Copy(io.MultiWriter(w, h), r)
	if err == nil {
		err = w.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return ocispec.Descriptor{}, err
	}
	d := digest.NewDigest(digest.SHA256, h)
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "blobs", "sha256", d.Encoded())); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{Digest: d, Size: n}, nil
}
