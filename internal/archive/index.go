package archive

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/petra-oci/petra-oci/layout"
)

// The chunk index and its signature, in the chunk directory an export with a split
// writes. See docs/transfer.md.
const (
	IndexFile          = "chunks.json"
	IndexSignatureFile = "chunks.sigstore.json"
	IndexMediaType     = "application/vnd.petra-oci.chunk-index.v1+json"

	// MaxIndexBytes bounds chunks.json (about 150 bytes a chunk).
	MaxIndexBytes = 16 << 20

	RoleData   = "data"
	RoleParity = "parity"

	CompressionNone = "none"
	CompressionZstd = "zstd"

	ParityScheme = "reed-solomon"
	// FieldGF8 is klauspost/reedsolomon's default Vandermonde code over GF(2^8), used
	// up to 256 chunks in all; FieldGF16 its Leopard code over GF(2^16), above that.
	FieldGF8  = "gf8"
	FieldGF16 = "gf16-leopard"

	// maxChunks bounds the chunks of one export (Leopard GF(2^16) allows 65536 shards).
	maxChunks = 65536
	// shardAlign is the alignment Leopard needs of shard sizes; parity chunks are the
	// chunk size rounded up to it.
	shardAlign = 64
	// maxStripe bounds the stripe (bytes of each chunk encoded at once).
	maxStripe = 4 << 20
)

// Index is the chunk index chunks.json: which chunks make the archive, their sizes and
// SHA-256, the archive's, the bundle they carry and the parity that rebuilds lost ones.
// It is signed with the bundle key like petra/metadata.json (chunks.sigstore.json).
type Index struct {
	// MediaType is IndexMediaType; it versions the format.
	MediaType string `json:"mediaType"`
	// BundleID, Sequence and MetadataDigest name the bundle inside: its series, its
	// sequence and the digest (sha256:<hex>) of the exact bytes of its
	// petra/metadata.json.
	BundleID       string `json:"bundleID"`
	Sequence       uint64 `json:"sequence"`
	MetadataDigest string `json:"metadataDigest"`
	// Archive is the whole archive the data chunks concatenate to.
	Archive ArchiveInfo `json:"archive"`
	// ChunkSize is the size of every data chunk but the last (which is 1 to
	// ChunkSize bytes).
	ChunkSize int64 `json:"chunkSize"`
	// Chunks lists the data chunks in archive order, then the parity chunks.
	Chunks []Chunk `json:"chunks"`
	// Parity describes the parity chunks; nil without any.
	Parity *Parity `json:"parity,omitempty"`
}

// ArchiveInfo describes the whole archive.
type ArchiveInfo struct {
	// Size and SHA256 are those of the archive as written (compressed when
	// Compression is zstd).
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Compression is CompressionNone or CompressionZstd.
	Compression string `json:"compression"`
	// TarSize is the size of the tar stream (after decompression): import never
	// reads more.
	TarSize int64 `json:"tarSize"`
}

// Chunk is one chunk file.
type Chunk struct {
	// Name is the file name: data-NNNNN or parity-NNNNN (five digits or more),
	// numbered from 0 in order.
	Name string `json:"name"`
	// Role is RoleData or RoleParity.
	Role string `json:"role"`
	// Offset is where a data chunk starts in the archive (0 for parity chunks).
	Offset int64 `json:"offset"`
	// Size and SHA256 are the chunk file's.
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Parity says how the parity chunks were computed: Reed-Solomon over DataChunks data
// shards and ParityChunks parity shards of ShardSize bytes (data chunks padded with
// zeros), encoded StripeSize bytes of every shard at a time. Any ParityChunks chunks
// that are lost or corrupted, data or parity, can be rebuilt.
type Parity struct {
	Scheme       string `json:"scheme"`
	Field        string `json:"field"`
	DataChunks   int    `json:"dataChunks"`
	ParityChunks int    `json:"parityChunks"`
	ShardSize    int64  `json:"shardSize"`
	StripeSize   int64  `json:"stripeSize"`
}

var (
	hexRe   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	idRe    = regexp.MustCompile(`^[0-9a-f]{32}$`)
	chunkRe = regexp.MustCompile(`^(data|parity)-[0-9]{5,}$`)
)

// chunkName is the name of the i-th chunk of role.
func chunkName(role string, i int) string { return fmt.Sprintf("%s-%05d", role, i) }

// isChunkName reports whether a file name looks like a chunk.
func isChunkName(name string) bool { return chunkRe.MatchString(name) }

// EncodeIndex renders the index as the exact bytes export signs.
func EncodeIndex(ix *Index) ([]byte, error) {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the chunk index: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseIndex parses chunks.json strictly: the bytes must be exactly what EncodeIndex
// writes for the index they decode to (no unknown, repeated or differently spelled
// keys, no other spacing), and the index must pass Validate. Parse only bytes whose
// signature verified.
func ParseIndex(b []byte) (*Index, error) {
	if len(b) > MaxIndexBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrIndexInvalid, len(b), MaxIndexBytes)
	}
	var ix Index
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ix); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIndexInvalid, err)
	}
	again, err := EncodeIndex(&ix)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, b) {
		return nil, fmt.Errorf("%w: not in the canonical encoding (unknown, repeated or misspelled keys, or edited spacing)", ErrIndexInvalid)
	}
	if err := ix.Validate(); err != nil {
		return nil, err
	}
	return &ix, nil
}

