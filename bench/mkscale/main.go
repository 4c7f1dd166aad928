// Command mkscale seeds a registry with a synthetic graph for bench/scale.sh: N
// multi-platform images, each an index of two platform manifests (a shared base layer
// and a tiny unique layer each), every one of the three manifests cosign-signed in the
// tag scheme (.sig, simple signing, signed with an ECDSA key) and attested (.att, a
// DSSE in-toto statement signed with the same key), plus one OCI 1.1 referrer of the
// index: 10 manifests per image. Content size is not the point; the graph is.
//
//	mkscale -registry 127.0.0.1:5000 -n 2000 -per-repo 10 -key-out image-key.pub -images-out images.yaml
//
// Images go to bench/scale-<r>/app:v<i> (-per-repo tags per repository). It writes the
// public key (PEM, what petra-oci pack --image-key reads) and a pack --file list.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/oci"
)

func main() {
	reg := flag.String("registry", "", "registry host:port (plain HTTP)")
	n := flag.Int("n", 200, "images")
	perRepo := flag.Int("per-repo", 10, "images (tags) per repository")
	workers := flag.Int("workers", 8, "images pushed at once")
	keyOut := flag.String("key-out", "", "write the signing public key (PEM) here")
	imagesOut := flag.String("images-out", "", "write the pack --file image list here")
	flag.Parse()
	if err := run(context.Background(), *reg, *n, *perRepo, *workers, *keyOut, *imagesOut); err != nil {
		fmt.Fprintln(os.Stderr, "mkscale:", err)
		os.Exit(1)
	}
}

type gen struct {
	reg   string
	key   *ecdsa.PrivateKey
	base  ocispec.Descriptor
	baseB []byte
	cfg   ocispec.Descriptor // the cosign artifacts' shared config
	cfgB  []byte
	reqs  atomic.Int64
}

func run(ctx context.Context, reg string, n, perRepo, workers int, keyOut, imagesOut string) error {
	if reg == "" || n <= 0 || perRepo <= 0 || keyOut == "" || imagesOut == "" {
		return fmt.Errorf("need -registry, -n > 0, -per-repo > 0, -key-out and -images-out")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyOut, pub, 0o644); err != nil {
		return err
	}
	g := &gen{reg: reg, key: key}
	g.baseB = bytes.Repeat([]byte("petra scale base layer\n"), 64)
	g.base = oci.DescriptorFor(ocispec.MediaTypeImageLayer, g.baseB)
	g.cfgB, _ = json.Marshal(map[string]any{"architecture": "", "os": "", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}}})
	g.cfg = oci.DescriptorFor(ocispec.MediaTypeImageConfig, g.cfgB)

	var list bytes.Buffer
	list.WriteString("images:\n")
	for i := range n {
		fmt.Fprintf(&list, "  - ref: %s\n", g.ref(i, perRepo))
	}
	start := time.Now()
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(workers)
	for i := range n {
		eg.Go(func() error { return g.image(ectx, i, perRepo) })
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "mkscale: %d images (%d manifests) in %s, %d pushes\n", n, 10*n, time.Since(start).Round(time.Millisecond), g.reqs.Load())
	return os.WriteFile(imagesOut, list.Bytes(), 0o644)
}

func (g *gen) repoName(i, perRepo int) string { return fmt.Sprintf("bench/scale-%05d/app", i/perRepo) }
func (g *gen) ref(i, perRepo int) string {
	return fmt.Sprintf("%s/%s:v%d", g.reg, g.repoName(i, perRepo), i%perRepo)
}

// image pushes image i and everything attached to it.
func (g *gen) image(ctx context.Context, i, perRepo int) error {
	repo, err := remote.NewRepository(g.reg + "/" + g.repoName(i, perRepo))
	if err != nil {
		return err
	}
	repo.PlainHTTP = true
	name := g.reg + "/" + g.repoName(i, perRepo)
	var children []ocispec.Descriptor
	for _, arch := range []string{"amd64", "arm64"} {
		layer := []byte(fmt.Sprintf("image %d %s\n", i, arch))
		ld := oci.DescriptorFor(ocispec.MediaTypeImageLayer, layer)
		cfgB, _ := json.Marshal(map[string]any{"architecture": arch, "os": "linux",
			"rootfs": map[string]any{"type": "layers", "diff_ids": []string{g.base.Digest.String(), ld.Digest.String()}}})
		cd := oci.DescriptorFor(ocispec.MediaTypeImageConfig, cfgB)
		for _, b := range []struct {
			d ocispec.Descriptor
			b []byte
		}{{g.base, g.baseB}, {ld, layer}, {cd, cfgB}} {
			if err := g.blob(ctx, repo, b.d, b.b); err != nil {
				return err
			}
		}
		md, err := g.manifest(ctx, repo, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: cd, Layers: []ocispec.Descriptor{g.base, ld}}, ocispec.MediaTypeImageManifest, "")
		if err != nil {
			return err
		}
		md.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		children = append(children, md)
	}
	tag := fmt.Sprintf("v%d", i%perRepo)
	idx, err := g.manifest(ctx, repo, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: children}, ocispec.MediaTypeImageIndex, tag)
	if err != nil {
		return err
	}
	if err := g.blob(ctx, repo, g.cfg, g.cfgB); err != nil {
		return err
	}
	for _, s := range append([]ocispec.Descriptor{idx}, children...) {
		if err := g.sig(ctx, repo, name, s.Digest); err != nil {
			return err
		}
		if err := g.att(ctx, repo, name, s.Digest); err != nil {
			return err
		}
	}
	// one OCI 1.1 referrer of the index (distribution keeps it in the tag schema)
	note := []byte(fmt.Sprintf("note of image %d\n", i))
	nd := oci.DescriptorFor("text/plain", note)
	if err := g.blob(ctx, repo, nd, note); err != nil {
		return err
	}
	if err := g.blob(ctx, repo, ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data); err != nil {
		return err
	}
	empty := ocispec.DescriptorEmptyJSON
	empty.Data = nil
	subj := ocispec.Descriptor{MediaType: idx.MediaType, Digest: idx.Digest, Size: idx.Size}
	_, err = g.manifest(ctx, repo, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: "application/vnd.petra.bench.note", Config: empty, Layers: []ocispec.Descriptor{nd}, Subject: &subj,
		Annotations: map[string]string{ocispec.AnnotationCreated: "2026-01-01T00:00:00Z"}}, ocispec.MediaTypeImageManifest, "")
	return err
}

