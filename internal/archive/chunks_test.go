package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// copyDir copies a chunk directory (flat, regular files).
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "chunks")
	must(t, os.Mkdir(dst, 0o755))
	des, err := os.ReadDir(src)
	must(t, err)
	for _, de := range des {
		must(t, os.WriteFile(filepath.Join(dst, de.Name()), readFile(t, filepath.Join(src, de.Name())), 0o644))
	}
	return dst
}

func flipByte(t testing.TB, p string, at int64) {
	t.Helper()
	b := readFile(t, p)
	b[at%int64(len(b))] ^= 0x40
	must(t, os.WriteFile(p, b, 0o644))
}

// damage spoils chunk name in dir one of three ways.
func damage(t testing.TB, dir, name, how string) {
	t.Helper()
	p := filepath.Join(dir, name)
	switch how {
	case "deleted":
		must(t, os.Remove(p))
	case "flipped":
		flipByte(t, p, 777)
	case "truncated":
		b := readFile(t, p)
		must(t, os.WriteFile(p, b[:len(b)/2], 0o644))
	default:
		t.Fatalf("test bug: %s", how)
	}
}

// TestParityRebuildsAnyTwo: with --parity 2, every pair of chunks (data or parity),
// deleted, corrupted or truncated, is rebuilt and the bundle imports and verifies.
func TestParityRebuildsAnyTwo(t *testing.T) {
	dir := newBundle(t, 10, 150<<10, 40<<10, 100)
	for _, z := range []bool{false, true} {
		ex := export(t, dir, filepath.Join(t.TempDir(), "c"), 40<<10, 2, z)
		n := len(ex.Index.Chunks)
		if d := len(ex.Index.data()); d < 4 {
			t.Fatalf("test bug: %d data chunks", d)
		}
		hows := []string{"deleted", "flipped", "truncated"}
		k := 0
		for i := range n {
			for j := i + 1; j < n; j++ {
				a, b := ex.Index.Chunks[i].Name, ex.Index.Chunks[j].Name
				how1, how2 := hows[k%3], hows[(k+1)%3]
				k++
				t.Run(fmt.Sprintf("zstd=%v/%s %s, %s %s", z, a, how1, b, how2), func(t *testing.T) {
					c := copyDir(t, ex.Out)
					damage(t, c, a, how1)
					damage(t, c, b, how2)
					res, out, err := importTo(t, c, nil)
					if err != nil {
						t.Fatalf("import: %v", err)
					}
					rebuilt := 0
					for _, s := range res.Chunks {
						if s.Status == "rebuilt" {
							rebuilt++
							if s.Name != a && s.Name != b {
								t.Errorf("%s rebuilt, but %s and %s were damaged", s.Name, a, b)
							}
						}
					}
					// two damaged parity chunks are not needed: the data is good
					want := 2
					if ex.Index.Chunks[i].Role == RoleParity {
						want = 0
					}
					if rebuilt != want {
						t.Errorf("%d chunks rebuilt, want %d: %+v", rebuilt, want, res.Chunks)
					}
					if !slices.Equal(listTree(t, out), listTree(t, dir)) {
						t.Errorf("imported tree differs")
					}
				})
			}
		}
	}
}

// An archive smaller than the split size gets parity chunks of its own size (rounded up
// to 64 bytes), not of the split size, and they still rebuild it; an index with the
// split size there (what earlier exports wrote) still validates, any other does not.
func TestParityOfOneChunk(t *testing.T) {
	dir := newBundle(t, 11, 30<<10, 100)
	ex := export(t, dir, filepath.Join(t.TempDir(), "c"), 1<<20, 2, false)
	data, parity := ex.Index.data(), ex.Index.parity()
	if len(data) != 1 || len(parity) != 2 {
		t.Fatalf("test bug: %d data and %d parity chunks", len(data), len(parity))
	}
	want := roundUp(data[0].Size, shardAlign)
	for _, c := range parity {
		if c.Size != want || fileSize(filepath.Join(ex.Out, c.Name)) != want {
			t.Errorf("%s: %d bytes, want %d (the data chunk's %d rounded up to %d)", c.Name, c.Size, want, data[0].Size, shardAlign)
		}
	}
	c := copyDir(t, ex.Out)
	damage(t, c, data[0].Name, "deleted")
	damage(t, c, parity[0].Name, "flipped")
	if _, out, err := importTo(t, c, nil); err != nil {
		t.Fatalf("import: %v", err)
	} else if !slices.Equal(listTree(t, out), listTree(t, dir)) {
		t.Error("imported tree differs")
	}
	for _, tc := range []struct {
		shard int64
		ok    bool
	}{{want, true}, {roundUp(ex.Index.ChunkSize, shardAlign), true}, {want + shardAlign, false}, {want - shardAlign, false}} {
		ix := *ex.Index
		p := *ix.Parity
		p.ShardSize = tc.shard
		ix.Parity = &p
		ix.Chunks = slices.Clone(ix.Chunks)
		for i := range ix.Chunks {
			if ix.Chunks[i].Role == RoleParity {
				ix.Chunks[i].Size = tc.shard
			}
		}
		if err := ix.Validate(); (err == nil) != tc.ok {
			t.Errorf("shard size %d: Validate = %v, want ok=%v", tc.shard, err, tc.ok)
		}
	}
}

