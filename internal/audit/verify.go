package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// VerifyOptions configure Verify. The zero value checks the chain and the head file but
// no signature, and reports an unsigned log as such.
type VerifyOptions struct {
	// Keys are PEM public keys (cosign.pub). When set, every checkpoint must verify with
	// one of them and every entry of every file must be covered by a verified
	// checkpoint: an unsigned log, or entries appended after the last checkpoint, are
	// problems. Empty: signatures are not checked (Report.SignaturesChecked false).
	Keys [][]byte
	// HeadPath is the head file of the last log given; empty means LAST + HeadSuffix.
	HeadPath string
	// UnsafeSkipHead does not compare the last log with its head file: a log cut back
	// to an earlier checkpoint then verifies. For a segment verified on its own (the far
	// side's import entry records its head).
	UnsafeSkipHead bool
	// KeepEntries keeps every entry in Report.Records (for rendering).
	KeepEntries bool
}

// Problem kinds.
const (
	ProblemMalformed  = "malformed"  // a line that is not a valid v1 entry
	ProblemIncomplete = "incomplete" // the file ends in a line without "\n"
	ProblemDeleted    = "deleted"    // entries missing from the chain
	ProblemReordered  = "reordered"  // entries out of order
	ProblemDuplicate  = "duplicate"  // an entry seen twice
	ProblemEdited     = "edited"     // a line that does not hash to the next one's prev
	ProblemDetached   = "detached"   // a file continuing a chain whose earlier part is not given
	ProblemFork       = "fork"       // two copies of one chain that differ
	ProblemCheckpoint = "checkpoint" // a checkpoint whose signature does not verify
	ProblemUnsigned   = "unsigned"   // entries no verified checkpoint covers (with keys)
	ProblemCut        = "cut"        // a tail cut: the head file or a later import names entries the file lacks
	ProblemHead       = "head"       // the head file is missing, malformed or not in the log
)

// Problem is one thing wrong with the logs, naming the entry.
type Problem struct {
	Kind    string `json:"kind"`
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Message }

// FileReport describes one log file.
type FileReport struct {
	Path  string `json:"path"`
	Lines int    `json:"lines"`
	First *Head  `json:"first,omitempty"`
	Last  *Head  `json:"last,omitempty"`
	// ContinuesFrom is the entry of an earlier file this one continues (the far side's
	// log after the connected side's segment).
	ContinuesFrom *Link `json:"continuesFrom,omitempty"`
	Checkpoints   int   `json:"checkpoints"`
	// SignedThrough is the last entry a checkpoint covers (a verified one when keys
	// were given); 0: none.
	SignedThrough uint64 `json:"signedThrough"`
}

// Link names an entry of a file.
type Link struct {
	File string `json:"file"`
	Seq  uint64 `json:"seq"`
}

// CheckpointReport describes one checkpoint.
type CheckpointReport struct {
	File     string        `json:"file"`
	Line     int           `json:"line"`
	Seq      uint64        `json:"seq"`
	Size     uint64        `json:"size"`
	Head     digest.Digest `json:"head"`
	Time     time.Time     `json:"time"`
	Operator string        `json:"operator"`
	Host     string        `json:"host"`
	// KeyID is the key that verified it (keys given), else the key id it claims.
	KeyID    string `json:"keyID"`
	Verified bool   `json:"verified"`
}

// HeadReport describes the head file of the last log.
type HeadReport struct {
	Path    string `json:"path"`
	Seq     uint64 `json:"seq,omitempty"`
	Present bool   `json:"present"`
	Matches bool   `json:"matches"`
}

// Record is one line as read (Report.Records, with KeepEntries).
type Record struct {
	File  string        `json:"file"`
	Line  int           `json:"line"`
	Hash  digest.Digest `json:"hash"`
	Entry *Entry        `json:"entry,omitempty"` // nil: a malformed line
}

// Report is what Verify found.
type Report struct {
	Files             []FileReport       `json:"files"`
	Entries           int                `json:"entries"`
	Checkpoints       []CheckpointReport `json:"checkpoints"`
	SignaturesChecked bool               `json:"signaturesChecked"`
	// Signed: signatures were checked and every entry is covered by a verified
	// checkpoint.
	Signed   bool        `json:"signed"`
	Head     *HeadReport `json:"head,omitempty"`
	Problems []Problem   `json:"problems"`
	Notes    []string    `json:"notes,omitempty"`
	Records  []Record    `json:"-"`
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) problem(kind, file string, line int, seq uint64, format string, a ...any) {
	r.Problems = append(r.Problems, Problem{Kind: kind, File: file, Line: line, Seq: seq, Message: fmt.Sprintf(format, a...)})
}

