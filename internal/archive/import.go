package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/ctxio"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/signing"
)

// ImportOptions configure Import. The zero value refuses every archive: Verify must say
// who signed the bundle.
type ImportOptions struct {
	// Out is the bundle directory to create. Required; it must not exist. The import
	// works in the sibling directory .<name>.petra-import (kept on failure so a re-run
	// resumes) and renames the bundle to Out only after it verified in full.
	Out string
	// Verify is the verification the bundle must pass before it is renamed to Out, as
	// `petra-oci verify` runs it. Its Signature also verifies the chunk index, which
	// must be signed with the bundle key.
	Verify bundle.VerifyOptions
	// Workers bounds chunks hashed at once; <= 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, receives progress events.
	Progress func(Event)
}

// ChunkStatus is what Import found of one chunk.
type ChunkStatus struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Status is verified, verified-earlier (a resumed import), not-needed (extracted
	// before an interruption, or parity that was not needed), rebuilt, or bad (a
	// parity chunk that could not be used).
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// ImportResult is what Import did.
type ImportResult struct {
	Out            string `json:"out"`
	BundleID       string `json:"bundleID"`
	Sequence       uint64 `json:"sequence"`
	MetadataDigest string `json:"metadataDigest"`
	// Resumed is set when an earlier interrupted import of the same source was
	// continued.
	Resumed bool          `json:"resumed"`
	Chunks  []ChunkStatus `json:"chunks,omitempty"`
	// Verify is the report of the full bundle verification.
	Verify *bundle.Report `json:"verify"`
}

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// Import imports src, a chunk index (chunks.json, or the chunk directory holding it) or
// a plain archive written by Export, into the new bundle directory opts.Out.
//
// A chunk index is verified first (its signature, with opts.Verify.Signature, before it
// is parsed), then every chunk against it before any byte is extracted: a missing,
// short, corrupted, reordered or foreign chunk is rebuilt from parity when at most as
// many chunks as there are parity chunks are bad, and refused naming each bad chunk
// otherwise; a chunk file in the directory that the index does not list is refused.
// Extraction then reads petra/metadata.json and its signature first, verifies them, and
// accepts only the directories and files the signed metadata lists, each of its signed
// size (see extractor). Last, the whole bundle is verified as `petra-oci verify` does,
// and only then renamed into place. An interrupted import (ctx cancelled) leaves its
// state in the work directory; the same call resumes without hashing again the chunks
// that verified, and without reading again what was extracted.
func Import(ctx context.Context, src string, opts ImportOptions) (*ImportResult, error) {
	if opts.Out == "" {
		return nil, fmt.Errorf("%w: import: no output directory", oci.ErrInvalid)
	}
	out := filepath.Clean(opts.Out)
	if _, err := os.Lstat(out); err == nil {
		return nil, fmt.Errorf("import: %w: %s", ErrExists, out)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("import: %w", err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	work := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".petra-import")
	im := &importer{opts: opts, out: out, work: work, res: &ImportResult{Out: out}}
	if fi.IsDir() {
		return im.chunks(ctx, filepath.Join(src, IndexFile))
	}
	head := make([]byte, 1)
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("import: %s: %w", src, err)
	}
	if head[0] == '{' {
		return im.chunks(ctx, src)
	}
	return im.archive(ctx, src, fi)
}

type importer struct {
	opts ImportOptions
	out  string
	work string
	st   *state
	res  *ImportResult
	// written records the files this run extracted, hashed as they were written: the
	// final verification checks them against the signed metadata with those hashes
	// instead of reading them again (files of an earlier, interrupted run are hashed).
	written *layout.WriteRecord
}

func (im *importer) save() error { return saveState(im.work, im.st) }

func (im *importer) emit(e Event) { emit(im.opts.Progress, e) }

// acceptMetadata verifies the bundle signature over the metadata bytes and parses them.
func (im *importer) acceptMetadata(ctx context.Context, meta, sig []byte) (*layout.Metadata, error) {
	if _, err := signing.VerifyBlob(ctx, sig, bytes.NewReader(meta), im.opts.Verify.Signature); err != nil {
		return nil, fmt.Errorf("%w: %s in the archive: %w", bundle.ErrSignature, layout.SignaturePath, err)
	}
	m, err := layout.ParseMetadata(meta)
	if err != nil {
		return nil, err
	}
	im.res.BundleID, im.res.Sequence, im.res.MetadataDigest = m.BundleID, m.Sequence, layout.MetadataDigest(meta).String()
	return m, nil
}

// extract runs the extractor over the tar stream r into work/bundle.
func (im *importer) extract(ctx context.Context, r io.Reader, limit int64, accept func([]byte, []byte) (*layout.Metadata, error)) error {
	dir := filepath.Join(im.work, "bundle")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer root.Close()
	rec, err := layout.NewWriteRecord(root)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	im.written = rec
	x := &extractor{root: root, rec: rec, accept: accept, limit: limit, st: im.st, save: im.save, progress: im.opts.Progress,
		seen: map[string]bool{}, dirs: map[string]bool{layout.PetraDir: true}}
	for _, p := range im.st.Done {
		x.seen[p] = true
	}
	if x.seen[metadataFiles[0]] && x.seen[metadataFiles[1]] {
		// resumed: the metadata was extracted and verified before; verify it again
		if x.metaB, err = readSmall(root, metadataFiles[0], layout.MaxMetadataBytes); err == nil {
			x.sigB, err = readSmall(root, metadataFiles[1], layout.MaxSignatureBytes)
		}
		if err != nil {
			return fmt.Errorf("import: resuming: %w", err)
		}
		m, err := accept(x.metaB, x.sigB)
		if err != nil {
			return err
		}
		x.known(m)
	}
	im.emit(Event{Phase: "extract", Done: im.st.Offset, Total: limit})
	return x.run(ctx, r)
}

// finish verifies the extracted bundle in full and renames it into place.
func (im *importer) finish(ctx context.Context, wantMetadata string) (*ImportResult, error) {
	dir := filepath.Join(im.work, "bundle")
	im.emit(Event{Phase: "verify-bundle", Message: "verifying the extracted bundle as petra-oci verify does"})
	vopts := im.opts.Verify
	vopts.Written = im.written
	rep, err := bundle.Verify(ctx, dir, vopts)
	if err != nil {
		if ctx.Err() == nil {
			os.RemoveAll(im.work) // verified content is wrong: nothing to resume
		}
		return im.res, fmt.Errorf("import: the extracted bundle does not verify: %w", err)
	}
	if wantMetadata != "" && rep.MetadataDigest.String() != wantMetadata {
		os.RemoveAll(im.work)
		return im.res, fmt.Errorf("import: %w: the bundle's metadata is %s, the chunk index names %s", ErrIndexInvalid, rep.MetadataDigest, wantMetadata)
	}
	rep.Dir = im.out
	im.res.Verify = rep
	if _, err := os.Lstat(im.out); err == nil {
		return im.res, fmt.Errorf("import: %w: %s appeared during the import", ErrExists, im.out)
	}
	if err := os.Rename(dir, im.out); err != nil {
		return im.res, fmt.Errorf("import: %w", err)
	}
	if err := os.RemoveAll(im.work); err != nil {
		return im.res, fmt.Errorf("import: removing %s: %w", im.work, err)
	}
	im.emit(Event{Phase: "done", Message: "imported " + im.out})
	return im.res, nil
}

// archive imports a plain archive file.
func (im *importer) archive(ctx context.Context, src string, fi os.FileInfo) (*ImportResult, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return nil, err
	}
	source := "archive " + abs + " " + strconv.FormatInt(fi.Size(), 10) + " " + strconv.FormatInt(fi.ModTime().UnixNano(), 10)
	st, resumed, err := loadState(im.work, source)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	im.st, im.res.Resumed = st, resumed
	if resumed {
		im.emit(Event{Phase: "resume", Done: st.Offset, Message: fmt.Sprintf("resuming at byte %d, %d files extracted before", st.Offset, len(st.Done))})
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil {
		return nil, fmt.Errorf("import: %w: %s: %w", ErrNotExport, src, err)
	}
	isZstd := bytes.Equal(magic, zstdMagic)
	var r io.Reader
	if isZstd {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		zr, err := decompressor(bufio.NewReaderSize(f, copyBufSize), st.Offset)
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	} else {
		if _, err := f.Seek(st.Offset, io.SeekStart); err != nil {
			return nil, err
		}
		r = bufio.NewReaderSize(f, copyBufSize)
	}
	accept := func(meta, sig []byte) (*layout.Metadata, error) { return im.acceptMetadata(ctx, meta, sig) }
	if err := im.extract(ctx, r, 0, accept); err != nil {
		return im.res, fmt.Errorf("import %s: %w", src, err)
	}
	return im.finish(ctx, "")
}

// decompressor returns a zstd reader over r that has skipped skip bytes of output.
func decompressor(r io.Reader, skip int64) (*zstd.Decoder, error) {
	zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, zr, skip); err != nil {
			zr.Close()
			return nil, fmt.Errorf("resuming in the zstd stream: %w", err)
		}
	}
	return zr, nil
}

