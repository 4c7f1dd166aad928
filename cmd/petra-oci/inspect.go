package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/internal/inspect"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show a bundle as a tree: images, platforms, attached artifacts",
		ArgsUsage: "DIR",
		Flags:     []cli.Flag{outputFlag()},
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
