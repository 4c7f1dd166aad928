// Command petra-oci moves container images and everything attached to them into
// disconnected registries through an OCI image layout bundle. Commands parse flags,
// call one library function and render its result: results on stdout, logs and
// progress on stderr.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app := newApp(os.Stdout, os.Stderr)
	if err := app.RunContext(ctx, interspersed(app, os.Args)); err != nil {
		fmt.Fprintf(os.Stderr, "petra-oci: %v\n", err)
		os.Exit(exitCode(err))
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "petra-oci",
		Usage:   "move container images with their signatures, attestations and referrers into disconnected registries",
		Version: version,
		Writer:  stdout, ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "debug", Usage: "log debug detail to stderr"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "log only errors to stderr"},
		},
		Commands: []*cli.Command{
			packCommand(),
			unpackCommand(),
			inspectCommand(),
			signCommand(),
			verifyCommand(),
			verifyBlobCommand(),
			demoCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // main prints and exits
	}
}

// logger returns the stderr logger the global flags ask for.
func logger(c *cli.Context) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case c.Bool("debug"):
		level = slog.LevelDebug
	case c.Bool("quiet"):
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: level}))
}
