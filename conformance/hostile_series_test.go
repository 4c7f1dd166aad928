package conformance

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
)

// seriesBundle is a packed bundle of chainguard/nginx:1.27 and what its metadata says.
type seriesBundle struct {
	dir      string
	digest   digest.Digest // the index the tag points at
	bundleID string
	sequence uint64
}

func newSeriesBundle(t *testing.T, dir string, d digest.Digest) seriesBundle {
	t.Helper()
	b := &hostileBundle{t: t, dir: dir}
	m := b.metadata()
	return seriesBundle{dir: dir, digest: d, bundleID: m.BundleID, sequence: m.Sequence}
}

// TestHostileTagMoves: a tag at the destination only ever moves forward. A bundle of
// another series packed earlier than the one that set the tag is refused (15) unless
// --allow-rollback; unpacks sharing a replay state run one after the other, so an
// older sequence or the same bundle started while another runs is refused (13)
// without pushing; SIGTERM or SIGINT during the push, and SIGTERM while waiting for
// the state lock, end unpack within seconds with 130 and move no tag.
//
// Not parallel: the cases are about timing.
func TestHostileTagMoves(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	keys := newHostileKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	ref := src.Host + "/chainguard/nginx:1.27"
	const dstRepo = "pfx/team/chainguard/nginx"

	// series X: A (sequence 1), then A2 (sequence 2) of newer content; series Y: B,
	// packed after A. The tag moves at the source between packs.
	imgA := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 61})
	dirA, _ := packCLI(t, e, keys.bundleKeys, ref)
	imgA2 := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 62})
	dirA2, _ := packCLI(t, e, keys.bundleKeys, ref, "--series-from", filepath.Join(dirA, filepath.FromSlash(layout.MetadataPath)))
	imgB := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 63})
	dirB, _ := packCLI(t, e, keys.bundleKeys, ref)
	// A was packed before B; make the difference unmistakable (created has second
	// resolution): A's metadata, signed by the real key, says an hour before B
	created := (&hostileBundle{t: t, dir: dirB}).metadata().Created
	(&hostileBundle{t: t, dir: dirA, signer: keys.signer}).forge(func(m *layout.Metadata) { m.Created = created.Add(-time.Hour) })
	(&hostileBundle{t: t, dir: dirA2, signer: keys.signer}).forge(func(m *layout.Metadata) { m.Created = created.Add(-time.Hour / 2) })
	A, A2, B := newSeriesBundle(t, dirA, imgA.Index.Digest), newSeriesBundle(t, dirA2, imgA2.Index.Digest), newSeriesBundle(t, dirB, imgB.Index.Digest)
	if A.bundleID != A2.bundleID || A2.sequence != A.sequence+1 || B.bundleID == A.bundleID {
		t.Fatalf("test bug: series A %s/%d, A2 %s/%d, B %s/%d", A.bundleID, A.sequence, A2.bundleID, A2.sequence, B.bundleID, B.sequence)
	}
	if A.digest == A2.digest || A.digest == B.digest || A2.digest == B.digest {
		t.Fatalf("test bug: the bundles do not hold different content")
	}
	unpack := func(to, state string, b seriesBundle, extra ...string) []string {
		return unpackArgs(keys.bundleKeys, to+"/pfx/team", b.dir, append([]string{"--state", state}, extra...)...)
	}
	tagAt := func(t *testing.T, dst *registrytest.Registry) digest.Digest {
		return resolveAt(t, dst, dstRepo, "1.27")
	}
	name := func(d digest.Digest) string {
		switch d {
		case A.digest:
			return "A " + d.String()
		case A2.digest:
			return "A2 " + d.String()
		case B.digest:
			return "B " + d.String()
		case "":
			return "(no tag)"
		}
		return d.String()
	}

	for _, k := range hostileKinds {
		t.Run(string(k), func(t *testing.T) {
			t.Run("rollback across series", func(t *testing.T) {
				dst := registrytest.Start(t, k)
				state := filepath.Join(t.TempDir(), "series.json")
				assertExit(t, "unpack B", runPetra(t, e, unpack(dst.Host, state, B)...), 0)
				if got := tagAt(t, dst); got != B.digest {
					t.Fatalf("after B the tag is %s, want B", name(got))
				}
				r := runPetra(t, e, unpack(dst.Host, state, A)...)
				assertExit(t, "unpack A (older, another series) after B", r, exitRollback, "chainguard/nginx", "1.27")
				if got := tagAt(t, dst); got != B.digest {
					t.Errorf("after the refused rollback the tag is %s, want B", name(got))
				}
				r = runPetra(t, e, unpack(dst.Host, state, A, "--allow-rollback")...)
				assertExit(t, "unpack A --allow-rollback", r, 0)
				if got := tagAt(t, dst); got != A.digest {
					t.Errorf("after --allow-rollback the tag is %s, want A", name(got))
				}
			})

			t.Run("older sequence started while the newer one runs", func(t *testing.T) {
				dst := registrytest.Start(t, k)
				state := filepath.Join(t.TempDir(), "series.json")
				pNew := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{Hold: registrytest.ManifestPush})
				pOld := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{})
				newer := startPetra(t, e, unpack(pNew.Host, state, A2)...)
				if !waitHeld(t, pNew, newer) {
					return
				}
				older := startPetra(t, e, unpack(pOld.Host, state, A)...)
				waitLockWaiter(t, older, pOld, 5*time.Second)
				pNew.Release()
				rNew, _ := newer.wait(hostileTimeout)
				rOld, _ := older.wait(hostileTimeout)
				assertExit(t, "unpack of the newer sequence", rNew, 0)
				assertExit(t, "unpack of the older sequence", rOld, exitReplayedSequence, A.bundleID)
				if w := pOld.Writes(); len(w) != 0 {
					t.Errorf("the refused older unpack wrote to the registry: %v", w)
				}
				if got := tagAt(t, dst); got != A2.digest {
					t.Errorf("the tag ends at %s, want the newer A2", name(got))
				}
				if got := lastAccepted(t, state, A.bundleID); got != A2.sequence {
					t.Errorf("the state records sequence %d, want %d", got, A2.sequence)
				}
			})

			t.Run("same bundle twice at once", func(t *testing.T) {
				dst := registrytest.Start(t, k)
				state := filepath.Join(t.TempDir(), "series.json")
				p1 := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{})
				p2 := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{})
				u1 := startPetra(t, e, unpack(p1.Host, state, A)...)
				u2 := startPetra(t, e, unpack(p2.Host, state, A)...)
				r1, _ := u1.wait(hostileTimeout)
				r2, _ := u2.wait(hostileTimeout)
				winner, loser, lp := r1, r2, p2
				if r1.exitCode != 0 {
					winner, loser, lp = r2, r1, p1
				}
				assertExit(t, "one of two unpacks of one bundle", winner, 0)
				assertExit(t, "the other unpack of the same bundle", loser, exitReplayedSequence, A.bundleID)
				if w := lp.Writes(); len(w) != 0 {
					t.Errorf("the refused unpack wrote to the registry (%d writes, first %s): the two ran at once", len(w), w[0])
				}
				if got := tagAt(t, dst); got != A.digest {
					t.Errorf("the tag is %s, want A", name(got))
				}
			})

			for _, sig := range []struct {
				name string
				sig  syscall.Signal
			}{{"SIGTERM", syscall.SIGTERM}, {"SIGINT", syscall.SIGINT}} {
				t.Run(sig.name+" during the push", func(t *testing.T) {
					dst := registrytest.Start(t, k)
					state := filepath.Join(t.TempDir(), "series.json")
					assertExit(t, "unpack A", runPetra(t, e, unpack(dst.Host, state, A)...), 0)
					p := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{Hold: registrytest.ManifestPush})
					u := startPetra(t, e, unpack(p.Host, state, A2)...)
					if !waitHeld(t, p, u) {
						return
					}
					r, took, inTime := interrupt(t, u, sig.sig)
					assertInterrupted(t, "unpack A2 interrupted mid-push by "+sig.name, r, took, inTime)
					p.Release()
					time.Sleep(200 * time.Millisecond) // anything the proxy still forwards lands
					if got := tagAt(t, dst); got != A.digest {
						t.Errorf("after %s the tag is %s, want A (unmoved)", sig.name, name(got))
					}
					if got := lastAccepted(t, state, A.bundleID); got != A.sequence {
						t.Errorf("the state records sequence %d after the interrupted unpack, want %d", got, A.sequence)
					}
				})
			}

			t.Run("SIGTERM while waiting for the state lock", func(t *testing.T) {
				dst := registrytest.Start(t, k)
				state := filepath.Join(t.TempDir(), "series.json")
				p1 := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{Hold: registrytest.ManifestPush})
				p2 := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{})
				first := startPetra(t, e, unpack(p1.Host, state, A)...)
				if !waitHeld(t, p1, first) {
					return
				}
				second := startPetra(t, e, unpack(p2.Host, state, A2)...)
				waitLockWaiter(t, second, p2, 5*time.Second)
				r, took, inTime := terminate(t, second)
				assertInterrupted(t, "unpack A2 terminated while waiting for the lock", r, took, inTime)
				if w := p2.Writes(); len(w) != 0 {
					t.Errorf("the unpack waiting for the lock wrote to the registry: %v", w)
				}
				p1.Release()
				r1, _ := first.wait(hostileTimeout)
				assertExit(t, "the unpack holding the lock", r1, 0)
				if got := tagAt(t, dst); got != A.digest {
					t.Errorf("the tag is %s, want A", name(got))
				}
				if got := lastAccepted(t, state, A.bundleID); got != A.sequence {
					t.Errorf("the state records sequence %d, want %d", got, A.sequence)
				}
			})
		})
	}
}

