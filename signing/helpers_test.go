package signing

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/petra-oci/petra-oci/internal/fixture"
)

// publicGood returns the path of a file in shared/testdata/sigstore-public-good.
func publicGood(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(fixture.SharedTestdata(t), "sigstore-public-good", name)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// editJSON decodes doc, lets edit change it, and re-encodes it.
func editJSON(t *testing.T, doc []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// obj walks a path of object keys / array indexes in decoded JSON.
func obj(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("JSON: %v is not an object at %q", v, k)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("JSON: no index %d", k)
			}
			v = a[k]
		}
	}
	return v
}

// flipB64 flips one bit in the middle of a base64 string field of m.
func flipB64(t *testing.T, m map[string]any, key string) {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(m[key].(string))
	if err != nil {
		t.Fatalf("field %s: %v", key, err)
	}
	raw[len(raw)/2] ^= 0x01
	m[key] = base64.StdEncoding.EncodeToString(raw)
}

func flipByte(b []byte) []byte {
	c := append([]byte(nil), b...)
	c[len(c)/2] ^= 0x01
	return c
}

// wantErr fails unless err wraps want (nil want: err must be nil).
func wantErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && err == nil:
		t.Fatalf("accepted, want an error wrapping %q", want)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("error %q does not wrap %q", err, want)
	}
	if err != nil {
		t.Logf("refused as expected: %v", err)
	}
}
