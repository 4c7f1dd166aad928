package archive

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/reedsolomon"
)

// parityMemory bounds the stripe buffers of encoding and rebuilding: one stripe of
// every chunk is held at once.
const parityMemory = 64 << 20

// stripeFor returns the stripe size for shards chunks of shard bytes.
func stripeFor(shards int, shard int64) int64 {
	s := int64(parityMemory / shards / shardAlign * shardAlign)
	return min(max(s, shardAlign), maxStripe, shard)
}

func newCoder(d, p int) (reedsolomon.Encoder, error) {
	// klauspost/reedsolomon picks its Vandermonde GF(2^8) code up to 256 shards and
	// Leopard GF(2^16) above: fieldFor records which.
	return reedsolomon.New(d, p)
}

// stripes holds one stripe of every shard.
func stripes(n int, stripe int64) [][]byte {
	slab := make([]byte, int64(n)*stripe)
	s := make([][]byte, n)
	for i := range s {
		s[i] = slab[int64(i)*stripe : int64(i+1)*stripe : int64(i+1)*stripe]
	}
	return s
}

// readPadded fills buf with the bytes of f at off, zeros past size.
func readPadded(f *os.File, buf []byte, off, size int64) error {
	k := int64(0)
	if off < size {
		k = min(int64(len(buf)), size-off)
		if _, err := io.ReadFull(io.NewSectionReader(f, off, k), buf[:k]); err != nil {
			return fmt.Errorf("reading %s at %d: %w", f.Name(), off, err)
		}
	}
	clear(buf[k:])
	return nil
}

// writeParity computes p parity chunks over the data chunks in dir, stripe by stripe,
// and writes them beside the data.
func writeParity(ctx context.Context, dir string, data []Chunk, p int, sync bool, progress func(Event)) (*Parity, []Chunk, error) {
	d := len(data)
	if d+p > maxChunks {
		return nil, nil, fmt.Errorf("%d data and %d parity chunks: at most %d in all", d, p, maxChunks)
	}
	// the first data chunk is the largest (all but the last are the split size): an
	// archive smaller than the split size gets parity chunks of its own size
	shard := roundUp(data[0].Size, shardAlign)
	stripe := stripeFor(d+p, shard)
	enc, err := newCoder(d, p)
	if err != nil {
		return nil, nil, fmt.Errorf("reed-solomon %d+%d: %w", d, p, err)
	}
	in := make([]*os.File, d)
	for i, c := range data {
		if in[i], err = os.Open(filepath.Join(dir, c.Name)); err != nil {
			return nil, nil, err
		}
		defer in[i].Close()
	}
	out := make([]*os.File, p)
	bws := make([]*bufio.Writer, p)
	hs := make([]hash.Hash, p)
	chunks := make([]Chunk, p)
	for j := range out {
		chunks[j] = Chunk{Name: chunkName(RoleParity, j), Role: RoleParity, Size: shard}
		if out[j], err = os.OpenFile(filepath.Join(dir, chunks[j].Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644); err != nil {
			return nil, nil, err
		}
		defer out[j].Close()
		bws[j], hs[j] = bufio.NewWriterSize(out[j], 1<<20), sha256.New()
	}
	buf := stripes(d+p, stripe)
	sh := make([][]byte, d+p)
	for off := int64(0); off < shard; off += stripe {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		n := min(stripe, shard-off)
		for i := range d {
			sh[i] = buf[i][:n]
			if err := readPadded(in[i], sh[i], off, data[i].Size); err != nil {
				return nil, nil, err
			}
		}
		for j := range p {
			sh[d+j] = buf[d+j][:n]
		}
		if err := enc.Encode(sh); err != nil {
			return nil, nil, fmt.Errorf("reed-solomon encode at %d: %w", off, err)
		}
		for j := range p {
			hs[j].Write(sh[d+j])
			if _, err := bws[j].Write(sh[d+j]); err != nil {
				return nil, nil, err
			}
		}
		emit(progress, Event{Phase: "parity", Done: off + n, Total: shard})
	}
	for j := range p {
		if err := bws[j].Flush(); err != nil {
			return nil, nil, err
		}
		if sync {
			if err := out[j].Sync(); err != nil {
				return nil, nil, err
			}
		}
		chunks[j].SHA256 = hex.EncodeToString(hs[j].Sum(nil))
	}
	return &Parity{Scheme: ParityScheme, Field: fieldFor(d + p), DataChunks: d, ParityChunks: p, ShardSize: shard, StripeSize: stripe}, chunks, nil
}

// rebuild recomputes the chunks at positions lost of the index from the others, whose
// files are at paths (index position -> file; every position not in lost must be a
// verified chunk), writing each rebuilt chunk to outDir under its name. It returns the
// SHA-256 of each rebuilt chunk.
func rebuild(ctx context.Context, ix *Index, paths map[int]string, lost []int, outDir string, progress func(Event)) (map[int]string, error) {
	p := ix.Parity
	d, np := p.DataChunks, p.ParityChunks
	if len(lost) > np {
		return nil, fmt.Errorf("%d chunks lost, parity rebuilds at most %d", len(lost), np)
	}
	enc, err := newCoder(d, np)
	if err != nil {
		return nil, err
	}
	isLost := map[int]bool{}
	for _, i := range lost {
		isLost[i] = true
	}
	in := map[int]*os.File{}
	for i := range d + np {
		if isLost[i] {
			continue
		}
		f, err := os.Open(paths[i])
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in[i] = f
	}
	out := map[int]*os.File{}
	bws := map[int]*bufio.Writer{}
	hs := map[int]hash.Hash{}
	for _, i := range lost {
		f, err := os.OpenFile(filepath.Join(outDir, ix.Chunks[i].Name), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		out[i], bws[i], hs[i] = f, bufio.NewWriterSize(f, 1<<20), sha256.New()
	}
	shard, stripe := p.ShardSize, p.StripeSize
	buf := stripes(d+np, stripe)
	sh := make([][]byte, d+np)
	for off := int64(0); off < shard; off += stripe {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(stripe, shard-off)
		for i := range d + np {
			if isLost[i] {
				sh[i] = buf[i][:0]
				continue
			}
			sh[i] = buf[i][:n]
			if err := readPadded(in[i], sh[i], off, ix.Chunks[i].Size); err != nil {
				return nil, err
			}
		}
		if err := enc.Reconstruct(sh); err != nil {
			return nil, fmt.Errorf("reed-solomon reconstruct at %d: %w", off, err)
		}
		for _, i := range lost {
			size := ix.Chunks[i].Size
			if off >= size {
				continue
			}
			b := sh[i][:min(n, size-off)]
			hs[i].Write(b)
			if _, err := bws[i].Write(b); err != nil {
				return nil, err
			}
		}
		emit(progress, Event{Phase: "rebuild", Done: off + n, Total: shard})
	}
	sums := map[int]string{}
	for _, i := range lost {
		if err := bws[i].Flush(); err != nil {
			return nil, err
		}
		if err := out[i].Sync(); err != nil {
			return nil, err
		}
		sums[i] = hex.EncodeToString(hs[i].Sum(nil))
	}
	return sums, nil
}
