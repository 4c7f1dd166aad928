// Package receipt is the far side's signed account of what its registry holds: per
// repository the manifest and blob digests read back from the registry (never taken
// from a bundle), and the bundle series and sequence last unpacked there. The
// connected side packs a delta against it (pack.Options.Since): only what the receipt
// does not list is carried. Format and rules: docs/delta.md.
package receipt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/signing"
)

// MediaType versions the receipt format.
const MediaType = "application/vnd.petra-oci.receipt.v1+json"

// MaxBytes bounds a receipt (about 80 bytes a blob: several hundred thousand blobs);
// MaxSignatureBytes its signature.
const (
	MaxBytes          = 64 << 20
	MaxSignatureBytes = 4 << 20
)

var (
	// ErrInvalid marks a receipt that breaks the format.
	ErrInvalid = errors.New("invalid receipt")
	// ErrUnsigned marks a receipt without its signature file.
	ErrUnsigned = errors.New("receipt is not signed")
	// ErrSignature marks a receipt whose signature does not verify with the key or
	// identity given.
	ErrSignature = errors.New("receipt signature does not verify")
)

// Receipt is what a destination registry holds.
type Receipt struct {
	// MediaType is MediaType.
	MediaType string `json:"mediaType"`
	// Registry is the destination, HOST[:PORT][/PREFIX], as unpack's --to names it.
	Registry string `json:"registry"`
	// Created is when the registry was read.
	Created time.Time `json:"created"`
	// Tool is the program that wrote the receipt.
	Tool Tool `json:"tool"`
	// Bundle is the last bundle unpacked there (nil when the receipt names none).
	Bundle *Bundle `json:"bundle,omitempty"`
	// Repositories are the repositories read, sorted by name, unique.
	Repositories []Repository `json:"repositories"`
}

// Tool names the writing program.
type Tool struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Bundle names a bundle of a series.
type Bundle struct {
	BundleID string `json:"bundleID"`
	Sequence uint64 `json:"sequence"`
	// Metadata is the digest of the exact bytes of its petra/metadata.json.
	Metadata digest.Digest `json:"metadata"`
}

// Repository is what one repository holds.
type Repository struct {
	// Name is the repository path under the registry's prefix: the source path
	// without its host, as unpack maps it (chainguard/nginx).
	Name string `json:"name"`
	// Manifests are every manifest reachable from the repository's tags and their
	// referrers, sorted, unique.
	Manifests []digest.Digest `json:"manifests"`
	// Blobs are every config and layer of those manifests that the registry answers
	// for, sorted by digest, unique.
	Blobs []Blob `json:"blobs"`
}

// Blob is one blob.
type Blob struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// keys are every key of the format at any depth, spelled exactly.
var keys = map[string]bool{
	"mediaType": true, "registry": true, "created": true, "tool": true, "bundle": true, "repositories": true,
	"name": true, "version": true, "bundleID": true, "sequence": true, "metadata": true,
	"manifests": true, "blobs": true, "digest": true, "size": true,
}

// Parse parses a receipt strictly: valid UTF-8, one JSON object, no unknown, repeated
// or differently cased key, the v1 media type, and every rule of Validate. Errors wrap
// ErrInvalid. Parse only bytes whose signature verified (Verify does both).
func Parse(b []byte) (*Receipt, error) {
	bad := func(format string, a ...any) (*Receipt, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("%w: %w: %d bytes, limit %d", ErrInvalid, oci.ErrTooLarge, len(b), MaxBytes)
	}
	if !utf8.Valid(b) {
		return bad("not valid UTF-8")
	}
	var r Receipt
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("trailing data after the JSON object")
	}
	if err := oci.CheckJSONKeys(b, keys); err != nil {
		return bad("%v", err)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks every rule of the format. Errors wrap ErrInvalid.
func (r *Receipt) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if r.MediaType != MediaType {
		return fmt.Errorf("%w: %w: mediaType %q, want %q", ErrInvalid, oci.ErrUnsupported, r.MediaType, MediaType)
	}
	if err := checkRegistry(r.Registry); err != nil {
		return bad("registry: %v", err)
	}
	if r.Created.IsZero() {
		return bad("created is missing")
	}
	if r.Tool.Name == "" {
		return bad("tool.name is missing")
	}
	if b := r.Bundle; b != nil {
		if !isLowerHex(b.BundleID, 32) || b.Sequence == 0 {
			return bad("bundle: id %q sequence %d: want 32 lowercase hex digits and a sequence ≥ 1", b.BundleID, b.Sequence)
		}
		if err := b.Metadata.Validate(); err != nil || b.Metadata.Algorithm() != digest.SHA256 {
			return bad("bundle.metadata %q is not a sha256 digest", b.Metadata)
		}
	}
	if r.Repositories == nil {
		return bad("repositories is missing")
	}
	for i, repo := range r.Repositories {
		if err := oci.ValidateRepositoryPath(repo.Name); err != nil {
			return bad("repositories[%d]: name %q: %v", i, repo.Name, err)
		}
		if i > 0 && r.Repositories[i-1].Name >= repo.Name {
			return bad("repositories[%d]: %q is not after %q: names must be unique and sorted", i, repo.Name, r.Repositories[i-1].Name)
		}
		if repo.Manifests == nil || repo.Blobs == nil {
			return bad("repositories[%d] %s: manifests and blobs are required (empty lists when none)", i, repo.Name)
		}
		for j, d := range repo.Manifests {
			if err := checkDigest(d); err != nil {
				return bad("repositories[%d] %s: manifests[%d]: %v", i, repo.Name, j, err)
			}
			if j > 0 && repo.Manifests[j-1] >= d {
				return bad("repositories[%d] %s: manifests[%d]: %s is not after %s: digests must be unique and sorted", i, repo.Name, j, d, repo.Manifests[j-1])
			}
		}
		for j, b := range repo.Blobs {
			if err := checkDigest(b.Digest); err != nil {
				return bad("repositories[%d] %s: blobs[%d]: %v", i, repo.Name, j, err)
			}
			if b.Size < 0 {
				return bad("repositories[%d] %s: blobs[%d] %s: negative size %d", i, repo.Name, j, b.Digest, b.Size)
			}
			if j > 0 && repo.Blobs[j-1].Digest >= b.Digest {
				return bad("repositories[%d] %s: blobs[%d]: %s is not after %s: digests must be unique and sorted", i, repo.Name, j, b.Digest, repo.Blobs[j-1].Digest)
			}
		}
	}
	return nil
}