// TestBadChunksRefused: beyond what parity rebuilds, a flipped byte, a missing,
// reordered, foreign or stale chunk is refused before anything is extracted, naming it.
func TestBadChunksRefused(t *testing.T) {
	dir := newBundle(t, 11, 100<<10, 20<<10)
	other := newBundle(t, 12, 100<<10, 20<<10)
	const split = 32 << 10
	plain := export(t, dir, filepath.Join(t.TempDir(), "plain"), split, 0, false)
	withParity := export(t, dir, filepath.Join(t.TempDir(), "parity"), split, 2, false)
	foreign := export(t, other, filepath.Join(t.TempDir(), "foreign"), split, 0, false)
	cases := []struct {
		name  string
		src   *ExportResult
		spoil func(t *testing.T, c string)
		kind  error
		names []string
	}{
		{"flipped byte, no parity", plain, func(t *testing.T, c string) { flipByte(t, filepath.Join(c, "data-00001"), 5) }, ErrChunk, []string{"data-00001", "sha256"}},
		{"missing, no parity", plain, func(t *testing.T, c string) { must(t, os.Remove(filepath.Join(c, "data-00002"))) }, ErrChunk, []string{"data-00002", "missing"}},
		{"reordered", plain, func(t *testing.T, c string) {
			a, b := filepath.Join(c, "data-00000"), filepath.Join(c, "data-00001")
			must(t, os.Rename(a, a+".x"))
			must(t, os.Rename(b, a))
			must(t, os.Rename(a+".x", b))
		}, ErrChunk, []string{"data-00000", "data-00001"}},
		{"foreign", plain, func(t *testing.T, c string) {
			must(t, os.WriteFile(filepath.Join(c, "data-00001"), readFile(t, filepath.Join(foreign.Out, "data-00001")), 0o644))
		}, ErrChunk, []string{"data-00001"}},
		{"stale leftover", plain, func(t *testing.T, c string) {
			must(t, os.WriteFile(filepath.Join(c, "data-00099"), []byte("old"), 0o644))
		}, ErrStaleChunk, []string{"data-00099"}},
		{"three bad with parity 2", withParity, func(t *testing.T, c string) {
			flipByte(t, filepath.Join(c, "data-00000"), 1)
			must(t, os.Remove(filepath.Join(c, "data-00003")))
			flipByte(t, filepath.Join(c, "parity-00001"), 1)
		}, ErrChunk, []string{"data-00000", "data-00003", "parity-00001", "rebuild at most 2"}},
		{"symlinked chunk", plain, func(t *testing.T, c string) {
			p := filepath.Join(c, "data-00001")
			must(t, os.Rename(p, p+".real"))
			must(t, os.Symlink(p+".real", p))
		}, ErrChunk, []string{"data-00001", "not a regular file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := copyDir(t, tc.src.Out)
			tc.spoil(t, c)
			_, out, err := importTo(t, c, nil)
			wantErr(t, err, tc.kind, tc.names...)
			if _, err := os.Lstat(out); err == nil {
				t.Fatal("the output exists")
			}
			work := filepath.Join(filepath.Dir(out), ".imported.petra-import")
			if _, err := os.Stat(filepath.Join(work, "bundle")); err == nil {
				t.Errorf("something was extracted: %q", listTree(t, work))
			}
		})
	}
}

