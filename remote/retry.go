package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/errcode"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/petra-oci/petra-oci/oci"
)

// Retry defaults: what the zero RetryOptions mean.
const (
	DefaultAttempts   = 10
	DefaultMaxTime    = 5 * time.Minute
	DefaultBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff = 20 * time.Second
)

// ErrGaveUp marks an operation that failed with transient errors until its retry
// bounds ran out (a *GaveUpError, which also wraps the last error).
var ErrGaveUp = errors.New("gave up retrying")

// RetryOptions bound how a failed registry operation is retried: a blob copied (the
// content opened again at its source and the upload restarted), a manifest fetched or
// pushed, a tag resolved or moved, a referrers listing. Only errors that can be
// transient are retried (Transient); anything else fails at once. The zero value is
// safe: DefaultAttempts tries, waits from DefaultBackoff doubling to DefaultMaxBackoff,
// and no retry started later than DefaultMaxTime after the first try.
//
// Requests whose body can be sent again (every request without a body or with an
// in-memory one) are also retried by the HTTP transport within the same bounds, so a
// failed request is usually repaired before its operation sees it.
type RetryOptions struct {
	// Attempts is how often one operation is tried, the first try included; 1 never
	// retries. 0 means DefaultAttempts; negative is invalid.
	Attempts int
	// MaxTime bounds the retrying of one operation: no wait is begun that would end
	// later than MaxTime after its first try started (the operation gives up instead).
	// It does not cut a transfer in progress. 0 means DefaultMaxTime.
	MaxTime time.Duration
	// Backoff is the wait before the first retry; each further wait doubles, up to
	// MaxBackoff, and is drawn at random in [wait/2, wait] (jitter). A registry's
	// Retry-After (429 or 503) is honoured when longer, within MaxTime.
	// 0 means DefaultBackoff.
	Backoff time.Duration
	// MaxBackoff caps one computed wait (never a Retry-After). 0 means
	// DefaultMaxBackoff.
	MaxBackoff time.Duration
}

// withDefaults checks o and fills in the defaults.
func (o RetryOptions) withDefaults() (RetryOptions, error) {
	if o.Attempts < 0 || o.MaxTime < 0 || o.Backoff < 0 || o.MaxBackoff < 0 {
		return o, fmt.Errorf("%w: retry options must not be negative (attempts %d, max time %s, backoff %s, max backoff %s)",
			oci.ErrInvalid, o.Attempts, o.MaxTime, o.Backoff, o.MaxBackoff)
	}
	if o.Attempts == 0 {
		o.Attempts = DefaultAttempts
	}
	if o.MaxTime == 0 {
		o.MaxTime = DefaultMaxTime
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.Backoff {
		o.MaxBackoff = o.Backoff
	}
	return o, nil
}

// GaveUpError is an operation that kept failing with transient errors until its
// bounds ran out.
type GaveUpError struct {
	// What names the operation ("copying blob sha256:…").
	What string
	// Attempts is how often it was tried; Elapsed the time from the first try to
	// giving up.
	Attempts int
	Elapsed  time.Duration
	// Bound says which bound ended it, when it was not the number of attempts.
	Bound string
	// Err is the last error.
	Err error
}

func (e *GaveUpError) Error() string {
	n := fmt.Sprintf("%d attempts", e.Attempts)
	if e.Attempts == 1 {
		n = "1 attempt"
	}
	if e.Bound == "" {
		return fmt.Sprintf("gave up after %s in %s: %v", n, e.Elapsed.Round(time.Millisecond), e.Err)
	}
	return fmt.Sprintf("gave up after %s in %s (%s): %v", n, e.Elapsed.Round(time.Millisecond), e.Bound, e.Err)
}

// Unwrap returns ErrGaveUp and the last error.
func (e *GaveUpError) Unwrap() []error { return []error{ErrGaveUp, e.Err} }

// Retrier runs operations with retries (RetryOptions). It is safe for concurrent use.
type Retrier struct {
	opts RetryOptions
	log  *slog.Logger

	mu   sync.Mutex
	rand *rand.Rand
	// sleep waits d or until ctx is done (tests replace it).
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time
}

// NewRetrier returns a Retrier bounded by opts; log, when set, gets one line per retry.
func NewRetrier(opts RetryOptions, log *slog.Logger) (*Retrier, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Retrier{opts: o, log: log, rand: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), sleep: sleepCtx, now: time.Now}, nil
}