func (r *Report) note(format string, a ...any) { r.Notes = append(r.Notes, fmt.Sprintf(format, a...)) }

type rec struct {
	line int
	e    *Entry // nil: malformed
	hash digest.Digest
}

type logFile struct {
	path  string
	recs  []rec
	bySeq map[uint64]int // seq -> first index in recs
}

func (f *logFile) first() *rec {
	for i := range f.recs {
		if f.recs[i].e != nil {
			return &f.recs[i]
		}
	}
	return nil
}

func (f *logFile) last() *rec {
	for i := len(f.recs) - 1; i >= 0; i-- {
		if f.recs[i].e != nil {
			return &f.recs[i]
		}
	}
	return nil
}

func (f *logFile) at(seq uint64) *rec {
	if i, ok := f.bySeq[seq]; ok {
		return &f.recs[i]
	}
	return nil
}

// Verify checks the logs at paths, in order: each a chain of v1 entries; a later file
// may continue an earlier one (the far side's log after the connected side's segment).
// It reports, naming the file, line and entry, every deleted, reordered, duplicated or
// edited entry, a line that is not an entry, a checkpoint that does not verify (with
// opts.Keys), entries appended after the last checkpoint (a problem with opts.Keys, a
// note without), a tail cut (the head file, or a far-side import entry, names entries
// the file lacks), and a file that continues a chain not given.
//
// It returns the report, and an error wrapping ErrVerify when there are problems; a
// file that cannot be read is an error without a report.
func Verify(ctx context.Context, paths []string, opts VerifyOptions) (*Report, error) {
	if len(paths) == 0 {
		return nil, errors.New("audit: no log to verify")
	}
	rep := &Report{SignaturesChecked: len(opts.Keys) > 0, Problems: []Problem{}}
	files := make([]*logFile, len(paths))
	var head []byte
	headPath := opts.HeadPath
	if headPath == "" {
		headPath = paths[len(paths)-1] + HeadSuffix
	}
	for i, p := range paths {
		var whileLocked func()
		if i == len(paths)-1 && !opts.UnsafeSkipHead {
			rep.Head = &HeadReport{Path: headPath}
			whileLocked = func() { head = readHead(headPath, rep) }
		}
		f, err := readLog(ctx, p, rep, opts.KeepEntries, whileLocked)
		if err != nil {
			return nil, err
		}
		files[i] = f
	}
	signed := rep.SignaturesChecked
	for i, f := range files {
		checkChain(f, rep)
		fr := checkSignatures(ctx, f, opts.Keys, rep)
		if i > 0 || f.first() == nil || f.first().e.Seq > 1 {
			fr.ContinuesFrom = link(files[:i], f, rep)
		}
		if l := f.last(); l == nil || fr.SignedThrough < l.e.Seq {
			signed = false
		}
		rep.Files = append(rep.Files, fr)
	}
	checkForks(files, rep)
	checkSegments(files, rep)
	if rep.Head != nil {
		checkHead(files[len(files)-1], head, rep)
	}
	if opts.UnsafeSkipHead {
		rep.note("head file not compared: a log cut back to an earlier checkpoint would verify")
	}
	rep.Signed = signed && rep.OK()
	if !rep.OK() {
		p := rep.Problems[0]
		more := ""
		if n := len(rep.Problems) - 1; n > 0 {
			more = fmt.Sprintf(" (and %d more problems)", n)
		}
		return rep, fmt.Errorf("%w: %s%s", ErrVerify, p.Message, more)
	}
	return rep, nil
}

// readLog reads every line of path under a shared lock (calling whileLocked before
// releasing it), streaming: at most MaxLineBytes of a line in memory.
func readLog(ctx context.Context, path string, rep *Report, keep bool, whileLocked func()) (*logFile, error) {
	fd, unlock, err := openShared(ctx, path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	f := &logFile{path: path, bySeq: map[uint64]int{}}
	r := bufio.NewReaderSize(fd, MaxLineBytes+1)
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		line, err := r.ReadSlice('\n')
		if err == io.EOF && len(line) == 0 {
			break
		}
		if err == io.EOF {
			rep.problem(ProblemIncomplete, path, n, 0, "%s line %d is incomplete (%d bytes, no end of line): the tail was cut or an append was interrupted", path, n, len(line))
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			rep.problem(ProblemMalformed, path, n, 0, "%s line %d is over %d bytes; the rest of the file is not read", path, n, MaxLineBytes)
			break
		}
		if err != nil {
			return nil, fmt.Errorf("audit: reading %s: %w", path, err)
		}
		body := line[:len(line)-1]
		rc := rec{line: n, hash: digest.FromBytes(body)}
		if e, perr := parseLine(body); perr != nil {
			rep.problem(ProblemMalformed, path, n, 0, "%s line %d is not a valid entry (edited?): %v", path, n, perr)
		} else {
			rc.e = e
			rep.Entries++
		}
		f.recs = append(f.recs, rc)
		if rc.e != nil {
			if _, dup := f.bySeq[rc.e.Seq]; !dup {
				f.bySeq[rc.e.Seq] = len(f.recs) - 1
			}
		}
		if keep {
			rep.Records = append(rep.Records, Record{File: path, Line: n, Hash: rc.hash, Entry: rc.e})
		}
	}
	if whileLocked != nil {
		whileLocked()
	}
	return f, nil
}