// chunks imports the chunks a chunk index lists.
func (im *importer) chunks(ctx context.Context, indexPath string) (*ImportResult, error) {
	dir := filepath.Dir(indexPath)
	idxB, err := readFileLimited(indexPath, MaxIndexBytes)
	if err != nil {
		return nil, fmt.Errorf("import: chunk index: %w", err)
	}
	sigPath := filepath.Join(dir, IndexSignatureFile)
	sigB, err := readFileLimited(sigPath, signing.MaxBundleSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("import: %w: no %s beside %s", ErrIndexUnsigned, IndexSignatureFile, indexPath)
	}
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	im.emit(Event{Phase: "verify-index", Message: "verifying the signature over " + indexPath})
	if _, err := signing.VerifyBlob(ctx, sigB, bytes.NewReader(idxB), im.opts.Verify.Signature); err != nil {
		return nil, fmt.Errorf("import: %w: %s: %w", ErrIndexSignature, sigPath, err)
	}
	ix, err := ParseIndex(idxB)
	if err != nil {
		return nil, fmt.Errorf("import: %s: %w", indexPath, err)
	}
	im.res.BundleID, im.res.Sequence, im.res.MetadataDigest = ix.BundleID, ix.Sequence, ix.MetadataDigest
	// a chunk file the index does not list is a leftover of another export
	listed := map[string]bool{}
	for _, c := range ix.Chunks {
		listed[c.Name] = true
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	for _, de := range des {
		if isChunkName(de.Name()) && !listed[de.Name()] {
			return nil, fmt.Errorf("import: %w", &ChunkError{Name: de.Name(), Kind: ErrStaleChunk,
				Detail: fmt.Sprintf("%s lists %d chunks and not this one: a leftover of another export? remove it", IndexFile, len(ix.Chunks))})
		}
	}
	sum := sha256.Sum256(idxB)
	st, resumed, err := loadState(im.work, "index sha256:"+hex.EncodeToString(sum[:]))
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	im.st, im.res.Resumed = st, resumed
	if resumed {
		im.emit(Event{Phase: "resume", Done: st.Offset, Message: fmt.Sprintf("resuming at tar byte %d, %d chunks verified before", st.Offset, len(st.Verified))})
	}
	paths, err := im.verifyChunks(ctx, ix, dir)
	if err != nil {
		return im.res, fmt.Errorf("import: %w", err)
	}
	r, start, err := chunkReader(ix, paths, st.Offset)
	if err != nil {
		return im.res, fmt.Errorf("import: %w", err)
	}
	defer r.Close()
	var tarR io.Reader = r
	if ix.Archive.Compression == CompressionZstd {
		zr, err := decompressor(r, st.Offset)
		if err != nil {
			return im.res, fmt.Errorf("import: %w", err)
		}
		defer zr.Close()
		tarR = zr
	} else if start != st.Offset {
		return im.res, fmt.Errorf("import: internal error: resuming at %d, reading from %d", st.Offset, start)
	}
	accept := func(meta, sig []byte) (*layout.Metadata, error) {
		if d := layout.MetadataDigest(meta).String(); d != ix.MetadataDigest {
			return nil, fmt.Errorf("%w: the archive carries metadata %s, the chunk index names %s", ErrIndexInvalid, d, ix.MetadataDigest)
		}
		m, err := im.acceptMetadata(ctx, meta, sig)
		if err == nil && (m.BundleID != ix.BundleID || m.Sequence != ix.Sequence) {
			return nil, fmt.Errorf("%w: the archive carries bundle %s sequence %d, the chunk index names %s sequence %d", ErrIndexInvalid, m.BundleID, m.Sequence, ix.BundleID, ix.Sequence)
		}
		return m, err
	}
	if err := im.extract(ctx, tarR, ix.Archive.TarSize, accept); err != nil {
		return im.res, fmt.Errorf("import %s: %w", indexPath, err)
	}
	return im.finish(ctx, ix.MetadataDigest)
}

func readFileLimited(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", p, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", p, oci.ErrTooLarge, limit)
	}
	return b, nil
}

