package conformance

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petra-oci/petra-oci/internal/audit"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
)

// TestTransferAuditTrail: export carries the connected side's audit log as a segment
// beside the chunks; import verifies it before extracting anything and continues it in
// the far side's log, so `audit verify SEGMENT FARLOG` reads one signed trail across
// the gap: pack, export, import. A segment with an entry deleted refuses the import
// with nothing imported.
func TestTransferAuditTrail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	farPriv, farPub := attestKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, interopRepo, interopTag, fixture.Options{Seed: 62})
	work := t.TempDir()
	conn, far := filepath.Join(work, "conn.log"), filepath.Join(work, "far.log")
	segment := filepath.Join(work, "segment.log")

	dir, _ := packCLI(t, e, keys, img.Repo+":"+img.Tag, "--audit-log", conn)
	chunks := filepath.Join(work, "chunks")
	e.petra("export", "--split", "64K", "--parity", "1", "--key", keys.priv, "-o", chunks,
		"--audit-log", conn, "--audit-key", keys.priv, "--audit-segment", segment, dir)

	// --audit-segment with the audit log off is a usage error, before anything is written
	noLogOut, noLogSeg := filepath.Join(work, "nolog.tar"), filepath.Join(work, "nolog.segment")
	r := e.run(petraBin, "export", "-o", noLogOut, "--audit-log", "none", "--audit-segment", noLogSeg, dir)
	assertExit(t, "export --audit-segment --audit-log none", r, exitUsageCode, "--audit-log")
	for _, p := range []string{noLogOut, noLogSeg} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("a refused export left %s: %v", p, err)
		}
	}

	// a segment without the key that signed its checkpoints: a usage error unless the
	// import says --unsafe-unverified-audit-segment, which its audit entry records
	noKeyOut := filepath.Join(work, "nokey")
	r = e.run(petraBin, "import", "--key", keys.pub, "-o", noKeyOut, "--audit-log", filepath.Join(work, "nokey.log"),
		"--audit-segment", segment, chunks)
	assertExit(t, "import --audit-segment without --audit-segment-key", r, exitUsageCode, "--audit-segment-key")
	if _, err := os.Lstat(noKeyOut); !os.IsNotExist(err) {
		t.Errorf("a refused import left %s: %v", noKeyOut, err)
	}
	unsafeLog := filepath.Join(work, "unsafe.log")
	e.petra("import", "--key", keys.pub, "-o", noKeyOut, "--audit-log", unsafeLog,
		"--audit-segment", segment, "--unsafe-unverified-audit-segment", chunks)
	if b := readAll(t, unsafeLog); !strings.Contains(string(b), "--unsafe-unverified-audit-segment") {
		t.Errorf("the import's audit entry does not record --unsafe-unverified-audit-segment:\n%s", b)
	}

	// a segment with its first entry deleted: refused before the import writes anything
	bad := filepath.Join(work, "bad.log")
	lines := logLines(t, segment)
	writeFile(t, bad, []byte(strings.Join(lines[1:], "")))
	badOut := filepath.Join(work, "refused")
	r = e.run(petraBin, "import", "--key", keys.pub, "-o", badOut, "--audit-log", far, "--audit-key", farPriv,
		"--audit-segment", bad, "--audit-segment-key", keys.pub, chunks)
	assertExit(t, "import with a cut segment", r, exitAuditCode)
	if _, err := os.Stat(badOut); !os.IsNotExist(err) {
		t.Errorf("a refused import left %s: %v", badOut, err)
	}

	out := filepath.Join(work, "imported")
	e.petra("import", "--key", keys.pub, "-o", out, "--audit-log", far, "--audit-key", farPriv,
		"--audit-segment", segment, "--audit-segment-key", keys.pub, chunks)
	e.petra("verify", "--key", keys.pub, out)

	e.petra("audit", "verify", "--key", keys.pub, "--key", farPub, segment, far)
	var events []string
	for _, rec := range auditRecords(t, e, segment, far) {
		if rec.Entry != nil && rec.Entry.Event != audit.EventCheckpoint {
			events = append(events, string(rec.Entry.Event)+"@"+filepath.Base(rec.File))
		}
	}
	// the refused import is the far side's first entry; the import continues the chain
	want := []string{"pack@segment.log", "export@segment.log", "refuse@far.log", "import@far.log"}
	if strings.Join(events, " ") != strings.Join(want, " ") {
		t.Errorf("one trail across the gap: events %v, want %v", events, want)
	}
}
