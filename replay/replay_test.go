package replay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

const (
	idA = "0123456789abcdef0123456789abcdef"
	idB = "fedcba9876543210fedcba9876543210"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(Options{Path: filepath.Join(t.TempDir(), "state", "petra-oci", "series.json")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// guard is what Store and Held have in common.
type guard interface {
	Check(bundleID string, seq uint64) error
	Accept(bundleID string, seq uint64) error
}

// TestSequence runs the same steps through Store's per-call locks and through Held (a
// Lock per step), so that both keep one set of semantics.
func TestSequence(t *testing.T) {
	for _, mode := range []string{"Store", "Held"} {
		t.Run(mode, func(t *testing.T) { testSequence(t, mode == "Held") })
	}
}

func testSequence(t *testing.T, held bool) {
	s := newStore(t)
	steps := []struct {
		name   string
		id     string
		seq    uint64
		allow  bool
		accept bool
		want   error
	}{
		{"first bundle of a series", idA, 3, false, true, nil},
		{"same sequence refused", idA, 3, false, true, ErrReplay},
		{"older refused", idA, 2, false, true, ErrReplay},
		{"newer accepted", idA, 4, false, true, nil},
		{"gap accepted", idA, 9, false, true, nil},
		{"other series independent", idB, 1, false, true, nil},
		{"older allowed explicitly", idA, 5, true, true, nil},
		{"allowed replay does not lower the mark", idA, 8, false, false, ErrReplay},
		{"sequence 0 refused even when allowed", idB, 0, true, false, ErrReplay},
	}
	allowing, _ := New(Options{Path: s.Path(), AllowReplay: true})
	for _, st := range steps {
		store := s
		if st.allow {
			store = allowing
		}
		var g guard = store
		if held {
			h, err := store.Lock(context.Background())
			if err != nil {
				t.Fatalf("%s: Lock: %v", st.name, err)
			}
			g = h
		}
		if err := g.Check(st.id, st.seq); !errors.Is(err, st.want) {
			t.Fatalf("%s: Check = %v, want %v", st.name, err, st.want)
		}
		if st.accept {
			if err := g.Accept(st.id, st.seq); !errors.Is(err, st.want) {
				t.Fatalf("%s: Accept = %v, want %v", st.name, err, st.want)
			}
		}
		if h, ok := g.(*Held); ok {
			if err := h.Unlock(); err != nil {
				t.Fatalf("%s: Unlock: %v", st.name, err)
			}
		}
	}
	if last, ok, err := s.Last(idA); err != nil || !ok || last != 9 {
		t.Fatalf("Last(A) = %d, %v, %v", last, ok, err)
	}
	// a new Store on the same file sees the same state
	s2, _ := New(Options{Path: s.Path()})
	if err := s2.Check(idA, 9); !errors.Is(err, ErrReplay) {
		t.Fatalf("state not persisted: %v", err)
	}
	fi, err := os.Stat(filepath.Dir(s.Path()))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode = %v, %v", fi.Mode(), err)
	}
	fi, err = os.Stat(s.Path())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode = %v, %v", fi.Mode(), err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(s.Path()), ".series.json.tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

func TestCheckBeforeAnyStateCreatesNothing(t *testing.T) {
	s := newStore(t)
	if err := s.Check(idA, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(s.Path())); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Check created the state dir: %v", err)
	}
}

func TestBadBundleID(t *testing.T) {
	s := newStore(t)
	for _, id := range []string{"", "short", "0123456789ABCDEF0123456789ABCDEF", "../../../../etc/passwd0123456789"} {
		if err := s.Check(id, 1); err == nil {
			t.Errorf("Check(%q) accepted", id)
		}
		if err := s.Accept(id, 1); err == nil {
			t.Errorf("Accept(%q) accepted", id)
		}
	}
}

func TestCorruptStateFailsClosed(t *testing.T) {
	for name, content := range map[string]string{
		"empty":           "",
		"not JSON":        "{",
		"truncated":       `{"version":1,"series":{"` + idA + `":{"sequence":3`,
		"trailing":        `{"version":1,"series":{}} {}`,
		"unknown field":   `{"version":1,"series":{},"x":1}`,
		"wrong version":   `{"version":2,"series":{}}`,
		"no series":       `{"version":1}`,
		"bad id":          `{"version":1,"series":{"zz":{"sequence":3,"accepted":"2025-01-01T00:00:00Z"}}}`,
		"sequence 0":      `{"version":1,"series":{"` + idA + `":{"sequence":0,"accepted":"2025-01-01T00:00:00Z"}}}`,
		"negative":        `{"version":1,"series":{"` + idA + `":{"sequence":-1,"accepted":"2025-01-01T00:00:00Z"}}}`,
		"null entry":      `{"version":1,"series":{"` + idA + `":null}}`,
		"array":           `[]`,
		"string sequence": `{"version":1,"series":{"` + idA + `":{"sequence":"3","accepted":"2025-01-01T00:00:00Z"}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			if err := os.MkdirAll(filepath.Dir(s.Path()), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.Path(), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := s.Check(idA, 100); !errors.Is(err, ErrState) {
				t.Fatalf("Check = %v, want ErrState", err)
			}
			allowing, _ := New(Options{Path: s.Path(), AllowReplay: true})
			if err := allowing.Check(idA, 100); !errors.Is(err, ErrState) {
				t.Fatalf("Check allowing replays = %v, want ErrState", err)
			}
			if err := allowing.Accept(idA, 100); !errors.Is(err, ErrState) {
				t.Fatalf("Accept = %v, want ErrState", err)
			}
			h, err := allowing.Lock(context.Background())
			if err != nil {
				t.Fatalf("Lock on a corrupt state: %v", err)
			}
			if err := h.Check(idA, 100); !errors.Is(err, ErrState) {
				t.Fatalf("Held.Check = %v, want ErrState", err)
			}
			if err := h.Accept(idA, 100); !errors.Is(err, ErrState) {
				t.Fatalf("Held.Accept = %v, want ErrState", err)
			}
			h.Unlock()
			b, _ := os.ReadFile(s.Path())
			if string(b) != content {
				t.Fatal("a corrupt state file was rewritten")
			}
		})
	}
}

func TestStateFileSymlinkRefused(t *testing.T) {
	s := newStore(t)
	if err := os.MkdirAll(filepath.Dir(s.Path()), 0o700); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "elsewhere.json")
	os.WriteFile(other, []byte(`{"version":1,"series":{}}`), 0o600)
	if err := os.Symlink(other, s.Path()); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(idA, 1); !errors.Is(err, ErrState) {
		t.Fatalf("Check through a symlink = %v", err)
	}
}

func TestConcurrentAcceptsRecordOnce(t *testing.T) {
	s := newStore(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			other, _ := New(Options{Path: s.Path()}) // as separate processes would
			errs[i] = other.Accept(idA, 1)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, ErrReplay):
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent accepts of the same bundle succeeded, want 1", ok)
	}
	// concurrent accepts of different series all land
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := []byte(idB)
			id[0] = "0123456789abcdef"[i]
			if err := s.Accept(string(id), 1); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i := range n {
		id := []byte(idB)
		id[0] = "0123456789abcdef"[i]
		if _, ok, err := s.Last(string(id)); err != nil || !ok {
			t.Fatalf("series %s lost: %v", id, err)
		}
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/var/lib/x")
	if p, _ := DefaultPath(); p != "/var/lib/x/petra-oci/series.json" {
		t.Fatalf("DefaultPath = %q", p)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/officer")
	if p, _ := DefaultPath(); p != "/home/officer/.local/state/petra-oci/series.json" {
		t.Fatalf("DefaultPath = %q", p)
	}
	t.Setenv("XDG_STATE_HOME", "relative/dir")
	if p, _ := DefaultPath(); p != "/home/officer/.local/state/petra-oci/series.json" {
		t.Fatalf("DefaultPath with relative XDG_STATE_HOME = %q", p)
	}
	s, err := New(Options{})
	if err != nil || s.Path() != "/home/officer/.local/state/petra-oci/series.json" {
		t.Fatalf("New(Options{}) = %v, %v", s, err)
	}
}
