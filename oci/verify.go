package oci

import (
	"bytes"
	// the hashes of the digest algorithms ValidateDescriptor accepts: go-digest
	// computes only those the program links
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MaxManifestBytes bounds every manifest, index and index.json petra-oci reads into
// memory. Registries commonly cap manifests at 4 MiB; anything larger is refused before
// a byte is allocated for it.
const MaxManifestBytes = 4 << 20

// ValidateDescriptor checks that desc names a digest petra-oci can verify and a sane size.
func ValidateDescriptor(desc ocispec.Descriptor) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("%w: digest %q: %v", ErrInvalid, desc.Digest, err)
	}
	switch desc.Digest.Algorithm() {
	case digest.SHA256, digest.SHA512:
	default:
		return fmt.Errorf("%w: digest algorithm %q", ErrUnsupported, desc.Digest.Algorithm())
	}
	if desc.Size < 0 {
		return fmt.Errorf("%w: negative size %d for %s", ErrInvalid, desc.Size, desc.Digest)
	}
	return nil
}

type verifiedReader struct {
	rc       io.ReadCloser
	desc     ocispec.Descriptor
	verifier digest.Verifier
	n        int64
	err      error
}

// NewVerifiedReader returns a reader over rc that yields exactly desc.Size bytes and,
// instead of io.EOF, returns an error wrapping ErrSizeMismatch or ErrDigestMismatch when
// the content is shorter, longer, or does not hash to desc.Digest. Closing it closes rc.
func NewVerifiedReader(rc io.ReadCloser, desc ocispec.Descriptor) io.ReadCloser {
	vr := &verifiedReader{rc: rc, desc: desc}
	if err := ValidateDescriptor(desc); err != nil {
		vr.err = err
		return vr
	}
	vr.verifier = desc.Digest.Verifier()
	return vr
}

func (v *verifiedReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	remaining := v.desc.Size - v.n
	if remaining == 0 {
		v.err = v.finish()
		return 0, v.err
	}
	if int64(len(p)) > remaining {
		p = p[:remaining]
	}
	k, err := v.rc.Read(p)
	v.n += int64(k)
	_, _ = v.verifier.Write(p[:k])
	switch {
	case err == io.EOF && v.n < v.desc.Size:
		v.err = fmt.Errorf("%w: %s: got %d bytes, want %d", ErrSizeMismatch, v.desc.Digest, v.n, v.desc.Size)
		return k, v.err
	case err == io.EOF:
		v.err = v.finish()
		if v.err == io.EOF && k > 0 {
			return k, nil
		}
		return k, v.err
	case err != nil:
		v.err = fmt.Errorf("reading %s: %w", v.desc.Digest, err)
		return k, v.err
	}
	return k, nil
}

// finish checks there is no trailing data and the digest matches; it returns io.EOF
// when everything is right.
func (v *verifiedReader) finish() error {
	var probe [1]byte
	for {
		k, err := v.rc.Read(probe[:])
		if k > 0 {
			return fmt.Errorf("%w: %s: more than %d bytes", ErrSizeMismatch, v.desc.Digest, v.desc.Size)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", v.desc.Digest, err)
		}
	}
	if !v.verifier.Verified() {
		return fmt.Errorf("%w: content does not hash to %s", ErrDigestMismatch, v.desc.Digest)
	}
	return io.EOF
}

func (v *verifiedReader) Close() error { return v.rc.Close() }

// Verifies reports whether r is a reader from NewVerifiedReader for desc's digest and
// size that nothing has read from yet: reading it to io.EOF proves the content is
// desc's, so a writer handed r need not hash the content a second time.
func Verifies(r io.Reader, desc ocispec.Descriptor) bool {
	v, ok := r.(*verifiedReader)
	return ok && v.verifier != nil && v.err == nil && v.n == 0 &&
		v.desc.Digest == desc.Digest && v.desc.Size == desc.Size
}

// ReadAllVerified reads the content desc describes from rc, refusing it before any
// allocation when desc.Size exceeds max, and verifying size and digest. It closes rc.
func ReadAllVerified(rc io.ReadCloser, desc ocispec.Descriptor, max int64) ([]byte, error) {
	defer rc.Close()
	if desc.Size > max {
		return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, desc.Digest, desc.Size, max)
	}
	if err := ValidateDescriptor(desc); err != nil {
		return nil, err
	}
	buf := bytes.NewBuffer(make([]byte, 0, desc.Size))
	if _, err := io.Copy(buf, NewVerifiedReader(io.NopCloser(rc), desc)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DescriptorFor returns the descriptor of b with mediaType.
func DescriptorFor(mediaType string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}
