package audit

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/signing"
)

type key struct {
	signer signing.Signer
	pub    []byte
}

func newKey(t testing.TB) key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := s.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return key{s, pub}
}

func openLog(t testing.TB, path string, s signing.Signer) *Log {
	t.Helper()
	l, err := Open(Options{Path: path, Signer: s, Operator: "alice", Host: "conn-1", Tool: "petra-oci/test"})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func appendN(t testing.TB, l *Log, n int, ev Event) {
	t.Helper()
	for i := 0; i < n; i++ {
		e := Entry{Event: ev, Bundle: &Bundle{ID: "0123456789abcdef0123456789abcdef", Sequence: uint64(i + 1), MetadataDigest: digest.FromString(strconv.Itoa(i))}}
		if ev == EventRefuse {
			e.Command, e.Reason, e.ExitCode = "unpack", "bundle replayed", 13
		}
		if _, err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
}

func readLines(t testing.TB, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(b), "\n")[:strings.Count(string(b), "\n")]
}

func writeLines(t testing.TB, path string, lines []string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustVerify(t testing.TB, paths []string, opts VerifyOptions) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), paths, opts)
	if err != nil {
		t.Fatalf("Verify(%v): %v\nproblems: %v", paths, err, rep)
	}
	return rep
}

// wantProblem asserts that verification fails with a problem of kind about entry seq.
func wantProblem(t testing.TB, paths []string, opts VerifyOptions, kind string, seq uint64) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), paths, opts)
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("Verify: err %v, want ErrVerify (report %+v)", err, rep)
	}
	for _, p := range rep.Problems {
		if p.Kind == kind && p.Seq == seq && strings.Contains(p.Message, p.File) {
			return rep
		}
	}
	t.Fatalf("no %q problem naming entry %d; problems: %+v", kind, seq, rep.Problems)
	return nil
}

// signedLog writes: entries 1-6 unsigned, checkpoint 7, entries 8-10 unsigned,
// checkpoint 11 (and the head file).
func signedLog(t testing.TB, k key) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, nil)
	appendN(t, l, 6, EventPack)
	if _, err := l.Checkpoint(context.Background(), k.signer); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 2, EventVerify)
	appendN(t, l, 1, EventRefuse)
	if _, err := l.Checkpoint(context.Background(), k.signer); err != nil {
		t.Fatal(err)
	}
	if n := len(readLines(t, path)); n != 11 {
		t.Fatalf("%d lines, want 11", n)
	}
	return path
}

func TestCleanLogVerifies(t *testing.T) {
	k := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, k.signer)
	appendN(t, l, 3, EventPack)
	lines := readLines(t, path)
	if len(lines) != 6 {
		t.Fatalf("%d lines, want an entry and a checkpoint per append", len(lines))
	}
	// the chain: line n+1's prev is the SHA-256 of line n's exact bytes
	for i := 1; i < len(lines); i++ {
		want := digest.FromString(strings.TrimSuffix(lines[i-1], "\n"))
		if !strings.Contains(lines[i], `"prev":"`+want.String()+`"`) || !strings.Contains(lines[i], fmt.Sprintf(`"seq":%d,`, i+1)) {
			t.Fatalf("line %d does not chain to line %d (%s): %s", i+1, i, want, lines[i])
		}
	}
	head, err := os.ReadFile(path + HeadSuffix)
	if err != nil || string(head) != lines[5] {
		t.Fatalf("head file %q (%v), want the last checkpoint line %q", head, err, lines[5])
	}
	rep := mustVerify(t, []string{path}, VerifyOptions{Keys: [][]byte{k.pub}})
	if !rep.Signed || !rep.Head.Matches || len(rep.Checkpoints) != 3 || rep.Entries != 6 {
		t.Fatalf("report %+v", rep)
	}
	for _, c := range rep.Checkpoints {
		if !c.Verified || c.KeyID != k.signer.KeyID() {
			t.Fatalf("checkpoint %+v not verified by %s", c, k.signer.KeyID())
		}
	}
	// without keys: the chain verifies, signatures are said unchecked
	rep = mustVerify(t, []string{path}, VerifyOptions{})
	if rep.Signed || rep.SignaturesChecked || !strings.Contains(strings.Join(rep.Notes, "\n"), "not checked") {
		t.Fatalf("report without keys %+v", rep)
	}
	// another key refuses every checkpoint
	other := newKey(t)
	wantProblem(t, []string{path}, VerifyOptions{Keys: [][]byte{other.pub}}, ProblemCheckpoint, 2)
}

func TestUnsignedLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	appendN(t, openLog(t, path, nil), 4, EventUnpack)
	rep := mustVerify(t, []string{path}, VerifyOptions{})
	if rep.Signed || !strings.Contains(strings.Join(rep.Notes, "\n"), "UNSIGNED") {
		t.Fatalf("unsigned log: %+v", rep)
	}
	if _, err := os.Stat(path + HeadSuffix); !os.IsNotExist(err) {
		t.Fatalf("an unsigned log has a head file: %v", err)
	}
	rep, err := Verify(context.Background(), []string{path}, VerifyOptions{Keys: [][]byte{newKey(t).pub}})
	if !errors.Is(err, ErrVerify) || rep.Problems[0].Kind != ProblemUnsigned {
		t.Fatalf("with a key an unsigned log must fail: %v %+v", err, rep)
	}
	// the chain is still checked without a checkpoint
	lines := readLines(t, path)
	writeLines(t, path, append(lines[:1], lines[2:]...))
	wantProblem(t, []string{path}, VerifyOptions{}, ProblemDeleted, 2)
}

func TestTamperedLogs(t *testing.T) {
	k := newKey(t)
	keys := VerifyOptions{Keys: [][]byte{k.pub}}
	edit := func(line, from, to string) string {
		if !strings.Contains(line, from) {
			panic("no " + from + " in " + line)
		}
		return strings.Replace(line, from, to, 1)
	}
	for _, c := range []struct {
		name   string
		tamper func(lines []string) []string
		opts   VerifyOptions
		kind   string
		seq    uint64
	}{
		{"delete entry 3", func(l []string) []string { return append(l[:2:2], l[3:]...) }, keys, ProblemDeleted, 3},
		{"delete entry 3 (no keys)", func(l []string) []string { return append(l[:2:2], l[3:]...) }, VerifyOptions{}, ProblemDeleted, 3},
		{"delete entries 3-4", func(l []string) []string { return append(l[:2:2], l[4:]...) }, keys, ProblemDeleted, 3},
		{"delete entry 1", func(l []string) []string { return l[1:] }, keys, ProblemDetached, 2},
		{"swap entries 3 and 4", func(l []string) []string { l[2], l[3] = l[3], l[2]; return l }, keys, ProblemReordered, 4},
		{"swap entries 9 and 10 after a checkpoint", func(l []string) []string { l[8], l[9] = l[9], l[8]; return l }, VerifyOptions{}, ProblemReordered, 10},
		{"edit entry 3's bundle sequence", func(l []string) []string { l[2] = edit(l[2], `"sequence":3`, `"sequence":4`); return l }, keys, ProblemEdited, 3},
		{"edit entry 10's reason (no keys)", func(l []string) []string { l[9] = edit(l[9], "replayed", "accepted"); return l }, VerifyOptions{}, ProblemEdited, 10},
		{"edit entry 5 into bad JSON", func(l []string) []string { l[4] = edit(l[4], `{"format"`, `{format"`); return l }, keys, ProblemMalformed, 0},
		{"duplicate entry 4", func(l []string) []string { return append(l[:4:4], append([]string{l[3]}, l[4:]...)...) }, keys, ProblemDuplicate, 4},
		{"edit the last checkpoint's time", func(l []string) []string { l[10] = edit(l[10], `"time":"20`, `"time":"19`); return l }, keys, ProblemCheckpoint, 11},
		{"cut the tail: last entry and checkpoint", func(l []string) []string { return l[:9] }, keys, ProblemCut, 10},
		{"cut the tail back to the checkpoint at 7", func(l []string) []string { return l[:7] }, keys, ProblemCut, 8},
		{"cut the tail back to the checkpoint at 7 (no keys)", func(l []string) []string { return l[:7] }, VerifyOptions{}, ProblemCut, 8},
		{"cut mid-line", func(l []string) []string { l[10] = l[10][:40]; return l }, keys, ProblemCut, 11},
		{"entry appended after the checkpoint", func(l []string) []string {
			forged := edit(l[9], `"seq":10,`, `"seq":12,`)
			forged = edit(forged, digest.FromString(strings.TrimSuffix(l[8], "\n")).String(), digest.FromString(strings.TrimSuffix(l[10], "\n")).String())
			return append(l, forged)
		}, keys, ProblemUnsigned, 12},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := signedLog(t, k)
			writeLines(t, path, c.tamper(readLines(t, path)))
			wantProblem(t, []string{path}, c.opts, c.kind, c.seq)
		})
	}
	t.Run("head file deleted", func(t *testing.T) {
		path := signedLog(t, k)
		if err := os.Remove(path + HeadSuffix); err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(context.Background(), []string{path}, keys)
		if !errors.Is(err, ErrVerify) || rep.Problems[0].Kind != ProblemHead {
			t.Fatalf("missing head: %v %+v", err, rep)
		}
	})
	t.Run("chain rewritten after an edit", func(t *testing.T) {
		// the attacker edits entry 3 and recomputes every later prev: the chain holds,
		// the checkpoints' signatures and the head file do not
		path := signedLog(t, k)
		l := readLines(t, path)
		l[2] = edit(l[2], `"sequence":3`, `"sequence":9`)
		for i := 3; i < len(l); i++ {
			old := digest.FromString(strings.TrimSuffix(readLines(t, path)[i-1], "\n")).String()
			l[i] = strings.ReplaceAll(l[i], old, digest.FromString(strings.TrimSuffix(l[i-1], "\n")).String())
		}
		writeLines(t, path, l)
		rep := wantProblem(t, []string{path}, keys, ProblemCheckpoint, 7)
		for _, p := range rep.Problems {
			if p.Kind == ProblemDeleted || p.Kind == ProblemEdited && p.Seq != 11 {
				t.Fatalf("the rewritten chain itself should hold: %+v", p)
			}
		}
		wantProblem(t, []string{path}, VerifyOptions{}, ProblemEdited, 11) // the head file differs
	})
	t.Run("untampered", func(t *testing.T) {
		path := signedLog(t, k)
		rep := mustVerify(t, []string{path}, keys)
		if !rep.Signed {
			t.Fatalf("clean signed log: %+v", rep)
		}
	})
}

