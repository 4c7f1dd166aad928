package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/petra-oci/petra-oci/internal/ctxio"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/signing"
)

// ExportOptions configure Export. The zero value writes one uncompressed archive file
// at Out.
type ExportOptions struct {
	// Out is the archive file to write, or with SplitSize the chunk directory to
	// create. Required. An existing chunk directory is refused (ErrExists), so no chunk
	// of an earlier export is left beside the new ones; an existing archive file is
	// replaced atomically.
	Out string
	// SplitSize, when > 0, writes data chunks of this many bytes (the last one
	// shorter) and the signed chunk index instead of one archive file.
	SplitSize int64
	// Parity is how many Reed-Solomon parity chunks to add (needs SplitSize): any
	// Parity chunks lost or corrupted are rebuilt at import.
	Parity int
	// Zstd compresses the tar stream with zstd (level "default", one thread, so the
	// output is the same on every machine).
	Zstd bool
	// Signer signs the chunk index; required with SplitSize. It must be the key that
	// signed the bundle's metadata: Export checks that the metadata signature
	// verifies with its public key.
	Signer signing.Signer
	// VerifyFiles also checks the SHA-256 of every file against the signed metadata
	// while it is archived: a file changed since it was signed stops the export
	// instead of the import on the far side. It costs one more SHA-256 pass over the
	// bundle (about a third more CPU). Without it Export still verifies the metadata
	// signature (with Signer) and checks the file set, the kinds of file and every
	// size against the metadata, and Import verifies every file's digest before it
	// accepts the bundle: a changed file is never accepted, only found later.
	VerifyFiles bool
	// Sync flushes every file written to stable storage (fsync) before the rename
	// into place. Without it a crash soon after the export may leave chunks the page
	// cache had not written out yet: import then finds them bad against the signed
	// index (and parity may rebuild them), as it would any damaged chunk.
	Sync bool
	// Progress, when set, receives progress events.
	Progress func(Event)
}

// Event is one progress report of Export or Import.
type Event struct {
	// Phase is export, parity, sign, verify-index, verify-chunk, bad-chunk, rebuild,
	// extract, verify-bundle, resume or done.
	Phase string `json:"phase"`
	// Chunk names the chunk the event is about, if any.
	Chunk string `json:"chunk,omitempty"`
	// Done and Total count bytes of the phase (Total 0 when unknown).
	Done  int64 `json:"done"`
	Total int64 `json:"total,omitempty"`
	// Message says what happened, for events that are not counters.
	Message string `json:"message,omitempty"`
}

// ExportResult is what Export wrote.
type ExportResult struct {
	Out            string `json:"out"`
	BundleID       string `json:"bundleID"`
	Sequence       uint64 `json:"sequence"`
	MetadataDigest string `json:"metadataDigest"`
	// Archive is the archive written (chunked or not).
	Archive ArchiveInfo `json:"archive"`
	// Files and Dirs count the tar entries.
	Files int `json:"files"`
	Dirs  int `json:"dirs"`
	// Index is the chunk index (nil without SplitSize).
	Index *Index `json:"index,omitempty"`
}

// copyBufSize is the buffer of every streamed copy.
const copyBufSize = 1 << 20

// entry is one tar entry of an export.
type entry struct {
	name string // slash path; directories without the trailing slash
	dir  bool
	size int64
	sum  string // SHA-256 from the metadata; "" for the metadata files
}

// plan lists the entries of the export of a bundle with metadata m, in archive order:
// the petra directory, petra/metadata.json and its signature (so import verifies the
// signature before it extracts anything else), then every other directory and file
// sorted by their tar names.
func plan(m *layout.Metadata) []entry {
	first := []entry{{name: layout.PetraDir, dir: true}, {name: metadataFiles[0]}, {name: metadataFiles[1]}}
	dirs := map[string]bool{layout.PetraDir: true}
	var rest []entry
	for _, f := range m.Files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				rest = append(rest, entry{name: d, dir: true})
			}
		}
		rest = append(rest, entry{name: f.Path, size: f.Size, sum: f.SHA256})
	}
	sort.Slice(rest, func(i, j int) bool { return tarName(rest[i]) < tarName(rest[j]) })
	return append(first, rest...)
}

func tarName(e entry) string {
	if e.dir {
		return e.name + "/"
	}
	return e.name
}

