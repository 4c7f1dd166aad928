// Package replay keeps, on the disconnected side, the last bundle sequence number
// accepted for each bundle series, so that an older or replayed bundle is refused.
//
// The state is one small JSON file (DefaultPath), rewritten atomically (temporary file,
// fsync, rename) under an exclusive lock on a sibling lock file, so two unpacks running
// at once cannot both accept the same sequence or lose each other's update. A state file
// that cannot be read or parsed is an error, never a reset: the store fails closed.
//
// An unpack holds the lock from its check to its last tag move (Store.Lock, Held), so
// no other unpack can check, push or record in between.
package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

var (
	// ErrReplay marks a bundle whose sequence is not newer than the last one accepted
	// for its series.
	ErrReplay = errors.New("bundle replayed or older than the last accepted")
	// ErrState marks a state file that cannot be trusted: unreadable, not a regular
	// file, malformed, or from an unknown version.
	ErrState = errors.New("replay state unusable")
	// ErrRollback marks a tag move that would take a tag back to content from a bundle
	// older than the one that last set it.
	ErrRollback = errors.New("tag would move back to content from an older bundle")
)

// stateVersion is the version of the state file format.
const stateVersion = 1

// maxStateBytes bounds the state file (about 100 bytes a series, 470 a tag), read and
// written: some 140,000 tag records. The file keeps a record per destination tag of
// every unpack, so it grows with every prefix and registry unpacked to; one unpack of
// the 2,000-image bench/scale.sh bundle records 14,000 tags (6.6 MB), which the former
// 16 MiB bound held only two of. The file is written by petra-oci alone, under its lock,
// and reading it allocates at most this bound (io.LimitReader), never a size read from it.
const maxStateBytes = 64 << 20

// state is the file:
//
//	{"version":1,
//	 "series":{"<bundleID>":{"sequence":N,"accepted":"..."}},
//	 "tags":{"<host[:port]/repo:tag>":{TagRecord}}}
//
// "tags" is optional (files written before it existed have none).
type state struct {
	Version int                   `json:"version"`
	Series  map[string]*series    `json:"series"`
	Tags    map[string]*TagRecord `json:"tags,omitempty"`
}

type series struct {
	Sequence uint64    `json:"sequence"`
	Accepted time.Time `json:"accepted"`
}

// Options configure a Store. The zero value uses DefaultPath and refuses replays.
type Options struct {
	// Path is the state file; empty means DefaultPath.
	Path string
	// AllowReplay lets Check, Accept and Held.Record pass a sequence that is not newer
	// than the last accepted one: the explicit, loud escape hatch. They then keep the
	// recorded (higher) sequence. An unusable state file (ErrState) is never allowed.
	AllowReplay bool
	// AllowRollback lets Held.CheckTags and Held.Record pass tag moves that would take a
	// tag back to content from an older bundle (ErrRollback): the explicit, loud escape
	// hatch for an intended downgrade; the caller says so. Record still records this
	// bundle as the one that set the tag, since that is what the tag then holds. An
	// unusable state file (ErrState) is never allowed.
	AllowRollback bool
	// OnWait, when set, is called once by Lock when another unpack holds the lock and
	// Lock starts to wait for it (to say so, e.g. "waiting for the replay state lock held
	// by another unpack"). It runs on Lock's goroutine; nil means wait silently.
	OnWait func()
}

// Store is the replay state at one path.
type Store struct {
	path          string
	allowReplay   bool
	allowRollback bool
	onWait        func()
	now           func() time.Time
}

// DefaultPath returns $XDG_STATE_HOME/petra-oci/series.json, or
// ~/.local/state/petra-oci/series.json when XDG_STATE_HOME is unset or not absolute.
func DefaultPath() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "petra-oci", "series.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locating the replay state: %w", err)
	}
	return filepath.Join(home, ".local", "state", "petra-oci", "series.json"), nil
}

// New returns the store of opts. Nothing is read or created until it is used.
func New(opts Options) (*Store, error) {
	path := opts.Path
	if path == "" {
		p, err := DefaultPath()
		if err != nil {
			return nil, err
		}
		path = p
	}
	return &Store{path: path, allowReplay: opts.AllowReplay, allowRollback: opts.AllowRollback,
		onWait: opts.OnWait, now: time.Now}, nil
}

// Path returns the state file.
func (s *Store) Path() string { return s.path }

// Last returns the last sequence accepted for bundleID, and whether there is one.
//
// Last, like Check, takes no lock: the file is only ever replaced whole (rename), so it
// reads one complete state, and it never waits for an unpack that holds the lock.
func (s *Store) Last(bundleID string) (uint64, bool, error) {
	if err := checkID(bundleID); err != nil {
		return 0, false, err
	}
	st, err := s.read()
	if err != nil {
		return 0, false, err
	}
	if e := st.Series[bundleID]; e != nil {
		return e.Sequence, true, nil
	}
	return 0, false, nil
}

// Check returns an error wrapping ErrReplay when seq is not newer than the last
// sequence accepted for bundleID (unless the store allows replays), or wrapping ErrState
// when the state cannot be read. It records nothing and takes no lock (see Last): it is
// advisory, for a caller that records nothing (verify); an unpack checks again under a
// Held lock.
func (s *Store) Check(bundleID string, seq uint64) error {
	last, ok, err := s.Last(bundleID)
	if err != nil {
		return err
	}
	return verdict(bundleID, seq, last, ok, s.allowReplay)
}