func TestAppendAfterCheckpointIsReported(t *testing.T) {
	k := newKey(t)
	path := signedLog(t, k)
	a, err := openLog(t, path, nil).Append(context.Background(), Entry{Event: EventVerify})
	if err != nil {
		t.Fatal(err)
	}
	if !a.AfterCheckpoint || a.Entry.Seq != 12 {
		t.Fatalf("append %+v, want entry 12 after a checkpoint", a)
	}
	wantProblem(t, []string{path}, VerifyOptions{Keys: [][]byte{k.pub}}, ProblemUnsigned, 12)
	rep := mustVerify(t, []string{path}, VerifyOptions{})
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "entry 12 appended after the last checkpoint") {
		t.Fatalf("notes %v", rep.Notes)
	}
	// a checkpoint covers it again
	if _, err := openLog(t, path, nil).Checkpoint(context.Background(), k.signer); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, []string{path}, VerifyOptions{Keys: [][]byte{k.pub}})
}

func TestAppendRefusesIncompleteTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := openLog(t, path, nil)
	appendN(t, l, 2, EventPack)
	lines := readLines(t, path)
	writeLines(t, path, []string{lines[0], lines[1][:20]})
	if _, err := l.Append(context.Background(), Entry{Event: EventPack}); !errors.Is(err, ErrWrite) || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("append after a partial line: %v", err)
	}
	if _, err := l.Append(context.Background(), Entry{Event: EventRefuse}); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("refusal without a reason: %v", err)
	}
}

