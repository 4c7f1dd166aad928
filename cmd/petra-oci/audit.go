package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/audit"
	"github.com/petra-oci/petra-oci/signing"
)

// The audit log (docs/audit.md). Every command named in auditedCommands gets the
// --audit-log and --audit-key flags and appends one entry when it ends: its event on
// success, "refuse" with the reason and the exit code otherwise. Commands record what
// they learned about the bundle with auditBundle; export and import use auditExport and
// auditImport, which append their entry themselves.

// auditedCommands are the commands that change state, and the event each records.
var auditedCommands = map[string]audit.Event{
	"pack": audit.EventPack, "sign": audit.EventSign, "verify": audit.EventVerify, "unpack": audit.EventUnpack,
	"admission": audit.EventAdmission, "export": audit.EventExport, "import": audit.EventImport, "serve": audit.EventServe,
}

// auditKeyFallback: the flag whose private key signs the checkpoints when --audit-key
// is not given (pack and sign: the bundle key; unpack: the disconnected side's key).
var auditKeyFallback = map[string]string{"pack": "key", "sign": "key", "unpack": "attest-key"}

// auditTargetFlag: the flag naming where a command writes, recorded as the target.
var auditTargetFlag = map[string]string{"pack": "dir", "unpack": "to", "admission": "out"}

// auditNoLog is the --audit-log value that turns the log off.
const auditNoLog = "none"

func auditFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "audit-log", EnvVars: []string{"PETRA_AUDIT_LOG"},
			Usage: "append this command's entry to the audit log `FILE` (default: $XDG_STATE_HOME/petra-oci/audit.log; \"none\": no log)"},
		&cli.StringFlag{Name: "audit-key", EnvVars: []string{"PETRA_AUDIT_KEY"},
			Usage: "sign a checkpoint of the audit log after the entry with this cosign private key `FILE` ($COSIGN_PASSWORD) or KMS reference (default: pack and sign use --key, unpack --attest-key)"},
	}
}

// audited adds the audit flags to the state-changing commands of cmds and wraps their
// actions so that each appends its entry.
func audited(cmds []*cli.Command) []*cli.Command {
	for _, cmd := range cmds {
		ev, ok := auditedCommands[cmd.Name]
		if !ok || cmd.Action == nil {
			continue
		}
		cmd.Flags = append(cmd.Flags, auditFlags()...)
		cmd.Action = auditAction(cmd.Name, ev, cmd.Action)
	}
	return cmds
}

type auditCtxKey struct{}

// auditRecord is the audit state of one command run.
type auditRecord struct {
	name   string
	event  audit.Event
	log    *audit.Log // without the fallback key (Check, Path)
	opts   audit.Options
	signed *audit.Log // with the checkpoint key, once appender ran
	bundle *audit.Bundle
	target string
	done   bool // the command appended its own entry (auditExport, auditImport)
}

func auditAction(name string, ev audit.Event, action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		rec, err := openAudit(c, name, ev)
		if err != nil {
			return err
		}
		if rec == nil {
			return action(c)
		}
		c.Context = context.WithValue(c.Context, auditCtxKey{}, rec)
		err = action(c)
		return rec.finish(c, err)
	}
}

// auditLogPath returns the log the flags name, "" when it is off.
func auditLogPath(c *cli.Context) (string, error) {
	p := c.String("audit-log")
	switch p {
	case auditNoLog:
		return "", nil
	case "":
		return audit.DefaultPath()
	}
	return p, nil
}

// openAudit opens the log before the command runs, so a log that cannot be appended to
// (or an --audit-key that does not load) stops the command before it does anything. A
// fallback key (pack's --key, unpack's --attest-key) is the command's own: it checks it
// first, and the log loads it when it appends.
func openAudit(c *cli.Context, name string, ev audit.Event) (*auditRecord, error) {
	path, err := auditLogPath(c)
	if err != nil || path == "" {
		return nil, err
	}
	opts := audit.Options{Path: path, Operator: os.Getenv("PETRA_AUDIT_OPERATOR"), Tool: "petra-oci/" + version}
	if ref := c.String("audit-key"); ref != "" {
		if opts.Signer, err = loadSignerRef(c.Context, ref); err != nil {
			return nil, fmt.Errorf("--audit-key: %w", err)
		}
	}
	l, err := audit.Open(opts)
	if err != nil {
		return nil, err
	}
	if err := l.Check(c.Context); err != nil {
		return nil, err
	}
	rec := &auditRecord{name: name, event: ev, log: l, opts: opts}
	if f := auditTargetFlag[name]; f != "" {
		rec.target = c.String(f)
	}
	return rec, nil
}

