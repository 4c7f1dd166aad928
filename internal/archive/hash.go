package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
	"sync/atomic"
)

// bufPool recycles the copy buffers of asyncHash (one hash per file and per chunk).
var bufPool = sync.Pool{New: func() any { b := make([]byte, asyncBufSize); return &b }}

// asyncHash computes a SHA-256 in its own goroutine over copies of what is written, so
// the several digests of an export (each file, each chunk, the archive) use the other
// cores while the caller does the I/O. Memory: asyncBufs buffers of asyncBufSize.
type asyncHash struct {
	h    hash.Hash
	ch   chan []byte
	free chan []byte
	done chan struct{}
}

const (
	asyncBufs    = 4
	asyncBufSize = 1 << 20
)

func newAsyncHash() *asyncHash {
	a := &asyncHash{h: sha256.New(), ch: make(chan []byte, asyncBufs), free: make(chan []byte, asyncBufs), done: make(chan struct{})}
	for range asyncBufs {
		a.free <- *bufPool.Get().(*[]byte)
	}
	go func() {
		defer close(a.done)
		for b := range a.ch {
			a.h.Write(b)
			a.free <- b[:cap(b)]
		}
		for range asyncBufs {
			b := <-a.free
			bufPool.Put(&b)
		}
	}()
	return a
}

func (a *asyncHash) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		b := <-a.free
		k := copy(b, p)
		a.ch <- b[:k]
		p = p[k:]
	}
	return n, nil
}

// sum waits for everything written and returns the hex digest; the hash is done after.
func (a *asyncHash) sum() string {
	close(a.ch)
	<-a.done
	return hex.EncodeToString(a.h.Sum(nil))
}

// Sum implements hash.Hash for countingHash (it ends the hash).
func (a *asyncHash) Sum(b []byte) []byte {
	close(a.ch)
	<-a.done
	return a.h.Sum(b)
}
func (a *asyncHash) Reset()         {}
func (a *asyncHash) Size() int      { return sha256.Size }
func (a *asyncHash) BlockSize() int { return sha256.BlockSize }

// streamHash computes, beside the copy, the SHA-256 of the whole stream written to it
// and, with a chunk size, of each piece of that size (the last one shorter): the
// archive digest and the chunk digests of an export. Each block written is copied once
// and hashed by two goroutines (the stream, the chunks), so both digests use the cores
// the copy leaves free. Memory: asyncBufs buffers of asyncBufSize.
type streamHash struct {
	chunk  int64
	queues []chan *hashBlock
	free   chan *hashBlock
	wg     sync.WaitGroup
	// set by the goroutines, read after wg.Wait
	all    string
	chunks []string
}

// hashBlock is a copy of what was written, hashed by every queue before it is reused.
type hashBlock struct {
	b    []byte
	refs atomic.Int32
}

// newStreamHash returns a streamHash cutting chunks of chunk bytes (0: none).
func newStreamHash(chunk int64) *streamHash {
	s := &streamHash{chunk: chunk, free: make(chan *hashBlock, asyncBufs)}
	for range asyncBufs {
		s.free <- &hashBlock{b: *bufPool.Get().(*[]byte)}
	}
	all := make(chan *hashBlock, asyncBufs)
	s.queues = append(s.queues, all)
	s.wg.Go(func() {
		h := sha256.New()
		for blk := range all {
			h.Write(blk.b)
			s.release(blk)
		}
		s.all = hex.EncodeToString(h.Sum(nil))
	})
	if chunk > 0 {
		chunks := make(chan *hashBlock, asyncBufs)
		s.queues = append(s.queues, chunks)
		s.wg.Go(func() {
			h := sha256.New()
			var n int64 // bytes in the current chunk
			for blk := range chunks {
				for p := blk.b; len(p) > 0; {
					k := min(int64(len(p)), s.chunk-n)
					h.Write(p[:k])
					n, p = n+k, p[k:]
					if n == s.chunk {
						s.chunks = append(s.chunks, hex.EncodeToString(h.Sum(nil)))
						h.Reset()
						n = 0
					}
				}
				s.release(blk)
			}
			if n > 0 {
				s.chunks = append(s.chunks, hex.EncodeToString(h.Sum(nil)))
			}
		})
	}
	return s
}

func (s *streamHash) release(blk *hashBlock) {
	if blk.refs.Add(-1) == 0 {
		s.free <- blk
	}
}

// Write queues a copy of p; it blocks while every buffer is being hashed.
func (s *streamHash) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		blk := <-s.free
		k := copy(blk.b[:cap(blk.b)], p)
		blk.b = blk.b[:k]
		blk.refs.Store(int32(len(s.queues)))
		for _, q := range s.queues {
			q <- blk
		}
		p = p[k:]
	}
	return n, nil
}

// finish waits for everything written and returns the stream's digest and the chunk
// digests in order; the streamHash is done after.
func (s *streamHash) finish() (string, []string) {
	for _, q := range s.queues {
		close(q)
	}
	s.wg.Wait()
	for range asyncBufs {
		blk := <-s.free
		b := blk.b[:cap(blk.b)]
		bufPool.Put(&b)
	}
	return s.all, s.chunks
}
