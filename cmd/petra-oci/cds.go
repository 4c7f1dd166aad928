package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/petra-oci/petra-oci/internal/archive"
	"github.com/petra-oci/petra-oci/internal/audit"
)

// archiveExportFlags are the flags of `export --format bundle`.
func archiveExportFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "archive `FILE` to write, or with --split the chunk `DIR` to create (must not exist)"},
		&cli.StringFlag{Name: "split", Usage: "write data chunks of `SIZE` (bytes, or with K, M, G, T: binary multiples) and a chunk index signed with --key"},
		&cli.IntFlag{Name: "parity", Usage: "add `N` Reed-Solomon parity chunks (with --split): any N lost or corrupted chunks are rebuilt at import"},
		&cli.BoolFlag{Name: "zstd", Usage: "compress the tar stream with zstd"},
		&cli.BoolFlag{Name: "sync", Usage: "fsync every file written before the rename into place (durable against a crash right after the export)"},
		&cli.BoolFlag{Name: "verify-files", Usage: "also check every file's SHA-256 against the signed metadata while archiving it (one more hash pass; without it sizes are checked here and digests at import, which refuses a changed file)"},
		&cli.StringFlag{Name: "audit-segment", Usage: "after the export, append its entry to the audit log and copy the whole log to this `FILE`: the connected side's segment, carried beside the archive and given to import (docs/audit.md)"},
		outputFlag(),
	}, signFlags()...)
}

// parseSize parses 1048576, 512K, 100M, 1G, 2GiB, 1T (binary multiples).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := int64(1)
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with K, M, G or T", s)
	}
	return n * mult, nil
}

func exportArchive(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("export: give exactly one bundle DIR", exitUsage)
	}
	if err := required(c, "out"); err != nil {
		return err
	}
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	opts := archive.ExportOptions{Out: c.String("out"), Parity: c.Int("parity"), Zstd: c.Bool("zstd"), Sync: c.Bool("sync"), VerifyFiles: c.Bool("verify-files")}
	if s := c.String("split"); s != "" {
		if opts.SplitSize, err = parseSize(s); err != nil {
			return cli.Exit("export: --split: "+err.Error(), exitUsage)
		}
		if c.String("key") == "" {
			return cli.Exit("export: --split needs --key, the bundle key that signs the chunk index", exitUsage)
		}
	}
	if opts.Parity < 0 || (opts.Parity > 0 && opts.SplitSize == 0) {
		return cli.Exit("export: --parity needs --split and a positive N", exitUsage)
	}
	if opts.Signer, err = loadSignerInBackground(c); err != nil {
		return err
	}
	if c.String("audit-segment") != "" && auditRecordOf(c) == nil {
		return cli.Exit("export: --audit-segment needs the audit log (--audit-log is none)", exitUsage)
	}
	prog := newCDSProgress(c, asJSON)
	opts.Progress = prog.event
	res, err := archive.Export(c.Context, c.Args().First(), opts)
	prog.done()
	if err != nil {
		return err
	}
	if seg := c.String("audit-segment"); seg != "" {
		if err := writeAuditSegment(c, seg, &audit.Bundle{ID: res.BundleID, Sequence: res.Sequence, MetadataDigest: digest.Digest(res.MetadataDigest), Dir: c.Args().First()}, res.Out); err != nil {
			return err
		}
	}
	return render(c, asJSON, res, func() {
		a := res.Archive
		fmt.Fprintf(c.App.Writer, "%s\t%d bytes\tsha256:%s\n", res.Out, a.Size, a.SHA256)
		if res.Index != nil {
			for _, ch := range res.Index.Chunks {
				fmt.Fprintf(c.App.Writer, "  %s\t%s\t%d bytes\tsha256:%s\n", ch.Name, ch.Role, ch.Size, ch.SHA256)
			}
		}
		fmt.Fprintf(c.App.ErrWriter, "exported bundle %s sequence %d (%d files, %d directories; tar %d bytes, %s)\n",
			res.BundleID, res.Sequence, res.Files, res.Dirs, a.TarSize, a.Compression)
	})
}

func importCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "verify and extract an exported archive or its chunks into a new bundle directory (docs/transfer.md)",
		ArgsUsage: "(ARCHIVE | CHUNK-INDEX | CHUNK-DIR)",
		Description: `Order: the signature over the chunk index (--key, or the keyless flags with --trusted-root:
the bundle key signs it), then every chunk against the index before any byte is
extracted (a bad chunk is rebuilt from parity when it can be, and named otherwise),
then petra/metadata.json and its signature (the first entries of the archive), then
only the files the signed metadata lists, each of its signed size, into the temporary
sibling directory .<DIR>.petra-import. The bundle is verified in full, as 'petra-oci
verify' does, and only then renamed to DIR. Refused: paths with .. or absolute,
symlinks, hard links, devices, FIFOs, duplicate names, oversized headers, anything
beyond the signed sizes. An interrupted import resumes when run again: chunks that
verified are not read again, extracted files are not extracted again.`,
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "bundle `DIR` to create (must not exist)"},
			outputFlag(),
			&cli.StringFlag{Name: "audit-segment", Usage: "the connected side's audit log segment `FILE` (export --audit-segment): verified before anything is imported, then continued by this side's log, so one trail reads across the gap"},
			&cli.StringSliceFlag{Name: "audit-segment-key", Usage: "public key `FILE` that must have signed the segment's checkpoints (repeatable; required with --audit-segment)"},
			&cli.BoolFlag{Name: "unsafe-unverified-audit-segment", Usage: "UNSAFE: accept --audit-segment without --audit-segment-key: its hash chain is checked, its checkpoint signatures are not, so anyone could have written it (recorded in the import's audit entry)"},
		}, verifyFlags()...), replayFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("import: give exactly one ARCHIVE, CHUNK-INDEX or chunk directory", exitUsage)
			}
			if err := required(c, "out"); err != nil {
				return err
			}
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			vopts, err := bundleVerifyOptions(c)
			if err != nil {
				return err
			}
			// the connected side's trail is checked first: a segment that does not verify
			// refuses the import before anything is written
			seg := c.String("audit-segment")
			var segKeys [][]byte
			unverified := c.Bool("unsafe-unverified-audit-segment")
			if unverified && seg == "" {
				return cli.Exit("import: --unsafe-unverified-audit-segment without --audit-segment", exitUsage)
			}
			if seg != "" {
				if auditRecordOf(c) == nil {
					return cli.Exit("import: --audit-segment needs the audit log (--audit-log is none)", exitUsage)
				}
				if len(c.StringSlice("audit-segment-key")) == 0 && !unverified {
					return cli.Exit("import: --audit-segment needs --audit-segment-key, the connected side's audit public key that signed its checkpoints (--unsafe-unverified-audit-segment accepts a segment whose signatures are not checked)", exitUsage)
				}
				if segKeys, err = readKeys(c.StringSlice("audit-segment-key")); err != nil {
					return err
				}
				if _, _, err := audit.VerifySegment(c.Context, seg, segKeys); err != nil {
					return fmt.Errorf("import: audit segment %s: %w", seg, err)
				}
			}
			prog := newCDSProgress(c, asJSON)
			res, err := archive.Import(c.Context, c.Args().First(), archive.ImportOptions{Out: c.String("out"), Verify: *vopts, Progress: prog.event})
			prog.done()
			if res != nil && res.Chunks != nil && err != nil && !asJSON {
				for _, ch := range res.Chunks {
					if ch.Status == "bad" {
						fmt.Fprintf(c.App.ErrWriter, "bad chunk %s: %s\n", ch.Name, ch.Detail)
					}
				}
			}
			if err != nil {
				return err
			}
			if seg != "" {
				b := &audit.Bundle{ID: res.BundleID, Sequence: res.Sequence, MetadataDigest: digest.Digest(res.MetadataDigest), Dir: res.Out}
				if _, err := auditImport(c, b, seg, segKeys); err != nil {
					return err
				}
			}
			return render(c, asJSON, res, func() {
				fmt.Fprintf(c.App.Writer, "OK %s: bundle %s sequence %d\n", res.Out, res.BundleID, res.Sequence)
				for _, ch := range res.Chunks {
					if ch.Status == "rebuilt" {
						fmt.Fprintf(c.App.Writer, "  rebuilt %s from parity (%s)\n", ch.Name, ch.Detail)
					}
				}
				if res.Resumed {
					fmt.Fprintln(c.App.Writer, "  resumed an interrupted import")
				}
				if v := res.Verify; v != nil {
					fmt.Fprintf(c.App.Writer, "  signed by %s\n", signer(v.Signature))
					if v.Files != nil {
						fmt.Fprintf(c.App.Writer, "  %d files, %d bytes verified\n", v.Files.Files, v.Files.Bytes)
					}
				}
			})
		},
	}
}

// cdsProgress renders export and import events: JSON lines on stderr with --output
// json, a progress line on a terminal, nothing otherwise.
type cdsProgress struct {
	mu    sync.Mutex
	w     io.Writer
	json  *json.Encoder
	tty   bool
	last  time.Time
	shown bool
}

func newCDSProgress(c *cli.Context, asJSON bool) *cdsProgress {
	p := &cdsProgress{w: c.App.ErrWriter}
	if asJSON {
		p.json = json.NewEncoder(c.App.ErrWriter)
	} else if f, ok := c.App.ErrWriter.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

func (p *cdsProgress) event(e archive.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.json != nil:
		_ = p.json.Encode(struct {
			Time string `json:"time"`
			archive.Event
		}{time.Now().UTC().Format(time.RFC3339Nano), e})
	case p.tty:
		if e.Message != "" {
			fmt.Fprintf(p.w, "\r\033[K%s: %s\n", e.Phase, e.Message)
			p.shown = false
			return
		}
		if time.Since(p.last) < 200*time.Millisecond && e.Done != e.Total {
			return
		}
		p.last, p.shown = time.Now(), true
		line := fmt.Sprintf("%s %s %.1f MiB", e.Phase, e.Chunk, float64(e.Done)/(1<<20))
		if e.Total > 0 {
			line += fmt.Sprintf(" of %.1f MiB (%.0f%%)", float64(e.Total)/(1<<20), 100*float64(e.Done)/float64(e.Total))
		}
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	}
}

func (p *cdsProgress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.shown {
		fmt.Fprintln(p.w)
	}
}

// writeAuditSegment appends export's entry to the audit log and copies the log, ending
// with it, to path (written to a temporary sibling and renamed once complete).
func writeAuditSegment(c *cli.Context, path string, b *audit.Bundle, out string) error {
	if auditRecordOf(c) == nil {
		return cli.Exit("export: --audit-segment needs the audit log (--audit-log is none)", exitUsage)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("audit segment: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := auditExport(c, b, out, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("audit segment %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("audit segment %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("audit segment %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("audit segment %s: %w", path, err)
	}
	return nil
}
