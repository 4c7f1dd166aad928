package replay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// helperEnv names the state file a re-executed test binary locks (lockHelper).
const helperEnv = "PETRA_REPLAY_LOCK_HELPER"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(lockHelper(path))
	}
	os.Exit(m.Run())
}

// lockHelper is the other process: it locks path, prints "locked", and unlocks when a
// line (or EOF) arrives on stdin.
func lockHelper(path string) int {
	s, err := New(Options{Path: path})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	h, err := s.Lock(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	if err := h.Unlock(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startHolder runs lockHelper on path in a child process and returns once the child
// holds the lock, with the writer that releases it.
func startHolder(t *testing.T, path string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper process: %q, %v", line, err)
	}
	return cmd, stdin
}

type lockResult struct {
	h   *Held
	err error
}

// lockAsync runs Lock on s in a goroutine.
func lockAsync(ctx context.Context, s *Store) <-chan lockResult {
	c := make(chan lockResult, 1)
	go func() {
		h, err := s.Lock(ctx)
		c <- lockResult{h, err}
	}()
	return c
}

// waiting returns a Store on path whose OnWait counts its calls and closes the returned
// channel on the first.
func waiting(t *testing.T, path string) (*Store, <-chan struct{}, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	c := make(chan struct{})
	s, err := New(Options{Path: path, OnWait: func() {
		if n.Add(1) == 1 {
			close(c)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, &n
}

// mustStayBlocked fails when c delivers within d.
func mustStayBlocked(t *testing.T, c <-chan lockResult, d time.Duration, what string) {
	t.Helper()
	select {
	case r := <-c:
		t.Fatalf("%s returned while the lock was held elsewhere: %v", what, r.err)
	case <-time.After(d):
	}
}

func mustLock(t *testing.T, c <-chan lockResult, what string) *Held {
	t.Helper()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		t.Cleanup(func() { r.h.Unlock() })
		return r.h
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still waiting 5s after the lock was released", what)
	}
	return nil
}

func TestLockExcludesInProcess(t *testing.T) {
	s := newStore(t)
	h1, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Dir(s.Path()))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("Lock: state dir mode = %v, %v", fi, err)
	}

	// a second Store on the same path, as a second unpack would open it
	s2, waits, n := waiting(t, s.Path())
	second := lockAsync(context.Background(), s2)
	select {
	case <-waits:
	case r := <-second:
		t.Fatalf("second Lock returned while the first is held: %v", r.err)
	case <-time.After(5 * time.Second):
		t.Fatal("second Lock neither waited nor returned")
	}
	mustStayBlocked(t, second, 300*time.Millisecond, "second Lock")

	// a Store.Accept (no Held) waits too
	accepted := make(chan error, 1)
	go func() { accepted <- s2.Accept(idA, 1) }()
	select {
	case err := <-accepted:
		t.Fatalf("Store.Accept returned while the lock is held: %v", err)
	case <-time.After(200 * time.Millisecond):
	}

	if err := h1.Unlock(); err != nil {
		t.Fatal(err)
	}
	// the second Lock and the Accept now proceed, one after the other
	var h2 *Held
	select {
	case r := <-second:
		if r.err != nil {
			t.Fatal(r.err)
		}
		h2 = r.h
		if err := h2.Unlock(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second Lock still waiting after Unlock")
	}
	select {
	case err := <-accepted:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Store.Accept still waiting after Unlock")
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("OnWait called %d times, want once", got)
	}
	// an uncontended Lock does not call OnWait
	s3, _, n3 := waiting(t, s.Path())
	h3, err := s3.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h3.Unlock()
	if n3.Load() != 0 {
		t.Fatal("OnWait called without contention")
	}
}

func TestLockExcludesOtherProcess(t *testing.T) {
	s := newStore(t)
	_, release := startHolder(t, s.Path())

	// an expiring ctx returns promptly while the other process holds the lock
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with an expiring ctx = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Lock returned %v after its ctx expired", d)
	}

	s2, waits, _ := waiting(t, s.Path())
	c := lockAsync(context.Background(), s2)
	select {
	case <-waits:
	case r := <-c:
		t.Fatalf("Lock returned while another process holds the lock: %v", r.err)
	case <-time.After(5 * time.Second):
		t.Fatal("Lock neither waited nor returned")
	}
	mustStayBlocked(t, c, 300*time.Millisecond, "Lock")
	if _, err := io.WriteString(release, "release\n"); err != nil {
		t.Fatal(err)
	}
	h := mustLock(t, c, "Lock after the other process released")
	if err := h.Accept(idA, 1); err != nil {
		t.Fatal(err)
	}
}

func TestKilledHolderReleases(t *testing.T) {
	s := newStore(t)
	cmd, _ := startHolder(t, s.Path())
	c := lockAsync(context.Background(), s)
	mustStayBlocked(t, c, 200*time.Millisecond, "Lock")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	mustLock(t, c, "Lock after the holder was killed")
}

func TestLockCancelled(t *testing.T) {
	s := newStore(t)
	h, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Unlock()
	s2, _ := New(Options{Path: s.Path()})

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s2.Lock(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock with a cancelled ctx = %v", err)
	}

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := s2.Lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with an expiring ctx = %v", err)
	}
	if d := time.Since(start); d < 140*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Lock returned after %v, want about 150ms", d)
	}

	ctx, cancel = context.WithCancel(context.Background())
	c := lockAsync(ctx, s2)
	mustStayBlocked(t, c, 100*time.Millisecond, "Lock")
	cancel()
	select {
	case r := <-c:
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Lock cancelled while waiting = %v", r.err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Lock did not return 2s after its ctx was cancelled")
	}

	// a cancelled ctx is refused even when the lock is free
	h.Unlock()
	if _, err := s2.Lock(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock with a cancelled ctx on a free lock = %v", err)
	}
}