// checkChain checks the order and the prev links of one file's entries.
func checkChain(f *logFile, rep *Report) {
	var last uint64 // highest seq so far
	var lastLine int
	started := false
	malformed := 0 // malformed lines since the last entry: they may be the missing ones
	reported := map[uint64]bool{}
	for i, r := range f.recs {
		if r.e == nil {
			malformed++
			continue
		}
		s := r.e.Seq
		if started {
			exp := last + 1
			switch {
			case s == exp:
			case s > exp:
				later := uint64(0)
				for m := exp; m < s; m++ {
					if j, ok := f.bySeq[m]; ok && j > i {
						later = m
						break
					}
				}
				switch {
				case later != 0:
					reported[later] = true
					rep.problem(ProblemReordered, f.path, r.line, s, "%s: entry %d (line %d) comes before entry %d (line %d): entries reordered",
						f.path, s, r.line, later, f.recs[f.bySeq[later]].line)
				case s-exp > uint64(malformed):
					rep.problem(ProblemDeleted, f.path, r.line, exp, "%s: %s missing between line %d (entry %d) and line %d (entry %d): deleted",
						f.path, span("entry", exp, s-1), lastLine, last, r.line, s)
				}
			default: // s < exp
				if j := f.bySeq[s]; j < i {
					rep.problem(ProblemDuplicate, f.path, r.line, s, "%s: entry %d appears twice (lines %d and %d): replayed or copied", f.path, s, f.recs[j].line, r.line)
				} else if !reported[s] {
					rep.problem(ProblemReordered, f.path, r.line, s, "%s: entry %d (line %d) comes after entry %d (line %d): entries reordered", f.path, s, r.line, last, lastLine)
				}
			}
		}
		// the prev link, by sequence number (whatever the file order)
		if p := f.at(s - 1); s > 1 && p != nil && p != &f.recs[i] && p.hash != r.e.Prev {
			rep.problem(ProblemEdited, f.path, p.line, s-1, "%s: entry %d (line %d) was edited: it hashes to %s, but entry %d (line %d) holds prev %s",
				f.path, s-1, p.line, p.hash, s, r.line, r.e.Prev)
		}
		if !started || s > last {
			last, lastLine = s, r.line
		}
		started = true
		malformed = 0
	}
}

// span names entries a to b: "entry 3", "entries 3-5".
func span(_ string, a, b uint64) string {
	if a == b {
		return fmt.Sprintf("entry %d", a)
	}
	return fmt.Sprintf("entries %d-%d", a, b)
}

