package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	tag1 = "registry.internal:5000/cgr/static:latest"
	tag2 = "registry.internal:5000/cgr/static:sha256-0123.sig"
	tag3 = "registry.internal:5000/cgr/go:1.26"
	tag4 = "registry.internal:5000/cgr/python:3"
)

// bundleAt is bundle seq of series id, created at t0 plus hours.
func bundleAt(id string, seq uint64, hours int) Bundle {
	return Bundle{
		ID:       id,
		Sequence: seq,
		Created:  t0.Add(time.Duration(hours) * time.Hour),
		Metadata: digest.FromString(fmt.Sprintf("metadata %s %d", id, seq)),
	}
}

func dig(s string) digest.Digest { return digest.FromString(s) }

func move(ref, content string) TagMove { return TagMove{Ref: ref, Digest: dig(content)} }

// lock locks s for the test.
func lock(t *testing.T, s *Store) *Held {
	t.Helper()
	h, err := s.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Unlock() })
	return h
}

// record records b with moves through a Lock on s, failing the test on error.
func record(t *testing.T, s *Store, b Bundle, moves ...TagMove) {
	t.Helper()
	h := lock(t, s)
	if err := h.Record(b, moves); err != nil {
		t.Fatal(err)
	}
	if err := h.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func storeWith(t *testing.T, path string, opts Options) *Store {
	t.Helper()
	opts.Path = path
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckTags(t *testing.T) {
	// every case starts from tag1 set to "v5" by series A sequence 5, created at +10h
	prior := bundleAt(idA, 5, 10)
	cases := []struct {
		name  string
		b     Bundle
		moves []TagMove
		opts  Options
		want  error
	}{
		{"no record", bundleAt(idA, 4, 0), []TagMove{move(tag3, "old")}, Options{}, nil},
		{"no moves", bundleAt(idA, 4, 0), nil, Options{}, nil},
		{"same bundle", prior, []TagMove{move(tag1, "v5")}, Options{}, nil},
		{"same bundle, other digest", prior, []TagMove{move(tag1, "v5b")}, Options{}, nil},
		{"newer sequence, same series", bundleAt(idA, 6, 0), []TagMove{move(tag1, "v6")}, Options{}, nil},
		{"newer sequence, same digest", bundleAt(idA, 6, 11), []TagMove{move(tag1, "v5")}, Options{}, nil},
		{"older sequence, same series", bundleAt(idA, 4, 9), []TagMove{move(tag1, "v4")}, Options{}, ErrRollback},
		{"older sequence, same series, created later", bundleAt(idA, 4, 20), []TagMove{move(tag1, "v4")}, Options{}, ErrRollback},
		{"older sequence, same digest", bundleAt(idA, 4, 9), []TagMove{move(tag1, "v5")}, Options{}, ErrRollback},
		{"other series, created earlier", bundleAt(idB, 9, 9), []TagMove{move(tag1, "b9")}, Options{}, ErrRollback},
		{"other series, created earlier, same digest", bundleAt(idB, 9, 9), []TagMove{move(tag1, "v5")}, Options{}, ErrRollback},
		{"other series, created later", bundleAt(idB, 1, 11), []TagMove{move(tag1, "b1")}, Options{}, nil},
		{"other series, same instant, same digest", bundleAt(idB, 1, 10), []TagMove{move(tag1, "v5")}, Options{}, nil},
		{"other series, same instant, other digest", bundleAt(idB, 1, 10), []TagMove{move(tag1, "b1")}, Options{}, ErrRollback},
		{"older, AllowRollback", bundleAt(idA, 4, 9), []TagMove{move(tag1, "v4")}, Options{AllowRollback: true}, nil},
		{"other series earlier, AllowRollback", bundleAt(idB, 9, 9), []TagMove{move(tag1, "b9")}, Options{AllowRollback: true}, nil},
		{"older, AllowReplay is not AllowRollback", bundleAt(idA, 4, 9), []TagMove{move(tag1, "v4")}, Options{AllowReplay: true}, ErrRollback},
		{"repeated move", bundleAt(idA, 6, 11), []TagMove{move(tag1, "v6"), move(tag1, "v6")}, Options{}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			record(t, s, prior, move(tag1, "v5"))
			before, _ := os.ReadFile(s.Path())
			h := lock(t, storeWith(t, s.Path(), c.opts))
			err := h.CheckTags(c.b, c.moves)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("CheckTags = %v, want %v", err, c.want)
			}
			if err != nil {
				// the error names the tag, the recorded bundle and this one
				for _, want := range []string{tag1, prior.ID, "sequence 5", stamp(prior.Created),
					c.b.ID, fmt.Sprintf("sequence %d", c.b.Sequence), stamp(c.b.Created)} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not name %q", err, want)
					}
				}
			}
			after, _ := os.ReadFile(s.Path())
			if !bytes.Equal(before, after) {
				t.Fatal("CheckTags wrote the state")
			}
		})
	}
}