// TestHeldDoesNotRelock fails (rather than hanging the suite) when a Held method takes
// the flock again, which would wait for itself.
func TestHeldDoesNotRelock(t *testing.T) {
	s := newStore(t)
	h, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// no deferred Unlock: a Held method stuck on the flock keeps h's mutex
	done := make(chan error, 1)
	go func() {
		err := h.Check(idA, 1)
		if err == nil {
			err = h.Accept(idA, 1)
		}
		if err == nil {
			if err = h.Check(idA, 1); errors.Is(err, ErrReplay) {
				err = nil
			} else {
				err = fmt.Errorf("second Check = %v, want ErrReplay", err)
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Unlock(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Held.Check/Accept blocked on their own lock")
	}
}

func TestUnlock(t *testing.T) {
	s := newStore(t)
	h, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := h.Unlock(); err != nil {
		t.Fatalf("second Unlock = %v", err)
	}
	if err := h.Check(idA, 1); err == nil {
		t.Fatal("Check after Unlock succeeded")
	}
	if err := h.Accept(idA, 1); err == nil {
		t.Fatal("Accept after Unlock succeeded")
	}
	if _, ok, _ := s.Last(idA); ok {
		t.Fatal("Accept after Unlock recorded")
	}
}

// TestStoreCheckDoesNotWaitForHeld: verify (Store.Check, no lock) answers while an
// unpack holds the lock, and sees what the holder has written so far.
func TestStoreCheckDoesNotWaitForHeld(t *testing.T) {
	s := newStore(t)
	h, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Unlock()
	if err := h.Accept(idA, 2); err != nil {
		t.Fatal(err)
	}
	verify, _ := New(Options{Path: s.Path()})
	done := make(chan error, 1)
	go func() { done <- verify.Check(idA, 2) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrReplay) {
			t.Fatalf("Store.Check = %v, want ErrReplay from the holder's Accept", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Store.Check waits for a Held lock")
	}
}
