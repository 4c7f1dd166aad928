package unpack

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func newMountIndex() *mountIndex {
	return &mountIndex{where: map[digest.Digest][]string{}, claims: map[digest.Digest]*mountClaim{}}
}

// Repositories pushed in parallel upload a shared blob once: the first claims it, a
// second waits for that upload and then mounts from the first.
func TestMountIndexWaitsForAClaimedUpload(t *testing.T) {
	ctx := context.Background()
	m := newMountIndex()
	d := digest.FromString("shared")
	if got := m.from(ctx, d, "a"); got != nil {
		t.Fatalf("first repository: from = %v, want nothing (it uploads)", got)
	}
	if got := m.from(ctx, d, "a"); got != nil {
		t.Fatalf("the claimant asking again (a retry) = %v, want nothing, without waiting", got)
	}
	got := make(chan []string, 1)
	go func() { got <- m.from(ctx, d, "b") }()
	select {
	case g := <-got:
		t.Fatalf("second repository did not wait for the upload in flight: %v", g)
	case <-time.After(50 * time.Millisecond):
	}
	m.add(d, "a")
	select {
	case g := <-got:
		if !slices.Equal(g, []string{"a"}) {
			t.Fatalf("after the upload: from = %v, want [a]", g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second repository still waits after the upload ended")
	}
}

// A claimant whose push ends without the blob (its upload failed) releases the claim:
// the waiting repository claims the blob and uploads it itself.
func TestMountIndexReleaseLetsAWaiterUpload(t *testing.T) {
	ctx := context.Background()
	m := newMountIndex()
	d := digest.FromString("shared")
	m.from(ctx, d, "a")
	got := make(chan []string, 1)
	go func() { got <- m.from(ctx, d, "b") }()
	time.Sleep(20 * time.Millisecond)
	m.release("a")
	select {
	case g := <-got:
		if g != nil {
			t.Fatalf("from = %v, want nothing (b uploads)", g)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by release")
	}
	if c := m.claims[d]; c == nil || c.repo != "b" {
		t.Fatalf("claim after release = %+v, want b's", c)
	}
	// a cancelled wait returns
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.from(cctx, d, "c"); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled wait did not return")
	}
}

func TestFirstCausePrefersTheFailureOverCancellations(t *testing.T) {
	ctx := context.Background()
	cause := errors.New("registry refused")
	errs := []error{nil, fmt.Errorf("repo 1: %w", context.Canceled), fmt.Errorf("repo 2: %w", cause), nil}
	if err := firstCause(ctx, errs); !errors.Is(err, cause) {
		t.Fatalf("firstCause = %v, want the registry's refusal", err)
	}
	if err := firstCause(ctx, []error{nil, nil}); err != nil {
		t.Fatalf("firstCause of no error = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := firstCause(cctx, errs); !errors.Is(err, context.Canceled) {
		t.Fatalf("with the caller's context cancelled: firstCause = %v, want the cancellation", err)
	}
}
