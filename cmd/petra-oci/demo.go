package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/internal/demo"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run seed → pack → inspect → unpack end to end on in-process registries with sample signed images",
		Description: `Starts two registries on 127.0.0.1 inside this process (the source serves the OCI
referrers API, the destination does not), seeds them with Chainguard-shaped multi-arch
images that carry cosign signatures, attestations and referrers, packs them into a bundle,
shows it, unpacks it into the destination and checks every digest, then prints the
admission resources generated for the destination and, when policy-controller's tester
(policy-tester, installed by make tools) is found, its verdicts on a bundled image and on
one signed by the same publisher but pushed by hand. Needs no network.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "keep the bundle in `DIR` (default: a temporary directory, removed)"},
			outputFlag(),
		},
		Action: func(c *cli.Context) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			res, err := demo.Run(c.Context, demo.Options{Dir: c.String("dir"), Log: logger(c)})
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(c, res)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "bundle %s:\n", res.Bundle)
			renderTree(w, res.Inspect)
			fmt.Fprintln(w, "\nunpacked:")
			for _, m := range res.Unpack.Images {
				fmt.Fprintf(w, "  %s -> %s (%s, %d attachments)\n", m.Source, m.Destination, m.Digest, m.Attachments)
			}
			if v := res.Unpack.Verification; v != nil {
				fmt.Fprintf(w, "\nbundle %s sequence %d verified (signature, %d files); images verified again offline:\n", v.BundleID, v.Sequence, v.Files.Files)
				renderImageResults(w, v.ImageResults)
			}
			fmt.Fprintf(w, "\nOK: %d manifests at the destination under their source digests\n", res.Verified)
			if a := res.Admission; a != nil {
				fmt.Fprintf(w, "\nadmission resources for the destination (apply in this order, docs/admission.md):\n")
				for _, f := range a.Files {
					fmt.Fprintf(w, "--- %s (%s)\n%s", f.Name, strings.Join(f.Objects, ", "), f.Data)
				}
			}
			if res.TesterMissing != "" {
				fmt.Fprintf(w, "\nadmission verdicts: not run: %s\n", res.TesterMissing)
			}
			for _, v := range res.Tester {
				verdict := "REFUSED"
				if v.Admitted {
					verdict = "ADMITTED"
				}
				fmt.Fprintf(w, "\npolicy-controller tester: %s: %s\n  %s\n", verdict, v.What, v.Image)
				if v.Output != "" && !v.Admitted {
					fmt.Fprintf(w, "  %s\n", v.Output)
				}
			}
			return nil
		},
	}
}
