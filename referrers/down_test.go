package referrers

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// TestDown: the downward walk visits an attached index, the children the store holds
// (not the one a platform filter left out), their configs and layers, each once, and
// never the subject; a manifest whose layer is missing is oci.ErrNotFound.
func TestDown(t *testing.T) {
	ctx := context.Background()
	l, err := layout.Create(filepath.Join(t.TempDir(), "l"))
	if err != nil {
		t.Fatal(err)
	}
	push := func(mt string, b []byte) ocispec.Descriptor {
		d, err := l.PushBytes(ctx, mt, b)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	pushJSON := func(mt string, v any) ocispec.Descriptor {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return push(mt, b)
	}
	cfg := push(ocispec.MediaTypeEmptyJSON, []byte("{}"))
	shared := push("application/vnd.example.layer", []byte("shared"))
	manifest := func(layers ...ocispec.Descriptor) ocispec.Descriptor {
		return pushJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: layers})
	}
	a := manifest(shared, push("application/vnd.example.layer", []byte("a")))
	b := manifest(shared)
	filtered := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("left out"), Size: 8}
	subject := manifest(push("application/vnd.example.layer", []byte("the subject's"))) // in the store, not below
	idx := pushJSON(ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{a, filtered, b, a}, Subject: &subject})

	var got []digest.Digest
	manifests := 0
	w := Down{Store: l}
	if err := w.Walk(ctx, idx, nil, func(d ocispec.Descriptor, m *oci.Manifest) error {
		got = append(got, d.Digest)
		if m != nil {
			manifests++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantSet := map[digest.Digest]bool{idx.Digest: true, a.Digest: true, b.Digest: true, cfg.Digest: true, shared.Digest: true, digest.FromString("a"): true}
	if len(got) != len(wantSet) || manifests != 3 {
		t.Fatalf("visited %v (%d manifests), want each of %d digests once and 3 manifests", got, manifests, len(wantSet))
	}
	for _, d := range got {
		if !wantSet[d] {
			t.Errorf("visited %s, which is not below the index (subject %s, filtered %s)", d, subject.Digest, filtered.Digest)
		}
	}
	if got[0] != idx.Digest || got[1] != a.Digest {
		t.Errorf("order %v: the index, then its first child", got)
	}

	// a manifest whose layer the store lacks
	missing := ocispec.Descriptor{MediaType: "application/vnd.example.layer", Digest: digest.FromString("missing"), Size: 7}
	broken := manifest(missing)
	w = Down{Store: l}
	err = w.Walk(ctx, broken, nil, func(ocispec.Descriptor, *oci.Manifest) error { return nil })
	if !errors.Is(err, oci.ErrNotFound) {
		t.Errorf("walk of a manifest with a missing layer: %v, want oci.ErrNotFound", err)
	}
}
