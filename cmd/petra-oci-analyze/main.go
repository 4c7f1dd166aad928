// Command petra-oci-analyze is petra-oci pack's SBOM and vulnerability analyzer, in its
// own process so that petra-oci does not link syft and grype. It speaks the protocol of
// internal/analyze/job on stdin and stdout; it is not meant to be run by hand.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/petra-oci/petra-oci/internal/analyze"
	"github.com/petra-oci/petra-oci/internal/analyze/job"
	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/referrers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "petra-oci-analyze: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	dec := json.NewDecoder(os.Stdin)
	enc := json.NewEncoder(os.Stdout)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var cfg job.Config
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	// the database is loaded and checked first: pack starts the analyzer before it
	// copies anything, so a missing or stale database refuses the run up front
	an, err := analyze.New(ctx, analyze.Options{VulnDB: cfg.VulnDB, MaxDBAge: cfg.MaxDBAge, Thresholds: cfg.Thresholds,
		Exceptions: cfg.Exceptions, VEX: cfg.VEX, Now: cfg.Now, Log: log})
	if err != nil {
		return enc.Encode(job.Response{Error: err.Error()})
	}
	defer an.Close()
	if err := enc.Encode(job.Response{}); err != nil {
		return err
	}
	return serve(ctx, dec, enc, cfg.Dir, an)
}

// serve answers requests; the bundle's layout (which pack creates once it has
// started the analyzer) is opened on the first.
func serve(ctx context.Context, dec *json.Decoder, enc *json.Encoder, dir string, an *analyze.Analyzer) error {
	var l *layout.Layout
	for {
		var req job.Request
		if err := dec.Decode(&req); err != nil {
			return nil // the parent closed stdin: done
		}
		var atts []referrers.Attachment
		var err error
		if l == nil {
			l, err = layout.Open(dir)
		}
		if err == nil {
			atts, err = an.Image(ctx, l, req)
		}
		resp := job.Response{Attachments: atts}
		if err != nil {
			resp.Error, resp.Threshold = err.Error(), errors.Is(err, scanreport.ErrThreshold)
		}
		if err := enc.Encode(resp); err != nil {
			return err
		}
	}
}