// Validate checks every rule of the format.
func (ix *Index) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrIndexInvalid, fmt.Sprintf(format, a...))
	}
	if ix.MediaType != IndexMediaType {
		return bad("mediaType %q, want %q", ix.MediaType, IndexMediaType)
	}
	if !idRe.MatchString(ix.BundleID) || ix.Sequence == 0 {
		return bad("bundleID %q sequence %d", ix.BundleID, ix.Sequence)
	}
	if len(ix.MetadataDigest) != 71 || ix.MetadataDigest[:7] != "sha256:" || !hexRe.MatchString(ix.MetadataDigest[7:]) {
		return bad("metadataDigest %q is not sha256:<64 hex>", ix.MetadataDigest)
	}
	a := ix.Archive
	if a.Size <= 0 || !hexRe.MatchString(a.SHA256) || a.TarSize <= 0 || a.TarSize%512 != 0 {
		return bad("archive size %d sha256 %q tarSize %d", a.Size, a.SHA256, a.TarSize)
	}
	switch a.Compression {
	case CompressionNone:
		if a.TarSize != a.Size {
			return bad("uncompressed archive of %d bytes with tarSize %d", a.Size, a.TarSize)
		}
	case CompressionZstd:
	default:
		return bad("compression %q, want %q or %q", a.Compression, CompressionNone, CompressionZstd)
	}
	if ix.ChunkSize <= 0 {
		return bad("chunkSize %d", ix.ChunkSize)
	}
	nData := (a.Size + ix.ChunkSize - 1) / ix.ChunkSize
	if nData > maxChunks || int64(len(ix.Chunks)) > maxChunks {
		return bad("%d data chunks, %d chunks: at most %d", nData, len(ix.Chunks), maxChunks)
	}
	var off int64
	nd, np := 0, 0
	for i, c := range ix.Chunks {
		if !hexRe.MatchString(c.SHA256) {
			return bad("chunks[%d] %q: sha256 %q", i, c.Name, c.SHA256)
		}
		switch c.Role {
		case RoleData:
			if np > 0 {
				return bad("chunks[%d] %q: data chunk after a parity chunk", i, c.Name)
			}
			want := min(ix.ChunkSize, a.Size-off)
			if c.Name != chunkName(RoleData, nd) || c.Offset != off || c.Size != want || want <= 0 {
				return bad("chunks[%d]: %q offset %d size %d, want %q offset %d size %d", i, c.Name, c.Offset, c.Size, chunkName(RoleData, nd), off, want)
			}
			off += c.Size
			nd++
		case RoleParity:
			if c.Name != chunkName(RoleParity, np) || c.Offset != 0 {
				return bad("chunks[%d]: %q offset %d, want %q offset 0", i, c.Name, c.Offset, chunkName(RoleParity, np))
			}
			np++
		default:
			return bad("chunks[%d] %q: role %q", i, c.Name, c.Role)
		}
	}
	if off != a.Size || int64(nd) != nData {
		return bad("data chunks cover %d bytes in %d chunks, archive is %d bytes", off, nd, a.Size)
	}
	p := ix.Parity
	if np == 0 {
		if p != nil {
			return bad("parity described, but no parity chunk listed")
		}
		return nil
	}
	if p == nil {
		return bad("%d parity chunks without a parity description", np)
	}
	// shards are the largest data chunk (the first) rounded up to 64 bytes; earlier
	// exports padded a single data chunk to chunkSize, which is accepted too
	shard := p.ShardSize
	if p.Scheme != ParityScheme || p.Field != fieldFor(nd+np) || p.DataChunks != nd || p.ParityChunks != np ||
		(shard != roundUp(ix.Chunks[0].Size, shardAlign) && shard != roundUp(ix.ChunkSize, shardAlign)) ||
		p.StripeSize <= 0 || p.StripeSize%shardAlign != 0 || p.StripeSize > maxStripe {
		return bad("parity %+v does not fit %d data and %d parity chunks of %d bytes", *p, nd, np, ix.ChunkSize)
	}
	for _, c := range ix.Chunks[nd:] {
		if c.Size != shard {
			return bad("parity chunk %q of %d bytes, want %d", c.Name, c.Size, shard)
		}
	}
	return nil
}

// data and parity return the chunks of each role.
func (ix *Index) data() []Chunk { return ix.Chunks[:len(ix.Chunks)-ix.parityCount()] }
func (ix *Index) parity() []Chunk {
	return ix.Chunks[len(ix.Chunks)-ix.parityCount():]
}
func (ix *Index) parityCount() int {
	if ix.Parity == nil {
		return 0
	}
	return ix.Parity.ParityChunks
}

func fieldFor(shards int) string {
	if shards > 256 {
		return FieldGF16
	}
	return FieldGF8
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// metadataFiles are the two files every export starts with, in this order.
var metadataFiles = [2]string{layout.MetadataPath, layout.SignaturePath}
