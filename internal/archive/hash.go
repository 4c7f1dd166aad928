package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
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