// TestAcrossTheGap: the connected side's log travels as a segment; the far side
// continues its chain; one trail verifies across both, signed by each side's key, and
// the connected side keeps appending after the export.
func TestAcrossTheGap(t *testing.T) {
	ctx := context.Background()
	connKey, farKey := newKey(t), newKey(t)
	keys := VerifyOptions{Keys: [][]byte{connKey.pub, farKey.pub}}
	dir := t.TempDir()
	connPath, farPath := filepath.Join(dir, "conn.log"), filepath.Join(dir, "far.log")
	conn := openLog(t, connPath, connKey.signer)
	appendN(t, conn, 2, EventPack)
	if _, err := conn.Append(ctx, Entry{Event: EventExport, Target: "bundle.tar"}); err != nil {
		t.Fatal(err)
	}
	copySeg := func(name string) (string, *Segment) {
		var buf bytes.Buffer
		seg, err := CopySegment(ctx, connPath, &buf)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if seg.Digest != digest.FromBytes(buf.Bytes()) || seg.Bytes != int64(buf.Len()) || seg.Entries != 6 && name == "seg1.log" {
			t.Fatalf("segment %+v", seg)
		}
		return p, seg
	}
	seg1Path, seg1 := copySeg("seg1.log")
	if seg1.Head.Seq != 6 {
		t.Fatalf("segment head %+v, want the checkpoint after the export (6)", seg1.Head)
	}
	// far side: verify the segment with the connected key, then continue from it
	_, head, err := VerifySegment(ctx, seg1Path, [][]byte{connKey.pub})
	if err != nil || *head != seg1.Head {
		t.Fatalf("VerifySegment: %v %+v", err, head)
	}
	far, err := Open(Options{Path: farPath, Signer: farKey.signer, Operator: "bob", Host: "far-1", Tool: "petra-oci/test"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := far.Continue(ctx, Entry{Bundle: &Bundle{ID: "0123456789abcdef0123456789abcdef", Sequence: 1}}, *head)
	if err != nil {
		t.Fatal(err)
	}
	if a.Entry.Seq != 7 {
		t.Fatalf("far side's first entry is %d, want 7 (after the segment's 6)", a.Entry.Seq)
	}
	appendN(t, far, 2, EventUnpack)
	rep := mustVerify(t, []string{seg1Path, farPath}, keys)
	if !rep.Signed || rep.Files[1].ContinuesFrom == nil || rep.Files[1].ContinuesFrom.Seq != 6 {
		t.Fatalf("across the gap: %+v", rep.Files)
	}
	// the far side's log alone continues a chain not given
	wantProblem(t, []string{farPath}, keys, ProblemDetached, 7)
	// the far side's key alone does not sign the connected side's entries
	wantProblem(t, []string{seg1Path, farPath}, VerifyOptions{Keys: [][]byte{farKey.pub}}, ProblemCheckpoint, 2)

	// the connected side goes on; its live log still carries the trail
	appendN(t, conn, 1, EventPack)
	if _, err := conn.Append(ctx, Entry{Event: EventExport}); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, []string{connPath, farPath}, keys)
	seg2Path, seg2 := copySeg("seg2.log")
	if _, err := far.Continue(ctx, Entry{}, seg2.Head); err != nil {
		t.Fatal(err)
	}
	appendN(t, far, 1, EventUnpack)
	rep = mustVerify(t, []string{seg2Path, farPath}, keys)
	if rep.Files[1].ContinuesFrom.Seq != 6 {
		t.Fatalf("far log continues %+v", rep.Files[1].ContinuesFrom)
	}
	// the older segment lacks what the second import received
	wantProblem(t, []string{seg1Path, farPath}, keys, ProblemCut, 7)
	// tampered segments are named
	l := readLines(t, seg2Path)
	bad := filepath.Join(dir, "seg2-edited.log")
	writeLines(t, bad, append(append([]string{}, l[:2]...), append([]string{strings.Replace(l[2], `"sequence":2`, `"sequence":5`, 1)}, l[3:]...)...))
	wantProblem(t, []string{bad, farPath}, keys, ProblemEdited, 3)
	cutSeg := filepath.Join(dir, "seg2-cut.log")
	writeLines(t, cutSeg, l[:8])
	wantProblem(t, []string{cutSeg, farPath}, keys, ProblemCut, 9)
	// the far side's log, edited where it joins the segment
	fl := readLines(t, farPath)
	copyFile(t, farPath, farPath+".orig")
	writeLines(t, farPath, append([]string{strings.Replace(fl[0], `"sequence":1`, `"sequence":2`, 1)}, fl[1:]...))
	wantProblem(t, []string{seg2Path, farPath}, keys, ProblemEdited, 7)
}

// TestConcurrentAppenders: appenders in several processes and goroutines never
// interleave or fork the chain.
func TestConcurrentAppenders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	const procs, perProc, goroutines = 4, 40, 4
	var cmds []*exec.Cmd
	for i := 0; i < procs; i++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "AUDIT_HELPER_LOG="+path, "AUDIT_HELPER_N="+strconv.Itoa(perProc))
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("helper %d output:\n%s", i, out.String())
			}
		})
	}
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := Open(Options{Path: path, Operator: "g" + strconv.Itoa(g), Host: "h", Tool: "t"})
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < perProc; i++ {
				if _, err := l.Append(context.Background(), Entry{Event: EventVerify}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v", i, err)
		}
	}
	rep := mustVerify(t, []string{path}, VerifyOptions{})
	if want := (procs + goroutines) * perProc; rep.Entries != want || rep.Files[0].Last.Seq != uint64(want) {
		t.Fatalf("%d entries, last %d, want %d", rep.Entries, rep.Files[0].Last.Seq, want)
	}
}

