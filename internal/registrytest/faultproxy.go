package registrytest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is a failure a FaultProxy injects into one request.
type Fault string

const (
	// FaultUnavailable answers 503 Service Unavailable (with a distribution-spec error
	// body) without forwarding the request.
	FaultUnavailable Fault = "503"
	// FaultTooMany answers 429 Too Many Requests with a Retry-After header without
	// forwarding the request.
	FaultTooMany Fault = "429"
	// FaultDrop closes the connection without an answer (nothing is forwarded).
	FaultDrop Fault = "drop"
	// FaultTruncate cuts a body and closes the connection: a request with a body has
	// FaultOptions.TruncateAfter bytes of it read and is not forwarded; any other
	// request is forwarded and its response cut after TruncateAfter bytes of body
	// (half the body when it is no longer; a response without a body is lost whole,
	// after the registry acted on the request).
	FaultTruncate Fault = "truncate"
)

// AllFaults lists every Fault.
func AllFaults() []Fault {
	return []Fault{FaultUnavailable, FaultTooMany, FaultDrop, FaultTruncate}
}

// FaultOptions configure a FaultProxy. The zero value injects nothing.
type FaultOptions struct {
	// Seed makes the faults repeatable: whether a request fails, how, and its latency
	// depend only on the seed, the request's method and path (upload session ids
	// left out, the digest query kept) and how many requests with that key came
	// before. A client that sends the same requests in the same order meets the
	// same faults; concurrent clients may interleave differently.
	Seed uint64
	// Rate is the probability, in [0, 1], that a request selected gets a fault.
	Rate float64
	// Faults are the kinds drawn from, each as likely; empty means AllFaults.
	Faults []Fault
	// Select, when set, says which requests may get a fault (others are only
	// delayed); nil selects every request.
	Select func(r *http.Request) bool
	// Latency delays every request by a random duration in [Latency/2, Latency]
	// before anything else happens to it.
	Latency time.Duration
	// RetryAfter is the Retry-After of a 429, in whole seconds; 0 means 1.
	RetryAfter int
	// TruncateAfter is where FaultTruncate cuts a body; 0 means 512 bytes.
	TruncateAfter int64
	// BreakEvery, when positive, models a link that breaks after so many bytes
	// rather than per request: once the request bodies of the selected requests
	// (Select) have carried a number of bytes drawn in [BreakEvery/2, 3·BreakEvery/2]
	// (from the seed) since the last break, the body being sent is cut there. The
	// registry sees it end early and the client gets 502; the next break is drawn
	// afresh. Independent of Rate.
	BreakEvery int64
}

// FaultCounts count what a FaultProxy did.
type FaultCounts struct {
	// Requests is every request received.
	Requests int
	// Unavailable, TooMany and Dropped count the 503s, 429s and dropped connections
	// injected; TruncatedRequests the request bodies cut, TruncatedResponses the
	// responses cut (or lost whole, for those without a body).
	Unavailable, TooMany, Dropped, TruncatedRequests, TruncatedResponses int
	// Delayed counts the requests given latency.
	Delayed int
	// BodyBytes counts the request body bytes the proxy read from clients (forwarded
	// or cut): what clients sent, resent bytes included.
	BodyBytes int64
	// UploadBodyBytes counts those of blob upload requests (BlobUpload).
	UploadBodyBytes int64
	// Breaks counts the bodies cut by BreakEvery.
	Breaks int
}

// Injected is the number of faults injected (latency is not a fault).
func (c FaultCounts) Injected() int {
	return c.Unavailable + c.TooMany + c.Dropped + c.TruncatedRequests + c.TruncatedResponses + c.Breaks
}

func (c FaultCounts) String() string {
	return fmt.Sprintf("%d requests: %d faults (%d×503, %d×429, %d dropped, %d request bodies cut, %d responses cut, %d link breaks), %d delayed, %d body bytes",
		c.Requests, c.Injected(), c.Unavailable, c.TooMany, c.Dropped, c.TruncatedRequests, c.TruncatedResponses, c.Breaks, c.Delayed, c.BodyBytes)
}

// FaultProxy is a reverse proxy on 127.0.0.1 in front of a test registry that fails
// a share of the requests it forwards, as a flaky link or a loaded registry does:
// 503s, 429s with Retry-After, dropped connections, bodies cut short, and latency
// (FaultOptions). Clients talk to Host; the registry sees the proxy's Host header and
// Location headers naming the registry are rewritten, as HookProxy does. It is
// closed when the test ends.
type FaultProxy struct {
	// Host is "127.0.0.1:PORT" of the proxy (plain HTTP), to give to clients.
	Host string
	// Target is the registry behind the proxy.
	Target *Registry

	opts FaultOptions
	rp   *httputil.ReverseProxy

	mu     sync.Mutex
	seen   map[string]int
	counts FaultCounts
	// BreakEvery: bytes left before the link breaks, and the draws of the breaks
	untilBreak int64
	breaks     *rand.Rand
}

