// Package audit keeps petra-oci's audit log: a hash-chained, append-only file of JSON
// lines, one per state-changing command (pack, sign, export, import, verify, unpack,
// admission, and every refusal), signed at checkpoints so that a deleted, reordered,
// edited or appended entry and a cut tail are detected by Verify.
//
// Format (docs/audit.md, version "petra-audit/v1"): every line is one JSON object, an
// Entry, ending in "\n". Entry n+1 holds in "prev" the SHA-256 of the exact bytes of
// line n (without its "\n"); the first entry of a chain has seq 1 and no prev. A
// checkpoint is itself a line of the chain (event "checkpoint") whose signature, made
// with internal/signing (the signing of the bundle metadata: a Sigstore bundle v0.3 over
// a short text statement), covers the chain size and the hash of the line before it.
// The latest checkpoint line is also kept, byte for byte, in the sidecar LOG.head, so a
// log cut back to an earlier checkpoint is detected.
//
// Across the air gap the connected side's log travels as a segment (CopySegment); the
// far side continues the same chain from the segment's last line (Log.Continue), so
// Verify(segment, farLog) reads one trail across the gap.
//
// Appends take an exclusive flock(2) on the log file, write each line with one write(2)
// on an O_APPEND descriptor and fsync it, so two processes never interleave or fork the
// chain. Append does not re-verify the chain (that is Verify's job); it refuses a log
// whose last line is incomplete or not an entry.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
)

// Format is the value of every entry's "format" field.
const Format = "petra-audit/v1"

// MaxLineBytes bounds one line of the log (read and written). An entry is a few hundred
// bytes; a checkpoint with its signature about 1.5 KiB.
const MaxLineBytes = 64 << 10

// MaxReasonBytes bounds the reason of a refusal; a longer one is cut (at a UTF-8
// boundary) and marked.
const MaxReasonBytes = 8 << 10

// HeadSuffix names the sidecar holding the latest checkpoint line: LOG + HeadSuffix.
const HeadSuffix = ".head"

// Event is what an entry records.
type Event string

// Events. A command that fails records EventRefuse, naming the command, the reason
// and the exit code; the others record a success.
const (
	EventPack       Event = "pack"
	EventSign       Event = "sign"
	EventExport     Event = "export"
	EventImport     Event = "import"
	EventVerify     Event = "verify"
	EventUnpack     Event = "unpack"
	EventAdmission  Event = "admission"
	EventServe      Event = "serve"
	EventRefuse     Event = "refuse"
	EventCheckpoint Event = "checkpoint"
)

var knownEvents = map[Event]bool{
	EventPack: true, EventSign: true, EventExport: true, EventImport: true, EventVerify: true,
	EventUnpack: true, EventAdmission: true, EventServe: true, EventRefuse: true, EventCheckpoint: true,
}

// Sentinel errors.
var (
	// ErrVerify: the log does not verify (Report.Problems says where and why).
	ErrVerify = errors.New("audit log does not verify")
	// ErrWrite: an entry could not be appended (the log's last line is incomplete or
	// not an entry, the file cannot be opened, locked, written or synced).
	ErrWrite = errors.New("audit log cannot be appended to")
	// ErrInvalidEntry: an entry given to Append is not valid (unknown event, a refusal
	// without a reason, control characters in operator, host or tool).
	ErrInvalidEntry = errors.New("invalid audit entry")
)

// Bundle identifies the bundle an entry is about.
type Bundle struct {
	ID       string `json:"id,omitempty"`
	Sequence uint64 `json:"sequence,omitempty"`
	// MetadataDigest is the SHA-256 of the exact petra/metadata.json bytes.
	MetadataDigest digest.Digest `json:"metadataDigest,omitempty"`
	// Dir is the bundle directory (or archive) as the command was given it.
	Dir string `json:"dir,omitempty"`
	// Claimed is true when the fields were read from a bundle that did not verify (a
	// refusal, unpack --unsafe-skip-verify): what it claims to be, not what it is.
	Claimed bool `json:"claimed,omitempty"`
}

// Head is a position in a chain: the sequence number of a line and the SHA-256 of its
// exact bytes.
type Head struct {
	Seq  uint64        `json:"seq"`
	Hash digest.Digest `json:"hash"`
}

