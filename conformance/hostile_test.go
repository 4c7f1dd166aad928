package conformance

// The hostile-bundle suite: bundles built by an attacker who holds the bundle key (so
// every signature verifies and only petra-oci's graph, name, policy, replay and disk
// checks can catch the tamper), and disks that change under unpack after verification.
// Every case runs the real CLI against both destination kinds (olareg, with the
// referrers API, and distribution, without), with a failsafe on every command, and
// checks the exit code, that the message names the offending entry, and what reached
// the registry.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/replay"
	"github.com/petra-oci/petra-oci/signing"
)

const (
	// hostileTimeout is the failsafe on every petra-oci command of the suite: a
	// command still running then is killed and its case fails as hung.
	hostileTimeout = 60 * time.Second
	// signalGrace is how long petra-oci may take to exit after SIGTERM.
	signalGrace = 5 * time.Second
	// exitInterrupted is the exit code of a command stopped by SIGINT or SIGTERM.
	exitInterrupted = 130
)

// Exit codes of petra-oci verify and unpack the suite expects (see
// docs/bundle-format.md).
const (
	exitFailureCode      = 1
	exitUsageCode        = 2
	exitSignatureCode    = 11 // bundle.ErrSignature
	exitReplayedSequence = 13 // replay.ErrReplay
	exitReplayCode       = exitReplayedSequence
	exitFileChangedCode  = 20 // layout.ErrFileChanged
	exitRollback         = 15 // a tag would move back to content of an older bundle
	exitNotCoveredCode   = 25 // an image in index.json and not in the signed list, or the reverse
	exitOrphan           = 26 // referrers.ErrOrphan
	exitKindMismatch     = 27 // referrers.ErrKindMismatch
	exitInvalidName      = 28 // oci.ErrInvalidName
	exitSparseIndex      = 35 // unpack.ErrSparseIndex
	exitImagePolicy      = 30 // an image fails the policy
	exitAuditCode        = 50 // audit.ErrVerify
	exitGaveUpCode       = 70 // remote.ErrGaveUp
)

// hostileKinds are the destinations every case runs against.
var hostileKinds = []registrytest.Kind{registrytest.Olareg, registrytest.Distribution}

// hostileKeys is a bundle key pair as files for the CLI (pack --key, unpack --key)
// and the same private key as a Signer for forging metadata.
type hostileKeys struct {
	bundleKeys
	signer signing.Signer
}

func newHostileKeys(t *testing.T) hostileKeys {
	t.Helper()
	priv, pubPEM, privPEM := fixture.KeyPair(t)
	s, err := signing.NewSigner(priv)
	must(t, err)
	d := t.TempDir()
	return hostileKeys{
		bundleKeys: bundleKeys{priv: writeFile(t, filepath.Join(d, "bundle.key"), privPEM), pub: writeFile(t, filepath.Join(d, "bundle.pub"), pubPEM)},
		signer:     s,
	}
}

// hostileBundle is a copy of a packed bundle that a test tampers with as an attacker
// who holds the bundle key: it edits index.json, adds blobs and manifests, edits the
// signed image list, then forges the metadata (every file hashed again, signed with
// the real key).
type hostileBundle struct {
	t      testing.TB
	dir    string
	signer signing.Signer
}

// copyBundle copies the bundle at src into a fresh directory.
func copyBundle(t testing.TB, src string, signer signing.Signer) *hostileBundle {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	copyTree(t, src, dir)
	return &hostileBundle{t: t, dir: dir, signer: signer}
}

func (b *hostileBundle) path(rel string) string { return filepath.Join(b.dir, filepath.FromSlash(rel)) }

// index reads index.json as plain JSON (no petra-oci checks).
func (b *hostileBundle) index() ocispec.Index {
	b.t.Helper()
	raw, err := os.ReadFile(b.path(layout.IndexFile))
	must(b.t, err)
	var idx ocispec.Index
	must(b.t, json.Unmarshal(raw, &idx))
	return idx
}

// writeIndex writes index.json as plain JSON, whatever it holds.
func (b *hostileBundle) writeIndex(idx ocispec.Index) {
	b.t.Helper()
	raw, err := json.MarshalIndent(idx, "", "  ")
	must(b.t, err)
	must(b.t, os.WriteFile(b.path(layout.IndexFile), raw, 0o644))
}

// entries decodes the index.json entries petra-oci wrote. Call it before adding
// entries petra-oci would not decode.
func (b *hostileBundle) entries() []layout.Entry {
	b.t.Helper()
	es, err := layout.ParseEntries(b.index())
	must(b.t, err)
	return es
}