// TestImportResumes interrupts a chunked import during extraction, deletes a chunk
// extraction had finished with, and resumes: the verified chunks are not read again,
// and the import completes.
func TestImportResumes(t *testing.T) {
	old := saveEvery
	saveEvery = 1 << 10
	defer func() { saveEvery = old }()
	dir := newBundle(t, 13, 60<<10, 60<<10, 60<<10, 60<<10)
	ex := export(t, dir, filepath.Join(t.TempDir(), "c"), 32<<10, 0, false)
	out := filepath.Join(t.TempDir(), "imported")
	ctx, cancel := context.WithCancel(context.Background())
	var hashed []string
	opts := ImportOptions{Out: out, Verify: verifyOpts(t), Workers: 1, Progress: func(e Event) {
		if e.Phase == "verify-chunk" {
			hashed = append(hashed, e.Chunk)
		}
		if e.Phase == "extract" && e.Done > 130<<10 {
			cancel()
		}
	}}
	_, err := Import(ctx, ex.Out, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted import: %v", err)
	}
	if len(hashed) != len(ex.Index.Chunks) {
		t.Fatalf("first run hashed %q", hashed)
	}
	if _, err := os.Lstat(out); err == nil {
		t.Fatal("an interrupted import left the output")
	}
	work := filepath.Join(filepath.Dir(out), ".imported.petra-import")
	var st state
	must(t, json.Unmarshal(readFile(t, filepath.Join(work, stateFile)), &st))
	if st.Offset < 130<<10 || len(st.Done) < 3 || len(st.Verified) != len(ex.Index.Chunks) {
		t.Fatalf("state after the interruption: offset %d, %d done, %d verified", st.Offset, len(st.Done), len(st.Verified))
	}
	// a chunk wholly before the resume point is not read again: delete it
	gone := ex.Index.Chunks[1]
	if gone.Offset+gone.Size > st.Offset {
		t.Fatalf("test bug: %s ends at %d, after the resume offset %d", gone.Name, gone.Offset+gone.Size, st.Offset)
	}
	must(t, os.Remove(filepath.Join(ex.Out, gone.Name)))
	hashed = nil
	opts.Progress = func(e Event) {
		if e.Phase == "verify-chunk" {
			hashed = append(hashed, e.Chunk)
		}
	}
	res, err := Import(context.Background(), ex.Out, opts)
	if err != nil {
		t.Fatalf("resumed import: %v", err)
	}
	if !res.Resumed || len(hashed) != 0 {
		t.Fatalf("resumed=%v, chunks hashed again: %q", res.Resumed, hashed)
	}
	// the files the first run extracted are hashed by the final verification; only
	// those this run wrote are checked with the hashes of their extraction
	if f := res.Verify.Files; f.HashedWhenWritten == 0 || f.HashedWhenWritten > f.Files-(len(st.Done)-2) {
		t.Fatalf("%d of %d files checked with extraction hashes, %d extracted by the first run", f.HashedWhenWritten, f.Files, len(st.Done)-2)
	}
	for _, c := range res.Chunks {
		want := "verified-earlier"
		if c.Offset(ex.Index)+c.size(ex.Index) <= st.Offset {
			want = "not-needed"
		}
		if c.Status != want {
			t.Errorf("%s: %s, want %s", c.Name, c.Status, want)
		}
	}
	if !slices.Equal(listTree(t, out), listTree(t, dir)) {
		t.Fatalf("imported tree differs")
	}
	if _, err := os.Stat(work); err == nil {
		t.Error("the work directory is left after a successful import")
	}
}

// TestPlainArchiveResumes interrupts the import of a plain archive and resumes it.
func TestPlainArchiveResumes(t *testing.T) {
	old := saveEvery
	saveEvery = 1 << 10
	defer func() { saveEvery = old }()
	dir := newBundle(t, 14, 60<<10, 60<<10, 60<<10)
	for _, z := range []bool{false, true} {
		ex := export(t, dir, filepath.Join(t.TempDir(), "a.tar"), 0, 0, z)
		out := filepath.Join(t.TempDir(), "imported")
		ctx, cancel := context.WithCancel(context.Background())
		opts := ImportOptions{Out: out, Verify: verifyOpts(t), Progress: func(e Event) {
			if e.Phase == "extract" && e.Done > 70<<10 {
				cancel()
			}
		}}
		if _, err := Import(ctx, ex.Out, opts); !errors.Is(err, context.Canceled) {
			t.Fatalf("zstd=%v: interrupted import: %v", z, err)
		}
		opts.Progress = nil
		res, err := Import(context.Background(), ex.Out, opts)
		if err != nil || !res.Resumed {
			t.Fatalf("zstd=%v: resumed import: %v (resumed %v)", z, err, res != nil && res.Resumed)
		}
		if !slices.Equal(listTree(t, out), listTree(t, dir)) {
			t.Fatalf("imported tree differs")
		}
	}
}
