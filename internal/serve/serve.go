// Package serve answers the OCI distribution API, read-only, from a verified bundle:
// the registry a cluster being bootstrapped pulls from before it has one of its own.
//
// The bundle is verified whole before anything listens, exactly as unpack verifies it
// (bundle.Open: the signature over the metadata, the series sequence, every file, the
// graph and, with a policy, every image), and only its verified graph is served, under
// the repository names unpack would push it to (unpack.Destination with the prefix):
// the images and their tags, the children the bundle carries, the attachments (cosign
// .sig/.att/.sbom tags as ordinary tags, OCI 1.1 referrers through the referrers API
// and the referrers tag schema).
//
// Content is read through the pinned store on every request (layout.Pinned: the very
// files verified, hashed again while read). A blob is streamed with its last chunk held
// back until the whole blob has hashed to its digest; on a mismatch the response is
// aborted, so the client sees a truncated body, never a complete wrong one. The
// refusal is logged and counted (Stats.Tampered). A Range request is answered from
// the same single pass: the whole blob is read and hashed, only the range is sent,
// and the range's last chunk is held back until the digest matched (docs/serve.md).
// Reload verifies the bundle again and swaps the served view only when that passes.
package serve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/unpack"
)

var (
	// ErrPlainHTTP marks a listen address that is not loopback, without TLS and
	// without UnsafePlainHTTP.
	ErrPlainHTTP = errors.New("plain HTTP on a non-loopback address")
	// ErrOptions marks unusable options: no bundle or verification, a bad prefix or
	// address, an unreadable TLS certificate or key.
	ErrOptions = errors.New("invalid serve options")
)

// DefaultAddr is where serve listens when Options.Addr is empty.
const DefaultAddr = "127.0.0.1:5000"

// Options configure a Server. The zero value of every field but Dir and Verify is safe:
// loopback only, plain HTTP, repositories named as unpack names them without a prefix.
type Options struct {
	// Dir is the bundle.
	Dir string
	// Verify says how the bundle is verified before anything is served, and again on
	// every Reload (as unpack: signature, sequence, files, graph, images). Required.
	// Its Replay guard is only checked (as verify does): serve records nothing.
	Verify *bundle.VerifyOptions
	// Prefix is the repository path prefix, as in unpack's --to HOST/PREFIX:
	// cgr.dev/shebash.io/nginx is served as PREFIX/shebash.io/nginx.
	Prefix string
	// Addr is the TCP address to listen on; empty means DefaultAddr. Port 0 picks one
	// (Server.Addr says which).
	Addr string
	// TLSCertFile and TLSKeyFile (both or neither) serve HTTPS (TLS 1.2 or later).
	TLSCertFile, TLSKeyFile string
	// UnsafePlainHTTP allows plain HTTP on an address that is not loopback. Without it
	// such an address is refused (ErrPlainHTTP) before the bundle is even read.
	UnsafePlainHTTP bool
	// Log receives the access log (one line per request, Info) and events: reloads,
	// refused content (Error). nil discards.
	Log *slog.Logger
	// ShutdownTimeout bounds Shutdown's wait for requests in flight; <= 0 means 4s.
	ShutdownTimeout time.Duration
}

// Stats counts what a Server did.
type Stats struct {
	Requests int64 `json:"requests"`
	// BytesSent counts body bytes written.
	BytesSent int64 `json:"bytesSent"`
	// Tampered counts content refused because it no longer matched what was verified
	// (changed, replaced, truncated or removed after verification).
	Tampered int64 `json:"tampered"`
	// Reloads and ReloadFailures count re-verifications that swapped the view, and
	// those that failed (the previous view kept serving).
	Reloads        int64 `json:"reloads"`
	ReloadFailures int64 `json:"reloadFailures"`
}

// Server serves one bundle.
type Server struct {
	opts Options
	log  *slog.Logger
	tls  *tls.Config
	cur  atomic.Pointer[view]

	reloadMu sync.Mutex
	srv      *http.Server
	ln       net.Listener
	done     chan error

	closing                                                atomic.Bool
	requests, bytesSent, tampered, reloads, reloadFailures atomic.Int64
}