// header is the normalised tar header of e: fixed times and owners, no user or group
// names, mode 0644 or 0755.
func header(e entry, mtime time.Time) *tar.Header {
	h := &tar.Header{Name: tarName(e), ModTime: mtime, Typeflag: tar.TypeReg, Mode: 0o644, Size: e.size}
	if e.dir {
		h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
	}
	return h
}

// Export writes the bundle at dir as one deterministic tar (see ExportOptions for the
// forms), streamed with bounded memory: two exports of the same bundle are
// byte-identical (the chunk index too; only its signature differs). Every file's size
// (with VerifyFiles its SHA-256 too) is checked against the bundle's metadata while it
// is read, and a file the metadata does not list, a symlink or any other kind of file is
// refused: the archive holds exactly what the metadata describes. Nothing is left at
// Out on error.
func Export(ctx context.Context, dir string, opts ExportOptions) (*ExportResult, error) {
	if opts.Out == "" {
		return nil, fmt.Errorf("%w: export: no output", oci.ErrInvalid)
	}
	if opts.SplitSize < 0 || opts.Parity < 0 || (opts.Parity > 0 && opts.SplitSize == 0) {
		return nil, fmt.Errorf("%w: export: split %d, parity %d (parity needs a split)", oci.ErrInvalid, opts.SplitSize, opts.Parity)
	}
	if opts.SplitSize > 0 && opts.Signer == nil {
		return nil, fmt.Errorf("%w: export: a split export needs the bundle key to sign its chunk index", oci.ErrInvalid)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	if !fi.IsDir() {
		return nil, &layout.FileError{Path: ".", Kind: layout.ErrUnsafeFile, Detail: dir + " is not a directory (a symlink?)"}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer root.Close()
	metaBytes, err := readSmall(root, layout.MetadataPath, layout.MaxMetadataBytes)
	if err != nil {
		return nil, fmt.Errorf("export: %s: %w", dir, err)
	}
	sigBytes, err := readSmall(root, layout.SignaturePath, layout.MaxSignatureBytes)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("export: %w: %s has no %s (sign it first)", ErrIndexUnsigned, dir, layout.SignaturePath)
	}
	if err != nil {
		return nil, fmt.Errorf("export: %s: %w", dir, err)
	}
	m, err := layout.ParseMetadata(metaBytes)
	if err != nil {
		return nil, fmt.Errorf("export: %s: %w", dir, err)
	}
	// the key check runs beside the export (a signing.PendingSigner is still being
	// decrypted): a key that does not verify the bundle signature stops the export as
	// soon as that is known, and nothing is signed or renamed into place before it passed
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	key := startKeyCheck(ctx, cancel, opts.Signer, metaBytes, sigBytes)
	res, err := exportBundle(ctx, root, dir, m, metaBytes, sigBytes, opts, key)
	if err != nil {
		if kerr := key.wait(); kerr != nil {
			return nil, kerr
		}
		return nil, err
	}
	return res, nil
}

// keyCheck checks beside the export that the signer's public key verifies the bundle's
// metadata signature: the chunk index is signed by the key that signed the bundle.
type keyCheck struct {
	done chan struct{}
	err  error
}

func startKeyCheck(ctx context.Context, cancel context.CancelCauseFunc, s signing.Signer, meta, sig []byte) *keyCheck {
	k := &keyCheck{done: make(chan struct{})}
	if s == nil {
		close(k.done)
		return k
	}
	go func() {
		defer close(k.done)
		pub, err := s.PublicKeyPEM()
		if err == nil {
			_, err = signing.VerifyBlob(ctx, sig, bytes.NewReader(meta), signing.VerifyOptions{PublicKey: pub})
			if err != nil && ctx.Err() == nil {
				err = fmt.Errorf("export: the chunk index must be signed with the key that signed the bundle, and %s does not verify %s: %w", s, layout.SignaturePath, err)
			}
		}
		if err != nil && ctx.Err() == nil {
			k.err = err
			cancel(err)
		}
	}()
	return k
}

// wait returns the outcome of the key check once it is known.
func (k *keyCheck) wait() error {
	<-k.done
	return k.err
}

func exportBundle(ctx context.Context, root *os.Root, dir string, m *layout.Metadata, metaBytes, sigBytes []byte, opts ExportOptions, key *keyCheck) (*ExportResult, error) {
	entries := plan(m)
	if err := checkTree(root, entries); err != nil {
		return nil, fmt.Errorf("export: %s: %w", dir, err)
	}
	res := &ExportResult{Out: opts.Out, BundleID: m.BundleID, Sequence: m.Sequence, MetadataDigest: layout.MetadataDigest(metaBytes).String()}
	for _, e := range entries {
		if e.dir {
			res.Dirs++
		} else {
			res.Files++
		}
	}
	var total int64
	for _, f := range m.Files {
		total += f.Size
	}
	src := &exportSource{root: root, entries: entries, meta: metaBytes, sig: sigBytes, mtime: m.Created.UTC().Truncate(time.Second),
		total: total + int64(len(metaBytes)+len(sigBytes)), verify: opts.VerifyFiles, key: key, progress: opts.Progress}
	if opts.SplitSize == 0 {
		return res, exportFile(ctx, src, opts, res)
	}
	return res, exportChunks(ctx, src, opts, res)
}

// readSmall reads a regular file of root (no symlink) of at most limit bytes.
func readSmall(root *os.Root, name string, limit int64) ([]byte, error) {
	fi, err := root.Lstat(filepath.FromSlash(name))
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &layout.FileError{Path: name, Kind: layout.ErrUnsafeFile, Detail: "not a regular file"}
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, limit %d", name, oci.ErrTooLarge, fi.Size(), limit)
	}
	f, err := root.Open(filepath.FromSlash(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: grew past %d bytes", name, oci.ErrTooLarge, limit)
	}
	return b, nil
}

// checkTree refuses anything in the bundle directory that the export would not carry:
// a file or directory the metadata does not describe, a symlink or another kind of file.
func checkTree(root *os.Root, entries []entry) error {
	want := make(map[string]bool, len(entries))
	for _, e := range entries {
		want[tarName(e)] = true
	}
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		switch {
		case d.IsDir():
			if !want[p+"/"] {
				return &layout.FileError{Path: p, Kind: layout.ErrFileExtra, Detail: "directory the metadata does not describe"}
			}
		case d.Type().IsRegular():
			if !want[p] {
				return &layout.FileError{Path: p, Kind: layout.ErrFileExtra, Detail: "file the metadata does not list"}
			}
		default:
			return &layout.FileError{Path: p, Kind: layout.ErrUnsafeFile, Detail: "a " + d.Type().String() + ", not a regular file"}
		}
		return nil
	})
}

