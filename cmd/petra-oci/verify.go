package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/signing"
)

func signCommand() *cli.Command {
	return &cli.Command{
		Name:      "sign",
		Usage:     "sign an existing bundle's metadata (after checking every file against it)",
		ArgsUsage: "DIR",
		Flags:     signFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("sign: give exactly one bundle DIR", exitUsage)
			}
			if c.String("key") == "" {
				return cli.Exit("sign: --key is required", exitUsage)
			}
			signer, err := loadSigner(c)
			if err != nil {
				return err
			}
			m, err := bundle.Sign(c.Context, c.Args().First(), signer, 0)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "signed %s: bundle %s sequence %d, %d files\n", c.Args().First(), m.BundleID, m.Sequence, len(m.Files))
			return nil
		},
	}
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify a bundle offline: its signature, then its metadata, sequence and every file",
		ArgsUsage: "DIR",
		Description: `Order: the signature over petra/metadata.json (nothing else is read before it
verifies), the metadata, the bundle series sequence against the last accepted one, then
every file streamed and hashed. Fails with a specific exit code per problem:
10 unsigned, 11 bad signature, 12 invalid metadata, 13 replay, 14 unusable replay
state, 20 changed file,
21 missing file, 22 extra file, 23 symlink/device/FIFO/escaping path, 24 blob not
matching its name, 25 index entry, blob or image not covered by the metadata (an image
in index.json that the signed image list lacks, or the reverse), 26 an entry the graph
does not reach from an image of its own repository (orphan, foreign repository), 27 an
entry whose content does not match its kind (a cosign signature that is a runnable
image), 28 a repository or tag outside the distribution grammar. It prints every
manifest unpack would push: images, children and attachments.
verify records nothing; unpack records the sequence once it has pushed the bundle.`,
		Flags: append(append(verifyFlags(), replayFlags()...), outputFlag(),
			&cli.StringFlag{Name: "report", Usage: "after a successful verification, write the reviewer report with the verified signers to `FILE` (.html or .json)"}),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("verify: give exactly one bundle DIR", exitUsage)
			}
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			opts, err := bundleVerifyOptions(c)
			if err != nil {
				return err
			}
			rep, err := bundle.Verify(c.Context, c.Args().First(), *opts)
			if err != nil {
				return err
			}
			auditBundle(c, reportBundle(rep))
			if out := c.String("report"); out != "" {
				if err := writeReport(c, c.Args().First(), out, rep); err != nil {
					return err
				}
			}
			if asJSON {
				return writeJSON(c, rep)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "OK %s: bundle %s sequence %d\n", rep.Dir, rep.BundleID, rep.Sequence)
			fmt.Fprintf(w, "  signed by %s\n", signer(rep.Signature))
			fmt.Fprintf(w, "  %d files, %d bytes, %d blobs hashed in %s (%.0f MB/s)\n", rep.Files.Files, rep.Files.Bytes, rep.Files.Blobs,
				rep.Files.Duration.Round(time.Millisecond), float64(rep.Files.Bytes)/1e6/rep.Files.Duration.Seconds())
			if d := rep.Delta; d != nil {
				var size int64
				for _, e := range d.Expected {
					size += e.Size
				}
				fmt.Fprintf(w, "  DELTA against receipt %s of %s: %d blobs (%d bytes) expected at the destination; unpack checks them first\n",
					d.Receipt, d.Registry, len(d.Expected), size)
			}
			renderContents(w, rep.Contents)
			renderImageResults(w, rep.ImageResults)
			return nil
		},
	}
}

// renderContents lists every manifest the bundle would push, per image: its children
// and its attachments (subjects first).
func renderContents(w io.Writer, repos []bundle.Repository) {
	for _, r := range repos {
		for _, im := range r.Images {
			fmt.Fprintf(w, "  %s\t%s\t%d children, %d attachments\n", im.Name, im.Digest, len(im.Children), len(im.Attachments))
			for _, m := range im.Children {
				fmt.Fprintf(w, "    child %s %s\n", m.Digest, m.Platform)
			}
			for _, m := range im.Attachments {
				line := fmt.Sprintf("    %s %s on %s", m.Kind, m.Digest, m.Subject)
				if m.Tag != "" {
					line += " (" + m.Tag + ")"
				}
				fmt.Fprintln(w, line)
			}
		}
	}
}

