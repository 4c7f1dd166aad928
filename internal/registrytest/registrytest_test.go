package registrytest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

func TestRegistries(t *testing.T) {
	for _, k := range All() {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r := Start(t, k)
			if !strings.HasPrefix(r.Host, "127.0.0.1:") {
				t.Fatalf("Host = %q, want 127.0.0.1:PORT", r.Host)
			}
			if got := r.Catalog(t); len(got) != 0 {
				t.Fatalf("fresh registry catalog = %v, want empty", got)
			}
			if got := r.StoredBlobs(t); len(got) != 0 {
				t.Fatalf("fresh registry stores blobs %v", got)
			}

			repo := r.Repository(t, "petra/test")
			cfg := ocispec.DescriptorEmptyJSON
			if err := repo.Push(ctx, cfg, bytes.NewReader(cfg.Data)); err != nil {
				t.Fatalf("push config: %v", err)
			}
			cfg.Data = nil
			m, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.petra.test", oras.PackManifestOptions{
				ConfigDescriptor: &cfg,
				ManifestAnnotations: map[string]string{
					ocispec.AnnotationCreated: "2024-01-01T00:00:00Z",
				},
			})
			if err != nil {
				t.Fatalf("push manifest: %v", err)
			}
			if err := repo.Tag(ctx, m, "v1"); err != nil {
				t.Fatalf("tag: %v", err)
			}
			got, err := repo.Resolve(ctx, "v1")
			if err != nil {
				t.Fatalf("resolve v1: %v", err)
			}
			if got.Digest != m.Digest {
				t.Fatalf("v1 resolves to %s, want %s", got.Digest, m.Digest)
			}
			if got := r.Catalog(t); !slices.Equal(got, []string{"petra/test"}) {
				t.Fatalf("catalog = %v, want [petra/test]", got)
			}
			wantBlobs := []digest.Digest{cfg.Digest}
			if k != InProcess { // manifests are blobs too
				wantBlobs = append(wantBlobs, m.Digest)
			}
			slices.Sort(wantBlobs)
			if got := r.StoredBlobs(t); !slices.Equal(got, wantBlobs) {
				t.Fatalf("stored blobs = %v, want %v", got, wantBlobs)
			}

			// The referrers API: served by inprocess and olareg, not by distribution.
			status := referrersStatus(t, r, "petra/test", m.Digest)
			want := http.StatusOK
			if k == Distribution {
				want = http.StatusNotFound
			}
			if status != want {
				t.Fatalf("GET referrers: status %d, want %d", status, want)
			}
		})
	}
}

func referrersStatus(t *testing.T, r *Registry, repo string, d digest.Digest) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/v2/%s/referrers/%s", r.URL(), repo, d))
	if err != nil {
		t.Fatalf("GET referrers: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRegistriesAreIsolated(t *testing.T) {
	a, b := Start(t, Olareg), Start(t, Olareg)
	if a.Host == b.Host || a.Dir == b.Dir {
		t.Fatalf("two registries share host or storage: %+v %+v", a, b)
	}
}

func TestStopOnCleanup(t *testing.T) {
	var host string
	t.Run("inner", func(t *testing.T) {
		host = Start(t, Distribution).Host
	})
	resp, err := http.Get("http://" + host + "/v2/")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("registry at %s still answers after its test ended (status %d)", host, resp.StatusCode)
	}
}

// fatalRecorder is a testing.TB whose Fatalf records the message and stops the
// goroutine, like the real one, and whose Skip fails loudly.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fatalRecorder) Skip(...any)          { panic("ToolPath must not skip") }
func (f *fatalRecorder) Skipf(string, ...any) { panic("ToolPath must not skip") }
func (f *fatalRecorder) SkipNow()             { panic("ToolPath must not skip") }

func TestToolPathMissingFails(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	done := make(chan string)
	go func() {
		defer close(done)
		path := ToolPath(rec, "petra-no-such-tool")
		done <- path
	}()
	if path, ok := <-done; ok {
		t.Fatalf("ToolPath of a missing tool returned %q", path)
	}
	if !strings.Contains(rec.msg, "run scripts/install-tools.sh") {
		t.Fatalf("ToolPath message %q does not say how to install the tools", rec.msg)
	}
}

func TestToolPathFindsTools(t *testing.T) {
	for _, name := range []string{"olareg", "registry"} {
		if p := ToolPath(t, name); !strings.HasSuffix(p, "/"+name) {
			t.Errorf("ToolPath(%q) = %q", name, p)
		}
	}
}
