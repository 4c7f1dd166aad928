package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/internal/serve"
)

// serveResult is what serve prints once it listens.
type serveResult struct {
	URL          string             `json:"url"`
	Address      string             `json:"address"`
	BundleID     string             `json:"bundleID"`
	Sequence     uint64             `json:"sequence"`
	Repositories []serve.Repository `json:"repositories"`
}

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve a verified bundle read-only over the OCI distribution API",
		ArgsUsage: "DIR",
		Description: `Verifies the whole bundle first, exactly as unpack does (same flags, same exit
codes), and only then listens. It serves the verified graph read-only, each repository
named as 'unpack --to HOST/PREFIX' would name it (--prefix): /v2/, the catalog, tag
lists (n/last paging), manifests and blobs by tag and digest (GET/HEAD, Range), the
referrers API (artifactType filter) and the referrers tag schema (sha256-<hex>). Writes
get 405 UNSUPPORTED.

Every read goes through the verified file set: a blob is hashed while streamed and
its last chunk is held back until the digest matches, so a file changed on disk after
verification is never served as valid (the response is cut, logged, counted). SIGHUP
verifies the bundle again and serves the new state only if it passes; on failure the
previously verified state keeps serving. SIGINT or SIGTERM stops it gracefully (exit
130). Plain HTTP is refused on an address that is not loopback unless
--unsafe-plain-http; give --tls-cert and --tls-key to serve HTTPS. Once listening it
prints the URL on stdout (--output json: the URL and the repositories with their tags),
and an access log line per request on stderr. See docs/serve.md.`,
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "addr", Value: serve.DefaultAddr, Usage: "listen on `HOST:PORT` (port 0 picks a free one)"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS with this PEM certificate `FILE` (with --tls-key)"},
			&cli.StringFlag{Name: "tls-key", Usage: "PEM private key `FILE` of --tls-cert"},
			&cli.BoolFlag{Name: "unsafe-plain-http", Usage: "UNSAFE: allow plain HTTP on an address that is not loopback"},
			&cli.StringFlag{Name: "prefix", Usage: "serve repositories under `PREFIX`, as 'unpack --to HOST/PREFIX' names them"},
			outputFlag(),
		}, verifyFlags()...), replayFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("serve: give exactly one bundle DIR", exitUsage)
			}
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			vopts, err := bundleVerifyOptions(c)
			if err != nil {
				return err
			}
			log := logger(c)
			srv, err := serve.New(c.Context, serve.Options{
				Dir: c.Args().First(), Verify: vopts, Prefix: strings.Trim(c.String("prefix"), "/"),
				Addr: c.String("addr"), TLSCertFile: c.String("tls-cert"), TLSKeyFile: c.String("tls-key"),
				UnsafePlainHTTP: c.Bool("unsafe-plain-http"), Log: log,
			})
			if err != nil {
				return err
			}
			if c.Bool("unsafe-plain-http") && !srv.TLS() {
				log.Warn("UNSAFE: --unsafe-plain-http: serving plain HTTP, which any host on the path can tamper with")
			}
			if err := srv.Start(); err != nil {
				return err
			}
			rep := srv.Report()
			res := serveResult{URL: srv.URL(), Address: srv.Addr(), BundleID: rep.BundleID, Sequence: rep.Sequence, Repositories: srv.Repositories()}
			if err := render(c, asJSON, res, func() {
				fmt.Fprintln(c.App.Writer, res.URL)
				for _, r := range res.Repositories {
					fmt.Fprintf(c.App.ErrWriter, "serving %s: %d tags, %d manifests, %d blobs\n", r.Name, len(r.Tags), r.Manifests, r.Blobs)
				}
				fmt.Fprintf(c.App.ErrWriter, "bundle %s sequence %d verified; serving on %s (SIGHUP re-verifies, SIGINT/SIGTERM stops)\n", res.BundleID, res.Sequence, res.URL)
			}); err != nil {
				_ = srv.Shutdown(context.Background())
				return err
			}
			return runServer(c, srv)
		},
	}
}

// runServer serves until a signal stops it, re-verifying on SIGHUP.
func runServer(c *cli.Context, srv *serve.Server) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	stats := func() {
		s := srv.Stats()
		fmt.Fprintf(c.App.ErrWriter, "served %d requests, %d bytes; %d refused as changed after verification; %d reloads, %d failed\n",
			s.Requests, s.BytesSent, s.Tampered, s.Reloads, s.ReloadFailures)
	}
	for {
		select {
		case <-hup:
			// a failure is logged by Reload; the previous view keeps serving
			_ = srv.Reload(c.Context)
		case err := <-srv.Done():
			_ = srv.Shutdown(context.Background())
			stats()
			if err != nil {
				return fmt.Errorf("serving: %w", err)
			}
			return errors.New("serving stopped")
		case <-c.Context.Done():
			err := srv.Shutdown(context.Background())
			stats()
			if err != nil {
				return fmt.Errorf("stopped, cutting requests still in flight: %w", err)
			}
			return errors.New("stopped")
		}
	}
}