func signer(r *signing.Result) string {
	if r == nil {
		return "nobody"
	}
	if r.Mode == signing.ModeKeyless {
		s := fmt.Sprintf("%s (issuer %s)", r.Identity, r.Issuer)
		if !r.SignedAt.IsZero() {
			s += " at " + r.SignedAt.UTC().Format(time.RFC3339)
		}
		return s
	}
	return "key " + r.KeyID
}

func verifyBlobCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify-blob",
		Usage:     "verify a Sigstore bundle over any file, offline (as cosign verify-blob --bundle)",
		ArgsUsage: "FILE",
		Flags: append(verifyFlags(),
			&cli.StringFlag{Name: "bundle", Usage: "Sigstore bundle `FILE` (v0.1 to v0.3)"},
			&cli.StringFlag{Name: "digest", Usage: "verify against this artifact `DIGEST` (sha256:<hex>, sha512:<hex>) instead of FILE"},
			outputFlag(),
		),
		Action: func(c *cli.Context) error {
			if err := required(c, "bundle"); err != nil {
				return err
			}
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			opts, err := signatureOptions(c)
			if err != nil {
				return err
			}
			var content io.Reader
			switch {
			case c.String("digest") != "" && c.NArg() == 0:
				opts.ArtifactDigest = c.String("digest")
			case c.String("digest") == "" && c.NArg() == 1:
				f, err := os.Open(c.Args().First())
				if err != nil {
					return err
				}
				defer f.Close()
				content = f
			default:
				return cli.Exit("verify-blob: give FILE or --digest, one of them", exitUsage)
			}
			b, err := readLimited(c.String("bundle"), 16<<20)
			if err != nil {
				return err
			}
			res, err := signing.VerifyBlob(c.Context, b, content, opts)
			if err != nil {
				return fmt.Errorf("%w: %w", bundle.ErrSignature, err)
			}
			if asJSON {
				return writeJSON(c, res)
			}
			what := "signature"
			if res.PredicateType != "" {
				what = "attestation " + res.PredicateType
			}
			fmt.Fprintf(c.App.Writer, "Verified OK: %s by %s\n", what, signer(res))
			return nil
		},
	}
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if n > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return buf.Bytes(), nil
}

// renderImageResults prints, per image, who signed it, when, which attestations were
// checked, and the result.
func renderImageResults(w io.Writer, results []*imageverify.Result) {
	for _, r := range results {
		verdict := "VERIFIED"
		if !r.Verified {
			verdict = "FAILED"
		}
		fmt.Fprintf(w, "image %s@%s: %s (rule %s)\n", r.Repository, r.Digest, verdict, r.Rule)
		for _, s := range append([]imageverify.Subject{r.Root}, r.Children...) {
			name := "index"
			if s.Platform != "" {
				name = s.Platform
			}
			for _, sig := range s.Signatures {
				fmt.Fprintf(w, "  %s signed by %s (%s)%s\n", name, who(sig.Signer), sig.Form, when(sig.Signer))
			}
			for _, a := range s.Attestations {
				fmt.Fprintf(w, "  %s attestation %s by %s%s\n", name, a.PredicateType, who(a.Signer), when(a.Signer))
			}
			for _, ck := range s.Checks {
				fmt.Fprintf(w, "  %s check %s: passed=%v %s\n", name, ck.PredicateType, ck.Passed, ck.Detail)
			}
		}
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  failure: %s\n", f)
		}
	}
}

func who(s imageverify.Signer) string {
	if s.Identity != "" {
		return s.Identity + " (issuer " + s.Issuer + ")"
	}
	return "key " + s.KeyID
}

func when(s imageverify.Signer) string {
	if s.SignedAt.IsZero() {
		return ""
	}
	return " at " + s.SignedAt.UTC().Format(time.RFC3339) + " (" + s.TimeSource + ")"
}
