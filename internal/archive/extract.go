package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/petra-oci/petra-oci/internal/ctxio"
	"github.com/petra-oci/petra-oci/layout"
)

// saveEvery is how many tar bytes extraction reads between two saves of the resume
// state (and progress events); tests lower it.
var saveEvery int64 = 64 << 20

// maxNameBytes bounds an entry name (the metadata bounds its paths the same way).
const maxNameBytes = 4096

// allowedPAX are the PAX records an entry may carry (the ones archive/tar writes for
// long names, large sizes and times); anything else (sparse maps, extended
// attributes, links) is refused.
var allowedPAX = map[string]bool{"path": true, "size": true, "mtime": true, "atime": true, "ctime": true}

// extractor reads a tar stream into a directory with strict checks. Before the
// metadata is known it accepts only the petra directory, petra/metadata.json and its
// signature; once both are read it verifies the signature (accept) and, from then
// on, only the directories and files the signed metadata describes, each of exactly
// its signed size.
type extractor struct {
	root *os.Root
	// rec writes the listed files and records their hashes for the final
	// verification (bundle.VerifyOptions.Written), which then does not read them again.
	rec *layout.WriteRecord
	// accept verifies the signature over the metadata bytes and returns the parsed
	// metadata; nothing else is extracted before it succeeds.
	accept func(meta, sig []byte) (*layout.Metadata, error)
	// limit is the most tar bytes read in all (the signed tarSize, or a bound from
	// the signed metadata for a plain archive); 0 means: from the metadata.
	limit int64

	meta     *layout.Metadata
	metaB    []byte
	sigB     []byte
	files    map[string]*layout.File
	dirs     map[string]bool
	seen     map[string]bool
	st       *state
	save     func() error
	progress func(Event)
}

// countReader counts the bytes read through it and fails past a limit.
type countReader struct {
	r     io.Reader
	n     int64
	limit int64
}

var errLimit = errors.New("limit reached")

func (c *countReader) Read(p []byte) (int, error) {
	if c.limit > 0 && c.n >= c.limit {
		// at the limit: the stream must end here
		var probe [1]byte
		if n, err := c.r.Read(probe[:]); n == 0 && err == io.EOF {
			return 0, io.EOF
		}
		return 0, errLimit
	}
	if c.limit > 0 && int64(len(p)) > c.limit-c.n {
		p = p[:c.limit-c.n]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func refuse(name string, kind error, format string, a ...any) error {
	return &EntryError{Name: name, Kind: kind, Detail: fmt.Sprintf(format, a...)}
}

// checkName refuses a name that is not a clean relative slash path inside the target.
func checkName(raw string) (string, error) {
	name := raw
	if len(name) > maxNameBytes {
		return "", refuse(raw[:64]+"...", ErrUnsafeEntry, "name of %d bytes (limit %d)", len(name), maxNameBytes)
	}
	if !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\\") {
		return "", refuse(raw, ErrUnsafeEntry, "name is not valid UTF-8 or holds NUL or a backslash")
	}
	if strings.HasPrefix(name, "/") {
		return "", refuse(raw, ErrUnsafeEntry, "absolute path")
	}
	for _, el := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		if el == ".." {
			return "", refuse(raw, ErrUnsafeEntry, "path traversal (..)")
		}
	}
	name = strings.TrimSuffix(name, "/")
	if name == "" || name == "." || path.Clean(name) != name {
		return "", refuse(raw, ErrUnsafeEntry, "not a clean relative path")
	}
	return name, nil
}

