// Package archive moves a bundle across a cross-domain solution (CDS) as files: Export
// writes one deterministic tar of the bundle (optionally zstd-compressed), or numbered
// chunks of it with Reed-Solomon parity chunks and a chunk index signed with the bundle
// key; Import verifies the chunk index signature, then every chunk (rebuilding bad ones
// from parity), extracts into a temporary sibling directory with strict checks, runs the
// full bundle verification and only then renames the result into place.
//
// The formats are described in docs/transfer.md.
package archive

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every refusal of Import wraps one of them (or an error of
// internal/bundle and layout for the final verification), so the CLI maps them to
// exit codes with errors.Is.
var (
	// ErrIndexUnsigned: the chunk index has no signature file beside it.
	ErrIndexUnsigned = errors.New("chunk index is not signed")
	// ErrIndexSignature: the signature over the chunk index does not verify.
	ErrIndexSignature = errors.New("chunk index signature does not verify")
	// ErrIndexInvalid: the chunk index breaks the format (unknown keys, bad sizes,
	// names or digests, an unsupported version or parity scheme).
	ErrIndexInvalid = errors.New("invalid chunk index")
	// ErrChunk: a chunk is missing, of the wrong size or does not hash to the signed
	// SHA-256, and parity cannot rebuild it. The *ChunkError names the chunk.
	ErrChunk = errors.New("bad chunk")
	// ErrStaleChunk: the chunk directory holds a chunk file the signed index does not
	// list (a leftover of another export).
	ErrStaleChunk = errors.New("chunk not listed in the chunk index")
	// ErrUnsafeEntry: an archive entry that is refused: a path that is absolute, holds
	// "..", is not clean or not valid UTF-8, a symlink, hard link, device, FIFO or any
	// type but a regular file or a directory, a duplicate name, or a malformed or
	// oversized header.
	ErrUnsafeEntry = errors.New("unsafe archive entry")
	// ErrUnlisted: an archive entry the signed metadata does not list, a size that
	// differs from the signed one, or more bytes than the signed sizes allow
	// (decompression bomb).
	ErrUnlisted = errors.New("archive entry not covered by the signed sizes")
	// ErrNotExport: the archive does not start with petra/metadata.json and its
	// signature (it was not written by petra-oci export), or ends early.
	ErrNotExport = errors.New("not a petra-oci export")
	// ErrExists: the output already exists; nothing is overwritten.
	ErrExists = errors.New("output already exists")
)

// ChunkError is a failure about one chunk.
type ChunkError struct {
	// Name is the chunk's file name as the index lists it.
	Name string
	// Kind is ErrChunk or ErrStaleChunk.
	Kind error
	// Detail says what was found.
	Detail string
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("chunk %s: %v: %s", e.Name, e.Kind, e.Detail)
}

// Unwrap returns the kind.
func (e *ChunkError) Unwrap() error { return e.Kind }

// EntryError is a refused archive entry.
type EntryError struct {
	// Name is the entry name as the archive spells it.
	Name string
	// Kind is ErrUnsafeEntry or ErrUnlisted.
	Kind error
	// Detail says why.
	Detail string
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("archive entry %q: %v: %s", e.Name, e.Kind, e.Detail)
}

// Unwrap returns the kind.
func (e *EntryError) Unwrap() error { return e.Kind }
