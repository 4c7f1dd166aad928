package registrytest

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote"
)

// TestHookProxy pushes through a HookProxy in front of each kind of registry: the hook
// runs once, before the first request is forwarded; a held manifest push reaches the
// registry only after Release; blob uploads (whose Location the registry builds) work
// through the proxy.
func TestHookProxy(t *testing.T) {
	for _, k := range All() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r := Start(t, k)
			var hooks atomic.Int32
			var forwardedBeforeHook atomic.Bool
			p := StartHookProxy(t, r, HookOptions{
				Hook: func(req *http.Request) {
					hooks.Add(1)
					// nothing has been forwarded yet: the registry is still empty
					if len(r.Catalog(t)) != 0 {
						forwardedBeforeHook.Store(true)
					}
					time.Sleep(50 * time.Millisecond) // concurrent requests must wait for it
				},
				Hold: ManifestPush,
			})
			repo, err := remote.NewRepository(p.Host + "/proxy/test")
			if err != nil {
				t.Fatal(err)
			}
			repo.PlainHTTP = true

			cfg := ocispec.DescriptorEmptyJSON
			if err := repo.Push(ctx, cfg, bytes.NewReader(cfg.Data)); err != nil {
				t.Fatalf("blob upload through the proxy: %v", err)
			}
			select {
			case <-p.Hooked():
			default:
				t.Fatal("Hooked not closed after the first request")
			}
			cfg.Data = nil

			done := make(chan error, 1)
			var m ocispec.Descriptor
			go func() {
				var err error
				m, err = oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.petra.test", oras.PackManifestOptions{
					ConfigDescriptor:    &cfg,
					ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: "2024-01-01T00:00:00Z"},
				})
				done <- err
			}()
			select {
			case <-p.Held():
			case err := <-done:
				t.Fatalf("manifest push finished (%v) without being held", err)
			case <-time.After(30 * time.Second):
				t.Fatal("the manifest push was never held")
			}
			time.Sleep(100 * time.Millisecond)
			if cat := r.Catalog(t); k != Olareg && len(cat) != 0 {
				t.Fatalf("a held manifest reached the registry: catalog %v", cat)
			}
			select {
			case err := <-done:
				t.Fatalf("held push returned before Release: %v", err)
			default:
			}
			p.Release()
			if err := <-done; err != nil {
				t.Fatalf("manifest push after Release: %v", err)
			}
			direct := r.Repository(t, "proxy/test")
			if got, err := direct.Resolve(ctx, m.Digest.String()); err != nil || got.Digest != m.Digest {
				t.Fatalf("manifest %s at the registry: %v %v", m.Digest, got.Digest, err)
			}
			if n := hooks.Load(); n != 1 {
				t.Errorf("hook ran %d times, want once", n)
			}
			if forwardedBeforeHook.Load() {
				t.Error("a request reached the registry before the hook ran")
			}
			reqs := p.Requests()
			if len(reqs) < 3 || len(p.Writes()) == 0 {
				t.Errorf("requests recorded: %v (writes %v)", reqs, p.Writes())
			}
			for _, w := range p.Writes() {
				if strings.HasPrefix(w, "GET ") || strings.HasPrefix(w, "HEAD ") {
					t.Errorf("Writes lists a read: %s", w)
				}
			}
		})
	}
}

// TestHookProxyAbandonedHold: a held request whose client goes away is answered and
// never forwarded.
func TestHookProxyAbandonedHold(t *testing.T) {
	r := Start(t, InProcess)
	p := StartHookProxy(t, r, HookOptions{Hold: AnyRequest})
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Host+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-p.Held()
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the cancelled request succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a held request outlived its client")
	}
}
