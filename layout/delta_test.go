package layout

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

var hexC = strings.Repeat("c", 64)

func validDelta() *Metadata {
	m := validMetadata()
	m.Delta = &Delta{
		Receipt: digest.Digest("sha256:" + hexB), Registry: "reg.internal:5000/mirror",
		BundleID: "fedcba9876543210fedcba9876543210", Sequence: 6,
		Expected: []ExpectedBlob{
			{Repository: "cgr.dev/chainguard/nginx", Digest: digest.Digest("sha256:" + hexB), Size: 5},
			{Repository: "cgr.dev/chainguard/nginx", Digest: digest.Digest("sha256:" + hexC), Size: 6},
			{Repository: "cgr.dev/chainguard/static", Digest: digest.Digest("sha256:" + hexB), Size: 5},
		},
	}
	return m
}

// TestDeltaMetadataRoundTrip: a delta's metadata encodes and parses back equal, and a
// full bundle's metadata (no delta key) still parses: the field is additive.
func TestDeltaMetadataRoundTrip(t *testing.T) {
	b, err := EncodeMetadata(validDelta())
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Delta == nil || len(m.Delta.Expected) != 3 || m.Delta.Sequence != 6 || m.Delta.Registry != "reg.internal:5000/mirror" {
		t.Fatalf("parsed delta %+v", m.Delta)
	}
	if got := m.ExpectedSet()[ExpectedKey{Repository: "cgr.dev/chainguard/nginx", Digest: digest.Digest("sha256:" + hexC)}]; got != 6 {
		t.Fatalf("ExpectedSet size %d, want 6", got)
	}
	full, err := EncodeMetadata(validMetadata())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(full), `"delta"`) {
		t.Fatalf("a full bundle's metadata names a delta:\n%s", full)
	}
	if fm, err := ParseMetadata(full); err != nil || fm.Delta != nil || fm.ExpectedSet() != nil {
		t.Fatalf("full metadata: %v, delta %+v", err, fm.Delta)
	}
}

// TestDeltaMetadataRefused: every rule of the delta field, and strictness on its keys.
func TestDeltaMetadataRefused(t *testing.T) {
	cases := map[string]func(m *Metadata){
		"receipt not sha256":  func(m *Metadata) { m.Delta.Receipt = digest.Digest("sha512:" + hexA + hexA) },
		"receipt empty":       func(m *Metadata) { m.Delta.Receipt = "" },
		"registry empty":      func(m *Metadata) { m.Delta.Registry = "" },
		"registry with space": func(m *Metadata) { m.Delta.Registry = "reg internal" },
		"bundle without seq":  func(m *Metadata) { m.Delta.Sequence = 0 },
		"seq without bundle":  func(m *Metadata) { m.Delta.BundleID = "" },
		"bundle id not hex":   func(m *Metadata) { m.Delta.BundleID = strings.Repeat("G", 32) },
		"expected missing":    func(m *Metadata) { m.Delta.Expected = nil },
		"expected bad digest": func(m *Metadata) { m.Delta.Expected[0].Digest = "sha256:abc" },
		"expected md5":        func(m *Metadata) { m.Delta.Expected[0].Digest = digest.Digest("md5:" + hexA[:32]) },
		"expected neg size":   func(m *Metadata) { m.Delta.Expected[0].Size = -1 },
		"expected no repo":    func(m *Metadata) { m.Delta.Expected[0].Repository = "" },
		"expected unsorted": func(m *Metadata) {
			m.Delta.Expected[0], m.Delta.Expected[1] = m.Delta.Expected[1], m.Delta.Expected[0]
		},
		"expected duplicate": func(m *Metadata) { m.Delta.Expected[1] = m.Delta.Expected[0] },
		"expected and carried": func(m *Metadata) {
			m.Delta.Expected[0].Digest = digest.Digest("sha256:" + hexA) // blobs/sha256/aaa… is listed in files
			m.Delta.Expected[1].Digest = digest.Digest("sha256:" + hexC)
			m.Delta.Expected = m.Delta.Expected[:2]
		},
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			m := validDelta()
			edit(m)
			if err := m.Validate(); !errors.Is(err, ErrMetadataInvalid) {
				t.Fatalf("Validate = %v, want ErrMetadataInvalid", err)
			}
			if _, err := ParseMetadata([]byte(encodeMeta(t, m))); !errors.Is(err, ErrMetadataInvalid) {
				t.Fatalf("ParseMetadata = %v, want ErrMetadataInvalid", err)
			}
		})
	}
	good := encodeMeta(t, validDelta())
	for name, b := range map[string]string{
		"unknown key in delta":    strings.Replace(good, `"registry":`, `"extra":1,"registry":`, 1),
		"case of a delta key":     strings.Replace(good, `"expected":`, `"Expected":`, 1),
		"duplicate key in delta":  strings.Replace(good, `"registry":`, `"receipt":"sha256:`+hexB+`","registry":`, 1),
		"expected is not a list":  strings.Replace(good, `"expected":[`, `"expected":{"a":[`, 1),
		"delta is not an object":  strings.Replace(good, `"delta":{`, `"delta":[{`, 1),
		"unknown key in expected": strings.Replace(good, `"size":5}`, `"size":5,"from":"x"}`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if b == good {
				t.Fatal("the edit changed nothing")
			}
			if _, err := ParseMetadata([]byte(b)); !errors.Is(err, ErrMetadataInvalid) {
				t.Fatalf("ParseMetadata = %v, want ErrMetadataInvalid", err)
			}
		})
	}
}

