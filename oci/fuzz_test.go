package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fuzzMediaTypes are the media types FuzzParseManifest gives its input, chosen by its
// second argument: the four manifest types ParseManifest knows, and two it does not
// (which it must handle like an image manifest, refusing an index shape).
var fuzzMediaTypes = []string{
	ocispec.MediaTypeImageManifest,
	ocispec.MediaTypeImageIndex,
	MediaTypeDockerManifest,
	MediaTypeDockerManifestList,
	"application/vnd.oci.artifact.manifest.v1+json",
	"",
}

// minDescriptorBytes is a lower bound on the JSON bytes of one descriptor that
// validates: its digest alone has 64 hex digits (sha256; sha512 has 128), and JSON
// has no shorter spelling of them.
const minDescriptorBytes = 64

// FuzzParseManifest: ParseManifest and its friends never panic on any input under any
// media type; what they read is bounded by what they are given; and whatever
// ParseManifest accepts re-validates: its shape agrees with the media type, every
// descriptor in it (children and subject) is valid with a well-formed digest of a
// supported algorithm and a non-negative size, it holds no more descriptors than
// its bytes can spell, and it re-encodes to bytes ParseManifest accepts again with
// the same children, subject and type, stably. ReadAllVerified returns exactly the
// content of a descriptor (sha256 or sha512), reading at most one byte past its size, refuses a
// descriptor over the limit before reading, and refuses content that is longer than
// its descriptor says.
//
// The seed corpus (testdata/fuzz/FuzzParseManifest) holds every manifest
// internal/fixture pushes (the Chainguard-shaped index and platform images, cosign
// .sig/.att manifests, SPDX and Sigstore bundle referrers, in the mixed, legacy and
// bundle signing forms, and the public-good empty image with its real Sigstore
// bundle referrer), each under its own media type; the seeds below add Docker
// schema 2 shapes and edge cases.
func FuzzParseManifest(f *testing.F) {
	const (
		image = iota
		index
		docker
		dockerList
		artifact
		none
	)
	d := `"sha256:` + digest.FromString("x").Encoded() + `"`
	for _, s := range []struct {
		b    string
		kind uint8
	}{
		{`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1469,"digest":` + d + `},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2811478,"digest":` + d + `}]}`, docker},
		{`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,"digest":` + d + `,"platform":{"architecture":"arm","os":"linux","variant":"v7"}}]}`, dockerList},
		{`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":` + d + `}],"layers":[{"size":1,"digest":` + d + `}]}`, index},
		{`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`, image},
		{`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":` + d + `}]}`, image},
		{`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":` + d + `}]}`, docker},
		{`{"schemaVersion":2,"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":-1,"digest":` + d + `}}`, image},
		{`{"layers":[{"size":1,"digest":"sha256:../../etc/passwd"}],"LAYERS":[]}`, image},
		{`{"config":{"size":1,"digest":"md5:d41d8cd98f00b204e9800998ecf8427e"}}`, artifact},
		{`{"config":{"size":1,"digest":"sha384:d752c2c51fba0e29aa190570a9d4253e44077a058d3297fa3a5630d5bd012622f97c28acaed313b5c83bb990caa7da85"}}`, image},
		{`null`, none},
		{`{"annotations":{"a":"\ud800"}} `, image},
		{`{} {}`, index},
	} {
		f.Add([]byte(s.b), s.kind)
	}
	f.Fuzz(func(t *testing.T, b []byte, kind uint8) {
		mt := fuzzMediaTypes[int(kind)%len(fuzzMediaTypes)]
		desc := DescriptorFor(mt, b)
		checkRead(t, desc, b)

		m, err := ParseManifest(desc, b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error outside the vocabulary (ErrInvalid, ErrUnsupported): %v", err)
			}
			return
		}
		checkManifest(t, desc, m, len(b))

		enc, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("accepted manifest does not encode: %v", err)
		}
		m2, err := ParseManifest(DescriptorFor(mt, enc), enc)
		if err != nil {
			t.Fatalf("re-encoded manifest refused: %v\n%s", err, enc)
		}
		checkManifest(t, DescriptorFor(mt, enc), m2, len(enc))
		if !slices.EqualFunc(m.Children(), m2.Children(), sameDescriptor) {
			t.Fatalf("children changed by re-encoding:\n%v\n%v", m.Children(), m2.Children())
		}
		if (m.Subject == nil) != (m2.Subject == nil) || m.Subject != nil && !sameDescriptor(*m.Subject, *m2.Subject) {
			t.Fatalf("subject changed by re-encoding: %v, %v", m.Subject, m2.Subject)
		}
		if m.Type() != m2.Type() {
			t.Fatalf("type changed by re-encoding: %q, %q", m.Type(), m2.Type())
		}
		if enc2, _ := json.Marshal(m2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
	})
}

