// Package ctxio holds the io adapters petra-oci's streaming code shares: a reader that
// stops when its context is done, and a writer that counts and hashes what passes.
package ctxio

import (
	"context"
	"hash"
	"io"
)

// Reader returns r, stopping with ctx's error at the first Read after ctx is done, so
// a long copy ends soon after a cancellation.
func Reader(ctx context.Context, r io.Reader) io.Reader { return &reader{ctx, r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c *reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// HashingWriter writes to W and hashes (H) and counts (N) every byte W took.
type HashingWriter struct {
	W io.Writer
	H hash.Hash
	N int64
}

func (c *HashingWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.H.Write(p[:n])
	c.N += int64(n)
	return n, err
}