// Checkpoint is the signed head carried by a checkpoint entry: the chain holds Size
// lines before it, the last of which hashes to Head (so Size = seq-1, Head = prev).
type Checkpoint struct {
	Size  uint64        `json:"size"`
	Head  digest.Digest `json:"head"`
	KeyID string        `json:"keyID,omitempty"`
	// Signature is the Sigstore bundle (v0.3, message signature) over Statement().
	Signature json.RawMessage `json:"signature"`
}

// Entry is one line of the log.
type Entry struct {
	Format string        `json:"format"`
	Seq    uint64        `json:"seq"`
	Prev   digest.Digest `json:"prev,omitempty"`
	Time   time.Time     `json:"time"`
	Event  Event         `json:"event"`
	// Command is the command that refused (EventRefuse).
	Command string `json:"command,omitempty"`
	// Reason is why it refused (EventRefuse).
	Reason string `json:"reason,omitempty"`
	// ExitCode is the process exit code of a refusal.
	ExitCode int     `json:"exitCode,omitempty"`
	Bundle   *Bundle `json:"bundle,omitempty"`
	// Target is where the command wrote: pack's bundle directory, unpack's registry,
	// admission's output directory, export's archive.
	Target string `json:"target,omitempty"`
	// Unsafe lists the escape hatches the command was run with (--allow-replay, ...).
	Unsafe []string `json:"unsafe,omitempty"`
	// Segment is the head of the connected side's log that an export carried or an
	// import received.
	Segment    *Head       `json:"segment,omitempty"`
	Operator   string      `json:"operator"`
	Host       string      `json:"host"`
	Tool       string      `json:"tool"`
	Checkpoint *Checkpoint `json:"checkpoint,omitempty"`
}

// Head returns the position of the line b (an entry's exact bytes, without "\n").
func headOf(seq uint64, line []byte) Head { return Head{Seq: seq, Hash: digest.FromBytes(line)} }

// check validates an entry as read from or written to a log.
func (e *Entry) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidEntry, fmt.Sprintf(format, a...))
	}
	if e.Format != Format {
		return bad("format %q, want %q", e.Format, Format)
	}
	if e.Seq == 0 {
		return bad("seq 0")
	}
	if e.Seq == 1 && e.Prev != "" {
		return bad("entry 1 has a prev")
	}
	if e.Seq > 1 {
		if e.Prev == "" {
			return bad("entry %d has no prev", e.Seq)
		}
		if e.Prev.Algorithm() != digest.SHA256 || e.Prev.Validate() != nil {
			return bad("prev %q is not a sha256 digest", e.Prev)
		}
	}
	if e.Time.IsZero() {
		return bad("no time")
	}
	if !knownEvents[e.Event] {
		return bad("unknown event %q", e.Event)
	}
	if (e.Event == EventCheckpoint) != (e.Checkpoint != nil) {
		return bad("event %q with checkpoint %v", e.Event, e.Checkpoint != nil)
	}
	if e.Event == EventRefuse && (e.Command == "" || e.Reason == "") {
		return bad("a refusal names its command and reason")
	}
	for name, v := range map[string]string{"operator": e.Operator, "host": e.Host, "tool": e.Tool} {
		if v == "" || !printable(v) {
			return bad("%s %q: empty, or control characters", name, v)
		}
	}
	if e.Bundle != nil && e.Bundle.MetadataDigest != "" && e.Bundle.MetadataDigest.Validate() != nil {
		return bad("bundle metadata digest %q", e.Bundle.MetadataDigest)
	}
	if s := e.Segment; s != nil && (s.Seq == 0 || s.Hash.Validate() != nil) {
		return bad("segment head %d %q", s.Seq, s.Hash)
	}
	if c := e.Checkpoint; c != nil {
		if c.Size != e.Seq-1 || c.Head != e.Prev {
			return bad("checkpoint covers %d lines up to %s, but it is line %d after %s", c.Size, c.Head, e.Seq, e.Prev)
		}
		if len(c.Signature) == 0 {
			return bad("checkpoint without a signature")
		}
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// cut shortens s to at most n bytes at a UTF-8 boundary, saying so.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " … (cut)"
	i := n - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}