// entry returns the one entry pred selects.
func (b *hostileBundle) entry(what string, pred func(layout.Entry) bool) layout.Entry {
	b.t.Helper()
	var found []layout.Entry
	for _, e := range b.entries() {
		if pred(e) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		b.t.Fatalf("test bug: %d index.json entries are %s, want 1: %+v", len(found), what, found)
	}
	return found[0]
}

// rewrite passes every entry to fn, which may change it (false drops it), and writes
// index.json back with the entries rendered as petra-oci renders them
// (layout.Entry.IndexDescriptor). It returns how many entries fn changed or dropped.
func (b *hostileBundle) rewrite(fn func(e *layout.Entry) bool) int {
	b.t.Helper()
	idx := b.index()
	es := b.entries()
	idx.Manifests = nil
	changed := 0
	for _, e := range es {
		before, _ := json.Marshal(e.IndexDescriptor())
		if !fn(&e) {
			changed++
			continue
		}
		d := e.IndexDescriptor()
		if after, _ := json.Marshal(d); !bytes.Equal(before, after) {
			changed++
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	b.writeIndex(idx)
	return changed
}

// add appends entries to index.json, rendered as petra-oci renders them: the
// dev.petra-oci.kind, .repository and .subject annotations and the ref name.
func (b *hostileBundle) add(es ...layout.Entry) {
	b.t.Helper()
	idx := b.index()
	for _, e := range es {
		idx.Manifests = append(idx.Manifests, e.IndexDescriptor())
	}
	b.writeIndex(idx)
}

// push stores data as a blob of the layout (layout.Create + PushBytes).
func (b *hostileBundle) push(mediaType string, data []byte) ocispec.Descriptor {
	b.t.Helper()
	l, err := layout.Create(b.dir)
	must(b.t, err)
	d, err := l.PushBytes(context.Background(), mediaType, data)
	must(b.t, err)
	must(b.t, l.Close())
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
}

func (b *hostileBundle) pushJSON(mediaType string, v any) ocispec.Descriptor {
	b.t.Helper()
	raw, err := json.Marshal(v)
	must(b.t, err)
	return b.push(mediaType, raw)
}

// runnable adds a runnable linux/amd64 image (an image config and one gzip tar layer
// holding the executable usr/bin/<name>) and returns its manifest descriptor. With
// subject, the manifest names it as its subject.
func (b *hostileBundle) runnable(name string, subject *ocispec.Descriptor) ocispec.Descriptor {
	b.t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	body := []byte("#!/bin/sh\n# " + name + ": not from any signed source\nexec /bin/sh \"$@\"\n")
	must(b.t, tw.WriteHeader(&tar.Header{Name: "usr/bin/" + name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}))
	_, err := tw.Write(body)
	must(b.t, err)
	must(b.t, tw.Close())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err = zw.Write(tb.Bytes())
	must(b.t, err)
	must(b.t, zw.Close())
	layer := b.push(ocispec.MediaTypeImageLayerGzip, gz.Bytes())
	cfg := b.pushJSON(ocispec.MediaTypeImageConfig, ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Entrypoint: []string{"/usr/bin/" + name}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tb.Bytes())}},
	})
	return b.pushJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfg,
		Layers:    []ocispec.Descriptor{layer},
		Subject:   subject,
	})
}

// unsignedIndex adds an image index of children (descriptors with their platforms)
// that nobody signed, and returns its descriptor.
func (b *hostileBundle) unsignedIndex(children ...ocispec.Descriptor) ocispec.Descriptor {
	b.t.Helper()
	if children == nil {
		children = []ocispec.Descriptor{}
	}
	return b.pushJSON(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: children,
	})
}

// artifact adds a non-runnable artifact manifest (empty config, one layer of
// layerType holding payload) and returns its descriptor.
func (b *hostileBundle) artifact(artifactType, layerType string, payload []byte, subject *ocispec.Descriptor) ocispec.Descriptor {
	b.t.Helper()
	cfg := b.push(ocispec.MediaTypeEmptyJSON, []byte("{}"))
	layer := b.push(layerType, payload)
	return b.pushJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       cfg,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      subject,
	})
}

// metadata parses petra/metadata.json.
func (b *hostileBundle) metadata() *layout.Metadata {
	b.t.Helper()
	raw, err := os.ReadFile(b.path(layout.MetadataPath))
	must(b.t, err)
	m, err := layout.ParseMetadata(raw)
	must(b.t, err)
	return m
}