// Accept records seq as accepted for bundleID, after checking again under the lock that
// it is newer than the last one (unless the store allows replays), so that of two
// concurrent accepts of one sequence only one succeeds. The recorded sequence never goes
// down: an allowed replay of an older bundle leaves the state as it was.
//
// Accept waits, without a deadline, while a Held lock exists, even in this process:
// a caller holding one uses Held.Accept instead.
func (s *Store) Accept(bundleID string, seq uint64) error {
	if err := checkID(bundleID); err != nil {
		return err
	}
	return s.exclusive(func() error { return s.acceptLocked(bundleID, seq) })
}

// acceptLocked is Accept for a caller that holds the exclusive lock.
func (s *Store) acceptLocked(bundleID string, seq uint64) error {
	st, err := s.read()
	if err != nil {
		return err
	}
	changed, err := s.acceptSeries(st, bundleID, seq)
	if err != nil || !changed {
		return err
	}
	return s.write(st)
}

// acceptSeries records seq for bundleID in st when it is newer than the last one, and
// says whether st changed. It refuses what verdict refuses.
func (s *Store) acceptSeries(st *state, bundleID string, seq uint64) (bool, error) {
	e := st.Series[bundleID]
	var last uint64
	if e != nil {
		last = e.Sequence
	}
	if err := verdict(bundleID, seq, last, e != nil, s.allowReplay); err != nil {
		return false, err
	}
	if e != nil && seq <= last {
		return false, nil // allowed replay: keep the high-water mark
	}
	st.Series[bundleID] = &series{Sequence: seq, Accepted: s.now().UTC().Truncate(time.Second)}
	return true, nil
}

func verdict(bundleID string, seq, last uint64, ok, allowReplay bool) error {
	if seq == 0 {
		return fmt.Errorf("%w: sequence 0 for series %s", ErrReplay, bundleID)
	}
	if ok && seq <= last && !allowReplay {
		return fmt.Errorf("%w: series %s sequence %d, last accepted %d", ErrReplay, bundleID, seq, last)
	}
	return nil
}

func checkID(id string) error {
	if len(id) != 32 {
		return fmt.Errorf("bundle id %q is not 32 lowercase hex digits", id)
	}
	for _, c := range []byte(id) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("bundle id %q is not 32 lowercase hex digits", id)
		}
	}
	return nil
}

// exclusive runs fn holding the exclusive lock on the lock file next to the state file,
// waiting for it as long as it takes. The state directory is created (0700) when
// missing.
func (s *Store) exclusive(fn func() error) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	lf, err := s.openLock()
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := flock(lf, syscall.LOCK_EX); err != nil {
		return fmt.Errorf("locking %s: %w", lf.Name(), err)
	}
	defer flock(lf, syscall.LOCK_UN)
	return fn()
}

// openLock opens (creating it 0600) the lock file next to the state file. Its directory
// must exist.
func (s *Store) openLock() (*os.File, error) {
	lockPath := s.path + ".lock"
	lf, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: opening lock %s: %v", ErrState, lockPath, err)
	}
	if fi, err := lf.Stat(); err != nil || !fi.Mode().IsRegular() {
		lf.Close()
		return nil, fmt.Errorf("%w: lock %s is not a regular file", ErrState, lockPath)
	}
	return lf, nil
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

// read returns the state; a missing file is the empty state, anything else that is
// wrong is ErrState.
func (s *Store) read() (*state, error) {
	empty := &state{Version: stateVersion, Series: map[string]*series{}, Tags: map[string]*TagRecord{}}
	f, err := os.OpenFile(s.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return empty, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrState, s.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrState, s.path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxStateBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrState, s.path, err)
	}
	if len(b) > maxStateBytes {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrState, s.path, maxStateBytes)
	}
	var st state
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrState, s.path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: %s: trailing data", ErrState, s.path)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%w: %s: version %d, want %d", ErrState, s.path, st.Version, stateVersion)
	}
	if st.Series == nil {
		return nil, fmt.Errorf("%w: %s: no series object", ErrState, s.path)
	}
	for id, e := range st.Series {
		if err := checkID(id); err != nil || e == nil || e.Sequence == 0 {
			return nil, fmt.Errorf("%w: %s: bad entry for series %q", ErrState, s.path, id)
		}
	}
	for ref, r := range st.Tags {
		if err := checkTagRecord(ref, r); err != nil {
			return nil, fmt.Errorf("%w: %s: bad record for tag %q: %v", ErrState, s.path, ref, err)
		}
	}
	if st.Tags == nil {
		st.Tags = map[string]*TagRecord{}
	}
	return &st, nil
}

// write replaces the state file atomically: temporary file (0600), fsync, rename, and
// fsync of the directory.
func (s *Store) write(st *state) error {
	b, err := json.MarshalIndent(st, "", "  ") // map keys sorted: stable output
	if err != nil {
		return fmt.Errorf("encoding replay state: %w", err)
	}
	b = append(b, '\n')
	if len(b) > maxStateBytes {
		// a file read would refuse is never written: the old state stays
		return fmt.Errorf("%w: writing %s: %d bytes, over the %d-byte bound", ErrState, s.path, len(b), maxStateBytes)
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", s.path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", s.path, err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("writing %s: %w", s.path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