// exportSource writes the tar stream of a bundle.
type exportSource struct {
	root     *os.Root
	entries  []entry
	meta     []byte
	sig      []byte
	mtime    time.Time
	total    int64
	verify   bool      // hash every file against the metadata
	key      *keyCheck // passed before anything is signed or renamed into place
	progress func(Event)
}

// writeTar writes the tar stream to w.
func (s *exportSource) writeTar(ctx context.Context, w io.Writer) error {
	tw := tar.NewWriter(w)
	buf := make([]byte, copyBufSize)
	var done, last int64
	for _, e := range s.entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case e.dir:
			if err := tw.WriteHeader(header(e, s.mtime)); err != nil {
				return fmt.Errorf("tar header of %s: %w", e.name, err)
			}
			continue
		case e.name == metadataFiles[0] || e.name == metadataFiles[1]:
			b := s.meta
			if e.name == metadataFiles[1] {
				b = s.sig
			}
			e.size = int64(len(b))
			if err := tw.WriteHeader(header(e, s.mtime)); err != nil {
				return fmt.Errorf("tar header of %s: %w", e.name, err)
			}
			if _, err := tw.Write(b); err != nil {
				return fmt.Errorf("writing %s: %w", e.name, err)
			}
		default:
			if err := s.copyFile(ctx, tw, e, buf); err != nil {
				return err
			}
		}
		done += e.size
		if s.progress != nil && (done-last >= 64<<20 || done == s.total) {
			last = done
			s.progress(Event{Phase: "export", Done: done, Total: s.total})
		}
	}
	return tw.Close()
}