func TestCheckTagsReportsEveryRefusedTag(t *testing.T) {
	s := newStore(t)
	record(t, s, bundleAt(idA, 5, 10), move(tag1, "a"), move(tag2, "b"), move(tag3, "c"))
	h := lock(t, s)
	// tag1 and tag2 would roll back, tag3 keeps its digest but from an older bundle,
	// tag4 has no record
	err := h.CheckTags(bundleAt(idB, 1, 5), []TagMove{move(tag1, "x"), move(tag4, "y"), move(tag2, "z"), move(tag3, "c")})
	if !errors.Is(err, ErrRollback) {
		t.Fatalf("CheckTags = %v, want ErrRollback", err)
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != 3 {
		t.Fatalf("CheckTags = %v, want three joined errors", err)
	}
	for i, ref := range []string{tag1, tag2, tag3} {
		if e := joined.Unwrap()[i]; !errors.Is(e, ErrRollback) || !strings.Contains(e.Error(), ref+" holds") {
			t.Errorf("error %d = %v, want %s refused", i, e, ref)
		}
	}
	if strings.Contains(err.Error(), tag4) {
		t.Errorf("tag without a record reported: %v", err)
	}
}

func TestRecord(t *testing.T) {
	s := newStore(t)
	now := time.Date(2026, 3, 2, 8, 30, 15, 999, time.UTC)
	s.now = func() time.Time { return now }
	b := bundleAt(idA, 3, 0)
	b.Created = b.Created.In(time.FixedZone("CET", 3600)).Add(123 * time.Millisecond)
	h := lock(t, s)
	if err := h.Record(b, []TagMove{move(tag1, "one"), move(tag2, "two")}); err != nil {
		t.Fatal(err)
	}
	// the holder sees its own records
	if r, ok, err := h.Tag(tag1); err != nil || !ok || r.Digest != dig("one") {
		t.Fatalf("Tag(tag1) under the same lock = %+v, %v, %v", r, ok, err)
	}
	h.Unlock()

	// a later Held, through another Store on the same file, sees them all
	h2 := lock(t, storeWith(t, s.Path(), Options{}))
	want := TagRecord{BundleID: idA, Sequence: 3, Created: b.Created.UTC(), Metadata: b.Metadata,
		Digest: dig("two"), Recorded: now.Truncate(time.Second)}
	r, ok, err := h2.Tag(tag2)
	if err != nil || !ok || r != want {
		t.Fatalf("Tag(tag2) = %+v, %v, %v\nwant %+v", r, ok, err, want)
	}
	if r.Created.Nanosecond() != 123e6 {
		t.Fatalf("Created lost precision: %v", r.Created)
	}
	if _, ok, err := h2.Tag(tag3); ok || err != nil {
		t.Fatalf("Tag(tag3) = %v, %v, want no record", ok, err)
	}
	if err := h2.Check(idA, 3); !errors.Is(err, ErrReplay) {
		t.Fatalf("Record did not record the sequence: Check = %v", err)
	}
	if _, _, err := h2.Tag("bad ref"); err == nil {
		t.Fatal("Tag accepted a reference with a space")
	}
	h2.Unlock()
	if last, ok, err := s.Last(idA); err != nil || !ok || last != 3 {
		t.Fatalf("Last = %d, %v, %v", last, ok, err)
	}
	// one atomic write: no temporary file left, the file is complete JSON with both tags
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(s.Path()), ".series.json.tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
	var raw struct {
		Version int
		Series  map[string]json.RawMessage
		Tags    map[string]json.RawMessage
	}
	data, _ := os.ReadFile(s.Path())
	if err := json.Unmarshal(data, &raw); err != nil || raw.Version != 1 || len(raw.Series) != 1 || len(raw.Tags) != 2 {
		t.Fatalf("state file = %s (%v)", data, err)
	}
	t.Logf("state file:\n%s", data)

	// a newer bundle of the series moves one tag; the other keeps its record
	record(t, s, bundleAt(idA, 4, 1), move(tag1, "one-b"))
	h3 := lock(t, s)
	if r, _, _ := h3.Tag(tag1); r.Sequence != 4 || r.Digest != dig("one-b") {
		t.Fatalf("tag1 after sequence 4 = %+v", r)
	}
	if r, _, _ := h3.Tag(tag2); r.Sequence != 3 || r.Digest != dig("two") {
		t.Fatalf("tag2 after sequence 4 = %+v", r)
	}
}

// unchanged fails when the state file differs from before.
func unchanged(t *testing.T, path string, before []byte, what string) {
	t.Helper()
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("%s changed the state file (%v)", what, err)
	}
}