// verifyChunks checks the data chunks that extraction will read (and, when one is
// bad, every other chunk that a rebuild needs), rebuilding bad ones from parity. It
// returns the file to read for each data chunk, by index position.
func (im *importer) verifyChunks(ctx context.Context, ix *Index, dir string) (map[int]string, error) {
	data := ix.data()
	from := im.st.Offset
	if ix.Archive.Compression == CompressionZstd {
		from = 0 // the zstd stream is read from its start again
	}
	paths := map[int]string{}
	status := make([]ChunkStatus, len(ix.Chunks))
	for i, c := range ix.Chunks {
		paths[i] = filepath.Join(dir, c.Name)
		status[i] = ChunkStatus{Name: c.Name, Role: c.Role, Status: "not-needed"}
	}
	defer func() { im.res.Chunks = status }()
	var needed []int
	for i, c := range data {
		if rb := filepath.Join(im.work, "rebuilt", c.Name); im.st.Rebuilt[c.Name] == c.SHA256 && fileSize(rb) == c.Size {
			paths[i], status[i].Status = rb, "rebuilt"
			continue
		}
		if c.Offset+c.Size > from {
			needed = append(needed, i)
		}
	}
	bad, err := im.hashChunks(ctx, ix, paths, needed, status)
	if err != nil {
		return nil, err
	}
	if len(bad) == 0 {
		return paths, im.save()
	}
	for _, i := range bad {
		im.emit(Event{Phase: "bad-chunk", Chunk: ix.Chunks[i].Name, Message: status[i].Detail})
	}
	if ix.Parity == nil {
		return nil, chunkErrors(ix, bad, status, "the export has no parity chunks to rebuild it")
	}
	// a rebuild reads every other chunk: verify those not verified yet
	var rest []int
	for i := range ix.Chunks {
		if status[i].Status == "not-needed" {
			rest = append(rest, i)
		}
	}
	more, err := im.hashChunks(ctx, ix, paths, rest, status)
	if err != nil {
		return nil, err
	}
	for _, i := range more {
		im.emit(Event{Phase: "bad-chunk", Chunk: ix.Chunks[i].Name, Message: status[i].Detail})
	}
	lost := append(bad, more...)
	if len(lost) > ix.Parity.ParityChunks {
		return nil, chunkErrors(ix, lost, status, fmt.Sprintf("%d chunks are bad and %d parity chunks rebuild at most %d", len(lost), ix.Parity.ParityChunks, ix.Parity.ParityChunks))
	}
	rebuiltDir := filepath.Join(im.work, "rebuilt")
	if err := os.MkdirAll(rebuiltDir, 0o700); err != nil {
		return nil, err
	}
	im.emit(Event{Phase: "rebuild", Message: fmt.Sprintf("rebuilding %d chunks from parity", len(lost))})
	sums, err := rebuild(ctx, ix, paths, lost, rebuiltDir, im.opts.Progress)
	if err != nil {
		return nil, fmt.Errorf("rebuilding from parity: %w", err)
	}
	for _, i := range lost {
		c := ix.Chunks[i]
		if sums[i] != c.SHA256 {
			return nil, &ChunkError{Name: c.Name, Kind: ErrChunk, Detail: "rebuilt from parity, but it hashes to " + sums[i] + ", not the signed " + c.SHA256}
		}
		status[i].Status, status[i].Detail = "rebuilt", "was "+status[i].Detail+"; rebuilt from parity"
		paths[i] = filepath.Join(rebuiltDir, c.Name)
		if c.Role == RoleData {
			im.st.Rebuilt[c.Name] = c.SHA256
		}
	}
	return paths, im.save()
}

