package layout

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/oci"
)

// The metadata manifest and its signature. Both live in PetraDir and are the only files
// of a bundle that the metadata does not list. See docs/bundle-format.md.
const (
	PetraDir          = "petra"
	MetadataPath      = "petra/metadata.json"
	SignaturePath     = "petra/metadata.sigstore.json"
	PolicyPath        = "petra/policy.yaml"
	TrustedRootPath   = "petra/trusted_root.json"
	MetadataMediaType = "application/vnd.petra-oci.bundle.metadata.v1+json"

	// MaxMetadataBytes bounds metadata.json (about 150 bytes a file: several hundred
	// thousand files).
	MaxMetadataBytes = 64 << 20
	// MaxSignatureBytes bounds metadata.sigstore.json.
	MaxSignatureBytes = 4 << 20
	// maxPathBytes bounds one path in the metadata.
	maxPathBytes = 4096
)

// Roles of trust files.
const (
	RolePolicy      = "policy"
	RoleTrustedRoot = "trusted-root"
)

// Metadata is the metadata manifest petra/metadata.json: what the bundle holds, down to
// the SHA-256 of every file. It is what pack signs and what verify checks first.
type Metadata struct {
	// MediaType is MetadataMediaType; it versions the format.
	MediaType string `json:"mediaType"`
	// BundleID names the bundle series: 32 lowercase hex digits (128 random bits)
	// drawn at the first pack of the series.
	BundleID string `json:"bundleID"`
	// Sequence is 1 for the first bundle of a series and grows by one per bundle.
	Sequence uint64 `json:"sequence"`
	// Created is when the bundle was packed.
	Created time.Time `json:"created"`
	// Tool is the program that packed the bundle.
	Tool ToolInfo `json:"tool"`
	// Base is the digest (sha256:<hex>) of the exact bytes of the previous bundle's
	// metadata.json, for delta bundles; empty for a full bundle.
	Base string `json:"base,omitempty"`
	// Images are the images packed, by source reference.
	Images []MetadataImage `json:"images"`
	// Trust lists the policy and trust material used at pack, carried in the bundle.
	Trust []TrustFile `json:"trust,omitempty"`
	// Delta, for a delta bundle (pack --since), names the far side's receipt the bundle
	// was built from and every blob the bundle relies on being at the destination
	// instead of carrying it (docs/delta.md); nil for a full bundle. A metadata file
	// with it does not parse for readers older than the field (unknown key): they
	// refuse a delta, never take it for a full bundle.
	Delta *Delta `json:"delta,omitempty"`
	// Files lists every file of the bundle except MetadataPath and SignaturePath,
	// sorted by path.
	Files []File `json:"files"`
}

// Delta is what a delta bundle relies on: the receipt it was packed against and the
// blobs left out because the receipt says the destination holds them.
type Delta struct {
	// Receipt is the digest (sha256:<hex>) of the exact bytes of the signed receipt.
	Receipt digest.Digest `json:"receipt"`
	// Registry is the destination the receipt describes, HOST[/PREFIX].
	Registry string `json:"registry"`
	// BundleID and Sequence are the series and sequence of the last bundle unpacked at
	// the destination, as the receipt names them (empty and 0 when it names none).
	BundleID string `json:"bundleID,omitempty"`
	Sequence uint64 `json:"sequence,omitempty"`
	// Expected are the blobs the bundle's graph references and does not carry, each
	// with the source repository whose destination must hold it; sorted by repository
	// then digest, unique. A manifest is never expected: manifests are always carried.
	Expected []ExpectedBlob `json:"expected"`
}

// ExpectedBlob is a blob a delta bundle relies on being at the destination.
type ExpectedBlob struct {
	// Repository is the source repository (host/path) as the images list names it;
	// unpack maps it to its destination repository as it maps the images.
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
	Size       int64         `json:"size"`
}

// ExpectedSet indexes Expected by repository and digest; nil for a full bundle.
func (m *Metadata) ExpectedSet() map[ExpectedKey]int64 {
	if m == nil || m.Delta == nil {
		return nil
	}
	out := make(map[ExpectedKey]int64, len(m.Delta.Expected))
	for _, e := range m.Delta.Expected {
		out[ExpectedKey{Repository: e.Repository, Digest: e.Digest}] = e.Size
	}
	return out
}

