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
	"time"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// interruptGrace is how long a run may take to stop cleanly after SIGINT or SIGTERM
// (cancelled requests, released locks) before it is ended anyway.
const interruptGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
		time.Sleep(interruptGrace)
		fmt.Fprintf(os.Stderr, "petra-oci: interrupted; did not stop within %s, exiting\n", interruptGrace)
		os.Exit(exitInterrupted)
	}()
	app := newApp(os.Stdout, os.Stderr)
	stopProfiles := startProfiles()
	err := app.RunContext(ctx, interspersed(app, os.Args))
	stopProfiles()
	if ctx.Err() != nil {
		// nothing half-done is left looking complete: tags move last, layouts write
		// through temporary files
		fmt.Fprintf(os.Stderr, "petra-oci: interrupted: %v\n", err)
		os.Exit(exitInterrupted)
	}
	if err != nil {
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
		Commands: audited([]*cli.Command{ // audit.go: state-changing commands append to the audit log
			packCommand(),
			unpackCommand(),
			exportCommand(),
			serveCommand(),
			admissionCommand(),
			inspectCommand(),
			signCommand(),
			verifyCommand(),
			verifyBlobCommand(),
			demoCommand(),
			importCommand(),
			auditCommand(),
			receiptCommand(),
		}),
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