// checkSignatures checks one file's checkpoints and its coverage.
func checkSignatures(ctx context.Context, f *logFile, keys [][]byte, rep *Report) FileReport {
	fr := FileReport{Path: f.path, Lines: len(f.recs)}
	if r := f.first(); r != nil {
		fr.First = &Head{Seq: r.e.Seq, Hash: r.hash}
	}
	if r := f.last(); r != nil {
		fr.Last = &Head{Seq: r.e.Seq, Hash: r.hash}
	}
	for _, r := range f.recs {
		if r.e == nil || r.e.Event != EventCheckpoint {
			continue
		}
		fr.Checkpoints++
		cr := CheckpointReport{File: f.path, Line: r.line, Seq: r.e.Seq, Size: r.e.Checkpoint.Size, Head: r.e.Checkpoint.Head,
			Time: r.e.Time, Operator: r.e.Operator, Host: r.e.Host, KeyID: r.e.Checkpoint.KeyID}
		if len(keys) > 0 {
			id, err := verifyCheckpoint(ctx, r.e, keys)
			if err != nil {
				rep.problem(ProblemCheckpoint, f.path, r.line, r.e.Seq, "%s: the checkpoint at entry %d (line %d) does not verify with the keys given (edited, or signed by another key): %v",
					f.path, r.e.Seq, r.line, err)
			} else {
				cr.KeyID, cr.Verified = id, true
			}
		}
		if (cr.Verified || len(keys) == 0) && r.e.Seq > fr.SignedThrough {
			fr.SignedThrough = r.e.Seq
		}
		rep.Checkpoints = append(rep.Checkpoints, cr)
	}
	l := f.last()
	if l == nil {
		if len(keys) > 0 {
			rep.problem(ProblemUnsigned, f.path, 0, 0, "%s holds no entry", f.path)
		} else {
			rep.note("%s holds no entry", f.path)
		}
		return fr
	}
	from := fr.SignedThrough + 1
	if fst := f.first(); fst != nil && fst.e.Seq > from {
		from = fst.e.Seq
	}
	switch {
	case fr.Checkpoints == 0 && len(keys) > 0:
		rep.problem(ProblemUnsigned, f.path, 0, 0, "%s has no checkpoint: its entries are chained but not signed", f.path)
	case fr.Checkpoints == 0:
		rep.note("%s has no checkpoint: the chain is intact but UNSIGNED (a cut tail or a rewritten log cannot be detected)", f.path)
	case from <= l.e.Seq && len(keys) > 0:
		rep.problem(ProblemUnsigned, f.path, f.recs[f.bySeq[from]].line, from, "%s: %s (from line %d) appended after the last signed checkpoint (entry %d) and not signed",
			f.path, span("entry", from, l.e.Seq), f.recs[f.bySeq[from]].line, fr.SignedThrough)
	case from <= l.e.Seq:
		rep.note("%s: %s appended after the last checkpoint (entry %d) and not signed", f.path, span("entry", from, l.e.Seq), fr.SignedThrough)
	}
	if len(keys) == 0 && fr.Checkpoints > 0 {
		rep.note("%s: %d checkpoint signatures not checked (give the public keys)", f.path, fr.Checkpoints)
	}
	return fr
}

// link finds the entry of an earlier file that f's first entry continues.
func link(earlier []*logFile, f *logFile, rep *Report) *Link {
	r := f.first()
	if r == nil || r.e.Seq == 1 {
		return nil
	}
	var other *rec
	var otherFile string
	for _, g := range earlier {
		if p := g.at(r.e.Seq - 1); p != nil {
			if p.hash == r.e.Prev {
				return &Link{File: g.path, Seq: p.e.Seq}
			}
			other, otherFile = p, g.path
		}
	}
	if other != nil {
		rep.problem(ProblemEdited, f.path, r.line, r.e.Seq, "%s: entry %d (line %d) continues from an entry %d other than %s line %d: one of them was edited",
			f.path, r.e.Seq, r.line, r.e.Seq-1, otherFile, other.line)
		return nil
	}
	rep.problem(ProblemDetached, f.path, r.line, r.e.Seq, "%s starts at entry %d (prev %s): %s not in the files given (deleted, or give the earlier segment first)",
		f.path, r.e.Seq, r.e.Prev, span("entry", 1, r.e.Seq-1))
	return nil
}

// checkForks compares files that hold the same chain from its start (copies of the
// connected side's log): where both hold an entry it must be the same line.
func checkForks(files []*logFile, rep *Report) {
	for i, a := range files {
		fa := a.first()
		if fa == nil || fa.e.Seq != 1 {
			continue
		}
		for _, b := range files[:i] {
			if fb := b.first(); fb == nil || fb.e.Seq != 1 || fb.hash != fa.hash {
				continue
			}
			for _, r := range a.recs {
				if r.e == nil {
					continue
				}
				if o := b.at(r.e.Seq); o != nil && o.hash != r.hash {
					rep.problem(ProblemFork, a.path, r.line, r.e.Seq, "%s: entry %d (line %d) differs from entry %d of %s (line %d): one of them was edited",
						a.path, r.e.Seq, r.line, r.e.Seq, b.path, o.line)
					break
				}
			}
		}
	}
}