func TestRecordRefusesAndWritesNothing(t *testing.T) {
	s := newStore(t)
	record(t, s, bundleAt(idA, 5, 10), move(tag1, "v5"))
	before, _ := os.ReadFile(s.Path())
	h := lock(t, s)

	// series B is new (its sequence would be accepted) but tag1 would roll back: nothing
	// is recorded, not even B's sequence nor the harmless tag3
	err := h.Record(bundleAt(idB, 1, 9), []TagMove{move(tag3, "b"), move(tag1, "b")})
	if !errors.Is(err, ErrRollback) || !strings.Contains(err.Error(), tag1) {
		t.Fatalf("Record = %v, want ErrRollback for %s", err, tag1)
	}
	unchanged(t, s.Path(), before, "a refused Record")
	if err := h.Check(idB, 1); err != nil {
		t.Fatalf("refused Record recorded its series: %v", err)
	}

	// a replayed sequence is refused before any tag is looked at
	if err := h.Record(bundleAt(idA, 5, 10), []TagMove{move(tag3, "c")}); !errors.Is(err, ErrReplay) {
		t.Fatalf("Record of a recorded sequence = %v, want ErrReplay", err)
	}
	unchanged(t, s.Path(), before, "a replayed Record")

	// invalid input
	for name, c := range map[string]struct {
		b     Bundle
		moves []TagMove
	}{
		"bad id":           {Bundle{ID: "x", Sequence: 6, Created: t0, Metadata: dig("m")}, nil},
		"sequence 0":       {bundleAt(idA, 0, 11), nil},
		"no created":       {Bundle{ID: idA, Sequence: 6, Metadata: dig("m")}, nil},
		"no metadata":      {Bundle{ID: idA, Sequence: 6, Created: t0}, nil},
		"bad metadata":     {Bundle{ID: idA, Sequence: 6, Created: t0, Metadata: "sha256:zz"}, nil},
		"empty ref":        {bundleAt(idA, 6, 11), []TagMove{move("", "x")}},
		"ref with space":   {bundleAt(idA, 6, 11), []TagMove{move("r/x: y", "x")}},
		"ref with newline": {bundleAt(idA, 6, 11), []TagMove{move("r/x:y\n", "x")}},
		"no digest":        {bundleAt(idA, 6, 11), []TagMove{{Ref: tag3}}},
		"bad digest":       {bundleAt(idA, 6, 11), []TagMove{{Ref: tag3, Digest: "sha256:abc"}}},
		"two digests":      {bundleAt(idA, 6, 11), []TagMove{move(tag3, "x"), move(tag3, "y")}},
	} {
		if err := h.Record(c.b, c.moves); err == nil {
			t.Errorf("%s: Record accepted", name)
		}
		if err := h.CheckTags(c.b, c.moves); err == nil {
			t.Errorf("%s: CheckTags accepted", name)
		}
		unchanged(t, s.Path(), before, name)
	}
}

