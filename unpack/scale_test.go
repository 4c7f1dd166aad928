package unpack_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/unpack"
)

// scaleBundle writes a bundle of n images, two tags per repository, each image an
// index of two platform manifests (sharing one base layer with every other image),
// a cosign signature on the index and on each child, and refs OCI referrers of the
// index (the bench/mkscale graph, in small).
func scaleBundle(t *testing.T, n, refs int) *orderBundle {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	l, err := layout.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &orderBundle{t: t, dir: dir, l: l, m: map[string]ocispec.Descriptor{},
		children: map[digest.Digest][]digest.Digest{}, subject: map[digest.Digest]digest.Digest{},
		referrers: map[digest.Digest]bool{}}
	b.blob(ocispec.DescriptorEmptyJSON.MediaType, "{}")
	base := b.blob(ocispec.MediaTypeImageLayerGzip, "shared base layer")
	for i := range n {
		repo := fmt.Sprintf("cgr.dev/scale/app-%d", i/2)
		var kids []ocispec.Descriptor
		for _, arch := range []string{"amd64", "arm64"} {
			name := fmt.Sprintf("image %d %s", i, arch)
			cfg := b.blob(ocispec.MediaTypeImageConfig, `{"architecture":"`+arch+`","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"name":"`+name+`"}`)
			layer := b.blob(ocispec.MediaTypeImageLayerGzip, "layer of "+name)
			d := b.push(name, ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
				MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{base, layer}},
				[]ocispec.Descriptor{cfg, base, layer}, nil)
			d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
			kids = append(kids, d)
			b.entries = append(b.entries, layout.ChildEntry(d, repo))
		}
		idx := b.index(fmt.Sprintf("index %d", i), kids...)
		b.entries = append(b.entries, layout.ImageEntry(idx, repo, fmt.Sprintf("v%d", i%2)))
		for _, s := range append([]ocispec.Descriptor{idx}, kids...) {
			sig := b.cosignSig(fmt.Sprintf("sig of %s", s.Digest), s)
			b.entries = append(b.entries, layout.AttachmentEntry(sig, oci.KindCosignSig, repo, oci.CosignTag(s.Digest, ".sig"), s.Digest))
		}
		for j := range refs {
			r := b.referrer(fmt.Sprintf("note %d of image %d", j, i), "application/vnd.example.note", idx)
			b.entries = append(b.entries, layout.AttachmentEntry(r, oci.KindReferrer, repo, "", idx.Digest))
		}
	}
	var descs []ocispec.Descriptor
	for _, e := range b.entries {
		descs = append(descs, e.IndexDescriptor())
	}
	if err := l.WriteIndex(layout.NewIndex(descs)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return b
}

// unpackRequests unpacks a scaleBundle(n, refs) through a recording proxy and returns
// the requests the registry received, and how many of them wrote a referrers tag
// schema index (PUT …/manifests/sha256-<hex>).
func unpackRequests(t *testing.T, k registrytest.Kind, n, refs int) (requests, indexWrites int) {
	t.Helper()
	b := scaleBundle(t, n, refs)
	r := registrytest.Start(t, k)
	p := registrytest.StartHookProxy(t, r, registrytest.HookOptions{})
	client, err := remote.NewClient(remote.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := unpack.Unpack(context.Background(), unpack.Options{Dir: b.dir, To: p.Host + "/mirror", Client: client, UnsafeSkipVerify: true})
	if err != nil {
		t.Fatalf("unpack of %d images: %v", n, err)
	}
	if len(res.Images) != n {
		t.Fatalf("unpack mapped %d images, want %d", len(res.Images), n)
	}
	log := p.Requests()
	for _, rq := range log {
		method, uri, _ := strings.Cut(rq, " ")
		if _, ref, ok := strings.Cut(uri, "/manifests/"); ok && method == "PUT" && strings.HasPrefix(ref, "sha256-") && !strings.Contains(ref, ".") {
			indexWrites++
		}
	}
	return len(log), indexWrites
}

// TestUnpackRequestsLinear counts what unpack asks of the registry (operations, not
// time) and fails if that grows faster than the graph: four times the images (in four
// times the repositories) may cost at most four times the requests (2.5 % slack), and four times the
// referrers of one subject at most four times the requests, with the subject's
// referrers tag schema index written once per subject whatever its referrers (oras-go
// alone rewrites it on every referrer pushed: quadratic bytes). A per-image scan of
// all repositories, a probe per image, or a per-tag rewrite of anything would break it.
func TestUnpackRequestsLinear(t *testing.T) {
	for _, k := range []registrytest.Kind{registrytest.InProcess, registrytest.Distribution} {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			const n = 4
			small, smallIdx := unpackRequests(t, k, n, 1)
			large, largeIdx := unpackRequests(t, k, 4*n, 1)
			t.Logf("%s: %d images: %d requests; %d images: %d requests", k, n, small, 4*n, large)
			if float64(large) > 4.1*float64(small) { // linear: a+4bn < 4(a+bn); 2.5 % for noise
				t.Errorf("%d images took %d requests, %d images %d: more than 4x (%.2fx): superlinear", n, small, 4*n, large, float64(large)/float64(small))
			}
			// referrers of one subject: with r(k) the requests for k referrers an image,
			// r(8)-r(2) (6 more a subject) may be at most 3x r(2)-r(0) (2 more)
			none, _ := unpackRequests(t, k, n, 0)
			few, fewIdx := unpackRequests(t, k, n, 2)
			many, manyIdx := unpackRequests(t, k, n, 8)
			t.Logf("%s: 0, 2, 8 referrers a subject: %d, %d, %d requests", k, none, few, many)
			if many-few > 3*(few-none) {
				t.Errorf("0, 2, 8 referrers a subject took %d, %d, %d requests: 6 more referrers cost %d, more than 3x the %d of 2: superlinear in the referrers of a subject", none, few, many, many-few, few-none)
			}
			if k == registrytest.Distribution {
				// no referrers API: one index write per subject with referrers
				for _, c := range []struct{ got, subjects int }{{smallIdx, n}, {largeIdx, 4 * n}, {manyIdx, n}, {fewIdx, n}} {
					if c.got != c.subjects {
						t.Errorf("%d referrers tag schema index writes for %d subjects, want one each", c.got, c.subjects)
					}
				}
			}
		})
	}
}