func checkRegistry(s string) error {
	host, prefix, _ := strings.Cut(strings.TrimSuffix(s, "/"), "/")
	if host == "" || s != strings.TrimSuffix(s, "/") {
		return fmt.Errorf("%q: want HOST[:PORT][/PREFIX] without a trailing /", s)
	}
	if err := oci.ValidateRepository(host + "/x"); err != nil {
		return fmt.Errorf("host %q: %w", host, err)
	}
	if prefix != "" {
		if err := oci.ValidateRepositoryPath(prefix); err != nil {
			return fmt.Errorf("prefix %q: %w", prefix, err)
		}
	}
	return nil
}

func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil || (d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512) {
		return fmt.Errorf("%q is not a sha256 or sha512 digest", d)
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Encode validates r and renders it: two-space indented JSON and a newline.
func Encode(r *Receipt) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the receipt: %w", err)
	}
	return append(b, '\n'), nil
}

// Repository returns the repository named name (a path under the registry prefix),
// or nil.
func (r *Receipt) Repository(name string) *Repository {
	for i := range r.Repositories {
		if r.Repositories[i].Name == name {
			return &r.Repositories[i]
		}
	}
	return nil
}

// SignaturePath is where the signature of the receipt at path lives:
// receipt.json → receipt.sigstore.json (any other name gets .sigstore.json added).
func SignaturePath(path string) string {
	return strings.TrimSuffix(path, ".json") + ".sigstore.json"
}

// Signed is an encoded receipt and its signature.
type Signed struct {
	Receipt *Receipt
	// Bytes are the exact receipt bytes the signature covers.
	Bytes []byte
	// Signature is a Sigstore bundle v0.3 over Bytes (signing.SignBlob), like the
	// bundle metadata's.
	Signature []byte
}

// Digest is the digest of the receipt bytes, as a delta's metadata records it.
func (s *Signed) Digest() digest.Digest { return digest.FromBytes(s.Bytes) }

// Sign encodes r and signs it with signer.
func Sign(ctx context.Context, signer signing.Signer, r *Receipt) (*Signed, error) {
	if signer == nil {
		return nil, fmt.Errorf("%w: no signing key for the receipt", oci.ErrInvalid)
	}
	b, err := Encode(r)
	if err != nil {
		return nil, err
	}
	sig, err := signing.SignBlob(ctx, signer, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("signing the receipt: %w", err)
	}
	return &Signed{Receipt: r, Bytes: b, Signature: sig}, nil
}

// WriteFiles writes the receipt to path and its signature to SignaturePath(path),
// each through a temporary file renamed into place (the signature last).
func (s *Signed) WriteFiles(path string) error {
	if err := writeAtomic(path, s.Bytes); err != nil {
		return err
	}
	return writeAtomic(SignaturePath(path), s.Signature)
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Verify checks sig over the exact bytes b with opts first and only then parses b
// (fail closed: nothing of an unverified receipt is read).
func Verify(ctx context.Context, b, sig []byte, opts signing.VerifyOptions) (*Signed, error) {
	if len(sig) == 0 {
		return nil, ErrUnsigned
	}
	if _, err := signing.VerifyBlob(ctx, sig, bytes.NewReader(b), opts); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	r, err := Parse(b)
	if err != nil {
		return nil, err
	}
	return &Signed{Receipt: r, Bytes: b, Signature: sig}, nil
}

// ReadVerified reads the receipt at path and its signature at SignaturePath(path),
// both bounded, and verifies them (Verify).
func ReadVerified(ctx context.Context, path string, opts signing.VerifyOptions) (*Signed, error) {
	b, err := readLimited(path, MaxBytes)
	if err != nil {
		return nil, err
	}
	sig, err := readLimited(SignaturePath(path), MaxSignatureBytes)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s", ErrUnsigned, path, SignaturePath(path))
	}
	if err != nil {
		return nil, err
	}
	s, err := Verify(ctx, b, sig, opts)
	if err != nil {
		return nil, fmt.Errorf("receipt %s: %w", path, err)
	}
	return s, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalid, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %w: %s is over %d bytes", ErrInvalid, oci.ErrTooLarge, path, limit)
	}
	return b, nil
}
