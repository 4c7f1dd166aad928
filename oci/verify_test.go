package oci

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestVerifiedReader(t *testing.T) {
	content := []byte("hello, petra")
	good := DescriptorFor("application/octet-stream", content)
	tests := []struct {
		name    string
		data    []byte
		desc    ocispec.Descriptor
		wantErr error
	}{
		{"exact", content, good, nil},
		{"flipped byte", []byte("hellO, petra"), good, ErrDigestMismatch},
		{"short", content[:5], good, ErrSizeMismatch},
		{"trailing data", append(append([]byte{}, content...), '!'), good, ErrSizeMismatch},
		{"bad digest", content, ocispec.Descriptor{Digest: "sha256:xyz", Size: int64(len(content))}, ErrInvalid},
		{"unsupported algorithm", content, ocispec.Descriptor{Digest: digest.Digest("md5:" + strings.Repeat("a", 32)), Size: 1}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := io.ReadAll(NewVerifiedReader(io.NopCloser(bytes.NewReader(tc.data)), tc.desc))
			if tc.wantErr == nil {
				if err != nil || !bytes.Equal(got, content) {
					t.Fatalf("got %q, %v; want content, nil", got, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestReadAllVerifiedRefusesLargeBeforeReading(t *testing.T) {
	desc := ocispec.Descriptor{Digest: digest.FromString("x"), Size: 1 << 40}
	r := &countingReader{}
	_, err := ReadAllVerified(io.NopCloser(r), desc, MaxManifestBytes)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if r.n != 0 {
		t.Fatalf("read %d bytes before refusing", r.n)
	}
}

type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) { c.n += len(p); return len(p), nil }

func TestParseManifestRejectsShapeMismatch(t *testing.T) {
	idx := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	desc := DescriptorFor(ocispec.MediaTypeImageManifest, idx)
	if _, err := ParseManifest(desc, idx); !errors.Is(err, ErrInvalid) {
		t.Fatalf("index parsed as manifest: err = %v", err)
	}
	bad := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:../../etc","size":1}}`)
	if _, err := ParseManifest(DescriptorFor(ocispec.MediaTypeImageManifest, bad), bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad child digest accepted: err = %v", err)
	}
}

func TestTags(t *testing.T) {
	d := digest.FromString("x")
	if got, want := CosignTag(d, ".sig"), "sha256-"+d.Encoded()+".sig"; got != want {
		t.Fatalf("CosignTag = %q, want %q", got, want)
	}
	p, err := ParsePlatform("linux/arm64/v8")
	if err != nil || p.Variant != "v8" || !PlatformMatches(&ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, p) {
		t.Fatalf("ParsePlatform: %+v %v", p, err)
	}
	if _, err := ParsePlatform("linux"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ParsePlatform(linux) err = %v", err)
	}
}

func TestVerifies(t *testing.T) {
	desc := DescriptorFor("application/octet-stream", []byte("content"))
	other := DescriptorFor("application/octet-stream", []byte("other"))
	fresh := func() io.ReadCloser { return NewVerifiedReader(io.NopCloser(strings.NewReader("content")), desc) }
	if !Verifies(fresh(), desc) {
		t.Fatal("a fresh verified reader for desc does not verify desc")
	}
	if Verifies(fresh(), other) {
		t.Fatal("a verified reader for desc verifies another descriptor")
	}
	if Verifies(strings.NewReader("content"), desc) {
		t.Fatal("a plain reader verifies desc")
	}
	r := fresh()
	if _, err := r.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if Verifies(r, desc) {
		t.Fatal("a verified reader already read from still counts as verifying desc whole")
	}
	if Verifies(NewVerifiedReader(io.NopCloser(strings.NewReader("x")), ocispec.Descriptor{Digest: "bad", Size: 1}), desc) {
		t.Fatal("a reader for an invalid descriptor verifies")
	}
}