// TestDeltaCoverage: in a delta, a layer that is absent passes coverage only when the
// signed metadata expects it with its size; in a full bundle it never does.
func TestDeltaCoverage(t *testing.T) {
	dir := t.TempDir()
	l, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	layer := []byte("layer bytes that stay at the destination")
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	ld := oci.DescriptorFor(ocispec.MediaTypeImageLayerGzip, layer)
	cd := oci.DescriptorFor(ocispec.MediaTypeImageConfig, cfg)
	if _, err := l.PushBytes(t.Context(), cd.MediaType, cfg); err != nil {
		t.Fatal(err)
	}
	man := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + descJSON(cd) + `,"layers":[` + descJSON(ld) + `]}`)
	md, err := l.PushBytes(t.Context(), ocispec.MediaTypeImageManifest, man)
	if err != nil {
		t.Fatal(err)
	}
	e := ImageEntry(md, "cgr.dev/chainguard/nginx", "1")
	if err := l.WriteIndex(NewIndex([]ocispec.Descriptor{e.IndexDescriptor()})); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	img := []MetadataImage{{Source: "cgr.dev/chainguard/nginx:1", Repository: "cgr.dev/chainguard/nginx", Tag: "1", Digest: md.Digest, MediaType: md.MediaType}}
	base := Metadata{BundleID: strings.Repeat("1", 32), Sequence: 2, Tool: ToolInfo{Name: "t"}, Images: img}

	if _, _, err := BuildMetadata(t.Context(), dir, base, 1); !errors.Is(err, ErrNotCovered) {
		t.Fatalf("full bundle with a layer absent: %v, want ErrNotCovered", err)
	}
	delta := base
	delta.Delta = &Delta{Receipt: digest.Digest("sha256:" + hexB), Registry: "reg", Expected: []ExpectedBlob{}}
	if _, _, err := BuildMetadata(t.Context(), dir, delta, 1); !errors.Is(err, ErrDelta) || !strings.Contains(err.Error(), ld.Digest.String()) {
		t.Fatalf("delta not expecting the absent layer: %v, want ErrDelta naming %s", err, ld.Digest)
	}
	delta.Delta = &Delta{Receipt: digest.Digest("sha256:" + hexB), Registry: "reg",
		Expected: []ExpectedBlob{{Repository: "cgr.dev/chainguard/nginx", Digest: ld.Digest, Size: ld.Size + 1}}}
	if _, _, err := BuildMetadata(t.Context(), dir, delta, 1); !errors.Is(err, ErrDelta) {
		t.Fatalf("delta expecting the layer with another size: %v, want ErrDelta", err)
	}
	delta.Delta.Expected[0].Size = ld.Size
	m, b, err := BuildMetadata(t.Context(), dir, delta, 1)
	if err != nil {
		t.Fatalf("delta expecting the absent layer: %v", err)
	}
	if _, err := VerifyFiles(t.Context(), dir, m, VerifyOptions{}); err != nil {
		t.Fatalf("VerifyFiles of the delta: %v", err)
	}
	if pm, err := ParseMetadata(b); err != nil || len(pm.Delta.Expected) != 1 {
		t.Fatalf("parsed: %v %+v", err, pm)
	}
}

func descJSON(d ocispec.Descriptor) string {
	return `{"mediaType":"` + d.MediaType + `","digest":"` + d.Digest.String() + `","size":` + strconv.FormatInt(d.Size, 10) + `}`
}