func TestRecordEscapeHatches(t *testing.T) {
	s := newStore(t)
	record(t, s, bundleAt(idA, 5, 10), move(tag1, "v5"))

	// AllowReplay: an older sequence records its (new) tags and keeps the series' mark
	h := lock(t, storeWith(t, s.Path(), Options{AllowReplay: true}))
	if err := h.Record(bundleAt(idA, 3, 8), []TagMove{move(tag3, "v3")}); err != nil {
		t.Fatal(err)
	}
	if err := h.Record(bundleAt(idA, 3, 8), []TagMove{move(tag1, "v3")}); !errors.Is(err, ErrRollback) {
		t.Fatalf("AllowReplay let a tag roll back: %v", err)
	}
	h.Unlock()
	if last, _, _ := s.Last(idA); last != 5 {
		t.Fatalf("an allowed replay lowered the sequence to %d", last)
	}

	// AllowRollback: the tag record becomes the bundle that set it last
	h = lock(t, storeWith(t, s.Path(), Options{AllowRollback: true}))
	if err := h.Record(bundleAt(idB, 1, 9), []TagMove{move(tag1, "b1")}); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := h.Tag(tag1); r.BundleID != idB || r.Digest != dig("b1") {
		t.Fatalf("tag1 after an allowed rollback = %+v", r)
	}
	// AllowRollback does not allow a replay
	if err := h.Record(bundleAt(idA, 4, 9), []TagMove{move(tag1, "v4")}); !errors.Is(err, ErrReplay) {
		t.Fatalf("AllowRollback let a sequence replay: %v", err)
	}
	h.Unlock()
	// and without the hatch, series A (created later than B's record) may move it again
	h = lock(t, s)
	if err := h.CheckTags(bundleAt(idA, 6, 11), []TagMove{move(tag1, "v6")}); err != nil {
		t.Fatal(err)
	}
	if err := h.CheckTags(bundleAt(idA, 4, 8), []TagMove{move(tag1, "v4")}); !errors.Is(err, ErrRollback) {
		t.Fatalf("CheckTags = %v, want ErrRollback against B's record", err)
	}
}