// run extracts the tar stream r (positioned at an entry boundary, st.Offset bytes into
// the stream) until its end.
func (x *extractor) run(ctx context.Context, r io.Reader) error {
	cr := &countReader{r: ctxio.Reader(ctx, r), n: x.st.Offset}
	x.setLimit(cr)
	tr := tar.NewReader(cr)
	buf := make([]byte, copyBufSize)
	var lastSave time.Time
	lastBytes := cr.n
	for {
		if err := ctx.Err(); err != nil {
			return x.interrupted(err)
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return x.readErr(ctx, cr, "", err)
		}
		if err := x.entry(ctx, tr, h, buf, cr); err != nil {
			return err
		}
		// the next header starts at the next 512-byte boundary
		x.st.Offset = roundUp(cr.n, 512)
		if cr.n-lastBytes >= saveEvery || time.Since(lastSave) > 2*time.Second {
			if err := x.save(); err != nil {
				return err
			}
			lastSave, lastBytes = time.Now(), cr.n
			emit(x.progress, Event{Phase: "extract", Done: cr.n, Total: x.limit})
		}
	}
	if x.meta == nil {
		return fmt.Errorf("%w: the archive ends before %s and %s", ErrNotExport, metadataFiles[0], metadataFiles[1])
	}
	var missing []string
	for _, f := range x.meta.Files {
		if !x.seen[f.Path] {
			missing = append(missing, f.Path)
		}
	}
	if len(missing) > 0 {
		return &layout.FileError{Path: missing[0], Kind: layout.ErrFileMissing,
			Detail: fmt.Sprintf("the archive ends without %d of the %d files the signed metadata lists", len(missing), len(x.meta.Files))}
	}
	// what follows the end-of-archive marker is tar padding: zeros, within the limit
	n, err := io.Copy(zeroChecker{}, cr)
	if err != nil {
		if errors.Is(err, errLimit) {
			return refuse("(after the end of the archive)", ErrUnlisted, "more bytes than the signed sizes allow")
		}
		if errors.Is(err, errNonZero) {
			return refuse("(after the end of the archive)", ErrUnsafeEntry, "data after the end-of-archive marker")
		}
		return x.readErr(ctx, cr, "", err)
	}
	_ = n
	emit(x.progress, Event{Phase: "extract", Done: cr.n, Total: x.limit})
	return nil
}

func (x *extractor) interrupted(err error) error {
	if serr := x.save(); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

func (x *extractor) readErr(ctx context.Context, cr *countReader, name string, err error) error {
	switch {
	case ctx.Err() != nil:
		return x.interrupted(ctx.Err())
	case errors.Is(err, errLimit):
		return refuse(name, ErrUnlisted, "more bytes than the signed sizes allow (stopped at %d)", cr.n)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: the archive ends in the middle of an entry (at byte %d)", ErrNotExport, cr.n)
	case errors.Is(err, tar.ErrHeader), errors.Is(err, tar.ErrFieldTooLong), errors.Is(err, tar.ErrInsecurePath):
		return refuse(name, ErrUnsafeEntry, "malformed or oversized header at byte %d: %v", cr.n, err)
	}
	return fmt.Errorf("reading the archive at byte %d: %w", cr.n, err)
}

// setLimit bounds the bytes read: the given limit, or before the metadata is known
// what the two metadata files may take, after it what the signed files may take.
func (x *extractor) setLimit(cr *countReader) {
	if x.limit > 0 {
		cr.limit = x.limit
		return
	}
	if x.meta == nil {
		cr.limit = cr.n + 3*1024 + 2*1536 + layout.MaxMetadataBytes + layout.MaxSignatureBytes + roundUp(int64(len(layout.PetraDir)), 512)
		return
	}
	cr.limit = tarBound(x.meta, int64(len(x.metaB)), int64(len(x.sigB)))
}

// tarBound is the largest tar stream of a bundle with metadata m: every directory and
// file with a PAX header, the content padded, the end marker and the writer's blocking.
func tarBound(m *layout.Metadata, metaSize, sigSize int64) int64 {
	const perEntry = 3 * 512 // PAX header, its records, the header
	dirs := map[string]bool{layout.PetraDir: true}
	n := int64(3)*perEntry + roundUp(metaSize, 512) + roundUp(sigSize, 512)
	for _, f := range m.Files {
		for d := path.Dir(f.Path); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			n += perEntry
		}
		n += perEntry + roundUp(f.Size, 512)
	}
	return n + 2*512 + 20*512
}

var errNonZero = errors.New("non-zero byte")

type zeroChecker struct{}

func (zeroChecker) Write(p []byte) (int, error) {
	for _, b := range p {
		if b != 0 {
			return 0, errNonZero
		}
	}
	return len(p), nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeXGlobalHeader:
		return "PAX global header"
	case tar.TypeGNUSparse:
		return "GNU sparse file"
	case tar.TypeCont:
		return "contiguous file"
	}
	return fmt.Sprintf("entry of type %q", t)
}

