package layout

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseMetadata: ParseMetadata never panics, and whatever it accepts encodes back to
// bytes it accepts again, unchanged.
func FuzzParseMetadata(f *testing.F) {
	tb := newTestBundle(f)
	f.Add(tb.metaB)
	b, _ := EncodeMetadata(validMetadata())
	f.Add(b)
	f.Add([]byte(encodeMeta(f, validMetadata())))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"mediaType":"` + MetadataMediaType + `","sequence":1,"sequence":2}`))
	f.Add([]byte(`{"files":[{"path":"../x","size":-1,"sha256":"AA"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMetadata(b)
		if err != nil {
			return
		}
		enc, err := EncodeMetadata(m)
		if err != nil {
			t.Fatalf("accepted metadata does not encode: %v", err)
		}
		m2, err := ParseMetadata(enc)
		if err != nil {
			t.Fatalf("re-encoded metadata refused: %v\n%s", err, enc)
		}
		enc2, _ := EncodeMetadata(m2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	})
}

// FuzzParseIndex: ParseIndex never panics, and whatever it accepts re-encodes to an
// index it accepts again with the same entries.
func FuzzParseIndex(f *testing.F) {
	tb := newTestBundle(f)
	b, err := os.ReadFile(filepath.Join(tb.dir, IndexFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	empty, _ := json.Marshal(NewIndex(nil))
	f.Add(empty)
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../x","size":1}]}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[]} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := ParseIndex(b)
		if err != nil {
			return
		}
		for _, d := range idx.Manifests {
			if _, err := BlobPath(d); err != nil {
				t.Fatalf("accepted entry has no blob path: %v", err)
			}
			// entries decode or fail cleanly
			_, _ = ParseEntry(d)
		}
		enc, err := json.Marshal(idx)
		if err != nil {
			t.Fatal(err)
		}
		idx2, err := ParseIndex(enc)
		if err != nil {
			t.Fatalf("re-encoded index refused: %v\n%s", err, enc)
		}
		if len(idx2.Manifests) != len(idx.Manifests) {
			t.Fatalf("entries %d, re-parsed %d", len(idx.Manifests), len(idx2.Manifests))
		}
	})
}