// checkSegments checks every segment head an import entry records against the other
// files: the entry must be there, the same line.
func checkSegments(files []*logFile, rep *Report) {
	for _, f := range files {
		for _, r := range f.recs {
			if r.e == nil || r.e.Segment == nil || r.e.Event != EventImport {
				continue
			}
			s := r.e.Segment
			found, longest := false, ""
			var longestSeq uint64
			for _, g := range files {
				if g == f {
					continue
				}
				if o := g.at(s.Seq); o != nil {
					found = true
					if o.hash != s.Hash {
						rep.problem(ProblemEdited, g.path, o.line, s.Seq, "%s: entry %d (line %d) is not the one %s entry %d (line %d) received across the gap: edited",
							g.path, s.Seq, o.line, f.path, r.e.Seq, r.line)
					}
					break
				}
				if l := g.last(); l != nil && l.e.Seq > longestSeq && l.e.Seq < s.Seq {
					longest, longestSeq = g.path, l.e.Seq
				}
			}
			if found {
				continue
			}
			if longest != "" {
				rep.problem(ProblemCut, longest, 0, longestSeq+1, "%s ends at entry %d, but %s entry %d (line %d) received entries through %d: its tail was cut (or give the later segment)",
					longest, longestSeq, f.path, r.e.Seq, r.line, s.Seq)
			} else {
				rep.problem(ProblemDetached, f.path, r.line, r.e.Seq, "%s: entry %d (line %d) received a segment through entry %d that is not in the files given",
					f.path, r.e.Seq, r.line, s.Seq)
			}
		}
	}
}

// readHead reads the head file (one checkpoint line); nil when missing or unreadable
// (reported).
func readHead(path string, rep *Report) []byte {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	rep.Head.Present = true
	if err != nil {
		rep.problem(ProblemHead, path, 0, 0, "head file %s: %v", path, err)
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxLineBytes+2))
	if err != nil {
		rep.problem(ProblemHead, path, 0, 0, "head file %s: %v", path, err)
		return nil
	}
	return b
}

// checkHead compares the last log with its head file: the checkpoint line it holds must
// be in the log, byte for byte.
func checkHead(f *logFile, b []byte, rep *Report) {
	h := rep.Head
	var lastCP *rec
	for i := range f.recs {
		if r := &f.recs[i]; r.e != nil && r.e.Event == EventCheckpoint {
			lastCP = r
		}
	}
	if !h.Present {
		if lastCP != nil {
			rep.problem(ProblemHead, h.Path, 0, 0, "head file %s is missing, but %s has checkpoints: a tail cut back to an earlier checkpoint cannot be ruled out", h.Path, f.path)
		}
		return
	}
	if b == nil {
		return // reported
	}
	if len(b) == 0 || b[len(b)-1] != '\n' || len(b) > MaxLineBytes+1 {
		rep.problem(ProblemHead, h.Path, 0, 0, "head file %s is not one complete line", h.Path)
		return
	}
	body := b[:len(b)-1]
	e, err := parseLine(body)
	if err != nil || e.Event != EventCheckpoint {
		rep.problem(ProblemHead, h.Path, 0, 0, "head file %s does not hold a checkpoint entry: %v", h.Path, err)
		return
	}
	h.Seq = e.Seq
	hash := digest.FromBytes(body)
	r := f.at(e.Seq)
	last := f.last()
	switch {
	case r != nil && r.hash == hash:
		h.Matches = true
		if lastCP != nil && lastCP.e.Seq > e.Seq {
			rep.note("head file %s holds the checkpoint at entry %d, older than the one at entry %d (an interrupted checkpoint?)", h.Path, e.Seq, lastCP.e.Seq)
		}
	case r != nil:
		rep.problem(ProblemEdited, f.path, r.line, e.Seq, "%s: entry %d (line %d) differs from the checkpoint the head file %s holds: edited", f.path, e.Seq, r.line, h.Path)
	case last == nil || e.Seq > last.e.Seq:
		end := uint64(0)
		if last != nil {
			end = last.e.Seq
		}
		rep.problem(ProblemCut, f.path, 0, end+1, "%s ends at entry %d, but its head file %s holds the checkpoint at entry %d: %s cut from the tail",
			f.path, end, h.Path, e.Seq, span("entry", end+1, e.Seq))
	default:
		rep.problem(ProblemHead, h.Path, 0, e.Seq, "head file %s holds a checkpoint at entry %d that %s does not hold", h.Path, e.Seq, f.path)
	}
}

// VerifySegment verifies a segment carried across the gap on its own (its head file is
// not there: the import entry that Log.Continue appends records its head instead) and
// returns the head to continue from. With keys, every entry must be covered by a
// checkpoint that verifies with one of them.
func VerifySegment(ctx context.Context, path string, keys [][]byte) (*Report, *Head, error) {
	rep, err := Verify(ctx, []string{path}, VerifyOptions{Keys: keys, UnsafeSkipHead: true})
	if err != nil {
		return rep, nil, err
	}
	last := rep.Files[0].Last
	if last == nil {
		return rep, nil, fmt.Errorf("%w: segment %s holds no entry", ErrVerify, path)
	}
	return rep, last, nil
}