// appender returns the log to append to, with the checkpoint key: --audit-key, else the
// command's fallback key (loaded once; a key that does not load leaves the entry
// unsigned, with a warning: the command itself reported the key).
func (rec *auditRecord) appender(c *cli.Context) *audit.Log {
	if rec.signed != nil {
		return rec.signed
	}
	rec.signed = rec.log
	flag := auditKeyFallback[rec.name]
	if rec.opts.Signer != nil || flag == "" || c.String(flag) == "" {
		return rec.signed
	}
	opts := rec.opts
	s, err := loadSignerRef(context.WithoutCancel(c.Context), c.String(flag))
	if err != nil {
		logger(c).Warn("audit: the entry is not signed: --"+flag+" does not load", "err", err)
		return rec.signed
	}
	opts.Signer = s
	if l, err := audit.Open(opts); err == nil {
		rec.signed = l
	}
	return rec.signed
}

func auditRecordOf(c *cli.Context) *auditRecord {
	if c == nil || c.Context == nil {
		return nil
	}
	rec, _ := c.Context.Value(auditCtxKey{}).(*auditRecord)
	return rec
}

// auditBundle records the bundle the command verified or wrote, for its entry (a no-op
// when the log is off or b is nil).
func auditBundle(c *cli.Context, b *audit.Bundle) {
	if rec := auditRecordOf(c); rec != nil && b != nil {
		rec.bundle = b
	}
}

// reportBundle is the audit view of a verified bundle (nil for nil).
func reportBundle(r *bundle.Report) *audit.Bundle {
	if r == nil {
		return nil
	}
	return &audit.Bundle{ID: r.BundleID, Sequence: r.Sequence, MetadataDigest: r.MetadataDigest, Dir: r.Dir}
}

// auditAppend appends e now (operator, host, tool, time and chain filled in; a
// checkpoint after it with the audit key). An entry of the command's own event counts
// as its entry: none is appended when the command succeeds. Nil when the log is off.
func auditAppend(c *cli.Context, e audit.Entry) (*audit.Appended, error) {
	rec := auditRecordOf(c)
	if rec == nil {
		return nil, nil
	}
	if e.Unsafe == nil {
		e.Unsafe = unsafeFlags(c)
	}
	a, err := rec.appender(c).Append(context.WithoutCancel(c.Context), e)
	if err != nil {
		return nil, err
	}
	if e.Event == rec.event {
		rec.done = true
	}
	rec.logged(c, a)
	return a, nil
}

// auditExport is for export: it appends the export entry of b to out (and its
// checkpoint), then copies the whole log, ending with them, to w: the segment the
// archive carries. Nil, nil when the log is off (no segment to carry).
func auditExport(c *cli.Context, b *audit.Bundle, out string, w io.Writer) (*audit.Segment, error) {
	rec := auditRecordOf(c)
	if rec == nil {
		return nil, nil
	}
	if _, err := auditAppend(c, audit.Entry{Event: audit.EventExport, Bundle: b, Target: out}); err != nil {
		return nil, err
	}
	return audit.CopySegment(c.Context, rec.log.Path(), w)
}

// auditImport is for import: it verifies the connected side's segment (with keys,
// its checkpoints must cover it), then appends the import entry of b recording the
// segment's head; an empty log continues the segment's chain. A no-op when the log is
// off.
func auditImport(c *cli.Context, b *audit.Bundle, segment string, keys [][]byte) (*audit.Appended, error) {
	rec := auditRecordOf(c)
	if rec == nil {
		return nil, nil
	}
	a, err := continueLog(c, rec.appender(c), b, segment, keys)
	if err != nil {
		return nil, err
	}
	rec.done = true
	return a, nil
}

func continueLog(c *cli.Context, l *audit.Log, b *audit.Bundle, segment string, keys [][]byte) (*audit.Appended, error) {
	_, head, err := audit.VerifySegment(c.Context, segment, keys)
	if err != nil {
		return nil, fmt.Errorf("audit segment %s: %w", segment, err)
	}
	if len(keys) == 0 {
		logger(c).Warn("audit: the segment's checkpoints were not verified (no key given)", "segment", segment)
	}
	a, err := l.Continue(context.WithoutCancel(c.Context), audit.Entry{Event: audit.EventImport, Bundle: b, Unsafe: unsafeFlags(c)}, *head)
	if err != nil {
		return nil, err
	}
	(&auditRecord{log: l}).logged(c, a)
	return a, nil
}