// ExpectedKey names one expected blob.
type ExpectedKey struct {
	Repository string
	Digest     digest.Digest
}

// ToolInfo names the packing tool.
type ToolInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// MetadataImage is one packed image: the reference it was packed from and the digest
// that reference resolved to.
type MetadataImage struct {
	Source     string        `json:"source"`
	Repository string        `json:"repository"`
	Tag        string        `json:"tag,omitempty"`
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"mediaType"`
}

// TrustFile names a file of the bundle that holds trust material used at pack.
type TrustFile struct {
	// Role is RolePolicy, RoleTrustedRoot or another role a later version defines.
	Role string `json:"role"`
	// Path is the file, listed in Files too.
	Path string `json:"path"`
	// SHA256 is the file's SHA-256, lowercase hex, equal to its Files entry.
	SHA256 string `json:"sha256"`
}

// File is one file of the bundle.
type File struct {
	// Path is slash-separated and relative to the bundle root.
	Path string `json:"path"`
	// Size is the length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the SHA-256 of the content, 64 lowercase hex digits.
	SHA256 string `json:"sha256"`
}

// metadataKeys are every key the format has, at any depth. Keys must be spelled exactly
// so (encoding/json would accept any case) and appear once per object.
var metadataKeys = map[string]bool{
	"mediaType": true, "bundleID": true, "sequence": true, "created": true, "tool": true,
	"base": true, "images": true, "trust": true, "files": true,
	"name": true, "version": true,
	"source": true, "repository": true, "tag": true, "digest": true,
	"role": true, "path": true, "sha256": true, "size": true,
	"delta": true, "receipt": true, "registry": true, "expected": true,
}

// ParseMetadata parses metadata.json strictly: valid UTF-8, one JSON object, no unknown,
// duplicate or differently cased keys, the v1 media type, and every rule Validate checks.
// Errors wrap ErrMetadataInvalid (and oci.ErrInvalid, oci.ErrTooLarge or oci.ErrUnsupported).
func ParseMetadata(b []byte) (*Metadata, error) {
	bad := func(sentinel error, format string, a ...any) (*Metadata, error) {
		return nil, fmt.Errorf("%w: %w: %s", ErrMetadataInvalid, sentinel, fmt.Sprintf(format, a...))
	}
	if len(b) > MaxMetadataBytes {
		return bad(oci.ErrTooLarge, "%d bytes, limit %d", len(b), MaxMetadataBytes)
	}
	if !utf8.Valid(b) {
		return bad(oci.ErrInvalid, "not valid UTF-8")
	}
	var m Metadata
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return bad(oci.ErrInvalid, "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad(oci.ErrInvalid, "trailing data after the JSON object")
	}
	if err := oci.CheckJSONKeys(b, metadataKeys); err != nil {
		return bad(oci.ErrInvalid, "%v", err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks every rule of the format that does not need the bundle directory.
// Errors wrap ErrMetadataInvalid.
func (m *Metadata) Validate() error {
	bad := func(sentinel error, format string, a ...any) error {
		return fmt.Errorf("%w: %w: %s", ErrMetadataInvalid, sentinel, fmt.Sprintf(format, a...))
	}
	if m.MediaType != MetadataMediaType {
		return bad(oci.ErrUnsupported, "mediaType %q, want %q", m.MediaType, MetadataMediaType)
	}
	if !isLowerHex(m.BundleID, 32) {
		return bad(oci.ErrInvalid, "bundleID %q is not 32 lowercase hex digits", m.BundleID)
	}
	if m.Sequence == 0 {
		return bad(oci.ErrInvalid, "sequence 0: sequences start at 1")
	}
	if m.Created.IsZero() {
		return bad(oci.ErrInvalid, "created is missing")
	}
	if m.Tool.Name == "" {
		return bad(oci.ErrInvalid, "tool.name is missing")
	}
	if m.Base != "" {
		d, err := digest.Parse(m.Base)
		if err != nil || d.Algorithm() != digest.SHA256 {
			return bad(oci.ErrInvalid, "base %q is not a sha256 digest", m.Base)
		}
	}
	for i, img := range m.Images {
		if img.Source == "" || img.Repository == "" || strings.ContainsAny(img.Repository, " \t\r\n@") {
			return bad(oci.ErrInvalid, "images[%d]: source %q, repository %q", i, img.Source, img.Repository)
		}
		if err := img.Digest.Validate(); err != nil || (img.Digest.Algorithm() != digest.SHA256 && img.Digest.Algorithm() != digest.SHA512) {
			return bad(oci.ErrInvalid, "images[%d]: digest %q", i, img.Digest)
		}
		if !oci.IsManifest(img.MediaType) {
			return bad(oci.ErrInvalid, "images[%d]: mediaType %q is not a manifest", i, img.MediaType)
		}
	}
	set := make(map[string]*File, len(m.Files))
	for i := range m.Files {
		f := &m.Files[i]
		if err := checkFilePath(f.Path); err != nil {
			return bad(oci.ErrInvalid, "files[%d]: %v", i, err)
		}
		if i > 0 && m.Files[i-1].Path >= f.Path {
			return bad(oci.ErrInvalid, "files[%d]: %q is not after %q: paths must be unique and sorted", i, f.Path, m.Files[i-1].Path)
		}
		if f.Size < 0 {
			return bad(oci.ErrInvalid, "files[%d] %q: negative size %d", i, f.Path, f.Size)
		}
		if !isLowerHex(f.SHA256, 64) {
			return bad(oci.ErrInvalid, "files[%d] %q: sha256 %q is not 64 lowercase hex digits", i, f.Path, f.SHA256)
		}
		set[f.Path] = f
	}
	for _, f := range m.Files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if set[d] != nil {
				return bad(oci.ErrInvalid, "%q is listed as a file and as a directory of %q", d, f.Path)
			}
		}
	}
	for _, p := range []string{LayoutFile, IndexFile} {
		if set[p] == nil {
			return bad(oci.ErrInvalid, "files does not list %s", p)
		}
	}
	roles := map[string]bool{}
	for i, t := range m.Trust {
		if t.Role == "" || roles[t.Role] {
			return bad(oci.ErrInvalid, "trust[%d]: role %q is empty or repeated", i, t.Role)
		}
		roles[t.Role] = true
		f := set[t.Path]
		if f == nil {
			return bad(oci.ErrInvalid, "trust[%d]: %q is not listed in files", i, t.Path)
		}
		if t.SHA256 != f.SHA256 {
			return bad(oci.ErrInvalid, "trust[%d]: %q sha256 %q differs from its files entry", i, t.Path, t.SHA256)
		}
	}
	if m.Delta != nil {
		if err := m.Delta.validate(set); err != nil {
			return bad(oci.ErrInvalid, "delta: %v", err)
		}
	}
	return nil
}

// validate checks the delta fields; files are the listed files by path.
func (d *Delta) validate(files map[string]*File) error {
	if err := d.Receipt.Validate(); err != nil || d.Receipt.Algorithm() != digest.SHA256 {
		return fmt.Errorf("receipt %q is not a sha256 digest", d.Receipt)
	}
	if d.Registry == "" || strings.ContainsAny(d.Registry, " \t\r\n@") {
		return fmt.Errorf("registry %q", d.Registry)
	}
	if (d.BundleID == "") != (d.Sequence == 0) || (d.BundleID != "" && !isLowerHex(d.BundleID, 32)) {
		return fmt.Errorf("base bundle %q sequence %d: both or neither, a 32 hex digit id", d.BundleID, d.Sequence)
	}
	if d.Expected == nil {
		return fmt.Errorf("expected is missing (an empty list when nothing is left out)")
	}
	for i, e := range d.Expected {
		if e.Repository == "" || strings.ContainsAny(e.Repository, " \t\r\n@") {
			return fmt.Errorf("expected[%d]: repository %q", i, e.Repository)
		}
		if err := e.Digest.Validate(); err != nil || (e.Digest.Algorithm() != digest.SHA256 && e.Digest.Algorithm() != digest.SHA512) {
			return fmt.Errorf("expected[%d]: digest %q", i, e.Digest)
		}
		if e.Size < 0 {
			return fmt.Errorf("expected[%d] %s: negative size %d", i, e.Digest, e.Size)
		}
		if i > 0 {
			p := d.Expected[i-1]
			if p.Repository > e.Repository || (p.Repository == e.Repository && p.Digest >= e.Digest) {
				return fmt.Errorf("expected[%d]: %s %s is not after %s %s: entries must be unique and sorted by repository, then digest", i, e.Repository, e.Digest, p.Repository, p.Digest)
			}
		}
		if files[BlobsDir+"/"+e.Digest.Algorithm().String()+"/"+e.Digest.Encoded()] != nil {
			return fmt.Errorf("expected[%d]: %s is carried in the bundle too: a blob is either carried or expected", i, e.Digest)
		}
	}
	return nil
}

// checkFilePath checks that p is a clean relative slash path that stays in the bundle,
// is not one of the excluded metadata files, and names a valid blob when under blobs/.
func checkFilePath(p string) error {
	if p == "" || len(p) > maxPathBytes {
		return fmt.Errorf("path of %d bytes", len(p))
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("path %q is not valid UTF-8", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("path %q has a control character or backslash", p)
		}
	}
	if !fs.ValidPath(p) || p == "." {
		return fmt.Errorf("path %q is not clean and relative (absolute, .., . or empty elements)", p)
	}
	for _, ex := range []string{MetadataPath, SignaturePath, IngestDir} {
		if p == ex || strings.HasPrefix(p, ex+"/") {
			return fmt.Errorf("path %q is never listed", p)
		}
	}
	if p == BlobsDir || strings.HasPrefix(p, BlobsDir+"/") {
		if _, err := blobDigest(p); err != nil {
			return err
		}
	}
	return nil
}

// blobDigest returns the digest a path under blobs/ names: blobs/<alg>/<encoded> with
// alg sha256 or sha512.
func blobDigest(p string) (digest.Digest, error) {
	parts := strings.Split(p, "/")
	if len(parts) != 3 || parts[0] != BlobsDir {
		return "", fmt.Errorf("%q is not blobs/<algorithm>/<hex>", p)
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
	if err := d.Validate(); err != nil || (d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512) {
		return "", fmt.Errorf("%q does not name a sha256 or sha512 digest", p)
	}
	return d, nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// EncodeMetadata validates m and renders it as metadata.json: indented JSON and a newline.
func EncodeMetadata(m *Metadata) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding metadata: %w", err)
	}
	return append(b, '\n'), nil
}

// BuildMetadata hashes every file of the bundle at dir (workers at once; <= 0 means
// GOMAXPROCS) and returns m with Files filled in, and its encoding. It writes nothing.
// m.MediaType defaults to MetadataMediaType and m.Created to now; the SHA-256 of each
// m.Trust file is filled in from its Files entry. It refuses a directory VerifyFiles
// would refuse: unsafe or misnamed files, blobs that do not hash to their name, an
// empty or ingest directory, index entries or images whose blobs are not present.
func BuildMetadata(ctx context.Context, dir string, m Metadata, workers int) (*Metadata, []byte, error) {
	if m.MediaType == "" {
		m.MediaType = MetadataMediaType
	}
	if m.Created.IsZero() {
		m.Created = time.Now().UTC().Truncate(time.Second)
	}
	if m.Images == nil {
		m.Images = []MetadataImage{}
	}
	t, err := openTree(dir)
	if err != nil {
		return nil, nil, err
	}
	defer t.close()
	jobs, err := t.scan(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	files, _, _, err := t.hash(ctx, jobs, workers, nil)
	if err != nil {
		return nil, nil, err
	}
	pin := newPinned(t, jobs, files)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	m.Files = files
	byPath := make(map[string]*File, len(files))
	for i := range files {
		byPath[files[i].Path] = &files[i]
	}
	m.Trust = append([]TrustFile(nil), m.Trust...)
	for i, tf := range m.Trust {
		f := byPath[tf.Path]
		if f == nil {
			return nil, nil, fmt.Errorf("trust file %s (%s) is not in the bundle", tf.Path, tf.Role)
		}
		if tf.SHA256 != "" && tf.SHA256 != f.SHA256 {
			return nil, nil, fmt.Errorf("%w: trust file %s has sha256 %s, caller expected %s", ErrFileChanged, tf.Path, f.SHA256, tf.SHA256)
		}
		m.Trust[i].SHA256 = f.SHA256
	}
	if m.Delta != nil {
		d := *m.Delta
		m.Delta = &d
		m.Delta.Expected = append([]ExpectedBlob{}, m.Delta.Expected...)
		sort.Slice(m.Delta.Expected, func(i, j int) bool {
			a, b := m.Delta.Expected[i], m.Delta.Expected[j]
			return a.Repository < b.Repository || (a.Repository == b.Repository && a.Digest < b.Digest)
		})
	}
	b, err := EncodeMetadata(&m)
	if err != nil {
		return nil, nil, err
	}
	if _, _, err := pin.coverage(ctx, &m); err != nil {
		return nil, nil, err
	}
	return &m, b, nil
}

// WriteMetadata writes b, which must parse with ParseMetadata, to petra/metadata.json
// atomically.
func (l *Layout) WriteMetadata(b []byte) error {
	if _, err := ParseMetadata(b); err != nil {
		return err
	}
	if err := os.MkdirAll(l.path(PetraDir), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", l.path(PetraDir), err)
	}
	return l.writeFileAtomic(MetadataPath, b)
}

// ReadMetadataBytes reads petra/metadata.json of the bundle at dir: a regular file
// reached through no symlink, at most MaxMetadataBytes. Parse the bytes only after
// their signature is verified. It opens the root for this one read (OpenRoot); to
// verify and then use a bundle, open a Root once and read everything through it.
func ReadMetadataBytes(dir string) ([]byte, error) {
	return readBundleFile(dir, MetadataPath, MaxMetadataBytes)
}

// ReadSignatureBytes reads petra/metadata.sigstore.json of the bundle at dir like
// ReadMetadataBytes, at most MaxSignatureBytes.
func ReadSignatureBytes(dir string) ([]byte, error) {
	return readBundleFile(dir, SignaturePath, MaxSignatureBytes)
}

// MetadataDigest returns the digest of metadata.json bytes, as a later delta bundle
// names them in Base.
func MetadataDigest(b []byte) digest.Digest { return digest.FromBytes(b) }

// NextInSeries returns the series and sequence number of the bundle that follows prev,
// or a fresh random series at sequence 1 when prev is nil.
func NextInSeries(prev *Metadata) (bundleID string, sequence uint64, err error) {
	if prev == nil {
		var id [16]byte
		if _, err := rand.Read(id[:]); err != nil {
			return "", 0, fmt.Errorf("drawing a bundle id: %w", err)
		}
		return hex.EncodeToString(id[:]), 1, nil
	}
	if !isLowerHex(prev.BundleID, 32) {
		return "", 0, fmt.Errorf("%w: previous bundleID %q", ErrMetadataInvalid, prev.BundleID)
	}
	if prev.Sequence == math.MaxUint64 {
		return "", 0, fmt.Errorf("%w: sequence of series %s is exhausted", ErrMetadataInvalid, prev.BundleID)
	}
	return prev.BundleID, prev.Sequence + 1, nil
}

// readBundleFile reads rel of the bundle at dir (see tree.readBundleFile).
func readBundleFile(dir, rel string, limit int64) ([]byte, error) {
	t, err := openTree(dir)
	if err != nil {
		return nil, err
	}
	defer t.close()
	return t.readBundleFile(rel, limit)
}

// readBundleFile reads rel, bounded by limit, refusing symlinks and anything but
// regular files and directories on the way.
func (t *tree) readBundleFile(rel string, limit int64) ([]byte, error) {
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := t.root.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", rel, err)
		}
		last := i == len(parts)-1
		if (last && !fi.Mode().IsRegular()) || (!last && !fi.IsDir()) {
			return nil, &FileError{Path: p, Kind: ErrUnsafeFile, Detail: "is a " + fileType(fi.Mode())}
		}
		if last {
			if fi.Size() > limit {
				return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", oci.ErrTooLarge, rel, fi.Size(), limit)
			}
			f, err := t.open(p, fi)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+1))
			if _, err := buf.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
				return nil, fmt.Errorf("reading %s: %w", rel, err)
			}
			if int64(buf.Len()) > limit {
				return nil, fmt.Errorf("%w: %s is over %d bytes", oci.ErrTooLarge, rel, limit)
			}
			return buf.Bytes(), nil
		}
	}
	return nil, errors.New("unreachable")
}