// Options returns the bounds in force (defaults filled in).
func (r *Retrier) Options() RetryOptions { return r.opts }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backoff returns the wait before retry number retry (1 for the first retry):
// Backoff·2^(retry-1), capped at MaxBackoff, drawn in [wait/2, wait].
func (r *Retrier) Backoff(retry int) time.Duration {
	w := r.opts.Backoff
	for i := 1; i < retry && w < r.opts.MaxBackoff; i++ {
		w *= 2
	}
	w = min(w, r.opts.MaxBackoff)
	r.mu.Lock()
	j := r.rand.Int64N(int64(w/2) + 1)
	r.mu.Unlock()
	return w/2 + time.Duration(j)
}

// Do runs op until it succeeds, fails with an error that is not transient (returned
// as it is), ctx ends, or the bounds run out (a *GaveUpError wrapping the last error).
// what names the operation in the log and in the GaveUpError. op gets a context that
// records a Retry-After the registry answers, which the next wait honours.
func (r *Retrier) Do(ctx context.Context, what string, op func(context.Context) error) error {
	start := r.now()
	for attempt := 1; ; attempt++ {
		h := &hint{deadline: start.Add(r.opts.MaxTime)}
		err := op(context.WithValue(ctx, hintKey{}, h))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !Transient(err) {
			return err
		}
		if h.progressed.Load() {
			// the try moved a resumable upload forward: the bounds count from here
			attempt, start = 1, r.now()
		}
		elapsed := r.now().Sub(start)
		if attempt >= r.opts.Attempts {
			return &GaveUpError{What: what, Attempts: attempt, Elapsed: elapsed, Err: err}
		}
		wait := r.Backoff(attempt)
		if ra := h.get(); ra > wait {
			wait = ra
		}
		if elapsed+wait > r.opts.MaxTime {
			return &GaveUpError{What: what, Attempts: attempt, Elapsed: elapsed,
				Bound: fmt.Sprintf("the next try, in %s, would start beyond the %s retry bound", wait.Round(time.Millisecond), r.opts.MaxTime), Err: err}
		}
		r.log.Warn("retrying", "what", what, "attempt", attempt, "of", r.opts.Attempts, "wait", wait.Round(time.Millisecond), "error", err)
		if err := r.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// Transient reports whether err can go away when the operation is tried again: a
// network error (connection refused, reset or dropped, a timeout), a body cut short
// (unexpected EOF), a registry answering 408, 429 or 5xx, or an upload session the
// registry no longer knows (BLOB_UPLOAD_UNKNOWN: restart the upload). Everything else,
// a 401, 403 or 404, a digest that does not match complete content, a policy refusal,
// a cancelled context, is not.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, errSession) {
		return true // an upload session to ask again or start again
	}
	var er *errcode.ErrorResponse
	if errors.As(err, &er) {
		return transientStatus(er.StatusCode) || (er.StatusCode == http.StatusNotFound && hasCode(er.Errors, errcode.ErrorCodeBlobUploadUnknown))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	for _, e := range []error{syscall.ECONNRESET, syscall.ECONNREFUSED, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT} {
		if errors.Is(err, e) {
			return true
		}
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.IsTimeout || dns.IsTemporary
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op)
}

func transientStatus(code int) bool {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return true
	case code == http.StatusNotImplemented, code == http.StatusHTTPVersionNotSupported:
		return false
	}
	return code >= 500 && code <= 599
}

func hasCode(errs errcode.Errors, code string) bool {
	for _, e := range errs {
		if e.Code == code {
			return true
		}
	}
	return false
}

// hint carries a Retry-After from the transport to the operation's retry loop.
type hintKey struct{}

type hint struct {
	// deadline is when the operation's retries end: its requests are not retried
	// by the transport beyond it either.
	deadline time.Time
	// progressed is set by a try that moved a resumable upload forward (progress).
	progressed atomic.Bool
	mu         sync.Mutex
	d          time.Duration
}

// progress marks the try running under ctx as having moved forward (a chunk of a
// resumable upload stored): Retrier.Do then counts its bounds afresh from its failure.
func progress(ctx context.Context) {
	if h, ok := ctx.Value(hintKey{}).(*hint); ok {
		h.progressed.Store(true)
	}
}

func (h *hint) set(d time.Duration) {
	h.mu.Lock()
	h.d = d
	h.mu.Unlock()
}

func (h *hint) get() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.d
}

// RetryAfter parses the Retry-After header of a 429 or 503 response (delay-seconds or
// an HTTP date); 0 when there is none.
func RetryAfter(resp *http.Response, now time.Time) time.Duration {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0
	}
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// hintTransport records the Retry-After of each response in the request's hint, for
// the operation's next wait (a response without one clears it).
type hintTransport struct{ base http.RoundTripper }