// forge rebuilds petra/metadata.json over the whole directory as it is now and signs
// it with the real bundle key, keeping the bundle's series, sequence, creation time,
// tool, trust files and image list unless edit changes them. It uses
// layout.BuildMetadata and layout.EncodeMetadata; where petra-oci's own builder
// refuses to describe the tampered directory, it hashes and encodes it directly, as
// an attacker would.
func (b *hostileBundle) forge(edit func(m *layout.Metadata)) *layout.Metadata {
	b.t.Helper()
	old := b.metadata()
	m := *old
	m.Images = slices.Clone(old.Images)
	m.Trust = slices.Clone(old.Trust)
	m.Files = nil
	if edit != nil {
		edit(&m)
	}
	ctx := context.Background()
	built, enc, err := layout.BuildMetadata(ctx, b.dir, m, 0)
	if err == nil {
		m = *built
	} else {
		b.t.Logf("layout.BuildMetadata refuses to describe the tampered bundle (%v): hashing it directly", err)
		m.Files = hashFiles(b.t, b.dir)
		for i, tf := range m.Trust {
			for _, f := range m.Files {
				if f.Path == tf.Path {
					m.Trust[i].SHA256 = f.SHA256
				}
			}
		}
		if enc, err = layout.EncodeMetadata(&m); err != nil {
			b.t.Logf("layout.EncodeMetadata refuses it too (%v): encoding it directly", err)
			raw, err := json.MarshalIndent(&m, "", "  ")
			must(b.t, err)
			enc = append(raw, '\n')
		}
	}
	must(b.t, os.WriteFile(b.path(layout.MetadataPath), enc, 0o644))
	sig, err := signing.SignBlob(ctx, b.signer, bytes.NewReader(enc))
	must(b.t, err)
	must(b.t, os.WriteFile(b.path(layout.SignaturePath), sig, 0o644))
	return &m
}

// hashFiles lists every regular file of dir but the metadata and its signature, as
// the metadata lists them.
func hashFiles(t testing.TB, dir string) []layout.File {
	t.Helper()
	var files []layout.File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == layout.MetadataPath || rel == layout.SignaturePath {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("test bug: %s is not a regular file", rel)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			return err
		}
		files = append(files, layout.File{Path: rel, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
		return nil
	})
	must(t, err)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files
}