// copyFile streams one bundle file into tw, checking its size (and with s.verify its
// SHA-256) against the metadata as it goes.
func (s *exportSource) copyFile(ctx context.Context, tw *tar.Writer, e entry, buf []byte) error {
	name := filepath.FromSlash(e.name)
	f, err := s.root.OpenFile(name, os.O_RDONLY|oNoFollow|oNonBlock, 0)
	if err != nil {
		return &layout.FileError{Path: e.name, Kind: layout.ErrFileMissing, Err: err}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", e.name, err)
	}
	if !fi.Mode().IsRegular() {
		return &layout.FileError{Path: e.name, Kind: layout.ErrUnsafeFile, Detail: "not a regular file"}
	}
	if fi.Size() != e.size {
		return &layout.FileError{Path: e.name, Kind: layout.ErrFileChanged, Detail: fmt.Sprintf("%d bytes, the metadata says %d", fi.Size(), e.size)}
	}
	if err := tw.WriteHeader(header(e, s.mtime)); err != nil {
		return fmt.Errorf("tar header of %s: %w", e.name, err)
	}
	if !s.verify {
		n, err := io.CopyBuffer(tw, ctxio.Reader(ctx, io.LimitReader(f, e.size)), buf)
		return copied(e, n, err)
	}
	h := newAsyncHash()
	n, err := io.CopyBuffer(io.MultiWriter(tw, h), ctxio.Reader(ctx, io.LimitReader(f, e.size)), buf)
	sum := h.sum()
	if err := copied(e, n, err); err != nil {
		return err
	}
	if sum != e.sum {
		return &layout.FileError{Path: e.name, Kind: layout.ErrFileChanged, Detail: "sha256 " + sum + ", the metadata says " + e.sum}
	}
	return nil
}

// copied checks the outcome of copying the n bytes of e.
func copied(e entry, n int64, err error) error {
	if err != nil {
		return fmt.Errorf("reading %s: %w", e.name, err)
	}
	if n != e.size {
		return &layout.FileError{Path: e.name, Kind: layout.ErrFileChanged, Detail: fmt.Sprintf("%d bytes read, the metadata says %d", n, e.size)}
	}
	return nil
}

// compressed returns the writer the tar stream goes through: w itself, or a zstd
// encoder over it (fixed level and a single thread, so the output is deterministic).
func compressed(w io.Writer, useZstd bool) (io.Writer, func() error, error) {
	if !useZstd {
		return w, func() error { return nil }, nil
	}
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
	if err != nil {
		return nil, nil, fmt.Errorf("zstd: %w", err)
	}
	return zw, zw.Close, nil
}

func exportFile(ctx context.Context, src *exportSource, opts ExportOptions, res *ExportResult) (err error) {
	out := filepath.Clean(opts.Out)
	if fi, err := os.Lstat(out); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("export: %w: %s is not a regular file", ErrExists, out)
	}
	f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, copyBufSize)
	info, _, err := src.writeArchive(ctx, bw, 0, opts.Zstd)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: writing %s: %w", out, err)
	}
	if opts.Sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := src.key.wait(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(f.Name(), out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	res.Out = out
	res.Archive = info
	emit(opts.Progress, Event{Phase: "done", Done: info.Size, Total: info.Size, Message: "wrote " + out})
	return nil
}

// writeArchive writes the archive to sink: the tar stream, through zstd with z, hashed
// as a whole and, with chunk > 0, in pieces of chunk bytes (the chunk digests, in
// order). It returns what the index and the result say of the archive.
func (s *exportSource) writeArchive(ctx context.Context, sink io.Writer, chunk int64, z bool) (ArchiveInfo, []string, error) {
	sh := newStreamHash(chunk)
	archive := &teeWriter{w: sink, h: sh}
	zw, closeZ, err := compressed(archive, z)
	if err != nil {
		sh.finish()
		return ArchiveInfo{}, nil, err
	}
	tarSide := &teeWriter{w: zw}
	err = s.writeTar(ctx, tarSide)
	if err == nil {
		err = closeZ()
	}
	sum, sums := sh.finish()
	a := ArchiveInfo{Size: archive.n, SHA256: sum, Compression: CompressionNone, TarSize: tarSide.n}
	if z {
		a.Compression = CompressionZstd
	}
	return a, sums, err
}

// teeWriter writes to w, counts what w took and, with h, hashes it.
type teeWriter struct {
	w io.Writer
	h *streamHash
	n int64
}

func (t *teeWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if t.h != nil {
		t.h.Write(p[:n])
	}
	t.n += int64(n)
	return n, err
}

func emit(p func(Event), e Event) {
	if p != nil {
		p(e)
	}
}
