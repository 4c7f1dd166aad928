package conformance

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// containerdEnv is a containerd daemon started by a test: the Debian package's
// containerd (1.6.20, scripts/install-tools.sh), run as root with its root and state
// in temporary directories, its sockets in a short temporary directory, the CRI plugin
// disabled, and the overlayfs snapshotter when containerd reports it usable here, else
// the native one. It is stopped, and its directories removed, at the test's cleanup.
type containerdEnv struct {
	// Root and State are containerd's directories; Address its gRPC socket.
	Root, State, Address string
	// Snapshotter is the snapshotter ctr unpacks with (overlayfs or native).
	Snapshotter string
	logPath     string
}

// startContainerd starts containerd for t. A missing containerd or ctr, or a test not
// running as root, fails the test with what to do.
func startContainerd(t *testing.T) *containerdEnv {
	t.Helper()
	for _, bin := range []string{"containerd", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found (%v): install the Debian package containerd (scripts/install-tools.sh does, as root)", bin, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatalf("containerd needs root: run this test as root (uid %d)", os.Geteuid())
	}
	base := t.TempDir()
	// unix socket paths are limited to 108 bytes: keep them out of the long test dir
	sockDir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	e := &containerdEnv{
		Root:    filepath.Join(base, "root"),
		State:   filepath.Join(base, "state"),
		Address: filepath.Join(sockDir, "containerd.sock"),
		logPath: filepath.Join(base, "containerd.log"),
	}
	for _, d := range []string{e.Root, e.State} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = %q

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, e.Root, e.State, e.Address, e.Address+".ttrpc", filepath.Join(sockDir, "debug.sock"), filepath.Join(base, "opt"))
	cfgPath := writeFile(t, filepath.Join(base, "config.toml"), []byte(config))
	logf, err := os.Create(e.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting containerd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		unmountUnder(t, base)
		os.RemoveAll(sockDir)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := e.ctr(t, "version"); err == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("containerd exited at start (%v):\n%s", err, e.Log())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s within 30s:\n%s", e.Address, e.Log())
		}
	}
	// containerd's overlayfs plugin mounts a test overlay in its root at start and
	// reports "ok" only when that worked
	out, err := e.ctr(t, "plugins", "ls")
	if err != nil {
		t.Fatalf("ctr plugins ls: %v", err)
	}
	e.Snapshotter = "native"
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "io.containerd.snapshotter.v1" && f[1] == "overlayfs" && f[3] == "ok" {
			e.Snapshotter = "overlayfs"
		}
	}
	t.Logf("containerd started: %s, snapshotter %s", strings.TrimSpace(firstLine(e.mustVersion(t))), e.Snapshotter)
	return e
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func (e *containerdEnv) mustVersion(t *testing.T) string {
	out, err := exec.Command("containerd", "--version").Output()
	if err != nil {
		t.Fatalf("containerd --version: %v", err)
	}
	return string(out)
}

// Log returns containerd's log so far.
func (e *containerdEnv) Log() string {
	b, _ := os.ReadFile(e.logPath)
	return string(b)
}

// ctr runs `ctr --address SOCK args...` with this containerd's snapshotter and returns
// its stdout; the error carries the exit status and stderr.
func (e *containerdEnv) ctr(t testing.TB, args ...string) (string, error) {
	t.Helper()
	return e.ctrStdin(t, nil, args...)
}

// ctrStdin is ctr with stdin (for `images import -`).
func (e *containerdEnv) ctrStdin(t testing.TB, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", e.Address}, args...)...)
	cmd.Env = append(os.Environ(), "CONTAINERD_SNAPSHOTTER="+e.Snapshotter)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ctr %s: %w\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// ctrImage is one row of `ctr images ls`.
type ctrImage struct {
	Name, MediaType, Digest string
}

// images lists the images of namespace ns, sorted by name.
func (e *containerdEnv) images(t testing.TB, ns string) []ctrImage {
	t.Helper()
	out, err := e.ctr(t, "-n", ns, "images", "ls")
	if err != nil {
		t.Fatal(err)
	}
	var imgs []ctrImage
	sc := bufio.NewScanner(strings.NewReader(out))
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first || len(f) < 3 {
			continue // the header: REF TYPE DIGEST SIZE PLATFORMS LABELS
		}
		imgs = append(imgs, ctrImage{Name: f[0], MediaType: f[1], Digest: f[2]})
	}
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Name < imgs[j].Name })
	return imgs
}

// removeAllImages deletes every image of ns and collects the garbage synchronously
// (a lease deleted with --sync runs the garbage collector before it returns).
func (e *containerdEnv) removeAllImages(t testing.TB, ns string) {
	t.Helper()
	for _, img := range e.images(t, ns) {
		if _, err := e.ctr(t, "-n", ns, "images", "rm", "--sync", img.Name); err != nil {
			t.Fatal(err)
		}
	}
	e.collectGarbage(t, ns)
}

// collectGarbage runs containerd's garbage collector now.
func (e *containerdEnv) collectGarbage(t testing.TB, ns string) {
	t.Helper()
	id := fmt.Sprintf("petra-gc-%d", time.Now().UnixNano())
	if _, err := e.ctr(t, "-n", ns, "leases", "create", "--id", id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctr(t, "-n", ns, "leases", "rm", "--sync", id); err != nil {
		t.Fatal(err)
	}
}

// contentDigests lists the digests in ns's content store.
func (e *containerdEnv) contentDigests(t testing.TB, ns string) map[string]bool {
	t.Helper()
	out, err := e.ctr(t, "-n", ns, "content", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, f := range strings.Fields(out) {
		m[f] = true
	}
	return m
}

// unmountUnder unmounts whatever is still mounted below dir (snapshots of an
// interrupted unpack), deepest first, so the test's directory can be removed.
func unmountUnder(t testing.TB, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+string(filepath.Separator)) {
			points = append(points, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", p, err)
		}
	}
}