func fileSize(p string) int64 {
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return -1
	}
	return fi.Size()
}

func chunkErrors(ix *Index, bad []int, status []ChunkStatus, why string) error {
	errs := make([]error, 0, len(bad)+1)
	for _, i := range bad {
		errs = append(errs, &ChunkError{Name: ix.Chunks[i].Name, Kind: ErrChunk, Detail: status[i].Detail})
	}
	errs = append(errs, fmt.Errorf("%w: %s; nothing was extracted", ErrChunk, why))
	return errors.Join(errs...)
}

// hashChunks verifies the chunks at positions, Workers at a time, and returns the bad
// ones (in order). A chunk that verified in an earlier run and whose file has not
// changed since (size and modification time) is not read again.
func (im *importer) hashChunks(ctx context.Context, ix *Index, paths map[int]string, positions []int, status []ChunkStatus) ([]int, error) {
	workers := im.opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	var total, done int64
	for _, i := range positions {
		total += ix.Chunks[i].Size
	}
	for _, i := range positions {
		c := ix.Chunks[i]
		fi, err := os.Lstat(paths[i])
		switch {
		case err != nil:
			status[i].Status, status[i].Detail = "bad", "missing: "+err.Error()
			continue
		case !fi.Mode().IsRegular():
			status[i].Status, status[i].Detail = "bad", "not a regular file ("+fi.Mode().Type().String()+")"
			continue
		case fi.Size() != c.Size:
			status[i].Status, status[i].Detail = "bad", fmt.Sprintf("%d bytes, the index says %d", fi.Size(), c.Size)
			continue
		}
		mu.Lock()
		v, ok := im.st.Verified[c.Name]
		mu.Unlock()
		if ok && v.SHA256 == c.SHA256 && v.Size == fi.Size() && v.ModTime == fi.ModTime().UnixNano() {
			status[i].Status = "verified-earlier"
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sum, err := hashFile(ctx, paths[i])
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				status[i].Status, status[i].Detail = "bad", "unreadable: "+err.Error()
			case sum != c.SHA256:
				status[i].Status, status[i].Detail = "bad", "sha256 "+sum+", the index says "+c.SHA256
			default:
				status[i].Status = "verified"
				im.st.Verified[c.Name] = verifiedChunk{Size: fi.Size(), ModTime: fi.ModTime().UnixNano(), SHA256: sum}
			}
			done += c.Size
			im.emit(Event{Phase: "verify-chunk", Chunk: c.Name, Done: done, Total: total})
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, errors.Join(err, im.save())
	}
	var bad []int
	for _, i := range positions {
		if status[i].Status == "bad" {
			bad = append(bad, i)
		}
	}
	return bad, nil
}