// waitHeld waits until p holds a request of u (u is mid-push), failing the test when
// u ends first or nothing is held within the failsafe.
func waitHeld(t *testing.T, p *registrytest.HookProxy, u *petraProc) bool {
	t.Helper()
	deadline := time.After(hostileTimeout)
	for {
		select {
		case <-p.Held():
			return true
		case <-deadline:
			r, _ := u.wait(0)
			t.Errorf("the unpack never reached a manifest push within %s:\n%s", hostileTimeout, r)
			return false
		case <-time.After(10 * time.Millisecond):
			if u.exited() {
				t.Errorf("the unpack ended before its push could be held:\n%s", u.finished())
				return false
			}
		}
	}
}

// TestHostileSIGTERMDuringVerification: SIGTERM while unpack hashes a large bundle
// ends it within seconds with 130, before any request to the destination, with
// nothing recorded in the replay state.
//
// Not parallel: it needs verification to take long enough to be interrupted.
func TestHostileSIGTERMDuringVerification(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	keys := newHostileKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	// two 256 MiB layers (the base and the platform layer)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 71, Platforms: []string{"linux/amd64"}, LayerBytes: 256 << 20})
	dir, res := packCLI(t, e, keys.bundleKeys, img.Repo+":"+img.Tag)
	for _, k := range hostileKinds {
		t.Run(string(k), func(t *testing.T) {
			dst := registrytest.Start(t, k)
			p := registrytest.StartHookProxy(t, dst, registrytest.HookOptions{Hold: registrytest.AnyRequest})
			state := filepath.Join(t.TempDir(), "series.json")
			u := startPetra(t, e, unpackArgs(keys.bundleKeys, p.Host+"/pfx/team", dir, "--state", state)...)
			// interrupt once it has read 16 MiB of the bundle: it is hashing the layers
			deadline := time.Now().Add(hostileTimeout)
			for {
				n, ok := readChars(u.pid())
				if ok && n > 16<<20 {
					t.Logf("read %d bytes: sending SIGTERM", n)
					break
				}
				if u.exited() || time.Now().After(deadline) {
					r, _ := u.wait(time.Second)
					t.Fatalf("unpack ended (or never read the bundle) before it could be interrupted:\n%s", r)
				}
				time.Sleep(time.Millisecond)
			}
			r, took, inTime := terminate(t, u)
			if reqs := p.Requests(); len(reqs) > 0 {
				t.Fatalf("test too slow: verification had finished before SIGTERM arrived (first request %s); case inconclusive:\n%s", reqs[0], r)
			}
			assertInterrupted(t, "unpack terminated during verification", r, took, inTime)
			assertNothingPushed(t, dst)
			if got := lastAccepted(t, state, res.BundleID); got != 0 {
				t.Errorf("the interrupted unpack recorded sequence %d", got)
			}
			if strings.Contains(r.stderr, "bundle verified") {
				t.Errorf("the interrupted unpack says the bundle verified:\n%s", r)
			}
		})
	}
}
