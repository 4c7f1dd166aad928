package main

import (
	"os"
	"time"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"github.com/petra-oci/petra-oci/internal/analyze"
	"github.com/petra-oci/petra-oci/internal/policy"
	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
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

// analyzer builds the pack analyzer the flags and the policy's vulnerabilities section
// ask for (flags given explicitly override the policy); nil when none.
func analyzer(c *cli.Context, pol *policy.Policy) (*analyze.Analyzer, error) {
	var pv *policy.Vulnerabilities
	if pol != nil {
		pv = pol.Vulnerabilities
	}
	if pv != nil && c.String("vuln-db") == "" {
		return nil, cli.Exit("the policy sets vulnerability thresholds: give --vuln-db (an offline grype database)", exitUsage)
	}
	if !c.Bool("sbom") && c.String("vuln-db") == "" {
		return nil, nil
	}
	opts := analyze.Options{
		VulnDB: c.String("vuln-db"), MaxDBAge: c.Duration("vuln-db-max-age"), Log: logger(c),
		Now: time.Now().UTC().Truncate(time.Second),
		Thresholds: scanreport.Thresholds{
			FailOnFixable: c.Bool("fail-on-fixable"), Mode: scanreport.Mode(c.String("scan-mode")),
		},
	}
	if pv != nil {
		th := pv.Thresholds()
		if !c.IsSet("fail-on-fixable") {
			opts.Thresholds.FailOnFixable = th.FailOnFixable
		}
		if !c.IsSet("scan-mode") && th.Mode != "" {
			opts.Thresholds.Mode = th.Mode
		}
		if !c.IsSet("fail-on") {
			opts.Thresholds.FailOn = th.FailOn
		}
		if !c.IsSet("vuln-db-max-age") {
			opts.MaxDBAge = pv.DBMaxAge()
		}
		opts.Exceptions = append(opts.Exceptions, pv.Exceptions...)
	}
	if s := c.String("fail-on"); s != "" {
		sev, err := scanreport.ParseSeverity(s)
		if err != nil {
			return nil, cli.Exit("--fail-on: "+err.Error(), exitUsage)
		}
		opts.Thresholds.FailOn = sev
	}
	if f := c.String("exceptions"); f != "" {
		b, err := readLimited(f, 4<<20)
		if err != nil {
			return nil, err
		}
		var more []scanreport.Exception
		if err := yaml.UnmarshalStrict(b, &more); err != nil {
			return nil, cli.Exit("--exceptions "+f+": "+err.Error(), exitUsage)
		}
		opts.Exceptions = append(opts.Exceptions, more...)
	}
	for _, f := range c.StringSlice("vex") {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		opts.VEX = append(opts.VEX, b)
	}
	return analyze.New(c.Context, opts)
}