// StartFaultProxy starts a FaultProxy in front of target and stops it when the test
// ends.
func StartFaultProxy(t testing.TB, target *Registry, opts FaultOptions) *FaultProxy {
	t.Helper()
	if opts.Rate < 0 || opts.Rate > 1 {
		t.Fatalf("registrytest: fault rate %v outside [0, 1]", opts.Rate)
	}
	if len(opts.Faults) == 0 {
		opts.Faults = AllFaults()
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 1
	}
	if opts.TruncateAfter <= 0 {
		opts.TruncateAfter = 512
	}
	u, err := url.Parse(target.URL())
	if err != nil {
		t.Fatalf("registrytest: proxy target %q: %v", target.URL(), err)
	}
	p := &FaultProxy{Target: target, opts: opts, seen: map[string]int{}}
	if opts.BreakEvery > 0 {
		p.breaks = rand.New(rand.NewPCG(opts.Seed, 0xb7ea4))
		p.untilBreak = p.nextBreak()
	}
	p.rp = registryProxy(u, target.Host, &p.Host)
	p.rp.ErrorLog = log.New(io.Discard, "", 0) // the cuts are on purpose
	srv := httptest.NewUnstartedServer(p)
	p.Host = srv.Listener.Addr().String()
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return p
}

// Counts returns what the proxy did so far.
func (p *FaultProxy) Counts() FaultCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts
}

func (p *FaultProxy) count(f func(c *FaultCounts)) {
	p.mu.Lock()
	f(&p.counts)
	p.mu.Unlock()
}

// key names r for the fault draw: method and path with an upload session id left
// out, and the digest of a finishing upload.
func faultKey(r *http.Request) string {
	path := r.URL.Path
	if i := strings.Index(path, "/blobs/uploads/"); i >= 0 {
		path = path[:i+len("/blobs/uploads/")]
	}
	k := r.Method + " " + path
	if d := r.URL.Query().Get("digest"); d != "" {
		k += "?digest=" + d
	}
	if m := r.URL.Query().Get("mount"); m != "" {
		k += "?mount=" + m
	}
	return k
}

// draw returns the random source for r: seeded by the seed, r's key and how often
// that key came before.
func (p *FaultProxy) draw(r *http.Request) *rand.Rand {
	k := faultKey(r)
	p.mu.Lock()
	n := p.seen[k]
	p.seen[k] = n + 1
	p.counts.Requests++
	p.mu.Unlock()
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], p.opts.Seed)
	h.Write(b[:])
	h.Write([]byte(k))
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
	s := h.Sum64()
	return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
}

// ServeHTTP implements http.Handler.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rnd := p.draw(r)
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{ReadCloser: r.Body, p: p, upload: BlobUpload(r),
			breaks: p.opts.BreakEvery > 0 && (p.opts.Select == nil || p.opts.Select(r))}
	}
	if p.opts.Latency > 0 {
		d := p.opts.Latency/2 + time.Duration(rnd.Int64N(int64(p.opts.Latency/2)+1))
		p.count(func(c *FaultCounts) { c.Delayed++ })
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	failing := rnd.Float64() < p.opts.Rate && (p.opts.Select == nil || p.opts.Select(r))
	fault := p.opts.Faults[rnd.IntN(len(p.opts.Faults))]
	if !failing {
		p.rp.ServeHTTP(w, r)
		return
	}
	switch fault {
	case FaultUnavailable:
		p.count(func(c *FaultCounts) { c.Unavailable++ })
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "registrytest: injected 503")
	case FaultTooMany:
		p.count(func(c *FaultCounts) { c.TooMany++ })
		w.Header().Set("Retry-After", strconv.Itoa(p.opts.RetryAfter))
		writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "registrytest: injected 429")
	case FaultDrop:
		p.count(func(c *FaultCounts) { c.Dropped++ })
		closeConn(w)
	case FaultTruncate:
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			p.count(func(c *FaultCounts) { c.TruncatedRequests++ })
			_, _ = io.CopyN(io.Discard, r.Body, p.opts.TruncateAfter)
			closeConn(w)
			return
		}
		tw := &truncatingWriter{w: w, after: p.opts.TruncateAfter, head: r.Method == http.MethodHead}
		func() {
			defer func() {
				// the reverse proxy aborts with ErrAbortHandler once a write fails
				if v := recover(); v != nil && v != http.ErrAbortHandler {
					panic(v)
				}
			}()
			p.rp.ServeHTTP(tw, r)
		}()
		if tw.truncated {
			p.count(func(c *FaultCounts) { c.TruncatedResponses++ })
		}
		closeConn(w)
	default:
		panic(fmt.Sprintf("registrytest: unknown fault %q", fault))
	}
}