func (rec *auditRecord) logged(c *cli.Context, a *audit.Appended) {
	logger(c).Debug("audit entry appended", "log", rec.log.Path(), "seq", a.Entry.Seq, "checkpoint", a.Checkpoint != nil)
	if a.AfterCheckpoint {
		logger(c).Warn("audit: entry appended after a signed checkpoint without a key; `petra-oci audit verify --key` reports it until the next checkpoint (--audit-key, or petra-oci audit checkpoint)",
			"log", rec.log.Path(), "entry", a.Entry.Seq)
	}
}

// finish appends the command's entry: its event when err is nil, else a refusal with
// the reason and the exit code main will exit with.
func (rec *auditRecord) finish(c *cli.Context, err error) error {
	ctx := context.WithoutCancel(c.Context)
	ctx, cancel := context.WithTimeout(ctx, interruptGrace-time.Second)
	defer cancel()
	e := audit.Entry{Event: rec.event, Bundle: rec.bundle, Target: rec.target, Unsafe: unsafeFlags(c)}
	if e.Bundle == nil {
		dir := c.Args().First()
		if rec.name == "pack" {
			dir = c.String("dir")
		}
		if dir != "" {
			// pack and sign wrote it; anything else read a bundle that did not verify
			e.Bundle = audit.BundleAt(dir, !(rec.name == "pack" || rec.name == "sign") || err != nil)
		}
	}
	if err == nil {
		if rec.done {
			return nil
		}
		a, aerr := rec.appender(c).Append(ctx, e)
		if aerr != nil {
			return fmt.Errorf("%s completed, but its entry is not in the audit log %s: %w", rec.name, rec.log.Path(), aerr)
		}
		rec.logged(c, a)
		return nil
	}
	e.Event, e.Command, e.Reason, e.ExitCode = audit.EventRefuse, rec.name, err.Error(), exitCode(err)
	if c.Context.Err() != nil {
		e.Reason, e.ExitCode = "interrupted: "+e.Reason, exitInterrupted
	}
	if a, aerr := rec.appender(c).Append(ctx, e); aerr != nil {
		logger(c).Error("audit: the refusal is not in the audit log", "log", rec.log.Path(), "err", aerr)
	} else {
		rec.logged(c, a)
	}
	return err
}

// unsafeFlags lists the escape hatches set on the command line.
func unsafeFlags(c *cli.Context) []string {
	var out []string
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if (strings.HasPrefix(name, "unsafe-") || strings.HasPrefix(name, "insecure-") || strings.HasPrefix(name, "allow-") || name == "plain-http") && c.IsSet(name) {
			out = append(out, "--"+name)
		}
	}
	return out
}