// sig pushes subject's cosign .sig: a simple-signing payload signed with the key.
func (g *gen) sig(ctx context.Context, repo *remote.Repository, name string, subject digest.Digest) error {
	payload, _ := json.Marshal(map[string]any{"critical": map[string]any{
		"identity": map[string]string{"docker-reference": name},
		"image":    map[string]string{"docker-manifest-digest": subject.String()},
		"type":     "cosign container image signature"}, "optional": nil})
	sig, err := g.sign(payload)
	if err != nil {
		return err
	}
	ld := oci.DescriptorFor(oci.MediaTypeCosignSimpleSigning, payload)
	if err := g.blob(ctx, repo, ld, payload); err != nil {
		return err
	}
	ld.Annotations = map[string]string{oci.AnnotationCosignSignature: base64.StdEncoding.EncodeToString(sig)}
	_, err = g.manifest(ctx, repo, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: g.cfg, Layers: []ocispec.Descriptor{ld}}, ocispec.MediaTypeImageManifest, oci.CosignTag(subject, ".sig"))
	return err
}

// att pushes subject's cosign .att: a DSSE envelope of an in-toto statement.
func (g *gen) att(ctx context.Context, repo *remote.Repository, name string, subject digest.Digest) error {
	const predType = "https://slsa.dev/provenance/v1"
	st, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": name, "digest": map[string]string{"sha256": subject.Encoded()}}},
		"predicateType": predType,
		"predicate":     map[string]any{"buildDefinition": map[string]any{"buildType": "https://petra.example/bench"}},
	})
	const payloadType = "application/vnd.in-toto+json"
	sig, err := g.sign(dsse.PAE(payloadType, st))
	if err != nil {
		return err
	}
	env, _ := json.Marshal(dsse.Envelope{PayloadType: payloadType, Payload: base64.StdEncoding.EncodeToString(st),
		Signatures: []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}}})
	ld := oci.DescriptorFor(oci.MediaTypeDSSEEnvelope, env)
	if err := g.blob(ctx, repo, ld, env); err != nil {
		return err
	}
	ld.Annotations = map[string]string{oci.AnnotationCosignPredicate: predType}
	_, err = g.manifest(ctx, repo, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: g.cfg, Layers: []ocispec.Descriptor{ld}}, ocispec.MediaTypeImageManifest, oci.CosignTag(subject, ".att"))
	return err
}

func (g *gen) sign(b []byte) ([]byte, error) {
	sum := sha256.Sum256(b)
	return ecdsa.SignASN1(rand.Reader, g.key, sum[:])
}

func (g *gen) blob(ctx context.Context, repo *remote.Repository, d ocispec.Descriptor, b []byte) error {
	d = ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
	if ok, err := repo.Blobs().Exists(ctx, d); err != nil {
		return err
	} else if ok {
		return nil
	}
	g.reqs.Add(1)
	if err := repo.Blobs().Push(ctx, d, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("pushing blob %s to %s: %w", d.Digest, repo.Reference, err)
	}
	return nil
}

// manifest pushes v (by tag when tag is set) and returns its descriptor.
func (g *gen) manifest(ctx context.Context, repo *remote.Repository, v any, mediaType, tag string) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d := oci.DescriptorFor(mediaType, b)
	g.reqs.Add(1)
	if tag != "" {
		err = repo.PushReference(ctx, d, bytes.NewReader(b), tag)
	} else {
		err = repo.Push(ctx, d, bytes.NewReader(b))
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("pushing manifest %s to %s: %w", d.Digest, repo.Reference, err)
	}
	return d, nil
}
