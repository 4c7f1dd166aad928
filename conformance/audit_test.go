package conformance

// The audit log suite (issue 12, item 3): the real CLI appends to the log from pack,
// verify, unpack and their refusals, on both sides of the gap; `audit verify` reads one
// trail across the connected side's segment and the far side's log, signed by each
// side's key, and names the entry of every tampered copy.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/internal/audit"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/signing"
)

// auditRecords returns the entries of logs as `petra-oci audit show --output json` lists them.
func auditRecords(t *testing.T, e *env, logs ...string) []audit.Record {
	t.Helper()
	var res struct {
		Records []audit.Record `json:"records"`
	}
	decodeJSON(t, e.petra(append([]string{"audit", "show", "--output", "json"}, logs...)...), &res)
	return res.Records
}

func copyLog(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", audit.HeadSuffix} {
		b, err := os.ReadFile(from + suffix)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, to+suffix, b)
	}
}

func logLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := strings.SplitAfter(string(b), "\n")
	return l[:len(l)-1] // every line with its "\n"
}

func TestAuditTrail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)         // the connected side: bundle key, signs its checkpoints
	farPriv, farPub := attestKeys(t) // the far side: import records and its checkpoints
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, interopRepo, interopTag, fixture.Options{Seed: 61})
	logs := t.TempDir()
	conn := filepath.Join(logs, "conn", "audit.log")
	segment := filepath.Join(logs, "segment.log")
	far := filepath.Join(logs, "far", "audit.log")
	bothKeys := []string{"--key", keys.pub, "--key", farPub}

	// connected side: pack (its checkpoint signed with the bundle key, --key), verify,
	// and a refused verify (another key: exit 11)
	dir, packed := packCLI(t, e, keys, img.Repo+":"+img.Tag, "--audit-log", conn)
	e.petra("verify", "--key", keys.pub, "--audit-log", conn, "--audit-key", keys.priv, dir)
	r := e.run(petraBin, "verify", "--key", farPub, "--audit-log", conn, "--audit-key", keys.priv, dir)
	assertExit(t, "verify with another key", r, exitSignatureCode)
	out := e.petra("audit", "verify", conn, "--key", keys.pub)
	if !strings.HasPrefix(out.stdout, "OK, signed: 6 entries") {
		t.Fatalf("the connected side's log: %s", out)
	}

	// across the gap: the segment is the connected side's log as export carries it
	// (audit.CopySegment); the far side continues its chain, then unpacks twice (the
	// second is a replay: exit 13)
	var seg []byte
	seg, err := os.ReadFile(conn)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, segment, seg)
	e.petra("audit", "continue", far, "--from", segment, "--key", keys.pub, "--audit-key", farPriv)
	dst := registrytest.Start(t, registrytest.Olareg)
	to := dst.Host + "/mirror"
	e.petra(unpackArgs(keys, to, dir, "--attest-key", farPriv, "--audit-log", far)...)
	r = e.run(petraBin, unpackArgs(keys, to, dir, "--attest-key", farPriv, "--audit-log", far)...)
	assertExit(t, "replayed unpack", r, exitReplayCode)

	// one trail, both sides' keys
	var rep audit.Report
	decodeJSON(t, e.petra(append([]string{"audit", "verify", "--output", "json", segment, far}, bothKeys...)...), &rep)
	if !rep.Signed || !rep.OK() || len(rep.Files) != 2 || rep.Files[1].ContinuesFrom == nil || rep.Files[1].ContinuesFrom.Seq != 6 ||
		rep.Head == nil || !rep.Head.Matches || rep.Entries != 12 {
		t.Fatalf("the trail across the gap: %+v", rep)
	}
	text := e.petra(append([]string{"audit", "verify", segment, far}, bothKeys...)...)
	if !strings.HasPrefix(text.stdout, "OK, signed: 12 entries in 2 files") || !strings.Contains(text.stdout, "continues "+segment+" after entry 6") {
		t.Fatalf("audit verify: %s", text)
	}
	// the far side's key alone does not sign the connected side's entries
	r = e.run(petraBin, "audit", "verify", segment, far, "--key", farPub)
	assertExit(t, "the far key alone", r, exitAuditCode, "checkpoint at entry 2")

	// what the trail says
	recs := auditRecords(t, e, segment, far)
	var events []string
	for _, rc := range recs {
		events = append(events, string(rc.Entry.Event))
	}
	want := "pack checkpoint verify checkpoint refuse checkpoint import checkpoint unpack checkpoint refuse checkpoint"
	if got := strings.Join(events, " "); got != want {
		t.Fatalf("events %q, want %q", got, want)
	}
	meta, err := layout.ReadMetadataBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantBundle := audit.Bundle{ID: packed.BundleID, Sequence: packed.Sequence, MetadataDigest: digest.FromBytes(meta), Dir: dir}
	for i, rc := range recs {
		en := rc.Entry
		if en.Seq != uint64(i+1) || en.Operator == "" || en.Host == "" || !strings.HasPrefix(en.Tool, "petra-oci/") || en.Time.IsZero() {
			t.Errorf("entry %d: %+v", i+1, en)
		}
		switch en.Event {
		case audit.EventPack, audit.EventVerify, audit.EventUnpack:
			if en.Bundle == nil || *en.Bundle != wantBundle {
				t.Errorf("entry %d (%s) names bundle %+v, want %+v", en.Seq, en.Event, en.Bundle, wantBundle)
			}
		case audit.EventCheckpoint:
			wantKey := farPub
			if en.Seq <= 6 {
				wantKey = keys.pub
			}
			if rep.Checkpoints[(en.Seq/2)-1].KeyID != keyID(t, wantKey) {
				t.Errorf("checkpoint %d verified with %s, want the key %s", en.Seq, rep.Checkpoints[(en.Seq/2)-1].KeyID, wantKey)
			}
		}
	}
	if en := recs[8].Entry; en.Target != to || len(en.Unsafe) != 1 || en.Unsafe[0] != "--plain-http" {
		t.Errorf("unpack entry target %q, unsafe %v", en.Target, en.Unsafe)
	}
	if en := recs[4].Entry; en.Command != "verify" || en.ExitCode != exitSignatureCode || !strings.Contains(en.Reason, "signature") || en.Bundle == nil || !en.Bundle.Claimed {
		t.Errorf("refused verify: %+v", en)
	}
	if en := recs[10].Entry; en.Command != "unpack" || en.ExitCode != exitReplayCode || !strings.Contains(en.Reason, "replayed") || en.Bundle == nil || en.Bundle.ID != packed.BundleID {
		t.Errorf("refused unpack: %+v", en)
	}
	if en := recs[6].Entry; en.Event != audit.EventImport || en.Segment == nil || en.Segment.Seq != 6 || en.Segment.Hash != digest.FromString(strings.TrimSuffix(logLines(t, segment)[5], "\n")) {
		t.Errorf("import entry %+v, want the head of the segment", en)
	}
	show := e.petra("audit", "show", segment, far)
	if !strings.Contains(show.stdout, "unpack exit 13") || !strings.Contains(show.stdout, "-> "+to) || !strings.Contains(show.stderr, "OK, chain intact") {
		t.Errorf("audit show: %s", show)
	}

	// tampered copies of the far side's log are rejected, naming the entry
	for _, c := range []struct {
		name   string
		tamper func(e *env, path string)
		names  []string // in the report on stdout; the last also in the error on stderr
	}{
		{"deleted entry", func(e *env, p string) {
			l := logLines(t, p)
			writeFile(t, p, []byte(strings.Join(append(l[:2:2], l[3:]...), "")))
		}, []string{"[deleted]", "entry 9"}},
		{"swapped entries", func(e *env, p string) {
			l := logLines(t, p)
			l[2], l[3] = l[3], l[2]
			writeFile(t, p, []byte(strings.Join(l, "")))
		}, []string{"[reordered]", "entry 10"}},
		{"edited entry", func(e *env, p string) {
			l := logLines(t, p)
			l[2] = strings.Replace(l[2], `"target":"`+to, `"target":"`+src.Host+"/mirror", 1)
			writeFile(t, p, []byte(strings.Join(l, "")))
		}, []string{"[edited]", "entry 9"}},
		{"cut tail", func(e *env, p string) { l := logLines(t, p); writeFile(t, p, []byte(strings.Join(l[:4], ""))) }, []string{"[cut]", "entries 11-12"}},
		{"appended after the checkpoint", func(e *env, p string) {
			// a real command without a checkpoint key
			r := e.petra("verify", "--key", keys.pub, "--allow-replay", "--audit-log", p, dir)
			if !strings.Contains(r.stderr, "appended after a signed checkpoint") {
				e.t.Errorf("no warning for an unsigned append: %s", r)
			}
		}, []string{"[unsigned]", "entry 13"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			se := *e
			se.t = t
			p := filepath.Join(t.TempDir(), "far.log")
			copyLog(t, far, p)
			se.petra(append([]string{"audit", "verify", segment, p}, bothKeys...)...) // the copy verifies
			c.tamper(&se, p)
			r := se.run(petraBin, append([]string{"audit", "verify", segment, p}, bothKeys...)...)
			assertExit(t, c.name, r, exitAuditCode, c.names[len(c.names)-1])
			for _, n := range c.names {
				if !strings.Contains(r.stdout, n) {
					t.Errorf("audit verify does not name %q: %s", n, r)
				}
			}
		})
	}
	t.Run("edited segment", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "segment.log")
		l := logLines(t, segment)
		l[0] = strings.Replace(l[0], `"event":"pack"`, `"event":"sign"`, 1)
		writeFile(t, p, []byte(strings.Join(l, "")))
		se := *e
		se.t = t
		r := se.run(petraBin, append([]string{"audit", "verify", p, far}, bothKeys...)...)
		assertExit(t, "edited segment", r, exitAuditCode, "entry 1 (line 1) was edited")
	})

	// sign: an entry naming the bundle it signed (not claimed), signed with --key
	signLog := filepath.Join(logs, "sign.log")
	e.petra("sign", "--key", keys.priv, "--audit-log", signLog, dir)
	if sr := auditRecords(t, e, signLog); len(sr) != 2 || sr[0].Entry.Event != audit.EventSign || sr[0].Entry.Bundle == nil ||
		sr[0].Entry.Bundle.ID != packed.BundleID || sr[0].Entry.Bundle.Claimed || sr[1].Entry.Event != audit.EventCheckpoint {
		t.Errorf("sign's entries: %+v", sr)
	}
	e.petra("audit", "verify", signLog, "--key", keys.pub)

	// the default log, and --audit-log none
	e.petra("verify", "--key", keys.pub, "--allow-replay", dir)
	def := filepath.Join(e.home, ".local", "state", "petra-oci", "audit.log")
	if l := logLines(t, def); len(l) != 1 || !strings.Contains(l[0], `"event":"verify"`) {
		t.Fatalf("default log %s: %q", def, l)
	}
	e.petra("verify", "--key", keys.pub, "--allow-replay", "--audit-log", "none", dir)
	if l := logLines(t, def); len(l) != 1 {
		t.Fatalf("--audit-log none appended to %s: %q", def, l)
	}
}

func keyID(t *testing.T, pubPath string) string {
	t.Helper()
	b, err := os.ReadFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	_, id, err := signing.PublicKeyVerifier(b)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
