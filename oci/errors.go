package oci

import "errors"

// Sentinel errors. Packages wrap them with what and where; callers test with errors.Is.
var (
	// ErrInvalid marks input that is malformed: a bad reference, platform, manifest or index.
	ErrInvalid = errors.New("invalid")
	// ErrDigestMismatch marks content whose bytes do not hash to the expected digest.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch marks content whose length differs from the descriptor's size.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrTooLarge marks content larger than petra-oci accepts for its kind.
	ErrTooLarge = errors.New("too large")
	// ErrNotFound marks content or a reference that is not there.
	ErrNotFound = errors.New("not found")
	// ErrUnsupported marks a media type, digest algorithm or feature petra-oci does not handle.
	ErrUnsupported = errors.New("unsupported")
)
