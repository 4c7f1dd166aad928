package ctxio

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReaderStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := Reader(ctx, strings.NewReader("abcdef"))
	buf := make([]byte, 3)
	if n, err := r.Read(buf); n != 3 || err != nil {
		t.Fatalf("first read: %d %v", n, err)
	}
	cancel()
	if _, err := r.Read(buf); !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
}

type shortWriter struct{ max int }

func (s shortWriter) Write(p []byte) (int, error) {
	if len(p) > s.max {
		return s.max, io.ErrShortWrite
	}
	return len(p), nil
}

func TestHashingWriterCountsWhatWasTaken(t *testing.T) {
	var out bytes.Buffer
	w := &HashingWriter{W: &out, H: sha256.New()}
	io.WriteString(w, "hello ")
	io.WriteString(w, "world")
	if sum := sha256.Sum256([]byte("hello world")); w.N != 11 || !bytes.Equal(w.H.Sum(nil), sum[:]) {
		t.Errorf("N=%d hash=%x", w.N, w.H.Sum(nil))
	}
	s := &HashingWriter{W: shortWriter{2}, H: sha256.New()}
	if n, err := s.Write([]byte("abcd")); n != 2 || err == nil || s.N != 2 {
		t.Errorf("short write: n=%d err=%v N=%d, want 2 bytes counted", n, err, s.N)
	}
	if sum := sha256.Sum256([]byte("ab")); !bytes.Equal(s.H.Sum(nil), sum[:]) {
		t.Error("a short write hashed bytes the writer did not take")
	}
}
