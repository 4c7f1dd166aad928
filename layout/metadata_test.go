package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

var (
	hexA = strings.Repeat("a", 64)
	hexB = strings.Repeat("b", 64)
)

// validMetadata returns a small metadata value that passes Validate.
func validMetadata() *Metadata {
	return &Metadata{
		MediaType: MetadataMediaType,
		BundleID:  "0123456789abcdef0123456789abcdef",
		Sequence:  7,
		Created:   time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
		Tool:      ToolInfo{Name: "petra-oci", Version: "v0.1.0"},
		Base:      "sha256:" + hexB,
		Images: []MetadataImage{{Source: "cgr.dev/chainguard/nginx:latest", Repository: "cgr.dev/chainguard/nginx",
			Tag: "latest", Digest: digest.Digest("sha256:" + hexA), MediaType: ocispec.MediaTypeImageIndex}},
		Trust: []TrustFile{{Role: RolePolicy, Path: PolicyPath, SHA256: hexB}},
		Files: []File{
			{Path: "blobs/sha256/" + hexA, Size: 10, SHA256: hexA},
			{Path: IndexFile, Size: 20, SHA256: hexA},
			{Path: LayoutFile, Size: 30, SHA256: hexA},
			{Path: PolicyPath, Size: 3, SHA256: hexB},
		},
	}
}

