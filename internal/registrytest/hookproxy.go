package registrytest

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// HookOptions configure a HookProxy. The zero value forwards every request untouched.
type HookOptions struct {
	// Hook, when set, runs exactly once, synchronously, on the first request the
	// proxy receives, before that request is forwarded. Every other request that
	// arrives meanwhile waits until Hook has returned. A petra-oci unpack sends its
	// first request to the destination only after the bundle verified, so Hook is
	// the moment "after verification, before the push" (tests swap files of the
	// bundle there).
	Hook func(r *http.Request)
	// Hold, when set, is asked about every request (after Hook ran); a request it
	// returns true for waits until Release is called (or its client goes away,
	// which answers 502 and forwards nothing). Use it to keep a client mid-push.
	Hold func(r *http.Request) bool
}

// HookProxy is a reverse proxy (net/http/httputil) on 127.0.0.1 in front of a test
// registry. Clients talk to Host instead of the registry's host; the registry sees
// the proxy's Host header, so the absolute upload URLs it returns point at the proxy
// too (Location headers naming the registry's own host are rewritten as well).
//
// It records every request it receives, runs HookOptions.Hook once on the first one
// and holds the requests HookOptions.Hold selects until Release. It is closed, and
// every held request released, when the test ends.
type HookProxy struct {
	// Host is "127.0.0.1:PORT" of the proxy (plain HTTP), to give to clients.
	Host string
	// Target is the registry behind the proxy.
	Target *Registry

	opts HookOptions
	rp   *httputil.ReverseProxy

	hookOnce sync.Once
	hooked   chan struct{} // closed once Hook returned
	heldOnce sync.Once
	held     chan struct{} // closed when the first request is held
	relOnce  sync.Once
	released chan struct{} // closed by Release

	mu       sync.Mutex
	requests []string
}

// StartHookProxy starts a HookProxy in front of target and stops it when the test
// ends (held requests are released first).
func StartHookProxy(t testing.TB, target *Registry, opts HookOptions) *HookProxy {
	t.Helper()
	u, err := url.Parse(target.URL())
	if err != nil {
		t.Fatalf("registrytest: proxy target %q: %v", target.URL(), err)
	}
	p := &HookProxy{
		Target:   target,
		opts:     opts,
		hooked:   make(chan struct{}),
		held:     make(chan struct{}),
		released: make(chan struct{}),
	}
	p.rp = registryProxy(u, target.Host, &p.Host)
	srv := httptest.NewUnstartedServer(p) // listens on 127.0.0.1:0
	p.Host = srv.Listener.Addr().String() // set before any request can read it
	srv.Start()
	t.Cleanup(func() {
		p.Release()
		srv.CloseClientConnections()
		srv.Close()
	})
	return p
}

// ServeHTTP implements http.Handler.
func (p *HookProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests = append(p.requests, r.Method+" "+r.URL.RequestURI())
	p.mu.Unlock()
	p.hookOnce.Do(func() {
		defer close(p.hooked)
		if p.opts.Hook != nil {
			p.opts.Hook(r)
		}
	})
	if p.opts.Hold != nil && p.opts.Hold(r) {
		p.heldOnce.Do(func() { close(p.held) })
		select {
		case <-p.released:
		case <-r.Context().Done():
			http.Error(w, "registrytest: held request abandoned by its client", http.StatusBadGateway)
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// Hooked is closed once the first request arrived and Hook (if any) returned.
func (p *HookProxy) Hooked() <-chan struct{} { return p.hooked }

// Held is closed when the first request selected by Hold starts waiting.
func (p *HookProxy) Held() <-chan struct{} { return p.held }

// Release lets every held request, and every later one, through. It may be called
// more than once.
func (p *HookProxy) Release() { p.relOnce.Do(func() { close(p.released) }) }

// Requests returns "METHOD /path?query" of every request received so far, in order.
func (p *HookProxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.requests...)
}

// Writes returns the requests received so far that would change the registry: every
// method but GET, HEAD and OPTIONS.
func (p *HookProxy) Writes() []string {
	var out []string
	for _, r := range p.Requests() {
		m, _, _ := strings.Cut(r, " ")
		if m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions {
			out = append(out, r)
		}
	}
	return out
}

// ManifestPush reports whether r pushes a manifest (PUT /v2/<name>/manifests/<ref>):
// a Hold that keeps a client after its blob uploads and before any manifest or tag.
func ManifestPush(r *http.Request) bool {
	return r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v2/") && strings.Contains(r.URL.Path, "/manifests/")
}

// AnyRequest holds every request.
func AnyRequest(*http.Request) bool { return true }

// registryProxy is a reverse proxy to the registry at u (host targetHost) for a proxy
// listening at *self (set once it listens, before any request): the registry builds
// its URLs for the proxy's Host, and upload Locations naming the registry are
// rewritten to the proxy, so every request of a session goes through it. Responses
// are streamed (no buffering), so cut bodies and held requests behave as on the wire.
func registryProxy(u *url.URL, targetHost string, self *string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: func(resp *http.Response) error {
			if loc := resp.Header.Get("Location"); loc != "" {
				resp.Header.Set("Location", strings.Replace(loc, "//"+targetHost+"/", "//"+*self+"/", 1))
			}
			return nil
		},
		FlushInterval: -1,
	}
}
