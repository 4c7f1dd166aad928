// Package registrytest starts OCI registries on 127.0.0.1 for tests: the in-process
// go-containerregistry registry, a real olareg process and a real distribution
// ("registry") process. Every registry is fresh and empty, keeps its data in
// t.TempDir() and is stopped by t.Cleanup.
//
// The three kinds differ where it matters to petra-oci:
//
//   - InProcess and Olareg serve the OCI 1.1 referrers API
//     (GET /v2/<repo>/referrers/<digest> answers 200 with an index).
//   - Distribution has no referrers API (404), so clients fall back to the
//     referrers tag schema (tag "sha256-<hex>" holding an index of referrers).
//
// Known quirks, checked by this package's tests so that a change shows up:
//
//   - InProcess (go-containerregistry v0.22.1) reports a referrer's artifactType as
//     its config media type, ignoring the manifest's artifactType field, and
//     ignores the artifactType filter query. Compare referrers by digest there.
//   - InProcess never sends the OCI-Subject response header. oras-go decides from
//     that header whether the registry indexed a pushed referrer, so a fresh
//     remote.Repository pushing a manifest with a subject to InProcess also writes
//     the referrers tag schema (tag sha256-<hex>), unless it learned the capability
//     first (Repository.Referrers on any subject, or SetReferrersCapability).
//     Olareg sends the header.
//   - Olareg v0.2.2 does not serve /v2/_catalog; Catalog lists its storage
//     directory instead (see Catalog).
package registrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/build"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry/remote"
)

// Kind names a registry implementation.
type Kind string

const (
	// InProcess is go-containerregistry's pkg/registry with the referrers API
	// enabled, served by httptest on 127.0.0.1, blobs on disk.
	InProcess Kind = "inprocess"
	// Olareg is a real olareg process (full referrers API).
	Olareg Kind = "olareg"
	// Distribution is a real distribution v3 "registry" process, which has no
	// referrers API: clients use the referrers tag schema.
	Distribution Kind = "distribution"
)

// All returns every Kind, for table tests.
func All() []Kind { return []Kind{InProcess, Olareg, Distribution} }

// startTimeout bounds how long a registry process may take to answer GET /v2/.
const startTimeout = 20 * time.Second

// Registry is a running registry.
type Registry struct {
	// Kind is the implementation.
	Kind Kind
	// Host is "127.0.0.1:PORT", without scheme; the registry speaks plain HTTP.
	Host string
	// Dir is the storage directory (inside t.TempDir()).
	Dir string
}

// URL returns "http://" + r.Host.
func (r *Registry) URL() string { return "http://" + r.Host }

// Start starts a fresh, empty registry of kind k and stops it when the test ends.
// When the test fails, the registry's log is written with t.Log.
func Start(t testing.TB, k Kind) *Registry {
	t.Helper()
	return StartWith(t, k, StartOptions{})
}

// StartOptions configure a registry away from its defaults. The zero value is the
// default configuration.
type StartOptions struct {
	// SparseIndexes makes the registry accept an index whose children it does not
	// hold (distribution's validation.manifests.indexes.platforms: none). Only
	// Distribution has the setting; the other kinds always refuse such an index.
	SparseIndexes bool
}

// StartWith starts a registry as Start does, configured by opts.
func StartWith(t testing.TB, k Kind, opts StartOptions) *Registry {
	t.Helper()
	if opts.SparseIndexes && k != Distribution {
		t.Fatalf("registrytest: %s has no setting to accept sparse indexes", k)
	}
	r := &Registry{Kind: k, Dir: t.TempDir()}
	switch k {
	case InProcess:
		r.startInProcess(t)
	case Olareg:
		bin := ToolPath(t, "olareg")
		r.startProcess(t, func(port int) (*exec.Cmd, error) {
			return exec.Command(bin, "serve",
				"--addr", "127.0.0.1", "--port", strconv.Itoa(port),
				"--dir", r.Dir,
				"--api-delete", "--api-blob-delete",
				"-v", "info"), nil
		})
	case Distribution:
		bin := ToolPath(t, "registry")
		r.startProcess(t, func(port int) (*exec.Cmd, error) {
			cfg := filepath.Join(t.TempDir(), "config.yml")
			if err := os.WriteFile(cfg, []byte(distributionConfig(r.Dir, port, opts)), 0o600); err != nil {
				return nil, fmt.Errorf("writing distribution config: %w", err)
			}
			cmd := exec.Command(bin, "serve", cfg)
			// distribution exports traces to localhost:4318 by default; nothing listens
			cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
			return cmd, nil
		})
	default:
		t.Fatalf("registrytest: unknown registry kind %q", k)
	}
	return r
}

