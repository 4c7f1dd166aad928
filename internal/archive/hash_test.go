package archive

import (
	"crypto/sha256"
	"encoding/hex"
	mrand "math/rand/v2"
	"slices"
	"testing"
)

// streamHash gives the digest of the whole stream and of every chunk-size piece,
// whatever the sizes of the writes (across buffer and chunk boundaries).
func TestStreamHash(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(7, 7))
	data := make([]byte, 3*asyncBufSize+12345)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	for _, chunk := range []int64{0, 4093, 4096, asyncBufSize - 1, asyncBufSize, asyncBufSize + 1, int64(len(data)) - 1, int64(len(data)), int64(len(data)) + 1} {
		s := newStreamHash(chunk)
		for p := data; len(p) > 0; {
			k := min(len(p), 1+rng.IntN(2*asyncBufSize))
			if n, err := s.Write(p[:k]); n != k || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			p = p[k:]
		}
		all, chunks := s.finish()
		if all != sum(data) {
			t.Errorf("chunk %d: stream digest %s, want %s", chunk, all, sum(data))
		}
		var want []string
		for off := int64(0); chunk > 0 && off < int64(len(data)); off += chunk {
			want = append(want, sum(data[off:min(off+chunk, int64(len(data)))]))
		}
		if !slices.Equal(chunks, want) {
			t.Errorf("chunk %d: %d chunk digests, want %d (or they differ)", chunk, len(chunks), len(want))
		}
	}
}
