package layout

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync"
)

// WriteRecord writes files into a directory and remembers, for each, the SHA-256 of the
// bytes it wrote and the identity of the file it wrote them to (device, inode, size,
// modification and change times). Root.Verify given the record (VerifyOptions.Written)
// does not hash again a listed file that the walk finds to be that same file, unchanged
// since: the hash it checks against the metadata is the one computed while writing.
// Everything else Root.Verify checks (the signature-verified metadata, the tree walk,
// sizes, blob names, coverage) is unchanged, and a file that is not exactly as written
// (another inode, a later write or chmod, a resumed import's earlier files) is hashed
// as usual.
//
// The hashes cannot be supplied from outside: only the bytes written through Create are
// recorded, so a record vouches for nothing its owner did not write itself. It guards
// against files replaced or rewritten after they were written by ordinary means; a
// process of the same user racing the writer within the file system's timestamp
// granularity is outside what any check of a directory it can write defends.
//
// Where the platform gives no change time (anything but Linux), nothing is recorded
// and Root.Verify hashes every file. A WriteRecord is safe for concurrent use.
type WriteRecord struct {
	root *os.Root
	dir  fs.FileInfo // the directory written into; Verify uses the record only there
	mu   sync.Mutex
	m    map[string]writtenFile
}

type writtenFile struct {
	st     fileStamp
	sha256 string
}

// NewWriteRecord returns a record that writes beneath root. root must stay open while
// files are created.
func NewWriteRecord(root *os.Root) (*WriteRecord, error) {
	fi, err := root.Stat(".")
	if err != nil {
		return nil, fmt.Errorf("write record: %w", err)
	}
	return &WriteRecord{root: root, dir: fi, m: map[string]writtenFile{}}, nil
}

// Create creates (or truncates) the regular file rel, a clean slash-separated path
// beneath the record's root, without following a final symlink, mode 0644. What is
// written through the returned file is hashed; Close records it.
func (w *WriteRecord) Create(rel string) (*RecordedFile, error) {
	if !fs.ValidPath(rel) || rel == "." || path.Clean(rel) != rel {
		return nil, fmt.Errorf("write record: %q is not a clean relative path", rel)
	}
	w.mu.Lock()
	delete(w.m, rel)
	w.mu.Unlock()
	f, err := w.root.OpenFile(filepath.FromSlash(rel), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|oNoFollow, 0o644)
	if err != nil {
		return nil, err
	}
	return &RecordedFile{w: w, rel: rel, f: f, h: sha256.New()}, nil
}

// lookup returns what was recorded for rel if fi (from a walk of dir) is the very file
// written and unchanged since.
func (w *WriteRecord) lookup(dir fs.FileInfo, rel string, fi fs.FileInfo) (string, bool) {
	if w == nil || !os.SameFile(w.dir, dir) {
		return "", false
	}
	st, ok := stampOf(fi)
	if !ok {
		return "", false
	}
	w.mu.Lock()
	r, ok := w.m[rel]
	w.mu.Unlock()
	if !ok || r.st != st {
		return "", false
	}
	return r.sha256, true
}

// RecordedFile is a file being written through a WriteRecord.
type RecordedFile struct {
	w      *WriteRecord
	rel    string
	f      *os.File
	h      hash.Hash
	failed bool
	closed bool
}

// Write writes p to the file and hashes what was written.
func (r *RecordedFile) Write(p []byte) (int, error) {
	n, err := r.f.Write(p)
	r.h.Write(p[:n])
	if err != nil {
		r.failed = true
	}
	return n, err
}

// Close closes the file and, when every write succeeded, records its hash and identity.
func (r *RecordedFile) Close() error {
	if r.closed {
		return errors.New("write record: closed twice")
	}
	r.closed = true
	sum := hex.EncodeToString(r.h.Sum(nil))
	fi, serr := r.f.Stat()
	cerr := r.f.Close()
	if serr != nil || cerr != nil || r.failed {
		return errors.Join(serr, cerr)
	}
	if st, ok := stampOf(fi); ok && fi.Mode().IsRegular() {
		r.w.mu.Lock()
		r.w.m[r.rel] = writtenFile{st: st, sha256: sum}
		r.w.mu.Unlock()
	}
	return nil
}

// readFromBufs buffers of readFromBufSize are in flight in ReadFrom: one being read and
// written while the others are hashed.
const (
	readFromBufs    = 3
	readFromBufSize = 1 << 20
)

var readFromPool = sync.Pool{New: func() any { b := make([]byte, readFromBufSize); return &b }}

// ReadFrom copies src to the file until EOF, hashing on a second goroutine what was
// written while the next buffer is read and written (two cores, no extra copy).
func (r *RecordedFile) ReadFrom(src io.Reader) (int64, error) {
	type block struct {
		b []byte
		n int
	}
	free := make(chan []byte, readFromBufs)
	for range readFromBufs {
		free <- *readFromPool.Get().(*[]byte)
	}
	work := make(chan block, readFromBufs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for blk := range work {
			r.h.Write(blk.b[:blk.n])
			free <- blk.b
		}
	}()
	var total int64
	var err error
	for {
		b := <-free
		n, rerr := io.ReadFull(src, b)
		if n > 0 {
			w, werr := r.f.Write(b[:n])
			work <- block{b, w}
			total += int64(w)
			if werr == nil && w != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				err = werr
				break
			}
		} else {
			free <- b
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	close(work)
	<-done
	for range readFromBufs {
		b := <-free
		readFromPool.Put(&b)
	}
	if err != nil {
		r.failed = true
	}
	return total, err
}
