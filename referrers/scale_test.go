package referrers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// memStore is an in-memory Store that counts what Build asks of it.
type memStore struct {
	blobs          map[digest.Digest][]byte
	fetches, exist atomic.Int64
}

func (s *memStore) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	s.fetches.Add(1)
	b, ok := s.blobs[d.Digest]
	if !ok {
		return nil, fmt.Errorf("%w: %s", oci.ErrNotFound, d.Digest)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (s *memStore) Exists(_ context.Context, d ocispec.Descriptor) (bool, error) {
	s.exist.Add(1)
	_, ok := s.blobs[d.Digest]
	return ok, nil
}

func (s *memStore) put(mediaType string, b []byte) ocispec.Descriptor {
	d := oci.DescriptorFor(mediaType, b)
	s.blobs[d.Digest] = b
	return d
}

func (s *memStore) putJSON(tb testing.TB, mediaType string, v any) ocispec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return s.put(mediaType, b)
}

// scaleGraph is the bench/mkscale graph in memory: n images, 10 per repository, each
// an index of two platform manifests (one shared base layer), a cosign .sig and .att on
// the index and on each child, and one OCI referrer of the index: 10 manifests an
// image. It returns the store, the index.json entries (as pack lists them: images,
// children, attachments) and the number of manifests.
func scaleGraph(tb testing.TB, n int) (*memStore, []layout.Entry, int) {
	s := &memStore{blobs: map[digest.Digest][]byte{}}
	empty := s.put(ocispec.DescriptorEmptyJSON.MediaType, []byte("{}"))
	base := s.put(ocispec.MediaTypeImageLayerGzip, []byte("shared base"))
	cosignCfg := s.put(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}`))
	var entries []layout.Entry
	manifests := 0
	manifest := func(cfg ocispec.Descriptor, layers []ocispec.Descriptor, artifactType string, subject *ocispec.Descriptor) ocispec.Descriptor {
		manifests++
		return s.putJSON(tb, ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Config: cfg, Layers: layers, Subject: subject})
	}
	for i := range n {
		repo := fmt.Sprintf("registry.example/scale-%05d/app", i/10)
		var kids []ocispec.Descriptor
		for _, arch := range []string{"amd64", "arm64"} {
			cfg := s.put(ocispec.MediaTypeImageConfig, fmt.Appendf(nil, `{"architecture":%q,"os":"linux","rootfs":{"type":"layers","diff_ids":[]},"i":%d}`, arch, i))
			layer := s.put(ocispec.MediaTypeImageLayerGzip, fmt.Appendf(nil, "layer %d %s", i, arch))
			d := manifest(cfg, []ocispec.Descriptor{base, layer}, "", nil)
			d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
			kids = append(kids, d)
		}
		manifests++
		idx := s.putJSON(tb, ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageIndex, Manifests: kids})
		entries = append(entries, layout.ImageEntry(idx, repo, fmt.Sprintf("v%d", i%10)))
		for _, k := range kids {
			entries = append(entries, layout.ChildEntry(k, repo))
		}
		for _, subj := range append([]ocispec.Descriptor{idx}, kids...) {
			sig := manifest(cosignCfg, []ocispec.Descriptor{s.put(oci.MediaTypeCosignSimpleSigning, []byte("sig of "+subj.Digest))}, "", nil)
			att := manifest(cosignCfg, []ocispec.Descriptor{s.put(oci.MediaTypeDSSEEnvelope, []byte("att of "+subj.Digest))}, "", nil)
			entries = append(entries,
				layout.AttachmentEntry(sig, oci.KindCosignSig, repo, oci.CosignTag(subj.Digest, ".sig"), subj.Digest),
				layout.AttachmentEntry(att, oci.KindCosignAtt, repo, oci.CosignTag(subj.Digest, ".att"), subj.Digest))
		}
		e := ocispec.Descriptor{MediaType: idx.MediaType, Digest: idx.Digest, Size: idx.Size}
		note := manifest(empty, []ocispec.Descriptor{s.put("text/plain", fmt.Appendf(nil, "note %d", i))}, "application/vnd.example.note", &e)
		entries = append(entries, layout.AttachmentEntry(note, oci.KindReferrer, repo, "", idx.Digest))
	}
	return s, entries, manifests
}

// TestBuildStoreOpsLinear counts the store operations of Build (operations, not
// time): every manifest is read exactly once, and the blob presence checks grow no
// faster than the graph (ten times the images: at most ten times the checks). A
// graph pass that read manifests again per subject or per repository would fail.
func TestBuildStoreOpsLinear(t *testing.T) {
	ops := func(n int) (fetches, exists int64) {
		s, entries, manifests := scaleGraph(t, n)
		g, err := Build(context.Background(), s, entries, BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nodes := 0
		for _, r := range g.Repositories() {
			nodes += len(r.Attachments)
			for _, img := range r.Images {
				nodes += len(img.Tree())
			}
		}
		if nodes != manifests {
			t.Fatalf("%d images: graph has %d manifests, want %d", n, nodes, manifests)
		}
		if f := s.fetches.Load(); f != int64(manifests) {
			t.Errorf("%d images: %d fetches for %d manifests: each must be read once", n, f, manifests)
		}
		return s.fetches.Load(), s.exist.Load()
	}
	f1, e1 := ops(20)
	f2, e2 := ops(200)
	t.Logf("20 images: %d fetches, %d exists; 200 images: %d fetches, %d exists", f1, e1, f2, e2)
	if e2 > 10*e1 {
		t.Errorf("presence checks grew %.1fx for 10x the images: superlinear", float64(e2)/float64(e1))
	}
}

// TestReferrersBySubjectMany: thousands of referrers on one subject, listed twice (a
// re-pack merges entries), come back once each, in entry order.
func TestReferrersBySubjectMany(t *testing.T) {
	subject := digest.FromString("subject")
	var entries []layout.Entry
	const n = 5000
	for range 2 {
		for i := range n {
			d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(fmt.Sprint(i)), Size: 1}
			entries = append(entries, layout.AttachmentEntry(d, oci.KindReferrer, repo, "", subject))
		}
	}
	got := ReferrersBySubject(entries)
	if len(got) != 1 || len(got[0].Referrers) != n {
		t.Fatalf("got %d subjects, %d referrers; want 1, %d", len(got), len(got[0].Referrers), n)
	}
	for i, d := range got[0].Referrers {
		if d.Digest != digest.FromString(fmt.Sprint(i)) {
			t.Fatalf("referrer %d is %s: not in entry order", i, d.Digest)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{200, 2000} {
		b.Run(fmt.Sprintf("images=%d", n), func(b *testing.B) {
			s, entries, _ := scaleGraph(b, n)
			b.ResetTimer()
			for b.Loop() {
				if _, err := Build(context.Background(), s, entries, BuildOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReferrersBySubject: pack's referrers tag schema indexes, for 2,000 subjects
// with one referrer each and for one subject with 5,000 (was a scan per referrer).
func BenchmarkReferrersBySubject(b *testing.B) {
	for _, c := range []struct{ subjects, per int }{{2000, 1}, {1, 5000}} {
		var entries []layout.Entry
		for s := range c.subjects {
			subject := digest.FromString(fmt.Sprint("subject ", s))
			for i := range c.per {
				d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(fmt.Sprint(s, " ", i)), Size: 1}
				entries = append(entries, layout.AttachmentEntry(d, oci.KindReferrer, repo, "", subject))
			}
		}
		b.Run(fmt.Sprintf("subjects=%d/referrers=%d", c.subjects, c.per), func(b *testing.B) {
			for b.Loop() {
				ReferrersBySubject(entries)
			}
		})
	}
}
