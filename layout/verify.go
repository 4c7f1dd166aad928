package layout

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/internal/ctxio"
)

// Sentinel errors of bundle verification. Root.Verify, VerifyFiles and the reads of a
// Pinned wrap each in a *FileError naming the path; callers test with errors.Is.
var (
	// ErrMetadataInvalid marks a metadata manifest that breaks the format.
	ErrMetadataInvalid = errors.New("invalid bundle metadata")
	// ErrFileChanged marks a file whose size or SHA-256 differs from the metadata.
	ErrFileChanged = errors.New("file changed")
	// ErrFileMissing marks a file the metadata lists that is not in the bundle.
	ErrFileMissing = errors.New("file missing")
	// ErrFileExtra marks a file or directory in the bundle that the metadata does not
	// describe.
	ErrFileExtra = errors.New("extra file")
	// ErrUnsafeFile marks a symlink, device, FIFO, socket or anything else that is not
	// a regular file or a directory, a root that is not a real directory, or a file
	// swapped while it was being verified.
	ErrUnsafeFile = errors.New("unsafe file")
	// ErrBlobDigest marks a blob whose content does not hash to its name, or a file
	// under blobs/ whose name is not a digest.
	ErrBlobDigest = errors.New("blob does not match its name")
	// ErrNotCovered marks an index.json entry, a blob reachable from it, or a packed
	// image that the metadata does not list.
	ErrNotCovered = errors.New("not covered by the metadata")
	// ErrDelta marks a delta bundle inconsistent with its signed metadata: a blob its
	// graph references that it neither carries nor lists as expected at the
	// destination, an expected blob the graph does not reference as image content, or
	// the content of an attachment left out (docs/delta.md).
	ErrDelta = errors.New("delta bundle does not match its metadata")
)

// FileError is a verification failure about one path of the bundle.
type FileError struct {
	// Path is slash-separated and relative to the bundle root ("." is the root).
	Path string
	// Kind is one of the sentinel errors above.
	Kind error
	// Detail says what was found.
	Detail string
	// Err is the underlying cause, if any.
	Err error
}