// countingBody counts what is read of a request body (FaultCounts.BodyBytes) and
// breaks it where FaultOptions.BreakEvery says.
type countingBody struct {
	io.ReadCloser
	p      *FaultProxy
	upload bool
	breaks bool
	broken bool
}

var errLinkBroken = errors.New("registrytest: link broken (BreakEvery)")

func (p *FaultProxy) nextBreak() int64 {
	return p.opts.BreakEvery/2 + p.breaks.Int64N(p.opts.BreakEvery+1)
}

func (b *countingBody) Read(q []byte) (int, error) {
	if b.broken {
		return 0, errLinkBroken
	}
	if b.breaks {
		b.p.mu.Lock()
		left := b.p.untilBreak
		b.p.mu.Unlock()
		if int64(len(q)) > left {
			q = q[:left]
		}
	}
	k, err := b.ReadCloser.Read(q)
	b.p.mu.Lock()
	b.p.counts.BodyBytes += int64(k)
	if b.upload {
		b.p.counts.UploadBodyBytes += int64(k)
	}
	if b.breaks {
		b.p.untilBreak -= int64(k)
		if b.p.untilBreak <= 0 {
			b.p.untilBreak = b.p.nextBreak()
			b.p.counts.Breaks++
			b.broken = true
		}
	}
	b.p.mu.Unlock()
	if b.broken {
		return k, errLinkBroken
	}
	return k, err
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}

// closeConn closes the client's connection, flushing what was written before.
func closeConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // the server closes the connection
	}
	_ = conn.Close()
}

var errTruncated = errors.New("registrytest: response body cut")

// truncatingWriter passes a response through until its cut: after bytes of body
// (half the body when Content-Length says it is no longer than that); a response
// without a body (or to HEAD) is held back whole.
type truncatingWriter struct {
	w         http.ResponseWriter
	after     int64
	head      bool
	cut       int64 // bytes of body to let through
	n         int64
	header    bool // the header was passed on
	truncated bool // the response was cut or held back
}

func (t *truncatingWriter) Header() http.Header { return t.w.Header() }

func (t *truncatingWriter) WriteHeader(status int) {
	if status < 200 { // informational: pass on
		t.w.WriteHeader(status)
		return
	}
	cl, err := strconv.ParseInt(t.w.Header().Get("Content-Length"), 10, 64)
	switch {
	case t.head || err == nil && cl == 0:
		t.truncated = true // nothing to cut: the whole answer is lost
		return
	case err == nil && cl <= t.after:
		t.cut = cl / 2
	default:
		t.cut = t.after
	}
	t.header = true
	t.w.WriteHeader(status)
}

func (t *truncatingWriter) Write(b []byte) (int, error) {
	if !t.header { // held back
		return 0, errTruncated
	}
	if left := t.cut - t.n; int64(len(b)) > left {
		k, _ := t.w.Write(b[:left])
		t.n += int64(k)
		t.Flush()
		t.truncated = true
		return k, errTruncated
	}
	k, err := t.w.Write(b)
	t.n += int64(k)
	return k, err
}

func (t *truncatingWriter) Flush() {
	if t.header {
		_ = http.NewResponseController(t.w).Flush()
	}
}

// BlobUpload reports whether r is part of a blob upload (POST, PATCH or PUT under
// /v2/<name>/blobs/uploads/): a FaultOptions.Select that fails uploads only.
func BlobUpload(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/v2/") && strings.Contains(r.URL.Path, "/blobs/uploads/") &&
		(r.Method == http.MethodPost || r.Method == http.MethodPatch || r.Method == http.MethodPut)
}

// BlobRead reports whether r reads a blob's content (GET /v2/<name>/blobs/<digest>):
// a FaultOptions.Select that fails downloads only.
func BlobRead(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/") &&
		strings.Contains(r.URL.Path, "/blobs/") && !strings.Contains(r.URL.Path, "/blobs/uploads/")
}
