package main

import (
	"github.com/urfave/cli/v2"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "run pack → inspect → unpack end to end on in-process registries seeded with sample signed images",
		Action: func(c *cli.Context) error {
			return cli.Exit("demo: not built yet", 1)
		},
	}
}