// TestMain runs as an appender helper process when AUDIT_HELPER_LOG is set (for
// TestConcurrentAppenders): it appends AUDIT_HELPER_N entries and exits.
func TestMain(m *testing.M) {
	if path := os.Getenv("AUDIT_HELPER_LOG"); path != "" {
		n, _ := strconv.Atoi(os.Getenv("AUDIT_HELPER_N"))
		l, err := Open(Options{Path: path, Operator: "p" + strconv.Itoa(os.Getpid()), Host: "h", Tool: "t"})
		for i := 0; err == nil && i < n; i++ {
			_, err = l.Append(context.Background(), Entry{Event: EventPack})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestCheckpointStatementIsWhatIsSigned(t *testing.T) {
	k := newKey(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	now := time.Date(2026, 5, 1, 10, 0, 0, 123456000, time.UTC)
	l, err := Open(Options{Path: path, Signer: k.signer, Operator: "alice", Host: "conn-1", Tool: "petra-oci/v1", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.Append(context.Background(), Entry{Event: EventSign})
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	cp, err := parseLine([]byte(strings.TrimSuffix(lines[1], "\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := "petra-oci audit checkpoint v1\nsize 1\nhead " + a.Entry.Hash.String() + "\ntime 2026-05-01T10:00:00.123456Z\noperator alice\nhost conn-1\ntool petra-oci/v1\n"
	if got := string(cp.Statement()); got != want {
		t.Fatalf("statement:\n%s\nwant:\n%s", got, want)
	}
	if _, err := signing.VerifyBlob(context.Background(), cp.Checkpoint.Signature, strings.NewReader(want), signing.VerifyOptions{PublicKey: k.pub}); err != nil {
		t.Fatalf("the signature does not cover the documented statement: %v", err)
	}
	if _, err := Open(Options{Path: path, Operator: "eve\nhost x"}); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("an operator with a newline: %v", err)
	}
}

// TestCosignVerifiesCheckpoint: the documented check of a checkpoint with the real
// cosign (v2.6.5) verify-blob: the statement rebuilt from the line verifies with the
// signer's public key, and not once a byte of it changes.
func TestCosignVerifiesCheckpoint(t *testing.T) {
	cosign := registrytest.ToolPath(t, "cosign")
	k := newKey(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	appendN(t, openLog(t, path, k.signer), 1, EventPack)
	cp, err := parseLine([]byte(strings.TrimSuffix(readLines(t, path)[1], "\n")))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pub := write("audit.pub", k.pub)
	sig := write("cp.sigstore.json", cp.Checkpoint.Signature)
	stmt := write("statement", cp.Statement())
	run := func(args ...string) (string, error) {
		cmd := exec.Command(cosign, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+dir, "TUF_ROOT="+filepath.Join(dir, ".sigstore"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	root := filepath.Join(dir, "empty-root.json")
	if out, err := run("trusted-root", "create", "--out", root); err != nil {
		t.Fatalf("cosign trusted-root create: %v\n%s", err, out)
	}
	verify := func(file string) (string, error) {
		return run("verify-blob", "--key", pub, "--bundle", sig, "--new-bundle-format", "--insecure-ignore-tlog", "--trusted-root", root, file)
	}
	if out, err := verify(stmt); err != nil {
		t.Fatalf("cosign verify-blob refused the checkpoint: %v\n%s", err, out)
	}
	tampered := write("tampered", bytes.Replace(cp.Statement(), []byte("size 1"), []byte("size 2"), 1))
	if out, err := verify(tampered); err == nil {
		t.Fatalf("cosign verify-blob accepted a changed statement:\n%s", out)
	}
}

func BenchmarkAppend(b *testing.B) {
	k := newKey(b)
	for _, c := range []struct {
		name   string
		signer signing.Signer
	}{{"unsigned", nil}, {"with-checkpoint", k.signer}} {
		b.Run(c.name, func(b *testing.B) {
			l := openLog(b, filepath.Join(b.TempDir(), "audit.log"), c.signer)
			for i := 0; i < b.N; i++ {
				if _, err := l.Append(context.Background(), Entry{Event: EventVerify, Bundle: &Bundle{ID: "0123456789abcdef0123456789abcdef", Sequence: 1}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	k := newKey(b)
	path := filepath.Join(b.TempDir(), "audit.log")
	l := openLog(b, path, nil)
	appendN(b, l, 2000, EventPack)
	if _, err := l.Checkpoint(context.Background(), k.signer); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Verify(context.Background(), []string{path}, VerifyOptions{Keys: [][]byte{k.pub}}); err != nil {
			b.Fatal(err)
		}
	}
}