func (e *FileError) Error() string {
	s := e.Path + ": " + e.Kind.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the kind and the cause.
func (e *FileError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// VerifyOptions configure Root.Verify and VerifyFiles. The zero value hashes GOMAXPROCS files at once.
type VerifyOptions struct {
	// Workers bounds the files hashed at once; <= 0 means GOMAXPROCS.
	Workers int
	// Written, when set, is the record of the files this process wrote into the
	// directory (see WriteRecord): a file the walk finds to be the very file written,
	// unchanged since, is checked against the metadata with the SHA-256 computed while
	// it was written instead of being read again. nil hashes every file.
	Written *WriteRecord
}

// VerifyReport is what Root.Verify (or VerifyFiles) checked.
type VerifyReport struct {
	// Files and Bytes are the files hashed and their total size.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// Blobs is how many of the files are blobs checked against their name.
	Blobs int `json:"blobs"`
	// IndexEntries and Manifests are the index.json entries and the manifests reachable
	// from them that were checked for coverage.
	IndexEntries int `json:"indexEntries"`
	Manifests    int `json:"manifests"`
	// Workers is how many files were hashed at once.
	Workers int `json:"workers"`
	// HashedWhenWritten is how many of the files were checked with the hash their
	// writer computed (VerifyOptions.Written) instead of being read again.
	HashedWhenWritten int `json:"hashedWhenWritten,omitempty"`
	// Duration is the wall time of the verification.
	Duration time.Duration `json:"durationNs"`
}

// VerifyFiles checks the bundle directory dir against m, which the caller has parsed
// from metadata.json bytes whose signature it verified: OpenRoot, then Root.Verify (see
// there for what is checked and refused). To use the bundle after verifying it, use
// Root.Verify and read through the Pinned it returns instead: a second look at dir by
// path is not what was verified.
func VerifyFiles(ctx context.Context, dir string, m *Metadata, opts VerifyOptions) (*VerifyReport, error) {
	if err := checkMetadata(m); err != nil {
		return nil, err
	}
	r, err := OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	_, rep, err := r.Verify(ctx, m, opts)
	return rep, err
}

// checkMetadata refuses a nil or invalid m.
func checkMetadata(m *Metadata) error {
	if m == nil {
		return fmt.Errorf("%w: no metadata", ErrMetadataInvalid)
	}
	return m.Validate()
}

// tree is a bundle directory opened once: every later access goes through root (or
// top, the root directory's own descriptor), never through the path again, so nothing
// outside the directory is ever opened.
type tree struct {
	root *os.Root
	top  *os.File // the root directory itself, for openNoFollow
	dir  string   // cleaned
	// lastScan is what the last scan's walk read (tests bound it).
	lastScan atomic.Pointer[walkCounts]
}

// openTree resolves dir once: cleaned (so DIR and DIR/ are the same), lstat'ed without
// following a final symlink (a symlink or anything but a directory is refused with
// ErrUnsafeFile), then opened as an os.Root that must be the directory lstat saw.
func openTree(dir string) (*tree, error) {
	dir = filepath.Clean(dir)
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, &FileError{Path: ".", Kind: ErrUnsafeFile, Detail: dir + " is a " + fileType(fi.Mode()) + ", not a directory"}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	top, err := root.Open(".")
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	rfi, err := top.Stat()
	if err != nil || !os.SameFile(fi, rfi) {
		top.Close()
		root.Close()
		return nil, &FileError{Path: ".", Kind: ErrUnsafeFile, Detail: dir + " was replaced while being opened", Err: err}
	}
	return &tree{root: root, top: top, dir: dir}, nil
}

func (t *tree) close() error {
	return errors.Join(t.top.Close(), t.root.Close())
}

// job is a regular file found by scan.
type job struct {
	rel  string
	info fs.FileInfo // from the walk (lstat)
	want *File       // nil when building metadata
	blob digest.Digest
}

// fixedDirs may exist even when they hold no listed file.
var fixedDirs = map[string]bool{BlobsDir: true, BlobsDir + "/" + string(digest.SHA256): true, PetraDir: true}

// scan walks the tree without following symlinks and returns its regular files other
// than the metadata and its signature. With want (verification) it refuses anything
// not listed the moment it reads it, refuses a tree with more entries than want allows
// before reading the rest, and reports listed files that are missing; the files come
// back sorted by path. Without want (building), it refuses the ingest folder and empty
// directories, visiting entries in name order as fs.WalkDir would.
func (t *tree) scan(ctx context.Context, want map[string]*File) ([]job, error) {
	opts := walkOptions{sorted: want == nil}
	allowedDirs := map[string]bool{}
	if want != nil {
		allowedDirs, opts.maxEntries = scanPaths(want)
	}
	var jobs []job
	var dirs []string
	counts := &walkCounts{}
	defer t.lastScan.Store(counts)
	err := t.walk(ctx, opts, counts, func(p string, info fs.FileInfo) error {
		typ := info.Mode()
		switch {
		case typ.IsDir():
			if want == nil && p == IngestDir {
				return &FileError{Path: p, Kind: ErrFileExtra, Detail: "ingest folder of an open layout: close the layout before building metadata"}
			}
			if want != nil && !allowedDirs[p] && !fixedDirs[p] {
				return &FileError{Path: p + "/", Kind: ErrFileExtra, Detail: "directory not in the metadata"}
			}
			dirs = append(dirs, p)
			return nil
		case !typ.IsRegular():
			return &FileError{Path: p, Kind: ErrUnsafeFile, Detail: "is a " + fileType(typ)}
		}
		if p == MetadataPath || p == SignaturePath {
			return nil
		}
		j := job{rel: p, info: info}
		if want != nil {
			j.want = want[p]
			if j.want == nil {
				return &FileError{Path: p, Kind: ErrFileExtra, Detail: "not in the metadata"}
			}
			if info.Size() != j.want.Size {
				return &FileError{Path: p, Kind: ErrFileChanged, Detail: fmt.Sprintf("%d bytes, metadata says %d", info.Size(), j.want.Size)}
			}
		}
		if p == BlobsDir || strings.HasPrefix(p, BlobsDir+"/") {
			dg, err := blobDigest(p)
			if err != nil {
				return &FileError{Path: p, Kind: ErrBlobDigest, Err: err}
			}
			j.blob = dg
		}
		jobs = append(jobs, j)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].rel < jobs[b].rel })
	if want != nil {
		seen := make(map[string]bool, len(jobs))
		for _, j := range jobs {
			seen[j.rel] = true
		}
		var missing []string
		for p := range want {
			if !seen[p] {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			detail := "listed in the metadata, not in the bundle"
			if len(missing) > 1 {
				detail += fmt.Sprintf(" (and %d more)", len(missing)-1)
			}
			return nil, &FileError{Path: missing[0], Kind: ErrFileMissing, Detail: detail}
		}
		return jobs, nil
	}
	used := map[string]bool{}
	for _, j := range jobs {
		for d := path.Dir(j.rel); d != "."; d = path.Dir(d) {
			used[d] = true
		}
	}
	for _, d := range dirs {
		if !used[d] && !fixedDirs[d] {
			return nil, &FileError{Path: d + "/", Kind: ErrFileExtra, Detail: "empty directory: remove it"}
		}
	}
	return jobs, nil
}

// copyBufSize is the read size when hashing.
const copyBufSize = 1 << 20

// hash streams every job's file through SHA-256 (and the blob's own algorithm), workers
// files at once, largest first. With want set it checks size, SHA-256 and the blob name.
func (t *tree) hash(ctx context.Context, jobs []job, workers int, written *WriteRecord) ([]File, int, int, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, max(len(jobs), 1))
	out := make([]File, len(jobs))
	order := make([]int, 0, len(jobs))
	var top fs.FileInfo
	if written != nil {
		top, _ = t.top.Stat()
	}
	for i := range jobs {
		if f, ok := t.hashedWhenWritten(&jobs[i], top, written); ok {
			out[i] = f
			continue
		}
		order = append(order, i)
	}
	sort.SliceStable(order, func(a, b int) bool { return jobs[order[a]].info.Size() > jobs[order[b]].info.Size() })

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, copyBufSize)
			for i := range next {
				f, err := t.hashOne(ctx, &jobs[i], buf)
				if err != nil {
					cancel(err)
					return
				}
				out[i] = f
			}
		}()
	}