func encodeMeta(t testing.TB, m *Metadata) string {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseMetadataAcceptsValid(t *testing.T) {
	m := validMetadata()
	b, err := EncodeMetadata(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	if encodeMeta(t, got) != encodeMeta(t, m) {
		t.Fatalf("round trip differs:\n%s\n%s", encodeMeta(t, got), encodeMeta(t, m))
	}
	// optional fields may be left out
	m.Base, m.Trust, m.Images = "", nil, []MetadataImage{}
	if _, err := ParseMetadata([]byte(encodeMeta(t, m))); err != nil {
		t.Fatal(err)
	}
}

func TestParseMetadataRejects(t *testing.T) {
	mut := func(f func(m *Metadata)) string {
		m := validMetadata()
		f(m)
		return encodeMeta(t, m)
	}
	file := func(p string) func(m *Metadata) {
		return func(m *Metadata) { m.Files[0].Path = p }
	}
	valid := encodeMeta(t, validMetadata())
	replace := func(old, new string) string {
		if !strings.Contains(valid, old) {
			t.Fatalf("%q not in %s", old, valid)
		}
		return strings.Replace(valid, old, new, 1)
	}
	tests := []struct {
		name string
		doc  string
		want error // besides ErrMetadataInvalid
	}{
		{"empty", ``, oci.ErrInvalid},
		{"not JSON", `{`, oci.ErrInvalid},
		{"null", `null`, oci.ErrUnsupported},
		{"array", `[]`, oci.ErrInvalid},
		{"trailing object", valid + ` {}`, oci.ErrInvalid},
		{"trailing garbage", valid + `x`, oci.ErrInvalid},
		{"invalid UTF-8", replace(`"petra-oci"`, "\"petra-\xff\""), oci.ErrInvalid},
		{"unknown top-level field", replace(`{"mediaType"`, `{"extra":1,"mediaType"`), oci.ErrInvalid},
		{"unknown nested field", replace(`"size":10`, `"size":10,"mode":420`), oci.ErrInvalid},
		{"duplicate key", replace(`"sequence":7`, `"sequence":7,"sequence":8`), oci.ErrInvalid},
		{"key in another case", replace(`"sequence":7`, `"Sequence":7`), oci.ErrInvalid},
		{"key shadowed in another case", replace(`"sequence":7`, `"sequence":7,"SEQUENCE":8`), oci.ErrInvalid},
		{"wrong mediaType", mut(func(m *Metadata) { m.MediaType = "application/vnd.petra-oci.bundle.metadata.v2+json" }), oci.ErrUnsupported},
		{"missing mediaType", mut(func(m *Metadata) { m.MediaType = "" }), oci.ErrUnsupported},
		{"short bundleID", mut(func(m *Metadata) { m.BundleID = "0123" }), oci.ErrInvalid},
		{"uppercase bundleID", mut(func(m *Metadata) { m.BundleID = strings.ToUpper(m.BundleID) }), oci.ErrInvalid},
		{"sequence 0", mut(func(m *Metadata) { m.Sequence = 0 }), oci.ErrInvalid},
		{"negative sequence", replace(`"sequence":7`, `"sequence":-1`), oci.ErrInvalid},
		{"fractional sequence", replace(`"sequence":7`, `"sequence":7.5`), oci.ErrInvalid},
		{"sequence as string", replace(`"sequence":7`, `"sequence":"7"`), oci.ErrInvalid},
		{"missing created", mut(func(m *Metadata) { m.Created = time.Time{} }), oci.ErrInvalid},
		{"bad created", replace(`"created":"2025-06-01T12:00:00Z"`, `"created":"yesterday"`), oci.ErrInvalid},
		{"missing tool name", mut(func(m *Metadata) { m.Tool.Name = "" }), oci.ErrInvalid},
		{"base not a digest", mut(func(m *Metadata) { m.Base = "previous" }), oci.ErrInvalid},
		{"base sha512", mut(func(m *Metadata) { m.Base = "sha512:" + hexA + hexA }), oci.ErrInvalid},
		{"image bad digest", mut(func(m *Metadata) { m.Images[0].Digest = "sha256:xyz" }), oci.ErrInvalid},
		{"image empty digest", mut(func(m *Metadata) { m.Images[0].Digest = "" }), oci.ErrInvalid},
		{"image not a manifest", mut(func(m *Metadata) { m.Images[0].MediaType = ocispec.MediaTypeImageLayer }), oci.ErrInvalid},
		{"image without repository", mut(func(m *Metadata) { m.Images[0].Repository = "" }), oci.ErrInvalid},
		{"absolute path", mut(file("/etc/passwd")), oci.ErrInvalid},
		{"dot-dot path", mut(file("../outside")), oci.ErrInvalid},
		{"inner dot-dot", mut(file("blobs/../../x")), oci.ErrInvalid},
		{"dot element", mut(file("./a")), oci.ErrInvalid},
		{"empty element", mut(file("a//b")), oci.ErrInvalid},
		{"trailing slash", mut(file("a/")), oci.ErrInvalid},
		{"backslash", mut(file(`a\b`)), oci.ErrInvalid},
		{"control character", mut(file("a\nb")), oci.ErrInvalid},
		{"empty path", mut(file("")), oci.ErrInvalid},
		{"path too long", mut(file(strings.Repeat("a", maxPathBytes+1))), oci.ErrInvalid},
		{"metadata listed", mut(func(m *Metadata) { m.Files = append(m.Files, File{Path: MetadataPath, SHA256: hexA}) }), oci.ErrInvalid},
		{"signature listed", mut(func(m *Metadata) { m.Files = append(m.Files, File{Path: SignaturePath, SHA256: hexA}) }), oci.ErrInvalid},
		{"under the metadata", mut(func(m *Metadata) { m.Files = append(m.Files, File{Path: MetadataPath + "/x", SHA256: hexA}) }), oci.ErrInvalid},
		{"ingest folder", mut(file(IngestDir + "/x")), oci.ErrInvalid},
		{"blob with a bad name", mut(file("blobs/sha256/xyz")), oci.ErrInvalid},
		{"blob with an uppercase name", mut(file("blobs/sha256/" + strings.ToUpper(hexA))), oci.ErrInvalid},
		{"blob with an unknown algorithm", mut(file("blobs/md5/d41d8cd98f00b204e9800998ecf8427e")), oci.ErrInvalid},
		{"blob too deep", mut(file("blobs/sha256/" + hexA + "/x")), oci.ErrInvalid},
		{"blobs as a file", mut(file("blobs")), oci.ErrInvalid},
		{"unsorted", mut(func(m *Metadata) { m.Files[1], m.Files[2] = m.Files[2], m.Files[1] }), oci.ErrInvalid},
		{"duplicate path", mut(func(m *Metadata) { m.Files[2].Path = m.Files[1].Path }), oci.ErrInvalid},
		{"file and directory", mut(func(m *Metadata) {
			m.Files = append(m.Files, File{Path: "petra", SHA256: hexA})
			m.Files[3], m.Files[4] = m.Files[4], m.Files[3]
		}), oci.ErrInvalid},
		{"uppercase hex", mut(func(m *Metadata) { m.Files[0].SHA256 = strings.ToUpper(hexA) }), oci.ErrInvalid},
		{"short hex", mut(func(m *Metadata) { m.Files[0].SHA256 = "abc" }), oci.ErrInvalid},
		{"negative size", mut(func(m *Metadata) { m.Files[0].Size = -1 }), oci.ErrInvalid},
		{"size overflows", replace(`"size":10`, `"size":99999999999999999999`), oci.ErrInvalid},
		{"size as float", replace(`"size":10`, `"size":1e1`), oci.ErrInvalid},
		{"no index.json", mut(func(m *Metadata) { m.Files = append(m.Files[:1], m.Files[2:]...) }), oci.ErrInvalid},
		{"no oci-layout", mut(func(m *Metadata) { m.Files = append(m.Files[:2], m.Files[3:]...) }), oci.ErrInvalid},
		{"files null", mut(func(m *Metadata) { m.Files = nil }), oci.ErrInvalid},
		{"trust file not listed", mut(func(m *Metadata) { m.Trust[0].Path = TrustedRootPath }), oci.ErrInvalid},
		{"trust digest differs", mut(func(m *Metadata) { m.Trust[0].SHA256 = hexA }), oci.ErrInvalid},
		{"trust role repeated", mut(func(m *Metadata) { m.Trust = append(m.Trust, m.Trust[0]) }), oci.ErrInvalid},
		{"trust role empty", mut(func(m *Metadata) { m.Trust[0].Role = "" }), oci.ErrInvalid},
		{"too large", valid + strings.Repeat(" ", MaxMetadataBytes), oci.ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMetadata([]byte(tc.doc))
			if !errors.Is(err, ErrMetadataInvalid) || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v and %v", err, ErrMetadataInvalid, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestMetadataKeysDifferBeyondCase(t *testing.T) {
	seen := map[string]string{}
	for k := range metadataKeys {
		l := strings.ToLower(k)
		if o, ok := seen[l]; ok {
			t.Fatalf("keys %q and %q differ only in case: the exact-key check would not catch a shadowed key", k, o)
		}
		seen[l] = k
	}
	// every key the types encode is known
	b, _ := json.Marshal(validMetadata())
	var generic any
	json.Unmarshal(b, &generic)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if !metadataKeys[k] {
					t.Errorf("key %q is not in metadataKeys", k)
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(generic)
}

func TestEncodeMetadataIsStable(t *testing.T) {
	a, err := EncodeMetadata(validMetadata())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := EncodeMetadata(validMetadata())
	if !bytes.Equal(a, b) || a[len(a)-1] != '\n' {
		t.Fatalf("encoding not stable or no final newline")
	}
	bad := validMetadata()
	bad.Sequence = 0
	if _, err := EncodeMetadata(bad); !errors.Is(err, ErrMetadataInvalid) {
		t.Fatalf("EncodeMetadata accepted an invalid value: %v", err)
	}
}

func TestNextInSeries(t *testing.T) {
	id, seq, err := NextInSeries(nil)
	if err != nil || seq != 1 || !isLowerHex(id, 32) {
		t.Fatalf("first = %q, %d, %v", id, seq, err)
	}
	id2, _, _ := NextInSeries(nil)
	if id2 == id {
		t.Fatal("two new series share an id")
	}
	m := validMetadata()
	nid, nseq, err := NextInSeries(m)
	if err != nil || nid != m.BundleID || nseq != m.Sequence+1 {
		t.Fatalf("next = %q, %d, %v", nid, nseq, err)
	}
	m.Sequence = 1<<64 - 1
	if _, _, err := NextInSeries(m); err == nil {
		t.Fatal("sequence overflow accepted")
	}
}

func TestMetadataDigest(t *testing.T) {
	b := []byte("{}\n")
	if got := MetadataDigest(b); got != digest.FromBytes(b) || got.Algorithm() != digest.SHA256 {
		t.Fatalf("MetadataDigest = %s", got)
	}
}