// distributionConfig is the configuration of a distribution v3 registry storing in
// dir and listening on 127.0.0.1:port. Index validation keeps its default ("all":
// every child of a pushed index must already exist), like production registries,
// unless opts.SparseIndexes.
func distributionConfig(dir string, port int, opts StartOptions) string {
	validation := ""
	if opts.SparseIndexes {
		validation = `validation:
  manifests:
    indexes:
      platforms: none
`
	}
	return fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:%d
  secret: registrytest
`, dir, port) + validation
}

func (r *Registry) startInProcess(t testing.TB) {
	t.Helper()
	logs := &syncBuffer{}
	h := registry.New(
		registry.WithReferrersSupport(true),
		registry.WithBlobHandler(registry.NewDiskBlobHandler(r.Dir)),
		registry.Logger(log.New(logs, "", log.Ltime|log.Lmicroseconds)),
	)
	srv := httptest.NewServer(h) // binds 127.0.0.1:0
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	t.Cleanup(func() {
		srv.Close()
		if t.Failed() {
			t.Logf("registrytest: %s registry %s log:\n%s", r.Kind, r.Host, logs.String())
		}
	})
}

// startProcess starts the command newCmd builds for a free port, retrying with
// another port when the process exits before it answers (a bind race).
func (r *Registry) startProcess(t testing.TB, newCmd func(port int) (*exec.Cmd, error)) {
	t.Helper()
	var errs []error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("registrytest: %v", err)
		}
		cmd, err := newCmd(port)
		if err != nil {
			t.Fatalf("registrytest: %v", err)
		}
		p, err := startAndWait(cmd, "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			errs = append(errs, fmt.Errorf("attempt %d on port %d: %w", attempt+1, port, err))
			if errors.Is(err, errExited) {
				continue // probably lost the port to someone else: try another
			}
			break
		}
		r.Host = "127.0.0.1:" + strconv.Itoa(port)
		t.Cleanup(func() {
			p.stop()
			if t.Failed() {
				t.Logf("registrytest: %s registry %s (%s) output:\n%s", r.Kind, r.Host, strings.Join(cmd.Args, " "), p.output.String())
			}
		})
		return
	}
	t.Fatalf("registrytest: starting %s registry: %v", r.Kind, errors.Join(errs...))
}

var errExited = errors.New("registry process exited")

type process struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // set before done is closed
	output *syncBuffer
}

func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// startAndWait starts cmd and waits until GET http://host/v2/ answers 200 or 401.
func startAndWait(cmd *exec.Cmd, host string) (*process, error) {
	p := &process{cmd: cmd, done: make(chan struct{}), output: &syncBuffer{}}
	cmd.Stdout = p.output
	cmd.Stderr = p.output
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%w (%v) before answering on %s:\n%s", errExited, p.err, host, p.output.String())
		default:
		}
		if ok := ping(client, host); ok {
			// The answer must come from our process, not from one that took the port.
			select {
			case <-p.done:
				return nil, fmt.Errorf("%w (%v) while something else answered on %s:\n%s", errExited, p.err, host, p.output.String())
			case <-time.After(20 * time.Millisecond):
			}
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not answer GET http://%s/v2/ within %s:\n%s", cmd.Path, host, startTimeout, p.output.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func ping(client *http.Client, host string) bool {
	resp, err := client.Get("http://" + host + "/v2/")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized
}

// freePort returns a port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Repository returns an oras-go repository for r.Host/repo over plain HTTP. Its
// referrers capability is not set: oras-go discovers it as it would in production
// (see the package documentation for InProcess).
func (r *Registry) Repository(t testing.TB, repo string) *remote.Repository {
	t.Helper()
	rr, err := remote.NewRepository(r.Host + "/" + repo)
	if err != nil {
		t.Fatalf("registrytest: repository %q: %v", repo, err)
	}
	rr.PlainHTTP = true
	return rr
}

// Catalog returns the sorted repository names the registry holds.
//
// InProcess and Distribution answer GET /v2/_catalog (followed across pages);
// both list a repository once a manifest was pushed to it (a blob alone does not
// count). Olareg v0.2.2 has no catalog endpoint; its storage is one OCI layout per
// repository, so Catalog lists the directories under r.Dir that olareg created
// as repositories (they hold index.json and oci-layout). Olareg creates one on the
// first write of any kind, a blob upload included.
//
// To prove a registry received nothing, check that both Catalog and StoredBlobs
// are empty.
func (r *Registry) Catalog(t testing.TB) []string {
	t.Helper()
	var (
		repos []string
		err   error
	)
	if r.Kind == Olareg {
		repos, err = olaregRepositories(r.Dir)
	} else {
		repos, err = catalogHTTP(r.Host)
	}
	if err != nil {
		t.Fatalf("registrytest: catalog of %s registry %s: %v", r.Kind, r.Host, err)
	}
	slices.Sort(repos)
	return repos
}

func catalogHTTP(host string) ([]string, error) {
	var repos []string
	next := "/v2/_catalog?n=1000"
	for page := 0; next != ""; page++ {
		if page > 1000 {
			return nil, errors.New("more than 1000 catalog pages")
		}
		resp, err := http.Get("http://" + host + next)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", next, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		_ = resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("reading GET %s: %w", next, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: status %d: %s", next, resp.StatusCode, body)
		}
		var c struct {
			Repositories []string `json:"repositories"`
		}
		if err := json.Unmarshal(body, &c); err != nil {
			return nil, fmt.Errorf("decoding GET %s: %w", next, err)
		}
		repos = append(repos, c.Repositories...)
		next = nextLink(resp.Header.Get("Link"))
	}
	return repos, nil
}

// nextLink extracts the target of `Link: </v2/_catalog?last=x&n=y>; rel="next"`.
func nextLink(h string) string {
	if h == "" {
		return ""
	}
	start, end := strings.Index(h, "<"), strings.Index(h, ">")
	if start < 0 || end < start {
		return ""
	}
	return h[start+1 : end]
}

func olaregRepositories(root string) ([]string, error) {
	var repos []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		switch d.Name() {
		case "blobs", "_uploads":
			if path != root {
				return fs.SkipDir
			}
		}
		if path == root {
			return nil
		}
		if isFile(filepath.Join(path, "index.json")) && isFile(filepath.Join(path, "oci-layout")) {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			repos = append(repos, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing olareg storage %s: %w", root, err)
	}
	return repos, nil
}

// StoredBlobs returns the sorted, distinct digests of the blobs in the registry's
// storage, whatever repository they were pushed to. For Distribution and Olareg
// this includes manifests (they store manifests as blobs); InProcess keeps
// manifests in memory, so it lists layers and configs only.
func (r *Registry) StoredBlobs(t testing.TB) []digest.Digest {
	t.Helper()
	seen := map[digest.Digest]bool{}
	err := filepath.WalkDir(r.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(r.Dir, path)
		if err != nil {
			return err
		}
		el := strings.Split(filepath.ToSlash(rel), "/")
		var dg digest.Digest
		switch r.Kind {
		case InProcess: // <alg>/<hex>
			if len(el) == 2 {
				dg = digest.NewDigestFromEncoded(digest.Algorithm(el[0]), el[1])
			}
		case Distribution: // docker/registry/v2/blobs/<alg>/<xx>/<hex>/data
			if n := len(el); n >= 4 && el[n-1] == "data" && slices.Contains(el, "blobs") {
				dg = digest.NewDigestFromEncoded(digest.Algorithm(el[n-4]), el[n-2])
			}
		case Olareg: // <repo...>/blobs/<alg>/<hex>
			if n := len(el); n >= 3 && el[n-3] == "blobs" {
				dg = digest.NewDigestFromEncoded(digest.Algorithm(el[n-2]), el[n-1])
			}
		}
		if dg != "" && dg.Validate() == nil {
			seen[dg] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("registrytest: listing the blobs of %s registry %s: %v", r.Kind, r.Host, err)
	}
	out := make([]digest.Digest, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// ToolPath returns the path of an external tool (olareg, registry, oras, crane,
// regctl, cosign, skopeo, ...). It looks in $TOOLS_BIN, then $(go env GOPATH)/bin
// (where scripts/install-tools.sh puts the pinned versions), then $PATH. A missing
// tool fails the test: tests that need a tool never skip.
func ToolPath(t testing.TB, name string) string {
	t.Helper()
	var dirs []string
	if d := os.Getenv("TOOLS_BIN"); d != "" {
		dirs = append(dirs, d)
	}
	if gp := goPath(); gp != "" {
		dirs = append(dirs, filepath.Join(gp, "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("registrytest: tool %q not found in %s or $PATH: run scripts/install-tools.sh", name, strings.Join(dirs, ", "))
	return ""
}

var goPath = sync.OnceValue(func() string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOPATH").Output()
	if err == nil {
		// GOPATH may be a list; the first entry is where go install writes.
		if first, _, _ := strings.Cut(strings.TrimSpace(string(out)), string(os.PathListSeparator)); first != "" {
			return first
		}
	}
	return build.Default.GOPATH
})

// maxLogBytes bounds the registry log kept for a failing test: the newest bytes win.
const maxLogBytes = 1 << 20

// syncBuffer is a log buffer safe for concurrent writers and readers that keeps
// (about) the last maxLogBytes written.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	dropped int64
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len()+len(p) > maxLogBytes {
		drop := min(b.buf.Len(), b.buf.Len()+len(p)-maxLogBytes/2)
		b.buf.Next(drop)
		b.dropped += int64(drop)
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[%d earlier bytes dropped]\n%s", b.dropped, b.buf.String())
	}
	return b.buf.String()
}