feed:
	for _, i := range order {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, workers, 0, err
	}
	return out, workers, len(jobs) - len(order), nil
}

// hashedWhenWritten returns the File of j from what written recorded, when j is a
// listed file that the record wrote with the metadata's SHA-256 and that is unchanged
// since (same inode, size and times), and whose blob name (SHA-256 blobs) is that hash.
func (t *tree) hashedWhenWritten(j *job, top fs.FileInfo, written *WriteRecord) (File, bool) {
	if written == nil || top == nil || j.want == nil {
		return File{}, false
	}
	if j.blob != "" && j.blob.Algorithm() != digest.SHA256 {
		return File{}, false
	}
	sum, ok := written.lookup(top, j.rel, j.info)
	if !ok || sum != j.want.SHA256 || j.info.Size() != j.want.Size || (j.blob != "" && j.blob.Encoded() != sum) {
		return File{}, false // hashed as usual, which reports what is wrong
	}
	return File{Path: j.rel, Size: j.want.Size, SHA256: sum}, true
}

func (t *tree) hashOne(ctx context.Context, j *job, buf []byte) (File, error) {
	f, err := t.open(j.rel, j.info)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	var w io.Writer = h
	var bh hash.Hash
	if j.blob != "" && j.blob.Algorithm() == digest.SHA512 {
		bh = sha512.New()
		w = io.MultiWriter(h, bh)
	}
	limit := int64(1<<63 - 1)
	if j.want != nil {
		limit = j.want.Size + 1 // a file that grows is not read forever
	}
	n, err := io.CopyBuffer(w, ctxio.Reader(ctx, io.LimitReader(f, limit)), buf)
	if err != nil {
		if ctx.Err() != nil {
			return File{}, context.Cause(ctx)
		}
		return File{}, fmt.Errorf("reading %s: %w", j.rel, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if j.want != nil && (n != j.want.Size || sum != j.want.SHA256) {
		return File{}, &FileError{Path: j.rel, Kind: ErrFileChanged,
			Detail: fmt.Sprintf("content has sha256 %s (%d bytes), metadata says %s (%d bytes)", sum, n, j.want.SHA256, j.want.Size)}
	}
	if j.blob != "" {
		got := sum
		if bh != nil {
			got = hex.EncodeToString(bh.Sum(nil))
		}
		if got != j.blob.Encoded() {
			return File{}, &FileError{Path: j.rel, Kind: ErrBlobDigest, Detail: fmt.Sprintf("content hashes to %s:%s", j.blob.Algorithm(), got)}
		}
	}
	return File{Path: j.rel, Size: n, SHA256: sum}, nil
}

// open opens rel for reading: inside the root only, without following a symlink or
// blocking on a FIFO (openNoFollow), and only if it is the very regular file the walk
// saw (same device and inode), so a file swapped for a symlink, FIFO or another file
// after the walk is refused.
func (t *tree) open(rel string, walked fs.FileInfo) (*os.File, error) {
	f, err := t.openNoFollow(rel)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, &FileError{Path: rel, Kind: ErrFileMissing, Detail: "disappeared during verification"}
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("opening %s: %w", rel, err)
		}
		// a symlink swapped in on the way, a loop, …
		return nil, &FileError{Path: rel, Kind: ErrUnsafeFile, Detail: "cannot be opened safely", Err: err}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", rel, err)
	}
	if !fi.Mode().IsRegular() || !os.SameFile(fi, walked) {
		f.Close()
		return nil, &FileError{Path: rel, Kind: ErrUnsafeFile, Detail: "replaced during verification"}
	}
	return f, nil
}

func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	}
	return "special file (" + m.Type().String() + ")"
}
