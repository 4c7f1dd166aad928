package unpack

import (
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/replay"
)

// TestTagMovesSet: an import record's .att replaces the bundle's move of that tag in
// place, a new tag is added at the end, and the order of the others is kept.
func TestTagMovesSet(t *testing.T) {
	const n = 20000
	var list []replay.TagMove
	for i := range n {
		list = append(list, replay.TagMove{Ref: fmt.Sprintf("r.internal/app:%d.att", i), Digest: digest.FromString(fmt.Sprint(i))})
	}
	tm := &tagMoves{list: list}
	for i := 0; i < n; i += 2 {
		tm.set(replay.TagMove{Ref: fmt.Sprintf("r.internal/app:%d.att", i), Digest: digest.FromString("record")})
	}
	tm.set(replay.TagMove{Ref: "r.internal/app:new.att", Digest: digest.FromString("new")})
	if len(tm.list) != n+1 || tm.list[n].Ref != "r.internal/app:new.att" {
		t.Fatalf("%d moves, last %+v; want %d, the new tag last", len(tm.list), tm.list[len(tm.list)-1], n+1)
	}
	for i := range n {
		want := digest.FromString(fmt.Sprint(i))
		if i%2 == 0 {
			want = digest.FromString("record")
		}
		if m := tm.list[i]; m.Ref != fmt.Sprintf("r.internal/app:%d.att", i) || m.Digest != want {
			t.Fatalf("move %d = %+v, want its tag with %s", i, m, want)
		}
	}
}

// BenchmarkTagMovesSet: 6,000 import records (2,000 images, a record on the index and
// each child) set among 14,000 tag moves (was a scan of the moves per record).
func BenchmarkTagMovesSet(b *testing.B) {
	var list []replay.TagMove
	for i := range 14000 {
		list = append(list, replay.TagMove{Ref: fmt.Sprintf("r.internal/scale-%05d/app:sha256-%d.att", i/70, i), Digest: digest.FromString(fmt.Sprint(i))})
	}
	for b.Loop() {
		tm := &tagMoves{list: append([]replay.TagMove(nil), list...)}
		for i := 0; i < 6000; i++ {
			tm.set(replay.TagMove{Ref: list[i*2].Ref, Digest: list[i].Digest})
		}
	}
}