// entry checks and extracts one entry.
func (x *extractor) entry(ctx context.Context, tr *tar.Reader, h *tar.Header, buf []byte, cr *countReader) error {
	name, err := checkName(h.Name)
	if err != nil {
		return err
	}
	isDir := false
	switch h.Typeflag {
	case tar.TypeReg:
	case tar.TypeDir:
		isDir = true
	default:
		return refuse(h.Name, ErrUnsafeEntry, "a %s: only regular files and directories are extracted", typeName(h.Typeflag))
	}
	if h.Linkname != "" {
		return refuse(h.Name, ErrUnsafeEntry, "a link target (%q) on a %s", h.Linkname, map[bool]string{true: "directory", false: "file"}[isDir])
	}
	for k := range h.PAXRecords {
		if !allowedPAX[k] {
			return refuse(h.Name, ErrUnsafeEntry, "PAX record %q (sparse files, extended attributes and links are refused)", k)
		}
	}
	if x.seen[name] {
		return refuse(h.Name, ErrUnsafeEntry, "duplicate name")
	}
	x.seen[name] = true
	if isDir {
		if !x.dirs[name] {
			return refuse(h.Name, ErrUnlisted, "a directory the signed metadata does not describe")
		}
		if x.meta == nil {
			return nil // made once the metadata verified
		}
		if err := x.root.MkdirAll(filepath.FromSlash(name), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		return nil
	}
	if x.meta == nil {
		return x.metadataEntry(ctx, tr, h, name, cr)
	}
	f := x.files[name]
	if f == nil {
		return refuse(h.Name, ErrUnlisted, "a file the signed metadata does not list")
	}
	if h.Size != f.Size {
		return refuse(h.Name, ErrUnlisted, "%d bytes, the signed metadata says %d", h.Size, f.Size)
	}
	if d := path.Dir(name); d != "." {
		if err := x.root.MkdirAll(filepath.FromSlash(d), 0o755); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	out, err := x.rec.Create(name)
	if err != nil {
		return fmt.Errorf("creating %s: %w", name, err)
	}
	n, err := io.CopyBuffer(out, io.LimitReader(tr, f.Size), buf)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return x.readErr(ctx, cr, h.Name, err)
	}
	if n != f.Size {
		return fmt.Errorf("%w: %s: the archive ends after %d of its %d bytes", ErrNotExport, name, n, f.Size)
	}
	x.st.Done = append(x.st.Done, name)
	return nil
}

// metadataEntry reads petra/metadata.json or its signature, the only files allowed
// before the metadata is known; once both are there it verifies them.
func (x *extractor) metadataEntry(ctx context.Context, tr *tar.Reader, h *tar.Header, name string, cr *countReader) error {
	var limit int64
	var dst *[]byte
	switch name {
	case metadataFiles[0]:
		limit, dst = layout.MaxMetadataBytes, &x.metaB
	case metadataFiles[1]:
		limit, dst = layout.MaxSignatureBytes, &x.sigB
	default:
		return fmt.Errorf("%w: %q comes before %s and %s: only archives written by petra-oci export are imported (its signed metadata comes first)",
			ErrNotExport, h.Name, metadataFiles[0], metadataFiles[1])
	}
	if h.Size > limit {
		return refuse(h.Name, ErrUnlisted, "%d bytes, limit %d", h.Size, limit)
	}
	var b bytes.Buffer
	if _, err := io.Copy(&b, io.LimitReader(tr, h.Size)); err != nil {
		return x.readErr(ctx, cr, h.Name, err)
	}
	if int64(b.Len()) != h.Size {
		return fmt.Errorf("%w: %s ends early", ErrNotExport, name)
	}
	*dst = b.Bytes()
	if x.metaB == nil || x.sigB == nil {
		return nil
	}
	m, err := x.accept(x.metaB, x.sigB)
	if err != nil {
		return err
	}
	for _, p := range metadataFiles {
		b := x.metaB
		if p == metadataFiles[1] {
			b = x.sigB
		}
		if err := x.root.MkdirAll(layout.PetraDir, 0o755); err != nil {
			return err
		}
		if err := x.root.WriteFile(filepath.FromSlash(p), b, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	x.st.Done = append(x.st.Done, metadataFiles[:]...)
	x.known(m)
	x.setLimit(cr)
	return nil
}

// known records the verified metadata: the files and directories allowed from now on.
func (x *extractor) known(m *layout.Metadata) {
	x.meta = m
	x.files = make(map[string]*layout.File, len(m.Files))
	x.dirs = map[string]bool{layout.PetraDir: true}
	for i := range m.Files {
		f := &m.Files[i]
		x.files[f.Path] = f
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			x.dirs[d] = true
		}
	}
}
