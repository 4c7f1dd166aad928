package remote

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestDoProgressResetsBounds: a try that moved a resumable upload forward (progress)
// makes the bounds count from it, so an upload that advances on every try completes
// however many tries it takes; tries that do not advance still give up at Attempts.
func TestDoProgressResetsBounds(t *testing.T) {
	r, _ := NewRetrier(RetryOptions{Attempts: 3, Backoff: time.Millisecond}, nil)
	withFakeClock(r)
	calls := 0
	err := r.Do(context.Background(), "copying blob sha256:ab", func(ctx context.Context) error {
		calls++
		if calls < 8 {
			progress(ctx) // one more chunk stored, then the link broke
			return status(503)
		}
		return nil
	})
	if err != nil || calls != 8 {
		t.Fatalf("an upload advancing on every try: Do = %v after %d calls, want success on the 8th", err, calls)
	}
	calls = 0
	err = r.Do(context.Background(), "copying blob sha256:ab", func(ctx context.Context) error {
		calls++
		if calls == 1 {
			progress(ctx)
		}
		return status(503)
	})
	if !errors.Is(err, ErrGaveUp) || calls != 3 {
		t.Errorf("progress on the first try only: Do = %v after %d calls, want a give-up after 3 (the bounds count from the try that advanced)", err, calls)
	}
}

// TestRangeEnd: the session offsets registries answer (Range: 0-<last>).
func TestRangeEnd(t *testing.T) {
	for v, want := range map[string]int64{"0-0": 0, "0--1": 0, "0-1023": 1024, "bytes=0-9": 10} {
		if got, err := rangeEnd(v); err != nil || got != want {
			t.Errorf("rangeEnd(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"", "5-9", "0-x", "0--2", "garbage"} {
		if _, err := rangeEnd(v); !errors.Is(err, errSession) || !Transient(err) {
			t.Errorf("rangeEnd(%q): err = %v, want a transient session error", v, err)
		}
	}
}