// blobFile is the path of d's blob in the bundle at dir.
func blobFile(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// petraProc is a running petra-oci command.
type petraProc struct {
	args           []string
	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	done           chan struct{}
	err            error // set before done is closed
}

// startPetra starts petra-oci with args in e's hermetic environment. The process is
// killed when the test ends, if it still runs.
func startPetra(t testing.TB, e *env, args ...string) *petraProc {
	t.Helper()
	p := &petraProc{args: append([]string{"petra-oci"}, args...), cmd: e.command(args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	must(t, p.cmd.Start())
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *petraProc) pid() int { return p.cmd.Process.Pid }

func (p *petraProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits at most timeout for the command; one still running then is killed, and
// its result says so (ok is false).
func (p *petraProc) wait(timeout time.Duration) (r result, ok bool) {
	select {
	case <-p.done:
		return p.result(), true
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		r = p.result()
		r.err = fmt.Errorf("HUNG: still running after %s, killed (%v)", timeout, r.err)
		return r, false
	}
}

// finished waits for a command that has ended (exited reported true) and returns
// its result.
func (p *petraProc) finished() result {
	<-p.done
	return p.result()
}

func (p *petraProc) result() result {
	return result{args: p.args, stdout: p.stdout.String(), stderr: p.stderr.String(), err: p.err, exitCode: p.cmd.ProcessState.ExitCode()}
}

// runPetra runs petra-oci with the suite's failsafe.
func runPetra(t testing.TB, e *env, args ...string) result {
	t.Helper()
	r, _ := startPetra(t, e, args...).wait(hostileTimeout)
	return r
}

// assertExit checks the exit code of r and that its stderr names one of names (the
// offending digest, repository or tag), printing the whole output otherwise.
func assertExit(t testing.TB, what string, r result, want int, names ...string) {
	t.Helper()
	if r.exitCode != want {
		t.Errorf("%s: exit %d, want %d:\n%s", what, r.exitCode, want, r)
		return
	}
	if want != 0 && len(names) > 0 && !containsAny(r.stderr, names) {
		t.Errorf("%s: exit %d as wanted, but stderr names none of %q:\n%s", what, want, names, r)
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if sub != "" && strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// assertNothingPushed checks that dst holds no repository and no blob at all.
func assertNothingPushed(t testing.TB, dst *registrytest.Registry) {
	t.Helper()
	if cat := dst.Catalog(t); len(cat) != 0 {
		t.Errorf("the %s registry received repositories %v, where nothing may be pushed", dst.Kind, cat)
	}
	if blobs := dst.StoredBlobs(t); len(blobs) != 0 {
		t.Errorf("the %s registry received %d blobs, where nothing may be pushed: %v", dst.Kind, len(blobs), blobs)
	}
}

// resolveAt resolves ref (tag or digest) in repo at dst; "" when it is not there.
func resolveAt(t testing.TB, dst *registrytest.Registry, repo, ref string) digest.Digest {
	t.Helper()
	d, err := dst.Repository(t, repo).Resolve(context.Background(), ref)
	if err != nil {
		return ""
	}
	return d.Digest
}

// blobAt reports whether the blob d is in repo at dst.
func blobAt(t testing.TB, dst *registrytest.Registry, repo string, d digest.Digest) bool {
	t.Helper()
	_, err := dst.Repository(t, repo).Blobs().Resolve(context.Background(), d.String())
	return err == nil
}

// lastAccepted is the sequence the replay state at path recorded for bundleID (0: none).
func lastAccepted(t testing.TB, path, bundleID string) uint64 {
	t.Helper()
	s, err := replay.New(replay.Options{Path: path})
	must(t, err)
	seq, ok, err := s.Last(bundleID)
	if err != nil {
		t.Fatalf("reading the replay state %s: %v", path, err)
	}
	if !ok {
		return 0
	}
	return seq
}

// waitLockWaiter waits until p is blocked on a file lock (/proc/locks shows it
// waiting, "->"), says on stderr that it is waiting, or until max has passed without
// p sending any request through proxy (a wait that polls the lock shows nothing in
// /proc/locks). It reports false,
// with a test error, when p reached its registry or ended instead: it did not wait.
func waitLockWaiter(t testing.TB, p *petraProc, proxy *registrytest.HookProxy, max time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if reqs := proxy.Requests(); len(reqs) > 0 {
			t.Errorf("%s did not wait for the state lock: it reached the registry (%d requests, first %s)", strings.Join(p.args, " "), len(reqs), reqs[0])
			return false
		}
		if p.exited() {
			t.Errorf("did not wait for the state lock, ended first:\n%s", p.finished())
			return false
		}
		if blockedOnLock(p.pid()) {
			t.Logf("pid %d waits for a file lock (/proc/locks)", p.pid())
			return true
		}
		if strings.Contains(strings.ToLower(p.stderr.String()), "waiting") {
			t.Logf("pid %d says it waits: %s", p.pid(), strings.TrimSpace(p.stderr.String()))
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("pid %d shows no blocked lock in /proc/locks after %s, but it has not reached its registry: taking it as waiting", p.pid(), max)
	return true
}

// blockedOnLock reports whether /proc/locks shows pid waiting for a lock.
func blockedOnLock(pid int) bool {
	raw, err := os.ReadFile("/proc/locks")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "->" && f[5] == strconv.Itoa(pid) {
			return true
		}
	}
	return false
}

// readChars is the rchar of /proc/<pid>/io: bytes the process read so far.
func readChars(pid int) (int64, bool) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// terminate sends SIGTERM to p and waits signalGrace for it to end.
func terminate(t testing.TB, p *petraProc) (result, time.Duration, bool) {
	t.Helper()
	return interrupt(t, p, syscall.SIGTERM)
}

// interrupt sends sig to p and waits signalGrace for it to end.
func interrupt(t testing.TB, p *petraProc, sig syscall.Signal) (result, time.Duration, bool) {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Logf("%s: %v", sig, err)
	}
	r, ok := p.wait(signalGrace)
	return r, time.Since(start), ok
}

// assertInterrupted checks that a command stopped by a signal exited in time with
// exitInterrupted and a message.
func assertInterrupted(t testing.TB, what string, r result, took time.Duration, inTime bool) {
	t.Helper()
	switch {
	case !inTime:
		t.Errorf("%s: did not exit within %s of the signal:\n%s", what, signalGrace, r)
	case r.exitCode != exitInterrupted:
		t.Errorf("%s: exit %d (%v) %s after the signal, want %d:\n%s", what, r.exitCode, r.err, took.Round(time.Millisecond), exitInterrupted, r)
	case strings.TrimSpace(r.stderr) == "":
		t.Errorf("%s: exit %d without a message", what, r.exitCode)
	}
}