func TestStateWithoutTags(t *testing.T) {
	s := newStore(t)
	if err := os.MkdirAll(filepath.Dir(s.Path()), 0o700); err != nil {
		t.Fatal(err)
	}
	old := `{"version":1,"series":{"` + idA + `":{"sequence":3,"accepted":"2025-01-01T00:00:00Z"}}}`
	if err := os.WriteFile(s.Path(), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(idA, 3); !errors.Is(err, ErrReplay) {
		t.Fatalf("Check on a file without tags = %v", err)
	}
	h := lock(t, s)
	if err := h.CheckTags(bundleAt(idA, 4, 0), []TagMove{move(tag1, "x")}); err != nil {
		t.Fatal(err)
	}
	if err := h.Record(bundleAt(idA, 4, 0), []TagMove{move(tag1, "x")}); err != nil {
		t.Fatal(err)
	}
	if r, ok, err := h.Tag(tag1); err != nil || !ok || r.Sequence != 4 {
		t.Fatalf("Tag = %+v, %v, %v", r, ok, err)
	}
	// an Accept-only write of a file without tags does not add an empty "tags"
	if err := h.Accept(idB, 1); err != nil {
		t.Fatal(err)
	}
	h.Unlock()
	s2 := newStore(t)
	if err := s2.Accept(idA, 1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(s2.Path()); bytes.Contains(b, []byte("tags")) {
		t.Fatalf("state without tag records has a tags object: %s", b)
	}
}

func TestCorruptTagRecordFailsClosed(t *testing.T) {
	const (
		good = `"bundleID":"` + idA + `","sequence":3,"created":"2026-01-01T00:00:00Z","metadata":"sha256:0000000000000000000000000000000000000000000000000000000000000000","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","recorded":"2026-01-02T00:00:00Z"`
		ref  = `"r.internal/a:1"`
	)
	withTags := func(tags string) string {
		return `{"version":1,"series":{"` + idA + `":{"sequence":3,"accepted":"2025-01-01T00:00:00Z"}},"tags":` + tags + `}`
	}
	replace := func(old, new string) string {
		return withTags(`{` + ref + `:{` + strings.Replace(good, old, new, 1) + `}}`)
	}
	// the good record parses: the cases below fail for their one change
	s := newStore(t)
	os.MkdirAll(filepath.Dir(s.Path()), 0o700)
	os.WriteFile(s.Path(), []byte(withTags(`{`+ref+`:{`+good+`}}`)), 0o600)
	if err := s.Check(idA, 4); err != nil {
		t.Fatalf("good record: %v", err)
	}

	for name, content := range map[string]string{
		"tags not an object":  withTags(`[]`),
		"null record":         withTags(`{` + ref + `:null}`),
		"empty record":        withTags(`{` + ref + `:{}}`),
		"empty ref":           withTags(`{"":{` + good + `}}`),
		"ref with space":      withTags(`{"r/a: 1":{` + good + `}}`),
		"ref with tab":        withTags(`{"r/a:\t1":{` + good + `}}`),
		"unknown field":       withTags(`{` + ref + `:{` + good + `,"x":1}}`),
		"bad bundle id":       replace(idA, "ABC"),
		"sequence 0":          replace(`"sequence":3`, `"sequence":0`),
		"negative sequence":   replace(`"sequence":3`, `"sequence":-3`),
		"no created":          replace(`"created":"2026-01-01T00:00:00Z",`, ``),
		"bad created":         replace(`"created":"2026-01-01T00:00:00Z"`, `"created":"yesterday"`),
		"bad metadata digest": replace(`"metadata":"sha256:00`, `"metadata":"sha256:0`),
		"no digest":           replace(`,"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111"`, ``),
		"bad digest":          replace(`"digest":"sha256:11`, `"digest":"md5:11`),
		"digest not string":   replace(`"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111"`, `"digest":1`),
		"no recorded":         replace(`,"recorded":"2026-01-02T00:00:00Z"`, ``),
	} {
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			if err := os.MkdirAll(filepath.Dir(s.Path()), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.Path(), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := s.Check(idA, 4); !errors.Is(err, ErrState) {
				t.Fatalf("Store.Check = %v, want ErrState", err)
			}
			allowing := storeWith(t, s.Path(), Options{AllowReplay: true, AllowRollback: true})
			if err := allowing.Accept(idA, 4); !errors.Is(err, ErrState) {
				t.Fatalf("Store.Accept = %v, want ErrState", err)
			}
			h := lock(t, allowing)
			b := bundleAt(idA, 4, 0)
			mv := []TagMove{move("r.internal/a:1", "x")}
			if err := h.Check(idA, 4); !errors.Is(err, ErrState) {
				t.Fatalf("Held.Check = %v, want ErrState", err)
			}
			if err := h.CheckTags(b, mv); !errors.Is(err, ErrState) {
				t.Fatalf("CheckTags = %v, want ErrState", err)
			}
			if err := h.Record(b, mv); !errors.Is(err, ErrState) {
				t.Fatalf("Record = %v, want ErrState", err)
			}
			if _, _, err := h.Tag("r.internal/a:1"); !errors.Is(err, ErrState) {
				t.Fatalf("Tag = %v, want ErrState", err)
			}
			unchanged(t, s.Path(), []byte(content), "a corrupt state")
		})
	}
}

// TestRecordBounded: a Record whose state would be over maxStateBytes (which read would
// then refuse) fails and leaves the file as it was.
func TestRecordBounded(t *testing.T) {
	s := newStore(t)
	record(t, s, bundleAt(idA, 1, 0), move(tag1, "x"))
	before, _ := os.ReadFile(s.Path())
	long := strings.Repeat("r", 1900)
	moves := make([]TagMove, 0, maxStateBytes/2000+1)
	for i := range cap(moves) {
		moves = append(moves, TagMove{Ref: fmt.Sprintf("r.internal/%s:%d", long, i), Digest: dig("x")})
	}
	h := lock(t, s)
	if err := h.Record(bundleAt(idA, 2, 1), moves); !errors.Is(err, ErrState) {
		t.Fatalf("Record over the bound = %v, want ErrState", err)
	}
	unchanged(t, s.Path(), before, "an oversized Record")
	if err := h.Record(bundleAt(idA, 2, 1), moves[:100]); err != nil {
		t.Fatalf("Record within the bound: %v", err)
	}
}

// unpackSim is an unpack as internal/unpack runs it, against a pretend registry: Lock,
// Check, CheckTags, push, Record, move the tag, Unlock. Each call opens its own Store,
// as a separate process would.
type unpackSim struct {
	path string

	mu       sync.Mutex
	registry map[string]digest.Digest // tag -> what it points to
	pushes   []uint64                 // sequences whose content was pushed
	moves    []uint64                 // sequences that moved the tag, in order
}

func (u *unpackSim) run(b Bundle, d digest.Digest) error {
	s, err := New(Options{Path: u.path})
	if err != nil {
		return err
	}
	h, err := s.Lock(context.Background())
	if err != nil {
		return err
	}
	defer h.Unlock()
	mv := []TagMove{{Ref: tag1, Digest: d}}
	if err := h.Check(b.ID, b.Sequence); err != nil {
		return err
	}
	if err := h.CheckTags(b, mv); err != nil {
		return err
	}
	u.mu.Lock()
	u.pushes = append(u.pushes, b.Sequence)
	u.mu.Unlock()
	time.Sleep(2 * time.Millisecond) // pushing content
	if err := h.Record(b, mv); err != nil {
		return err
	}
	time.Sleep(2 * time.Millisecond) // the tag moves after its record
	u.mu.Lock()
	u.registry[tag1] = d
	u.moves = append(u.moves, b.Sequence)
	u.mu.Unlock()
	return nil
}

// both runs f(0) and f(1) at once and returns their errors.
func both(f func(i int) error) [2]error {
	var errs [2]error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// TestConcurrentUnpacksNeverRollBack: of sequences 2 and 3 of one series unpacked at
// once, in either order, the tag ends at 3's content, and 2 either ran wholly before 3
// or was refused without pushing; never does 2 move the tag after 3 recorded.
func TestConcurrentUnpacksNeverRollBack(t *testing.T) {
	b2, b3 := bundleAt(idA, 2, 2), bundleAt(idA, 3, 3)
	d2, d3 := dig("seq 2"), dig("seq 3")
	orders := map[string]int{}
	for range 30 {
		u := &unpackSim{path: newStore(t).Path(), registry: map[string]digest.Digest{}}
		errs := both(func(i int) error {
			if i == 0 {
				return u.run(b2, d2)
			}
			return u.run(b3, d3)
		})
		if errs[1] != nil {
			t.Fatalf("sequence 3 refused: %v", errs[1])
		}
		switch {
		case errs[0] == nil:
			if fmt.Sprint(u.moves) != "[2 3]" {
				t.Fatalf("tag moves %v, want [2 3]", u.moves)
			}
			orders["2 then 3"]++
		case errors.Is(errs[0], ErrReplay) || errors.Is(errs[0], ErrRollback):
			if fmt.Sprint(u.pushes) != "[3]" || fmt.Sprint(u.moves) != "[3]" {
				t.Fatalf("sequence 2 refused (%v) after pushing %v, moving %v", errs[0], u.pushes, u.moves)
			}
			orders["3, 2 refused"]++
		default:
			t.Fatalf("sequence 2: %v", errs[0])
		}
		if u.registry[tag1] != d3 {
			t.Fatalf("tag at %s, want sequence 3's %s (moves %v)", u.registry[tag1], d3, u.moves)
		}
		s, _ := New(Options{Path: u.path})
		h := lock(t, s)
		if r, ok, err := h.Tag(tag1); err != nil || !ok || r.Sequence != 3 || r.Digest != d3 {
			t.Fatalf("tag record = %+v, %v, %v", r, ok, err)
		}
		h.Unlock()
		if last, _, _ := s.Last(idA); last != 3 {
			t.Fatalf("series at %d, want 3", last)
		}
	}
	t.Logf("orders seen: %v", orders)
}

// TestConcurrentUnpacksOfOneBundle: two unpacks of the same bundle at once push once.
func TestConcurrentUnpacksOfOneBundle(t *testing.T) {
	b := bundleAt(idA, 4, 4)
	for range 20 {
		u := &unpackSim{path: newStore(t).Path(), registry: map[string]digest.Digest{}}
		errs := both(func(int) error { return u.run(b, dig("seq 4")) })
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("errors %v, want exactly one unpack to succeed", errs)
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, ErrReplay) {
				t.Fatalf("the second unpack: %v, want ErrReplay", err)
			}
		}
		if len(u.pushes) != 1 {
			t.Fatalf("content pushed %d times, want once", len(u.pushes))
		}
	}
}