// New checks the listen options, then verifies the bundle and builds the view it
// serves. Nothing listens yet (Start). A verification failure is returned as
// bundle.Open returns it, so it maps to the same exit code as unpack's.
func New(ctx context.Context, opts Options) (*Server, error) {
	if opts.Verify == nil {
		return nil, fmt.Errorf("%w: serve needs the bundle's key or identity to verify it", ErrOptions)
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: no bundle directory", ErrOptions)
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 4 * time.Second
	}
	s := &Server{opts: opts, log: opts.Log, done: make(chan error, 1)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.Prefix != "" {
		if _, err := unpack.Destination(placeholderHost+"/"+opts.Prefix, "example.com/x"); err != nil {
			return nil, fmt.Errorf("%w: prefix %q: %w", ErrOptions, opts.Prefix, err)
		}
	}
	switch {
	case (opts.TLSCertFile == "") != (opts.TLSKeyFile == ""):
		return nil, fmt.Errorf("%w: TLS needs both a certificate and a key", ErrOptions)
	case opts.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(opts.TLSCertFile, opts.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: loading the TLS certificate %s and key %s: %w", ErrOptions, opts.TLSCertFile, opts.TLSKeyFile, err)
		}
		s.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	if err := s.checkAddr(opts.Addr); err != nil {
		return nil, err
	}
	vw, err := s.open(ctx)
	if err != nil {
		return nil, err
	}
	s.cur.Store(vw)
	return s, nil
}

// checkAddr refuses plain HTTP on an address that is not loopback.
func (s *Server) checkAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: listen address %q: %w", ErrOptions, addr, err)
	}
	if s.tls != nil || s.opts.UnsafePlainHTTP {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %s is not a loopback address: give a TLS certificate and key, or allow plain HTTP explicitly", ErrPlainHTTP, addr)
}

// open verifies the bundle and builds its view.
func (s *Server) open(ctx context.Context) (*view, error) {
	v, err := bundle.Open(ctx, s.opts.Dir, *s.opts.Verify)
	if err != nil {
		if v != nil {
			v.Close()
		}
		return nil, fmt.Errorf("verifying bundle %s (nothing is served): %w", s.opts.Dir, err)
	}
	vw, err := newView(ctx, v, s.opts.Prefix)
	if err != nil {
		v.Close()
		return nil, fmt.Errorf("bundle %s (nothing is served): %w", s.opts.Dir, err)
	}
	return vw, nil
}

// Start listens and serves in the background until Shutdown. It checks that the
// address bound is loopback when plain HTTP is not allowed elsewhere.
func (s *Server) Start() error {
	if s.srv != nil {
		return errors.New("serve: already started")
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.opts.Addr, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && s.tls == nil && !s.opts.UnsafePlainHTTP && !ta.IP.IsLoopback() {
		ln.Close()
		return fmt.Errorf("%w: %s resolved to %s", ErrPlainHTTP, s.opts.Addr, ta)
	}
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return nil
}

// Addr returns the address listened on (after Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.opts.Addr
	}
	return s.ln.Addr().String()
}

// URL returns the base URL clients use (after Start).
func (s *Server) URL() string {
	if s.tls != nil {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// TLS reports whether the server serves HTTPS.
func (s *Server) TLS() bool { return s.tls != nil }

// Done yields the serving loop's error (nil after Shutdown) once it ends.
func (s *Server) Done() <-chan error { return s.done }

// Shutdown stops listening, waits up to ShutdownTimeout for requests in flight (then
// cuts them) and releases the bundle.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.closing.Store(true)
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(ctx, s.opts.ShutdownTimeout)
		defer cancel()
		if err = s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
	}
	if vw := s.cur.Load(); vw != nil {
		vw.retire()
	}
	return err
}

// Reload verifies the bundle again and, only when that passes, serves the new view;
// requests in flight finish on the old one. On failure the previous view keeps serving
// and the error says why.
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	vw, err := s.open(ctx)
	if err != nil {
		s.reloadFailures.Add(1)
		s.log.Error("re-verification failed: still serving the previously verified bundle", "dir", s.opts.Dir, "error", err)
		return err
	}
	old := s.cur.Swap(vw)
	if old != nil {
		old.retire()
	}
	s.reloads.Add(1)
	s.log.Info("re-verified: serving the bundle as now verified", "dir", s.opts.Dir,
		"bundleID", vw.report.BundleID, "sequence", vw.report.Sequence, "repositories", len(vw.names))
	return nil
}

// Report is the verification report of the view being served.
func (s *Server) Report() *bundle.Report { return s.cur.Load().report }

// Repositories lists what is served.
func (s *Server) Repositories() []Repository { return s.cur.Load().contents() }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Requests: s.requests.Load(), BytesSent: s.bytesSent.Load(), Tampered: s.tampered.Load(),
		Reloads: s.reloads.Load(), ReloadFailures: s.reloadFailures.Load()}
}

// acquire returns the current view with a reference held (release it when done), or
// nil once Shutdown has begun.
func (s *Server) acquire() *view {
	for !s.closing.Load() {
		if vw := s.cur.Load(); vw.acquire() {
			return vw
		}
	}
	return nil
}
