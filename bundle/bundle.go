// Package bundle seals and verifies a bundle as a whole: it writes the metadata
// manifest (petra/metadata.json, the SHA-256 of every file) and its Sigstore signature
// (petra/metadata.sigstore.json), and verifies them offline in the only safe order:
// the signature over the metadata bytes first, then the metadata, then the series
// sequence (replay), then every file of the directory against the metadata.
package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/signing"
)

// Errors of bundle verification that are not about one file (those are layout's).
var (
	// ErrUnsigned marks a bundle without petra/metadata.sigstore.json, or without
	// metadata at all.
	ErrUnsigned = errors.New("bundle is not signed")
	// ErrSignature marks a signature over the metadata that does not verify with the
	// given key or identity.
	ErrSignature = errors.New("bundle signature does not verify")
)

// ReplayGuard remembers the last sequence accepted per bundle series (replay.Store).
type ReplayGuard interface {
	// Check fails when seq is not newer than the last accepted (replay.ErrReplay).
	Check(bundleID string, seq uint64) error
	// Accept records seq as the last accepted for bundleID.
	Accept(bundleID string, seq uint64) error
}

// SealOptions configure Seal.
type SealOptions struct {
	// Images are the packed images recorded in the metadata.
	Images []layout.MetadataImage
	// Trust names trust files carried in the bundle (policy, trusted root).
	Trust []layout.TrustFile
	// Previous is the metadata of the bundle this one follows in its series; nil
	// starts a series, unless the directory already holds metadata, which is then
	// followed.
	Previous *layout.Metadata
	// ToolVersion is recorded in the metadata.
	ToolVersion string
	// Signer signs the metadata; nil leaves the bundle unsigned (verify refuses it
	// until `petra-oci sign` signs it).
	Signer signing.Signer
	// Workers bounds files hashed at once.
	Workers int
	// Base is recorded as the metadata's base: the digest of the previous bundle's
	// metadata.json (a delta names the one its receipt names); empty for none.
	Base digest.Digest
	// Delta, for a delta bundle, is recorded in the metadata (layout.Delta): the
	// receipt it was packed against and the blobs it expects at the destination.
	Delta *layout.Delta
}

