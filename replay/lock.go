package replay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// lockPoll is how often Lock tries again while another holder has the lock; it bounds
// how late Lock notices a cancelled ctx.
const lockPoll = 50 * time.Millisecond

// Held is the exclusive lock on a Store's state, taken by Store.Lock for a whole
// unpack: from the replay check, through the push, to the last tag move. While it is
// held no other Lock, and no Store.Accept, in this process or another, can proceed.
// Its methods read the state file afresh under the lock and never lock again. A Held is
// safe for concurrent use; once unlocked, its methods fail.
type Held struct {
	s  *Store
	mu sync.Mutex
	f  *os.File // the locked file; nil once unlocked
}

// Lock takes the exclusive lock on the state (on the lock file next to it, creating the
// state directory 0700 when missing) and keeps it until Held.Unlock. While another
// holder has it, Lock calls Options.OnWait once and tries again every 50 ms until it
// gets the lock or ctx is done, then returns an error wrapping ctx's error.
//
// flock locks belong to an open file: a second Lock waits for the first even in the
// same process, so a goroutine must not Lock twice on one path.
func (s *Store) Lock(ctx context.Context) (*Held, error) {
	lockPath := s.path + ".lock"
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("locking %s: %w", lockPath, err)
	}
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	lf, err := s.openLock()
	if err != nil {
		return nil, err
	}
	var tick *time.Ticker
	for {
		err := flock(lf, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if tick != nil {
				tick.Stop()
			}
			return &Held{s: s, f: lf}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			lf.Close()
			return nil, fmt.Errorf("locking %s: %w", lockPath, err)
		}
		if tick == nil {
			if s.onWait != nil {
				s.onWait()
			}
			tick = time.NewTicker(lockPoll)
		}
		select {
		case <-ctx.Done():
			tick.Stop()
			lf.Close()
			return nil, fmt.Errorf("waiting for the replay state lock %s held by another unpack: %w", lockPath, ctx.Err())
		case <-tick.C:
		}
	}
}

// Unlock releases the lock. Unlocking again does nothing and returns nil, so a deferred
// Unlock after an explicit one is harmless.
func (h *Held) Unlock() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.f == nil {
		return nil
	}
	f := h.f
	h.f = nil
	err := flock(f, syscall.LOCK_UN)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("unlocking %s: %w", f.Name(), err)
	}
	return nil
}

// Path returns the state file.
func (h *Held) Path() string { return h.s.path }

// Check is Store.Check under the held lock: an error wrapping ErrReplay when seq is not
// newer than the last sequence accepted for bundleID (unless the store allows replays),
// or wrapping ErrState when the state cannot be read. It records nothing.
func (h *Held) Check(bundleID string, seq uint64) error {
	if err := checkID(bundleID); err != nil {
		return err
	}
	return h.withState(func(st *state) error {
		e := st.Series[bundleID]
		var last uint64
		if e != nil {
			last = e.Sequence
		}
		return verdict(bundleID, seq, last, e != nil, h.s.allowReplay)
	})
}

// Accept is Store.Accept under the held lock: it records seq as accepted for bundleID
// when it is newer than the last one, refuses it (ErrReplay) otherwise unless the store
// allows replays, and never lowers the recorded sequence.
func (h *Held) Accept(bundleID string, seq uint64) error {
	if err := checkID(bundleID); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.held(); err != nil {
		return err
	}
	return h.s.acceptLocked(bundleID, seq)
}

// withState runs fn on the state file read under the held lock.
func (h *Held) withState(fn func(st *state) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.held(); err != nil {
		return err
	}
	st, err := h.s.read()
	if err != nil {
		return err
	}
	return fn(st)
}

// held fails once the lock is released; h.mu is held.
func (h *Held) held() error {
	if h.f == nil {
		return fmt.Errorf("replay state %s: lock already released", h.s.path)
	}
	return nil
}