func auditCommand() *cli.Command {
	keysFlag := &cli.StringSliceFlag{Name: "key", Usage: "public key `FILE` (PEM, cosign.pub) checkpoints may be signed with; repeatable (the connected side's and the far side's). With it, every entry must be covered by a verified checkpoint"}
	headFlags := []cli.Flag{
		&cli.StringFlag{Name: "head", Usage: "head `FILE` of the last LOG (default: LOG.head)"},
		&cli.BoolFlag{Name: "unsafe-skip-head", Usage: "UNSAFE: do not compare the last LOG with its head file (a log cut back to an earlier checkpoint then verifies); for a segment checked on its own"},
	}
	return &cli.Command{
		Name:  "audit",
		Usage: "verify, show, checkpoint and continue the audit log (docs/audit.md)",
		Subcommands: []*cli.Command{
			{
				Name:      "verify",
				Usage:     "verify audit logs: the chain, the checkpoints (--key) and the head file",
				ArgsUsage: "LOG [LOG...]",
				Description: `Give the connected side's segment first and the far side's log after it to verify the
trail across the gap. Reports, naming the file, line and entry, every deleted, reordered,
duplicated or edited entry, a checkpoint that does not verify, entries appended after the
last checkpoint (a failure with --key), a cut tail (the head file, or a far-side import,
names entries the log lacks) and a log continuing a chain that is not given. Exit 50 when
anything is wrong. A log without a checkpoint verifies its chain and says it is UNSIGNED
(a failure with --key).`,
				Flags:  append([]cli.Flag{keysFlag, outputFlag()}, headFlags...),
				Action: auditVerifyAction,
			},
			{
				Name:      "show",
				Usage:     "render audit logs as a table (and verify them as 'audit verify' does)",
				ArgsUsage: "LOG [LOG...]",
				Flags:     append([]cli.Flag{keysFlag, outputFlag()}, headFlags...),
				Action:    auditShowAction,
			},
			{
				Name:      "checkpoint",
				Usage:     "sign the audit log's chain as it is: append a checkpoint and update LOG.head",
				ArgsUsage: "LOG",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "key", EnvVars: []string{"PETRA_AUDIT_KEY"}, Usage: "cosign private key `FILE` ($COSIGN_PASSWORD) or KMS reference"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("audit checkpoint: give exactly one LOG", exitUsage)
					}
					if err := required(c, "key"); err != nil {
						return err
					}
					s, err := loadSignerRef(c.Context, c.String("key"))
					if err != nil {
						return err
					}
					l, err := audit.Open(audit.Options{Path: c.Args().First(), Operator: os.Getenv("PETRA_AUDIT_OPERATOR"), Tool: "petra-oci/" + version})
					if err != nil {
						return err
					}
					h, err := l.Checkpoint(c.Context, s)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "checkpoint at entry %d over the entries up to %d, signed by key %s\n", h.Seq, h.Seq-1, s.KeyID())
					return nil
				},
			},
			{
				Name:      "continue",
				Usage:     "continue LOG from the connected side's log segment carried across the gap (as import does)",
				ArgsUsage: "LOG",
				Description: `Verifies SEGMENT on its own (with --key, every entry must be covered by a checkpoint
signed with one of the keys), then appends an import entry to LOG recording the
segment's head. An empty LOG continues the segment's chain: its first entry's prev is
the hash of the segment's last line, so 'audit verify SEGMENT LOG' reads one trail.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "from", Usage: "the segment `FILE` (the connected side's log)"},
					keysFlag,
					&cli.StringFlag{Name: "audit-key", EnvVars: []string{"PETRA_AUDIT_KEY"}, Usage: "sign a checkpoint after the entry with this cosign private key `FILE` or KMS reference (this side's key)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("audit continue: give exactly one LOG", exitUsage)
					}
					if err := required(c, "from"); err != nil {
						return err
					}
					keys, err := readKeys(c.StringSlice("key"))
					if err != nil {
						return err
					}
					var s signing.Signer
					if ref := c.String("audit-key"); ref != "" {
						if s, err = loadSignerRef(c.Context, ref); err != nil {
							return fmt.Errorf("--audit-key: %w", err)
						}
					}
					l, err := audit.Open(audit.Options{Path: c.Args().First(), Signer: s, Operator: os.Getenv("PETRA_AUDIT_OPERATOR"), Tool: "petra-oci/" + version})
					if err != nil {
						return err
					}
					a, err := continueLog(c, l, nil, c.String("from"), keys)
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "%s: entry %d (import) records %s\n", l.Path(), a.Entry.Seq, c.String("from"))
					return nil
				},
			},
		},
	}
}

func readKeys(paths []string) ([][]byte, error) {
	var keys [][]byte
	for _, p := range paths {
		b, err := readLimited(p, 64<<10)
		if err != nil {
			return nil, fmt.Errorf("reading public key: %w", err)
		}
		keys = append(keys, b)
	}
	return keys, nil
}

func auditVerifyOptions(c *cli.Context, keep bool) ([]string, audit.VerifyOptions, error) {
	var opts audit.VerifyOptions
	if c.NArg() == 0 {
		return nil, opts, cli.Exit("audit "+c.Command.Name+": give at least one LOG", exitUsage)
	}
	keys, err := readKeys(c.StringSlice("key"))
	if err != nil {
		return nil, opts, err
	}
	opts = audit.VerifyOptions{Keys: keys, HeadPath: c.String("head"), UnsafeSkipHead: c.Bool("unsafe-skip-head"), KeepEntries: keep}
	return c.Args().Slice(), opts, nil
}

func auditVerifyAction(c *cli.Context) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	paths, opts, err := auditVerifyOptions(c, false)
	if err != nil {
		return err
	}
	rep, err := audit.Verify(c.Context, paths, opts)
	if rep == nil {
		return err
	}
	if rerr := render(c, asJSON, rep, func() { renderAuditReport(c.App.Writer, rep) }); rerr != nil {
		return rerr
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(c.App.ErrWriter, "note: %s\n", n)
	}
	return err
}

func renderAuditReport(w io.Writer, rep *audit.Report) {
	verdict := "OK"
	switch {
	case !rep.OK():
		verdict = fmt.Sprintf("FAILED (%d problems)", len(rep.Problems))
	case rep.Signed:
		verdict = "OK, signed"
	case len(rep.Checkpoints) == 0:
		verdict = "OK, chain intact; UNSIGNED (no checkpoint)"
	case !rep.SignaturesChecked:
		verdict = "OK, chain intact; signatures NOT checked (no --key)"
	}
	fmt.Fprintf(w, "%s: %d entries in %d files\n", verdict, rep.Entries, len(rep.Files))
	for _, f := range rep.Files {
		span := "no entry"
		if f.First != nil {
			span = fmt.Sprintf("entries %d-%d", f.First.Seq, f.Last.Seq)
		}
		cont := ""
		if f.ContinuesFrom != nil {
			cont = fmt.Sprintf(", continues %s after entry %d", f.ContinuesFrom.File, f.ContinuesFrom.Seq)
		}
		signed := "unsigned"
		if f.Checkpoints > 0 {
			signed = fmt.Sprintf("%d checkpoints, signed through entry %d", f.Checkpoints, f.SignedThrough)
		}
		fmt.Fprintf(w, "  %s: %s%s, %s\n", f.Path, span, cont, signed)
	}
	for _, cp := range rep.Checkpoints {
		state := "not checked"
		if cp.Verified {
			state = "verified"
		} else if rep.SignaturesChecked {
			state = "DOES NOT VERIFY"
		}
		fmt.Fprintf(w, "  checkpoint %s entry %d: %s, key %s, %s@%s %s\n", cp.File, cp.Seq, state, cp.KeyID, cp.Operator, cp.Host, cp.Time.Format(time.RFC3339))
	}
	if h := rep.Head; h != nil {
		switch {
		case !h.Present:
			fmt.Fprintf(w, "  head %s: none\n", h.Path)
		case h.Matches:
			fmt.Fprintf(w, "  head %s: entry %d, in the log\n", h.Path, h.Seq)
		default:
			fmt.Fprintf(w, "  head %s: entry %d, NOT in the log\n", h.Path, h.Seq)
		}
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  problem [%s] %s\n", p.Kind, p.Message)
	}
}

func auditShowAction(c *cli.Context) error {
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	paths, opts, err := auditVerifyOptions(c, true)
	if err != nil {
		return err
	}
	rep, err := audit.Verify(c.Context, paths, opts)
	if rep == nil {
		return err
	}
	if asJSON {
		if rerr := writeJSON(c, auditShowResult{Records: rep.Records, Verification: rep}); rerr != nil {
			return rerr
		}
		return err
	}
	bad := map[string]bool{}
	for _, p := range rep.Problems {
		bad[fmt.Sprintf("%s:%d", p.File, p.Line)] = true
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tSEQ\tTIME (UTC)\tEVENT\tBUNDLE\tOPERATOR@HOST\tDETAIL")
	for _, r := range rep.Records {
		mark := ""
		if bad[fmt.Sprintf("%s:%d", r.File, r.Line)] {
			mark = "!"
		}
		if r.Entry == nil {
			fmt.Fprintf(tw, "%s\t?\t\t(line %d of %s is not an entry)\t\t\t\n", mark, r.Line, r.File)
			continue
		}
		e := r.Entry
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s@%s\t%s\n", mark, e.Seq, e.Time.UTC().Format("2006-01-02 15:04:05"), e.Event, showBundle(e.Bundle), e.Operator, e.Host, showDetail(e))
	}
	tw.Flush()
	fmt.Fprintln(c.App.ErrWriter)
	renderAuditReport(c.App.ErrWriter, rep)
	return err
}

// auditShowResult is what audit show prints with --output json: every line as read (a
// malformed one without its entry), and the verification of them all.
type auditShowResult struct {
	Records      []audit.Record `json:"records"`
	Verification *audit.Report  `json:"verification"`
}

func showBundle(b *audit.Bundle) string {
	if b == nil || b.ID == "" {
		return "-"
	}
	s := fmt.Sprintf("%s#%d", b.ID, b.Sequence)
	if b.Claimed {
		s += " (claimed)"
	}
	return s
}

func showDetail(e *audit.Entry) string {
	var parts []string
	switch {
	case e.Event == audit.EventRefuse:
		parts = append(parts, fmt.Sprintf("%s exit %d: %s", e.Command, e.ExitCode, oneLine(e.Reason, 120)))
	case e.Checkpoint != nil:
		parts = append(parts, fmt.Sprintf("signs entries up to %d, key %s", e.Checkpoint.Size, e.Checkpoint.KeyID))
	}
	if e.Target != "" {
		parts = append(parts, "-> "+e.Target)
	}
	if e.Segment != nil {
		parts = append(parts, fmt.Sprintf("segment through entry %d", e.Segment.Seq))
	}
	if len(e.Unsafe) > 0 {
		parts = append(parts, strings.Join(e.Unsafe, " "))
	}
	return strings.Join(parts, "; ")
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
