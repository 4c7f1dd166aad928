package main

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/internal/remote"
)

func registryFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "plain-http", Usage: "talk plain HTTP to registries (loopback test registries)"},
		&cli.StringFlag{Name: "ca-file", Usage: "PEM `FILE` of CA certificates to trust in addition to the system roots"},
		&cli.BoolFlag{Name: "insecure-skip-tls-verify", Usage: "UNSAFE: do not verify registry TLS certificates"},
		&cli.StringFlag{Name: "docker-config", Usage: "docker config.json `PATH` for credentials (default: $DOCKER_CONFIG or ~/.docker/config.json)"},
		&cli.IntFlag{Name: "concurrency", Value: 4, Usage: "blob transfers in flight"},
	}
}

func registryClient(c *cli.Context) (*remote.Client, error) {
	return remote.NewClient(remote.Options{
		PlainHTTP:             c.Bool("plain-http"),
		CAFile:                c.String("ca-file"),
		InsecureSkipTLSVerify: c.Bool("insecure-skip-tls-verify"),
		DockerConfig:          c.String("docker-config"),
		UserAgent:             "petra-oci/" + version,
	})
}

func outputFlag() cli.Flag {
	return &cli.StringFlag{Name: "output", Value: "text", Usage: "result format: text or json"}
}

// wantJSON reports whether --output asks for JSON, refusing unknown formats.
func wantJSON(c *cli.Context) (bool, error) {
	switch c.String("output") {
	case "text", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, cli.Exit(fmt.Sprintf("--output %q: want text or json", c.String("output")), exitUsage)
}

func writeJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// required returns a usage error (exit 2, message on stderr) when flag is unset.
// Flags are not marked Required: urfave/cli would print the help on stdout.
func required(c *cli.Context, flags ...string) error {
	for _, f := range flags {
		if c.String(f) == "" {
			return cli.Exit(c.Command.Name+": --"+f+" is required (see --help)", exitUsage)
		}
	}
	return nil
}

// render writes v as JSON to stdout, or calls text, which writes results to stdout and
// summaries to stderr. Commands render even a partial result of a failed run.
func render(c *cli.Context, asJSON bool, v any, text func()) error {
	if asJSON {
		return writeJSON(c, v)
	}
	text()
	return nil
}