func (t hintTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if h, ok := req.Context().Value(hintKey{}).(*hint); ok && err == nil {
		h.set(RetryAfter(resp, time.Now()))
	}
	return resp, err
}

// retryTransport retries requests that can be sent again (oras-go's retry.Transport),
// bounded as operations are and within the time left to the operation a request is
// part of.
type retryTransport struct {
	base http.RoundTripper
	r    *Retrier
}

func (t retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := transportPolicy{r: t.r}
	if h, ok := req.Context().Value(hintKey{}).(*hint); ok {
		p.deadline = h.deadline
	}
	rt := &retry.Transport{Base: t.base, Policy: func() retry.Policy { return p }}
	return rt.RoundTrip(req)
}

// transportPolicy is oras-go's retry.Policy for requests that can be sent again,
// bounded as operations are.
type transportPolicy struct {
	r        *Retrier
	deadline time.Time // zero: MaxTime per wait
}

func (p transportPolicy) Retry(attempt int, resp *http.Response, err error) (time.Duration, error) {
	if attempt+1 >= p.r.opts.Attempts {
		return -1, nil
	}
	switch {
	case err != nil:
		if !Transient(err) {
			return -1, nil
		}
	case !transientStatus(resp.StatusCode):
		return -1, nil
	}
	wait := p.r.Backoff(attempt + 1)
	if ra := RetryAfter(resp, time.Now()); ra > wait {
		wait = ra
	}
	if wait > p.r.opts.MaxTime || !p.deadline.IsZero() && p.r.now().Add(wait).After(p.deadline) {
		return -1, nil // the operation decides, with the last answer
	}
	return wait, nil
}

// Fetcher reads content by descriptor (a repository).
type Fetcher interface {
	Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error)
}

// RetryingFetcher returns f with every Fetch retried, and every read that breaks off
// with a transient error resumed: the content is fetched again and the bytes already
// read skipped, at most Attempts-1 times per Fetch. The stitched content is whole only
// if it verifies: callers verify what they read against desc, as every reader of
// petra-oci does.
func (r *Retrier) RetryingFetcher(f Fetcher) Fetcher { return retryingFetcher{r: r, f: f} }

type retryingFetcher struct {
	r *Retrier
	f Fetcher
}

func (f retryingFetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rr := &resumingReader{ctx: ctx, r: f.r, f: f.f, desc: desc, start: f.r.now()}
	if err := rr.open(0); err != nil {
		return nil, err
	}
	return rr, nil
}

type resumingReader struct {
	ctx     context.Context
	r       *Retrier
	f       Fetcher
	desc    ocispec.Descriptor
	rc      io.ReadCloser
	n       int64 // bytes returned so far
	resumed int
	start   time.Time
	err     error // a transient read error to resume from on the next Read
}

// open (re)opens the content and skips the n bytes already read.
func (rr *resumingReader) open(n int64) error {
	return rr.r.Do(rr.ctx, "fetching "+rr.desc.Digest.String(), func(ctx context.Context) error {
		rc, err := rr.f.Fetch(ctx, rr.desc)
		if err != nil {
			return err
		}
		if n > 0 {
			if _, err := io.CopyN(io.Discard, rc, n); err != nil {
				rc.Close()
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("skipping %d bytes already read of %s: %w", n, rr.desc.Digest, err)
			}
		}
		rr.rc = rc
		return nil
	})
}

func (rr *resumingReader) Read(p []byte) (int, error) {
	if rr.err != nil {
		if rr.resumed+1 >= rr.r.opts.Attempts {
			return 0, &GaveUpError{What: "reading " + rr.desc.Digest.String(), Attempts: rr.resumed + 1, Elapsed: rr.r.now().Sub(rr.start), Err: rr.err}
		}
		rr.resumed++
		rr.rc.Close()
		if err := rr.open(rr.n); err != nil {
			return 0, err
		}
		rr.err = nil
	}
	k, err := rr.rc.Read(p)
	rr.n += int64(k)
	if err != nil && err != io.EOF && rr.ctx.Err() == nil && Transient(err) {
		rr.err = err
		if k > 0 {
			return k, nil
		}
		return rr.Read(p)
	}
	return k, err
}

func (rr *resumingReader) Close() error {
	if rr.rc == nil {
		return nil
	}
	return rr.rc.Close()
}