func sameDescriptor(a, b ocispec.Descriptor) bool {
	return a.MediaType == b.MediaType && a.Digest == b.Digest && a.Size == b.Size
}

// checkManifest checks what ParseManifest accepted from n bytes as desc.
func checkManifest(t *testing.T, desc ocispec.Descriptor, m *Manifest, n int) {
	t.Helper()
	if m == nil {
		t.Fatal("ParseManifest returned neither a manifest nor an error")
	}
	if m.MediaType != "" && m.MediaType != desc.MediaType {
		t.Fatalf("accepted mediaType %q under descriptor media type %q", m.MediaType, desc.MediaType)
	}
	if IsIndex(desc.MediaType) {
		if m.Config != nil || len(m.Layers) > 0 {
			t.Fatalf("accepted an index with config or layers")
		}
		if !slices.EqualFunc(m.Children(), m.Manifests, sameDescriptor) {
			t.Fatalf("an index's children are not its manifests")
		}
	} else if len(m.Manifests) > 0 {
		t.Fatalf("accepted a %q manifest with manifests", desc.MediaType)
	}
	descs := m.Children()
	if m.Subject != nil {
		descs = append(descs, *m.Subject)
	}
	if len(descs)*minDescriptorBytes > n {
		t.Fatalf("%d descriptors from %d bytes", len(descs), n)
	}
	for _, d := range descs {
		if err := ValidateDescriptor(d); err != nil {
			t.Fatalf("accepted an invalid descriptor: %v", err)
		}
		if err := d.Digest.Validate(); err != nil {
			t.Fatalf("accepted digest %q: %v", d.Digest, err)
		}
		if a := d.Digest.Algorithm(); a != digest.SHA256 && a != digest.SHA512 || len(d.Digest.Encoded()) != a.Size()*2 {
			t.Fatalf("accepted digest %q", d.Digest)
		}
		if d.Size < 0 {
			t.Fatalf("accepted size %d", d.Size)
		}
	}
	switch typ := m.Type(); {
	case m.ArtifactType != "" && typ != m.ArtifactType,
		m.ArtifactType == "" && m.Config != nil && typ != m.Config.MediaType,
		m.ArtifactType == "" && m.Config == nil && typ != "":
		t.Fatalf("Type() = %q", typ)
	}
}

// byteCounter counts the bytes read through it.
type byteCounter struct {
	r io.Reader
	n int
}

func (c *byteCounter) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += k
	return k, err
}

func (c *byteCounter) Close() error { return nil }

// checkRead reads b through ReadAllVerified as desc, as a too-large descriptor and as
// a descriptor that claims fewer bytes.
func checkRead(t *testing.T, desc ocispec.Descriptor, b []byte) {
	t.Helper()
	rc := &byteCounter{r: bytes.NewReader(b)}
	got, err := ReadAllVerified(rc, desc, MaxManifestBytes)
	switch {
	case len(b) > MaxManifestBytes:
		if !errors.Is(err, ErrTooLarge) || rc.n != 0 {
			t.Fatalf("%d bytes over the limit: err %v after reading %d bytes", len(b), err, rc.n)
		}
		return
	case err != nil:
		t.Fatalf("ReadAllVerified of its own content: %v", err)
	case !bytes.Equal(got, b):
		t.Fatalf("ReadAllVerified returned other bytes")
	case rc.n != len(b):
		t.Fatalf("read %d bytes of %d", rc.n, len(b))
	}
	// the same content named by sha512
	d512 := desc
	d512.Digest = digest.SHA512.FromBytes(b)
	if got, err := ReadAllVerified(&byteCounter{r: bytes.NewReader(b)}, d512, MaxManifestBytes); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("ReadAllVerified as sha512: %v", err)
	}
	// a limit below the size refuses before reading
	if len(b) > 0 {
		rc = &byteCounter{r: bytes.NewReader(b)}
		if _, err := ReadAllVerified(rc, desc, int64(len(b))-1); !errors.Is(err, ErrTooLarge) || rc.n != 0 {
			t.Fatalf("limit %d for %d bytes: err %v after reading %d bytes", len(b)-1, len(b), err, rc.n)
		}
		// a descriptor claiming fewer bytes: refused, reading at most one byte more than it claims
		short := desc
		short.Size = int64(len(b)) / 2
		rc = &byteCounter{r: bytes.NewReader(b)}
		_, err := ReadAllVerified(rc, short, MaxManifestBytes)
		if !errors.Is(err, ErrSizeMismatch) {
			t.Fatalf("content longer than its descriptor: err %v, want ErrSizeMismatch", err)
		}
		if int64(rc.n) > short.Size+1 {
			t.Fatalf("read %d bytes for a descriptor of %d", rc.n, short.Size)
		}
	}
}
