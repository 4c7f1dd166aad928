package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/petra-oci/petra-oci/internal/analyze/job"
	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/referrers"
)

// analyzeFlags select SBOM generation and the vulnerability scan at pack.
func analyzeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "sbom", Value: true, Usage: "attach an SPDX 2.3 SBOM to every platform of every image: its own SPDX attestation when the policy verified one, else generated with syft, offline (--sbom=false: none)"},
		&cli.StringFlag{Name: "vuln-db", Usage: "scan every SBOM with grype against this offline database `PATH` (what `grype db import` takes, or an installed db dir); implies --sbom"},
		&cli.DurationFlag{Name: "vuln-db-max-age", Usage: "refuse a vulnerability database older than this `DURATION` (e.g. 120h); 0: no limit"},
		&cli.StringFlag{Name: "fail-on", Usage: "refuse an image with a finding of this `SEVERITY` or worse (negligible, low, medium, high, critical)"},
		&cli.BoolFlag{Name: "fail-on-fixable", Usage: "refuse an image with any finding that has a fix"},
		&cli.StringFlag{Name: "scan-mode", Value: "enforce", Usage: "enforce: refuse images over the thresholds; warn: pack them and record the violation"},
		&cli.StringFlag{Name: "exceptions", Usage: "YAML `FILE`: a list of {cve, image (glob), reason, expires} accepted findings; expired ones do not apply"},
		&cli.StringSliceFlag{Name: "vex", Usage: "OpenVEX document `FILE`; not_affected/fixed statements suppress findings; repeatable"},
	}
}

// analyzer returns the pack hook the flags and the policy's vulnerabilities section
// ask for (flags given explicitly override the policy), and a function that stops the
// analyzer process; nil when no analysis is asked. The analysis runs in
// petra-oci-analyze, started here, before pack copies anything: it loads and checks
// the vulnerability database first, so a missing or stale one costs no download.
func analyzer(c *cli.Context, pol *policy.Policy, dir string) (func(context.Context, job.Request) ([]referrers.Attachment, error), func(), error) {
	var pv *policy.Vulnerabilities
	if pol != nil {
		pv = pol.Vulnerabilities
	}
	if pv != nil && c.String("vuln-db") == "" {
		return nil, nil, cli.Exit("the policy sets vulnerability thresholds: give --vuln-db (an offline grype database)", exitUsage)
	}
	if !c.Bool("sbom") && c.String("vuln-db") == "" {
		return nil, func() {}, nil
	}
	cfg := job.Config{
		Dir: dir, VulnDB: c.String("vuln-db"), MaxDBAge: c.Duration("vuln-db-max-age"),
		Now: time.Now().UTC().Truncate(time.Second),
		Thresholds: scanreport.Thresholds{
			FailOnFixable: c.Bool("fail-on-fixable"), Mode: scanreport.Mode(c.String("scan-mode")),
		},
	}
	if pv != nil {
		th := pv.Thresholds()
		if !c.IsSet("fail-on-fixable") {
			cfg.Thresholds.FailOnFixable = th.FailOnFixable
		}
		if !c.IsSet("scan-mode") && th.Mode != "" {
			cfg.Thresholds.Mode = th.Mode
		}
		if !c.IsSet("fail-on") {
			cfg.Thresholds.FailOn = th.FailOn
		}
		if !c.IsSet("vuln-db-max-age") {
			cfg.MaxDBAge = pv.DBMaxAge()
		}
		cfg.Exceptions = append(cfg.Exceptions, pv.Exceptions...)
	}
	if s := c.String("fail-on"); s != "" {
		sev, err := scanreport.ParseSeverity(s)
		if err != nil {
			return nil, nil, cli.Exit("--fail-on: "+err.Error(), exitUsage)
		}
		cfg.Thresholds.FailOn = sev
	}
	if err := cfg.Thresholds.Validate(); err != nil {
		return nil, nil, cli.Exit(err.Error(), exitUsage)
	}
	if f := c.String("exceptions"); f != "" {
		b, err := readLimited(f, 4<<20)
		if err != nil {
			return nil, nil, err
		}
		var more []scanreport.Exception
		if err := yaml.UnmarshalStrict(b, &more); err != nil {
			return nil, nil, cli.Exit("--exceptions "+f+": "+err.Error(), exitUsage)
		}
		cfg.Exceptions = append(cfg.Exceptions, more...)
	}
	for _, e := range cfg.Exceptions {
		if err := e.Validate(); err != nil {
			return nil, nil, cli.Exit("exceptions: "+err.Error(), exitUsage)
		}
	}
	for _, f := range c.StringSlice("vex") {
		b, err := readLimited(f, 16<<20)
		if err != nil {
			return nil, nil, err
		}
		cfg.VEX = append(cfg.VEX, b)
	}
	bin, err := job.Find()
	if err != nil {
		return nil, nil, err
	}
	client, err := job.Start(c.Context, bin, cfg, c.App.ErrWriter)
	if err != nil {
		return nil, nil, fmt.Errorf("starting the analyzer: %w", err)
	}
	hook := func(ctx context.Context, req job.Request) ([]referrers.Attachment, error) {
		return client.Analyze(req)
	}
	return hook, func() { client.Close() }, nil
}
