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
	"sync"
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
	return serve(ctx, dec, enc, cfg, an)
}

// serve answers requests, several at once (cfg.Parallelism); the bundle's layout
// (which pack creates once it has started the analyzer) is opened on the first.
func serve(ctx context.Context, dec *json.Decoder, enc *json.Encoder, cfg job.Config, an *analyze.Analyzer) error {
	var (
		mu sync.Mutex
		l  *layout.Layout
	)
	open := func() (*layout.Layout, error) {
		mu.Lock()
		defer mu.Unlock()
		if l != nil {
			return l, nil
		}
		var err error
		l, err = layout.Open(cfg.Dir)
		return l, err
	}
	return job.Serve(ctx, dec, enc, cfg.Parallelism, func(ctx context.Context, req job.Request) job.Response {
		var atts []referrers.Attachment
		l, err := open()
		if err == nil {
			atts, err = an.Image(ctx, l, req)
		}
		resp := job.Response{Attachments: atts}
		if err != nil {
			resp.Error, resp.Threshold = err.Error(), errors.Is(err, scanreport.ErrThreshold)
		}
		return resp
	})
}
