package layout

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// MaxIndexBytes bounds index.json, read and written. An entry is about 550 bytes, so it
// holds about 60,000 entries: some 5,000 images of ten manifests each (bench/scale.sh
// writes 2,000 of them: 12 MiB). Reading it allocates at most this much (io.LimitReader),
// never a size read from the bundle.
const MaxIndexBytes = 32 << 20

// ReadIndex reads and checks index.json. A layout without one has an empty index.
func (l *Layout) ReadIndex() (ocispec.Index, error) {
	b, err := l.readIndexBytes()
	if errors.Is(err, fs.ErrNotExist) {
		return NewIndex(nil), nil
	}
	if err != nil {
		return ocispec.Index{}, err
	}
	idx, err := ParseIndex(b)
	if err != nil {
		return ocispec.Index{}, fmt.Errorf("%s: %w", l.path(IndexFile), err)
	}
	return idx, nil
}

// readIndexBytes reads index.json, a regular file, bounded by MaxIndexBytes (+1, so
// that ParseIndex sees an oversized one).
func (l *Layout) readIndexBytes() ([]byte, error) {
	f, err := openRegular(l.path(IndexFile))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", l.path(IndexFile), err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxIndexBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", l.path(IndexFile), err)
	}
	return b, nil
}

// ParseIndex parses the bytes of an index.json and checks every entry.
func ParseIndex(b []byte) (ocispec.Index, error) {
	if len(b) > MaxIndexBytes {
		return ocispec.Index{}, fmt.Errorf("%w: index.json is over %d bytes", oci.ErrTooLarge, MaxIndexBytes)
	}
	var idx ocispec.Index
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&idx); err != nil {
		return ocispec.Index{}, fmt.Errorf("%w: index.json: %v", oci.ErrInvalid, err)
	}
	if dec.More() {
		return ocispec.Index{}, fmt.Errorf("%w: index.json: trailing data", oci.ErrInvalid)
	}
	if idx.SchemaVersion != 2 {
		return ocispec.Index{}, fmt.Errorf("%w: index.json: schemaVersion %d", oci.ErrInvalid, idx.SchemaVersion)
	}
	if idx.MediaType != "" && idx.MediaType != ocispec.MediaTypeImageIndex {
		return ocispec.Index{}, fmt.Errorf("%w: index.json: mediaType %q", oci.ErrInvalid, idx.MediaType)
	}
	for i, d := range idx.Manifests {
		if err := oci.ValidateDescriptor(d); err != nil {
			return ocispec.Index{}, fmt.Errorf("index.json entry %d: %w", i, err)
		}
		if !oci.IsManifest(d.MediaType) {
			return ocispec.Index{}, fmt.Errorf("%w: index.json entry %d (%s): media type %q is not a manifest", oci.ErrInvalid, i, d.Digest, d.MediaType)
		}
		if d.Size > oci.MaxManifestBytes {
			return ocispec.Index{}, fmt.Errorf("%w: index.json entry %d (%s): %d bytes", oci.ErrTooLarge, i, d.Digest, d.Size)
		}
	}
	return idx, nil
}

// NewIndex returns an index.json value holding entries.
func NewIndex(entries []ocispec.Descriptor) ocispec.Index {
	if entries == nil {
		entries = []ocispec.Descriptor{}
	}
	return ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: entries,
	}
}

// kindRank is each kind's place in index.json: the order of oci.Kinds.
var kindRank = func() map[string]int {
	m := make(map[string]int, len(oci.Kinds))
	for i, k := range oci.Kinds {
		m[string(k)] = i
	}
	return m
}()

// SortEntries orders index.json entries stably: images first, then their children, cosign
// artifacts, referrers and referrer indexes; within a kind by repository, name and digest.
func SortEntries(entries []ocispec.Descriptor) {
	key := func(d ocispec.Descriptor) (int, string, string, string) {
		r, ok := kindRank[d.Annotations[oci.AnnotationKind]]
		if !ok {
			r = len(kindRank)
		}
		return r, d.Annotations[oci.AnnotationRepository], d.Annotations[ocispec.AnnotationRefName], d.Digest.String()
	}
	sort.SliceStable(entries, func(i, j int) bool {
		ri, ai, ni, di := key(entries[i])
		rj, aj, nj, dj := key(entries[j])
		if ri != rj {
			return ri < rj
		}
		if ai != aj {
			return ai < aj
		}
		if ni != nj {
			return ni < nj
		}
		return di < dj
	})
}

// WriteIndex sorts idx's entries and writes index.json atomically. An index over
// MaxIndexBytes is refused (oci.ErrTooLarge) before anything is written: every reader
// (ReadIndex, verification) would refuse it.
func (l *Layout) WriteIndex(idx ocispec.Index) error {
	SortEntries(idx.Manifests)
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding index.json: %w", err)
	}
	b = append(b, '\n')
	if len(b) > MaxIndexBytes {
		return fmt.Errorf("%w: index.json of %d entries is %d bytes, over the %d bytes readers accept: split the images over several bundles", oci.ErrTooLarge, len(idx.Manifests), len(b), MaxIndexBytes)
	}
	return l.writeFileAtomic(IndexFile, b)
}
