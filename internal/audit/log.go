package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/signing"
)

// Options configure a Log. Only Path is required; the zero values of the rest are safe.
type Options struct {
	// Path is the log file; it and its directory (0700) are created when missing.
	Path string
	// Signer, when set, signs a checkpoint after every append (Append, Continue), so the
	// log always ends in a signed head. Nil: entries are chained but not signed until a
	// checkpoint is made with Log.Checkpoint.
	Signer signing.Signer
	// Operator is who runs the command; empty means the process's user (os/user, else
	// $USER). It is what the process reports, not an authentication.
	Operator string
	// Host is the machine; empty means os.Hostname.
	Host string
	// Tool names the tool and version, e.g. "petra-oci/v1.2.0"; empty means "petra-oci".
	Tool string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Log appends to one audit log file.
type Log struct {
	path     string
	signer   signing.Signer
	operator string
	host     string
	tool     string
	now      func() time.Time
}

// Open returns the log at opts.Path. Nothing is created until the first append.
func Open(opts Options) (*Log, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("%w: no log path", ErrWrite)
	}
	l := &Log{path: opts.Path, signer: opts.Signer, operator: opts.Operator, host: opts.Host, tool: opts.Tool, now: opts.Now}
	if l.operator == "" {
		l.operator = defaultOperator()
	}
	if l.host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "unknown"
		}
		l.host = h
	}
	if l.tool == "" {
		l.tool = "petra-oci"
	}
	if l.now == nil {
		l.now = time.Now
	}
	for name, v := range map[string]string{"operator": l.operator, "host": l.host, "tool": l.tool} {
		if !printable(v) {
			return nil, fmt.Errorf("%w: %s %q holds control characters", ErrInvalidEntry, name, v)
		}
	}
	return l, nil
}

func defaultOperator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "uid:" + strconv.Itoa(os.Getuid())
}

// DefaultPath returns $XDG_STATE_HOME/petra-oci/audit.log, or
// ~/.local/state/petra-oci/audit.log when XDG_STATE_HOME is unset or not absolute (next
// to the replay state, series.json).
func DefaultPath() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "petra-oci", "audit.log"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locating the audit log: %w", err)
	}
	return filepath.Join(home, ".local", "state", "petra-oci", "audit.log"), nil
}

// Path returns the log file.
func (l *Log) Path() string { return l.path }

// Check opens the log as Append does (creating it when missing) and checks that its
// last line is a complete entry, so a command can refuse to start when it could not
// record what it did.
func (l *Log) Check(ctx context.Context) error {
	return l.locked(ctx, func(f *os.File) error {
		_, _, err := readLast(f)
		return err
	})
}

// HeadPath returns the sidecar holding the latest checkpoint line.
func (l *Log) HeadPath() string { return l.path + HeadSuffix }

// Signed reports whether appends are followed by a checkpoint.
func (l *Log) Signed() bool { return l.signer != nil }

// Appended says where an append landed.
type Appended struct {
	// Entry is the position of the entry appended.
	Entry Head `json:"entry"`
	// Checkpoint is the position of the checkpoint that follows it (nil without a
	// Signer).
	Checkpoint *Head `json:"checkpoint,omitempty"`
	// AfterCheckpoint is true when the entry was appended, unsigned, right after a
	// checkpoint: Verify with keys reports it until the next checkpoint.
	AfterCheckpoint bool `json:"afterCheckpoint,omitempty"`
}

// Append writes e as the next entry of the chain (Format, Seq, Prev, Time, Operator,
// Host and Tool are filled in) and, with a Signer, a checkpoint after it.
func (l *Log) Append(ctx context.Context, e Entry) (*Appended, error) {
	return l.append(ctx, e, nil)
}

// Continue appends an import entry recording seg, the head of the connected side's log
// segment carried across the gap (see Segment). When the log is empty the chain
// continues from seg: the entry's seq is seg.Seq+1 and its prev seg.Hash, so
// Verify(segment, log) reads one trail. A log that already holds entries keeps its
// chain and records seg in the entry only. Verify the segment before (VerifySegment).
func (l *Log) Continue(ctx context.Context, e Entry, seg Head) (*Appended, error) {
	if seg.Seq == 0 || seg.Hash.Validate() != nil {
		return nil, fmt.Errorf("%w: segment head %d %q", ErrInvalidEntry, seg.Seq, seg.Hash)
	}
	if e.Event == "" {
		e.Event = EventImport
	}
	e.Segment = &seg
	return l.append(ctx, e, &seg)
}