// Seal writes the metadata manifest of the bundle at dir and, with a signer, its
// signature. A stale signature is removed first, so a bundle never carries a
// signature over other metadata.
func Seal(ctx context.Context, dir string, opts SealOptions) (*layout.Metadata, error) {
	l, err := layout.Open(dir)
	if err != nil {
		return nil, err
	}
	prev := opts.Previous
	if prev == nil {
		if b, err := layout.ReadMetadataBytes(dir); err == nil {
			if prev, err = layout.ParseMetadata(b); err != nil {
				return nil, fmt.Errorf("existing metadata of %s: %w", dir, err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	id, seq, err := layout.NextInSeries(prev)
	if err != nil {
		return nil, err
	}
	if err := removeIfExists(filepath.Join(dir, filepath.FromSlash(layout.SignaturePath))); err != nil {
		return nil, err
	}
	m, b, err := layout.BuildMetadata(ctx, dir, layout.Metadata{
		BundleID: id, Sequence: seq,
		Tool:   layout.ToolInfo{Name: "petra-oci", Version: opts.ToolVersion},
		Images: opts.Images, Trust: opts.Trust, Base: opts.Base.String(), Delta: opts.Delta,
	}, opts.Workers)
	if err != nil {
		return nil, fmt.Errorf("building metadata of %s: %w", dir, err)
	}
	if err := l.WriteMetadata(b); err != nil {
		return nil, err
	}
	if opts.Signer != nil {
		if err := writeSignature(ctx, l, opts.Signer, b); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Sign signs the metadata of an existing bundle, after checking that every file of the
// directory matches it: nothing is signed that the metadata does not describe.
func Sign(ctx context.Context, dir string, signer signing.Signer, workers int) (*layout.Metadata, error) {
	if signer == nil {
		return nil, fmt.Errorf("%w: no signing key", oci.ErrInvalid)
	}
	l, err := layout.Open(dir)
	if err != nil {
		return nil, err
	}
	b, err := layout.ReadMetadataBytes(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s (pack it first)", oci.ErrNotFound, dir, layout.MetadataPath)
	}
	if err != nil {
		return nil, err
	}
	m, err := layout.ParseMetadata(b)
	if err != nil {
		return nil, err
	}
	if err := removeIfExists(filepath.Join(dir, filepath.FromSlash(layout.SignaturePath))); err != nil {
		return nil, err
	}
	if _, err := layout.VerifyFiles(ctx, dir, m, layout.VerifyOptions{Workers: workers}); err != nil {
		return nil, fmt.Errorf("refusing to sign %s: %w", dir, err)
	}
	return m, writeSignature(ctx, l, signer, b)
}

func writeSignature(ctx context.Context, l *layout.Layout, signer signing.Signer, metadata []byte) error {
	sig, err := signing.SignBlob(ctx, signer, bytes.NewReader(metadata))
	if err != nil {
		return fmt.Errorf("signing %s: %w", layout.MetadataPath, err)
	}
	return l.WriteFile(layout.SignaturePath, sig)
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing stale %s: %w", p, err)
	}
	return nil
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Signature says which key or identity must have signed the metadata.
	Signature signing.VerifyOptions
	// Replay, when set, refuses a sequence not newer than the last accepted one.
	Replay ReplayGuard
	// Images, when set, re-verifies every image offline against this side's pinned
	// policy and trust material, after the files verified.
	Images *ImagePolicy
	// Workers bounds files hashed at once.
	Workers int
	// Written, when set, is the record of the files the caller itself wrote into dir
	// (layout.WriteRecord, e.g. an import's extraction): those still exactly as written
	// are checked against the signed metadata with the hash computed while writing,
	// not read again (layout.VerifyOptions.Written). nil hashes every file.
	Written *layout.WriteRecord
}

// Report is what Verify proved.
type Report struct {
	Dir       string           `json:"dir"`
	Signature *signing.Result  `json:"signature"`
	Metadata  *layout.Metadata `json:"-"`
	BundleID  string           `json:"bundleID"`
	Sequence  uint64           `json:"sequence"`
	// MetadataDigest is the digest of the exact metadata.json bytes that verified.
	MetadataDigest digest.Digest          `json:"metadataDigest"`
	Images         []layout.MetadataImage `json:"images"`
	Files          *layout.VerifyReport   `json:"files"`
	// Delta is what a delta bundle relies on at the destination (nil for a full one).
	Delta *layout.Delta `json:"delta,omitempty"`
	// Contents is every manifest unpack would push, per repository: the images,
	// their children and what is attached to them (the bundle's verified graph).
	Contents []Repository `json:"contents"`
	// ImageResults is what the image re-verification proved, per image.
	ImageResults []*imageverify.Result `json:"imageResults,omitempty"`
}

// Verified is a bundle that verified, held open for the stage that reads it next
// (unpack): Store reads only the files as verified, Graph is everything that may be
// pushed. Close it when done.
type Verified struct {
	Report *Report
	// Store reads the verified files; its Exists answers from the verified list.
	Store referrers.Store
	// Graph is the bundle's subject graph, built from the verified index.json.
	Graph  *referrers.Graph
	closer func() error
}

// Close releases the bundle.
func (v *Verified) Close() error {
	if v == nil || v.closer == nil {
		return nil
	}
	return v.closer()
}

// Verify checks the bundle at dir, offline: the signature over the exact bytes of
// petra/metadata.json first (nothing of the bundle is parsed before), then the
// metadata, the series sequence, every file of the directory, the graph of what it
// holds and, with opts.Images, every image against the pinned policy.
func Verify(ctx context.Context, dir string, opts VerifyOptions) (*Report, error) {
	v, err := Open(ctx, dir, opts)
	if v == nil {
		return nil, err
	}
	defer v.Close()
	return v.Report, err
}

// Open verifies the bundle at dir as Verify does and keeps it open for reading. On an
// image policy failure it returns the Verified (with the report of every image) and
// the error; on any other failure nil.
func Open(ctx context.Context, dir string, opts VerifyOptions) (*Verified, error) {
	// the root is resolved and opened once; everything below reads through it
	root, err := layout.OpenRoot(dir)
	if err != nil {
		if errors.Is(err, layout.ErrUnsafeFile) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s is not a bundle directory: %w", oci.ErrInvalid, dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			root.Close()
		}
	}()
	sig, err := root.ReadSignatureBytes()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s", ErrUnsigned, dir, layout.SignaturePath)
	}
	if err != nil {
		return nil, err
	}
	b, err := root.ReadMetadataBytes()
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s", ErrUnsigned, dir, layout.MetadataPath)
	}
	if err != nil {
		return nil, err
	}
	res, err := signing.VerifyBlob(ctx, sig, bytes.NewReader(b), opts.Signature)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrSignature, layout.SignaturePath, err)
	}
	m, err := layout.ParseMetadata(b)
	if err != nil {
		return nil, err
	}
	rep := &Report{Dir: dir, Signature: res, Metadata: m, BundleID: m.BundleID, Sequence: m.Sequence, Images: m.Images,
		MetadataDigest: layout.MetadataDigest(b), Delta: m.Delta}
	if opts.Replay != nil {
		if err := opts.Replay.Check(m.BundleID, m.Sequence); err != nil {
			return nil, err
		}
	}
	pinned, files, err := root.Verify(ctx, m, layout.VerifyOptions{Workers: opts.Workers, Written: opts.Written})
	if err != nil {
		return nil, err
	}
	rep.Files = files
	v := &Verified{Report: rep, Store: pinned, closer: root.Close}
	idx, err := pinned.ReadIndex()
	if err != nil {
		return nil, err
	}
	if v.Graph, err = buildGraph(ctx, v.Store, idx, m); err != nil {
		return nil, fmt.Errorf("graph of %s: %w", dir, err)
	}
	if err := checkDelta(ctx, v.Store, v.Graph, m); err != nil {
		return nil, fmt.Errorf("delta %s: %w", dir, err)
	}
	rep.Contents = contents(v.Graph)
	ok = true
	if opts.Images != nil {
		rep.ImageResults, err = verifyImages(ctx, v.Store, v.Graph, m, opts.Images)
		if err != nil {
			return v, fmt.Errorf("images of %s against the pinned policy: %w", dir, err)
		}
	}
	return v, nil
}

// IndexSHA256 returns the SHA-256 of index.json that the verified metadata lists.
func (r *Report) IndexSHA256() string { return fileSHA256(r.Metadata, layout.IndexFile) }
