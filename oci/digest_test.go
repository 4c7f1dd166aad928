package oci

import (
	"bytes"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestDigestAlgorithmsLinked: the algorithms ValidateDescriptor accepts are linked by
// oci itself, and content named by either verifies. go-digest only hashes with what
// the program imports: without oci's imports a program using only this package
// panics in DescriptorFor ("sha256 not available") and refuses sha512 content or not
// depending on what else it links.
func TestDigestAlgorithmsLinked(t *testing.T) {
	b := []byte("x")
	for _, a := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		if !a.Available() {
			t.Errorf("%s is not available: oci must import its hash", a)
			continue
		}
		d := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: a.FromBytes(b), Size: int64(len(b))}
		if err := ValidateDescriptor(d); err != nil {
			t.Errorf("%s: %v", d.Digest, err)
		}
		if got, err := ReadAllVerified(io.NopCloser(bytes.NewReader(b)), d, 10); err != nil || !bytes.Equal(got, b) {
			t.Errorf("%s: read %q, %v", d.Digest, got, err)
		}
	}
}