// Checkpoint appends a checkpoint signed with s (nil: the Log's Signer) over the chain
// as it is, and updates the head file.
func (l *Log) Checkpoint(ctx context.Context, s signing.Signer) (*Head, error) {
	if s == nil {
		s = l.signer
	}
	if s == nil {
		return nil, fmt.Errorf("%w: a checkpoint needs a signing key", ErrWrite)
	}
	var cp *Head
	err := l.locked(ctx, func(f *os.File) error {
		last, lastLine, err := readLast(f)
		if err != nil {
			return err
		}
		if last == nil {
			return fmt.Errorf("%w: %s is empty: nothing to sign", ErrWrite, l.path)
		}
		cp, err = l.writeCheckpoint(ctx, f, s, headOf(last.Seq, lastLine))
		return err
	})
	return cp, err
}

func (l *Log) append(ctx context.Context, e Entry, from *Head) (*Appended, error) {
	if e.Event == EventCheckpoint || e.Checkpoint != nil {
		return nil, fmt.Errorf("%w: use Checkpoint for checkpoints", ErrInvalidEntry)
	}
	e.Reason = cut(e.Reason, MaxReasonBytes)
	if !knownEvents[e.Event] {
		return nil, fmt.Errorf("%w: unknown event %q", ErrInvalidEntry, e.Event)
	}
	if e.Event == EventRefuse && (e.Command == "" || e.Reason == "") {
		return nil, fmt.Errorf("%w: a refusal names its command and reason", ErrInvalidEntry)
	}
	var out Appended
	err := l.locked(ctx, func(f *os.File) error {
		last, lastLine, err := readLast(f)
		if err != nil {
			return err
		}
		e.Format, e.Seq, e.Prev = Format, 1, ""
		switch {
		case last != nil:
			e.Seq, e.Prev = last.Seq+1, digest.FromBytes(lastLine)
			out.AfterCheckpoint = last.Event == EventCheckpoint && l.signer == nil
		case from != nil:
			e.Seq, e.Prev = from.Seq+1, from.Hash
		}
		line, err := l.writeLine(f, &e)
		if err != nil {
			return err
		}
		out.Entry = headOf(e.Seq, line)
		if l.signer != nil {
			if out.Checkpoint, err = l.writeCheckpoint(ctx, f, l.signer, out.Entry); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// writeCheckpoint appends a checkpoint after the line at prev, then replaces the head
// file with it.
func (l *Log) writeCheckpoint(ctx context.Context, f *os.File, s signing.Signer, prev Head) (*Head, error) {
	cp := Entry{Format: Format, Seq: prev.Seq + 1, Prev: prev.Hash, Event: EventCheckpoint}
	l.stamp(&cp)
	if err := sign(ctx, &cp, s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWrite, err)
	}
	line, err := l.writeLine(f, &cp)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(l.HeadPath(), append(line, '\n')); err != nil {
		return nil, fmt.Errorf("%w: the checkpoint at entry %d is in %s, but its head file: %w", ErrWrite, cp.Seq, l.path, err)
	}
	h := headOf(cp.Seq, line)
	return &h, nil
}

func (l *Log) stamp(e *Entry) {
	e.Time = l.now().UTC().Truncate(time.Microsecond)
	e.Operator, e.Host, e.Tool = l.operator, l.host, l.tool
}

// writeLine stamps, checks and encodes e and writes it with one write(2), then fsyncs.
// It returns the line without "\n".
func (l *Log) writeLine(f *os.File, e *Entry) ([]byte, error) {
	if e.Event != EventCheckpoint {
		l.stamp(e)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	line, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding entry %d: %w", ErrWrite, e.Seq, err)
	}
	if len(line) > MaxLineBytes {
		return nil, fmt.Errorf("%w: entry %d is %d bytes, over %d", ErrInvalidEntry, e.Seq, len(line), MaxLineBytes)
	}
	buf := append(append(make([]byte, 0, len(line)+1), line...), '\n')
	n, err := f.Write(buf)
	if err == nil && n != len(buf) {
		err = io.ErrShortWrite
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: writing entry %d to %s: %w", ErrWrite, e.Seq, l.path, err)
	}
	return line, nil
}

// locked opens (creating it 0600, its directory 0700) the log for appending, holds an
// exclusive lock on it while fn runs, and closes it.
func (l *Log) locked(ctx context.Context, fn func(f *os.File) error) error {
	dir := filepath.Dir(l.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: creating %s: %w", ErrWrite, dir, err)
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("%w: opening %s: %w", ErrWrite, l.path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrWrite, l.path)
	}
	if err := lock(ctx, f, syscall.LOCK_EX); err != nil {
		return fmt.Errorf("%w: locking %s: %w", ErrWrite, l.path, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn(f)
}

// lock takes a flock, polling so that ctx can end the wait.
func lock(ctx context.Context, f *os.File, how int) error {
	delay := time.Millisecond
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// readLast returns the last entry of the log open in f and its exact bytes (nil, nil
// for an empty log). The log must end in "\n" and its last line must be an entry.
func readLast(f *os.File) (*Entry, []byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrWrite, err)
	}
	size := fi.Size()
	if size == 0 {
		return nil, nil, nil
	}
	n := int64(MaxLineBytes + 1)
	if size < n {
		n = size
	}
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return nil, nil, fmt.Errorf("%w: reading the end of %s: %w", ErrWrite, f.Name(), err)
	}
	if buf[len(buf)-1] != '\n' {
		return nil, nil, fmt.Errorf("%w: %s ends in an incomplete line (an interrupted append, or a cut): run `petra-oci audit verify %s`", ErrWrite, f.Name(), f.Name())
	}
	body := buf[:len(buf)-1]
	i := bytes.LastIndexByte(body, '\n')
	if i < 0 && int64(len(buf)) < size {
		return nil, nil, fmt.Errorf("%w: the last line of %s is over %d bytes", ErrWrite, f.Name(), MaxLineBytes)
	}
	line := body[i+1:]
	e, err := parseLine(line)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: the last line of %s: %w", ErrWrite, f.Name(), err)
	}
	return e, line, nil
}

// parseLine decodes one line strictly: one JSON object, known fields only, valid.
func parseLine(line []byte) (*Entry, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var e Entry
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrInvalidEntry)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return &e, nil
}

// writeFileAtomic replaces path with b: temporary sibling (0600), fsync, rename, fsync
// of the directory.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Segment describes a copy of a log made by CopySegment.
type Segment struct {
	// Head is the position of the copy's last line: the far side continues from it.
	Head Head `json:"head"`
	// Entries is the number of lines copied; Bytes and Digest describe the copy.
	Entries int64         `json:"entries"`
	Bytes   int64         `json:"bytes"`
	Digest  digest.Digest `json:"digest"`
}

// CopySegment copies the whole log at path, as it is now, to w, holding a shared lock
// so that no append is half in it, streaming (memory bounded by MaxLineBytes). It checks
// that every line is a complete entry (not the chain: Verify does that) and returns the
// head the far side continues from (Log.Continue).
//
// Export calls it after appending its own export entry (and checkpoint), so the segment
// it carries ends with them.
func CopySegment(ctx context.Context, path string, w io.Writer) (*Segment, error) {
	f, unlock, err := openShared(ctx, path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	h := sha256.New()
	var seg Segment
	r := bufio.NewReaderSize(f, MaxLineBytes+1)
	var last []byte
	var lastSeq uint64
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		line, err := r.ReadSlice('\n')
		if err == io.EOF && len(line) == 0 {
			break
		}
		if err != nil {
			if err == io.EOF {
				return nil, fmt.Errorf("%w: %s line %d is incomplete", ErrVerify, path, n)
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, fmt.Errorf("%w: %s line %d is over %d bytes", ErrVerify, path, n, MaxLineBytes)
			}
			return nil, fmt.Errorf("audit: reading %s: %w", path, err)
		}
		e, perr := parseLine(line[:len(line)-1])
		if perr != nil {
			return nil, fmt.Errorf("%w: %s line %d: %w", ErrVerify, path, n, perr)
		}
		if _, err := w.Write(line); err != nil {
			return nil, fmt.Errorf("audit: copying %s: %w", path, err)
		}
		h.Write(line)
		seg.Entries++
		seg.Bytes += int64(len(line))
		last = append(last[:0], line[:len(line)-1]...)
		lastSeq = e.Seq
	}
	if seg.Entries == 0 {
		return nil, fmt.Errorf("%w: %s is empty", ErrVerify, path)
	}
	seg.Head = headOf(lastSeq, last)
	seg.Digest = digest.NewDigest(digest.SHA256, h)
	return &seg, nil
}

// openShared opens the log at path for reading (a regular file, no symlink) and holds
// a shared lock on it, so no append is half seen; the returned func unlocks and closes.
func openShared(ctx context.Context, path string) (*os.File, func(), error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: opening %s: %w", path, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("audit: %s is not a regular file", path)
	}
	if err := lock(ctx, f, syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("audit: locking %s: %w", path, err)
	}
	return f, func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
