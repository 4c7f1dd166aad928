package serve

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// chunkSize is the read size of a blob stream. A stream holds at most readAhead+2
// chunks (one being read, readAhead queued, one held back or being written), so memory
// per request is bounded by (readAhead+2)×chunkSize whatever the blob's size.
const (
	chunkSize = 512 << 10
	readAhead = 2
)

var chunks = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// blob answers a blob by digest (manifests are blobs too, as in distribution). HEAD
// answers from the verified list without reading; GET streams through the pinned
// store, verified while read (stream).
func (q *request) blob(rp *repo, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		q.fail(http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("%q is not a valid digest", ref))
		return
	}
	desc, ok := rp.blobs[d]
	if !ok {
		if desc, ok = rp.manifests[d]; !ok {
			q.fail(http.StatusNotFound, codeBlobUnknown, fmt.Sprintf("blob %s is not in %s", d, rp.name))
			return
		}
	}
	h := q.w.Header()
	h.Set("Docker-Content-Digest", desc.Digest.String())
	h.Set("Accept-Ranges", "bytes")
	h.Set("ETag", `"`+desc.Digest.String()+`"`)
	if q.r.Method == http.MethodHead {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(desc.Size, 10))
		q.w.WriteHeader(http.StatusOK)
		return
	}
	start, end := int64(0), desc.Size-1
	partial := false
	if rh := q.r.Header.Get("Range"); rh != "" {
		s, e, ok, unsatisfiable := parseRange(rh, desc.Size)
		switch {
		case unsatisfiable:
			h.Del("Docker-Content-Digest")
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", desc.Size))
			q.fail(http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid, fmt.Sprintf("range %q is outside the %d bytes of %s", rh, desc.Size, d))
			return
		case ok:
			start, end, partial = s, e, true
		}
		// a malformed or multi-range header is ignored: the whole blob is sent (RFC 9110)
	}
	if b, ok := rp.generated[d]; ok { // a referrers tag schema index, built in memory
		q.send(b[start:end+1], partial, start, end, desc.Size)
		return
	}
	q.stream(desc, partial, start, end)
}

// send writes an in-memory body.
func (q *request) send(b []byte, partial bool, start, end, size int64) {
	h := q.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, size))
		status = http.StatusPartialContent
	}
	q.w.WriteHeader(status)
	_, _ = q.w.Write(b)
}

// stream sends bytes [start, end] of desc's blob from one pass over the pinned file:
// every byte is hashed, those in the range are sent, and the last chunk sent is held
// back until the reader has checked the whole blob against its digest (and the
// SHA-256 the metadata lists). On a mismatch the response is aborted (the client gets
// a truncated body and a broken connection), logged and counted. A full GET and a
// Range request get the same guarantee; a Range request costs a read of the whole
// blob.
func (q *request) stream(desc ocispec.Descriptor, partial bool, start, end int64) {
	ctx := q.r.Context()
	rc, err := q.vw.store.Fetch(ctx, desc)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			q.aborted = "client gone"
		case tampered(err):
			q.refused("blob "+desc.Digest.String(), err)
		default:
			q.s.log.Error("opening a blob", "digest", desc.Digest, "error", err)
			q.fail(http.StatusInternalServerError, codeUnknown, "reading blob "+desc.Digest.String()+" failed")
		}
		return
	}
	defer rc.Close()
	h := q.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(end-start+1, 10))
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, desc.Size))
		status = http.StatusPartialContent
	}
	q.w.WriteHeader(status)

	// A reader goroutine reads and hashes ahead (at most readAhead chunks queued) while
	// this one writes, so hashing overlaps the socket writes. A chunk is written only
	// once the next one exists; the last one only once the reader has verified the
	// whole blob.
	type chunk struct {
		buf  *[]byte
		data []byte
	}
	queue := make(chan chunk, readAhead)
	verdict := make(chan error, 1)
	stop := make(chan struct{})
	var readerDone sync.WaitGroup
	readerDone.Add(1)
	go func() {
		defer readerDone.Done()
		defer close(queue)
		var pos int64
		for {
			buf := chunks.Get().(*[]byte)
			n, err := rc.Read(*buf)
			lo, hi := max(start, pos), min(end+1, pos+int64(n))
			if lo < hi {
				c := chunk{buf: buf, data: (*buf)[lo-pos : hi-pos]}
				select {
				case queue <- c:
				case <-stop:
					chunks.Put(buf)
					return
				}
			} else {
				chunks.Put(buf)
			}
			pos += int64(n)
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				verdict <- err
				return
			}
		}
	}()
	defer func() {
		close(stop)
		for c := range queue { // unblock and drain the reader
			chunks.Put(c.buf)
		}
		readerDone.Wait()
	}()
	var pending *chunk
	for c := range queue {
		if pending != nil {
			_, werr := q.w.Write(pending.data)
			chunks.Put(pending.buf)
			pending = nil
			if werr != nil {
				q.aborted = "client gone"
				chunks.Put(c.buf)
				return
			}
		}
		pending = &c
	}
	err = <-verdict
	if err == nil {
		if pending != nil {
			if _, werr := q.w.Write(pending.data); werr != nil {
				q.aborted = "client gone"
			}
			chunks.Put(pending.buf)
		}
		return
	}
	if pending != nil {
		chunks.Put(pending.buf) // never sent
	}
	if ctx.Err() != nil {
		q.aborted = "client gone"
		return
	}
	what := "content changed after verification"
	if tampered(err) {
		q.s.tampered.Add(1)
		q.s.log.Error("blob changed on disk after verification: response cut", "digest", desc.Digest, "path", q.r.URL.Path, "error", err)
	} else {
		what = "read error"
		q.s.log.Error("reading a blob: response cut", "digest", desc.Digest, "error", err)
	}
	q.aborted = what
	panic(http.ErrAbortHandler)
}

// parseRange parses a single byte range against size. ok is false (serve the whole
// blob) for a header that is malformed or asks for several ranges; unsatisfiable is
// true for a well-formed range outside the blob.
func parseRange(h string, size int64) (start, end int64, ok, unsatisfiable bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, false
	}
	num := func(s string) (int64, bool) {
		if s == "" || strings.TrimLeft(s, "0123456789") != "" {
			return 0, false
		}
		v, err := strconv.ParseInt(s, 10, 64)
		return v, err == nil
	}
	if a == "" { // suffix: the last b bytes
		k, okb := num(b)
		if !okb {
			return 0, 0, false, false
		}
		if k == 0 || size == 0 {
			return 0, 0, false, true
		}
		return max(0, size-k), size - 1, true, false
	}
	s, oka := num(a)
	if !oka {
		return 0, 0, false, false
	}
	e := size - 1
	if b != "" {
		var okb bool
		if e, okb = num(b); !okb || e < s {
			return 0, 0, false, false
		}
		e = min(e, size-1)
	}
	if s >= size {
		return 0, 0, false, true
	}
	return s, e, true, false
}
