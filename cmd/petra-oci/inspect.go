package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/inspect"
	"github.com/petra-oci/petra-oci/internal/report"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show a bundle as a tree: images, platforms, attached artifacts",
		ArgsUsage: "DIR",
		Flags: []cli.Flag{outputFlag(),
			&cli.StringFlag{Name: "report", Usage: "also write the reviewer report (images, platforms, SBOM package counts, CVEs by severity, exceptions) to `FILE`: .html, or .json"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("inspect: give exactly one bundle DIR", exitUsage)
			}
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			rep, err := inspect.Inspect(c.Context, c.Args().First())
			if err != nil {
				return err
			}
			if out := c.String("report"); out != "" {
				if err := writeReport(c, c.Args().First(), out, nil); err != nil {
					return err
				}
			}
			if asJSON {
				return writeJSON(c, rep)
			}
			renderTree(c.App.Writer, rep)
			return nil
		},
	}
}

func renderTree(w io.Writer, rep *inspect.Report) {
	for _, im := range rep.Images {
		fmt.Fprintf(w, "%s\n  %s %s (%d bytes)\n", im.Name, im.Digest, im.MediaType, im.Size)
		renderArtifacts(w, im.Attachments, "  ")
		for _, p := range im.Platforms {
			fmt.Fprintf(w, "  %s %s (%d bytes)\n", p.Platform, p.Digest, p.Size)
			renderArtifacts(w, p.Attachments, "    ")
		}
	}
}

func renderArtifacts(w io.Writer, as []inspect.Artifact, indent string) {
	for _, a := range as {
		what := a.ArtifactType
		if len(a.PredicateTypes) > 0 {
			what = strings.Join(a.PredicateTypes, ", ")
		}
		fmt.Fprintf(w, "%s└─ %s %s %s (%d bytes)\n", indent, a.Kind, what, a.Digest, a.Size)
		renderArtifacts(w, a.Attachments, indent+"   ")
	}
}

// writeReport writes the reviewer report of dir to out (HTML, or JSON for .json). The
// signers and the verified mark come only from verified, the result of a verification
// that passed (verify --report); from inspect the report says it is not verified.
func writeReport(c *cli.Context, dir, out string, verified *bundle.Report) error {
	r, err := report.Build(c.Context, dir)
	if err != nil {
		return err
	}
	if verified != nil {
		r.Verified = true
		if s := verified.Signature; s != nil {
			r.Signers = append(r.Signers, reportSigner(s.Mode, s.Identity, s.Issuer, s.KeyID, "bundle metadata"))
		}
		for _, res := range verified.ImageResults {
			for i := range r.Images {
				if r.Images[i].Digest != res.Digest {
					continue
				}
				for _, sig := range res.Root.Signatures {
					r.Images[i].Signers = append(r.Images[i].Signers, reportSigner(sig.Mode, sig.Identity, sig.Issuer, sig.KeyID, "image"))
				}
				for _, a := range res.Root.Attestations {
					r.Images[i].Signers = append(r.Images[i].Signers, reportSigner(a.Mode, a.Identity, a.Issuer, a.KeyID, "attestation "+a.PredicateType))
				}
			}
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if strings.HasSuffix(out, ".json") {
		err = report.WriteJSON(f, r)
	} else {
		err = report.WriteHTML(f, r)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing report %s: %w", out, err)
	}
	logger(c).Info("reviewer report written", "file", out)
	return nil
}

func reportSigner(mode, identity, issuer, keyID, what string) report.Signer {
	if identity == "" {
		identity = keyID
	}
	return report.Signer{Identity: identity, Issuer: issuer, Kind: mode, What: what}
}
