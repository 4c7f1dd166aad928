package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// exportCommand writes a bundle out in a transfer format; --format bundle (the default)
// is the deterministic archive / signed chunks of cds.go.
func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write a bundle as one deterministic archive, or as chunks with a signed chunk index and parity (docs/transfer.md)",
		ArgsUsage: "DIR",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "format", Value: "bundle", Usage: "`FORMAT` to write: bundle (a petra-oci archive, for import on the far side)"},
		}, archiveExportFlags()...),
		Action: func(c *cli.Context) error {
			switch c.String("format") {
			case "bundle":
				return exportArchive(c)
			}
			return cli.Exit(fmt.Sprintf("export: --format %q: want bundle", c.String("format")), exitUsage)
		},
	}
}