func hashFile(ctx context.Context, p string) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, ctxio.Reader(ctx, f), make([]byte, copyBufSize)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// multiChunk reads the data chunks one after the other from an archive offset.
type multiChunk struct {
	ix    *Index
	paths map[int]string
	i     int
	f     *os.File
	r     io.Reader
}

// chunkReader returns a reader of the archive from offset (rounded down to the start
// of its chunk for a compressed archive, which is read from 0) and where it starts.
func chunkReader(ix *Index, paths map[int]string, offset int64) (*multiChunk, int64, error) {
	if ix.Archive.Compression == CompressionZstd {
		offset = 0
	}
	m := &multiChunk{ix: ix, paths: paths}
	data := ix.data()
	for m.i = 0; m.i < len(data) && data[m.i].Offset+data[m.i].Size <= offset; m.i++ {
	}
	if m.i == len(data) {
		return m, offset, nil
	}
	if err := m.open(offset - data[m.i].Offset); err != nil {
		return nil, 0, err
	}
	return m, offset, nil
}

func (m *multiChunk) open(skip int64) error {
	c := m.ix.Chunks[m.i]
	f, err := os.OpenFile(m.paths[m.i], os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		return fmt.Errorf("chunk %s: %w", c.Name, err)
	}
	m.f = f
	m.r = io.NewSectionReader(f, skip, c.Size-skip)
	return nil
}

func (m *multiChunk) Read(p []byte) (int, error) {
	for {
		if m.f == nil {
			return 0, io.EOF
		}
		n, err := m.r.Read(p)
		if err == io.EOF {
			m.f.Close()
			m.f = nil
			m.i++
			if m.i < len(m.ix.data()) {
				if oerr := m.open(0); oerr != nil {
					return n, oerr
				}
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (m *multiChunk) Close() error {
	if m.f != nil {
		return m.f.Close()
	}
	return nil
}

// Offset and size return the place of the chunk in the archive (parity: 0, 0 past the
// end), for reports.
func (s ChunkStatus) Offset(ix *Index) int64 {
	for _, c := range ix.data() {
		if c.Name == s.Name {
			return c.Offset
		}
	}
	return ix.Archive.Size
}

func (s ChunkStatus) size(ix *Index) int64 {
	for _, c := range ix.data() {
		if c.Name == s.Name {
			return c.Size
		}
	}
	return 1
}
