package main

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/admission"
	"github.com/petra-oci/petra-oci/replay"
)

func admissionCommand() *cli.Command {
	return &cli.Command{
		Name:      "admission",
		Usage:     "write the Kubernetes admission resources (policy-controller, Gatekeeper) that admit only what the bundle carried",
		ArgsUsage: "DIR",
		Description: `Verifies the bundle first, offline, as 'petra-oci verify' does (its signature with --key,
the series sequence, every file, the graph and, with --policy or --image-key, every image
against this side's pinned policy), and refuses on any failure. One difference: a bundle
whose sequence is the last accepted one (the bundle just unpacked) is accepted; an older
one is refused (exit 13) unless --allow-replay.

Then writes to OUTDIR (whole or not at all: a temporary sibling renamed into place), with
a kustomization.yaml, in the order to apply them (docs/admission.md):
  10-trustroot.yaml              policy-controller TrustRoot from --trusted-root (offline)
  20-clusterimagepolicies.yaml   one ClusterImagePolicy per policy image rule over
                                 --registry, and one requiring petra's verification summary
                                 signed by --key on everything under --registry
  30/31-template-*.yaml          Gatekeeper templates: allowed repos, digests only
  40/41-constraint-*.yaml        their constraints: --registry with its trailing "/"
The same inputs give the same bytes. A policy rule policy-controller cannot express is an
error naming the rule (exit 33), never a weaker policy; an image without petra's summary
fails (exit 30).`,
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "registry", Usage: "the internal registry `HOST[:PORT][/PREFIX]`, as unpack's --to"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "output `DIR` (created, or replaced when it holds a previous output)"},
			&cli.StringFlag{Name: "attest-key-pub", Usage: "public key `FILE` of the disconnected side (unpack --attest-key): its import record is required too"},
			outputFlag(),
		}, verifyFlags()...), replayFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("admission: give exactly one bundle DIR", exitUsage)
			}
			if err := required(c, "registry", "out", "key"); err != nil {
				return err
			}
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			if err := admission.CheckRegistry(c.String("registry")); err != nil {
				return admissionExit(err)
			}
			var attestKey []byte
			if k := c.String("attest-key-pub"); k != "" {
				if attestKey, err = readLimited(k, 64<<10); err != nil {
					return err
				}
			}
			opts, err := bundleVerifyOptions(c)
			if err != nil {
				return err
			}
			if s, ok := opts.Replay.(*replay.Store); ok {
				opts.Replay = currentBundle{store: s, allowReplay: c.Bool("allow-replay")}
			}
			dir := c.Args().First()
			v, err := bundle.Open(c.Context, dir, *opts)
			if err != nil {
				if v != nil {
					v.Close()
				}
				return err
			}
			defer v.Close()
			auditBundle(c, reportBundle(v.Report))
			gen, files, err := generateAdmission(c, v, opts, c.String("registry"), attestKey)
			if err != nil {
				return err
			}
			out := c.String("out")
			if err := admission.WriteDir(out, files); err != nil {
				return admissionExit(err)
			}
			res := admissionResult{Bundle: dir, BundleID: v.Report.BundleID, Sequence: v.Report.Sequence, Out: out,
				Registry: c.String("registry"), PolicyDigest: policyDigest(gen), Files: files.Files, Notes: files.Notes}
			return render(c, asJSON, res, func() {
				for _, f := range files.Files {
					fmt.Fprintf(c.App.Writer, "%s/%s", out, f.Name)
					for _, o := range f.Objects {
						fmt.Fprintf(c.App.Writer, "\t%s", o)
					}
					fmt.Fprintln(c.App.Writer)
				}
				for _, n := range files.Notes {
					fmt.Fprintf(c.App.ErrWriter, "note: %s\n", n)
				}
				fmt.Fprintf(c.App.ErrWriter, "admission resources for bundle %s sequence %d (%d images) over %s written to %s; apply in order (docs/admission.md)\n",
					v.Report.BundleID, v.Report.Sequence, len(gen.Images), c.String("registry"), out)
			})
		},
	}
}

// admissionResult is what admission prints with --output json.
// generateAdmission generates the admission resources of the verified bundle v for the
// internal registry: the flags give the pinned policy and trusted root, opts the
// bundle key, attestKey (may be nil) the disconnected side's public key.
func generateAdmission(c *cli.Context, v *bundle.Verified, opts *bundle.VerifyOptions, registry string, attestKey []byte) (admission.Options, *admission.Files, error) {
	images, err := admission.ImagesFromBundle(c.Context, v)
	if err != nil {
		return admission.Options{}, nil, err
	}
	gen := admission.Options{Registry: registry, Images: images, SummaryKey: opts.Signature.PublicKey,
		BundleID: v.Report.BundleID, Sequence: v.Report.Sequence, AttestKey: attestKey}
	if ip := opts.Images; ip != nil {
		gen.Policy, gen.TrustedRoot = ip.Policy, ip.TrustedRootFile
	} else {
		gen.PolicyDigest = admission.PolicyDigestOf(v.Report)
	}
	if gen.TrustedRoot == nil && c.String("trusted-root") != "" {
		if gen.TrustedRoot, err = readLimited(c.String("trusted-root"), 16<<20); err != nil {
			return gen, nil, err
		}
	}
	files, err := admission.Generate(c.Context, gen)
	if err != nil {
		return gen, nil, admissionExit(err)
	}
	return gen, files, nil
}

type admissionResult struct {
	Bundle       string           `json:"bundle"`
	BundleID     string           `json:"bundleID"`
	Sequence     uint64           `json:"sequence"`
	Registry     string           `json:"registry"`
	Out          string           `json:"out"`
	PolicyDigest digest.Digest    `json:"policyDigest,omitempty"`
	Files        []admission.File `json:"files"`
	Notes        []string         `json:"notes,omitempty"`
}

func policyDigest(o admission.Options) digest.Digest {
	if o.Policy != nil {
		return o.Policy.Digest()
	}
	return o.PolicyDigest
}

// currentBundle is admission's replay rule: the bundle must not be older than the last
// accepted one of its series. The last accepted one itself passes (admission runs after
// unpack, on the bundle unpack just accepted), where verify's rule refuses it.
type currentBundle struct {
	store       *replay.Store
	allowReplay bool
}

func (g currentBundle) Check(bundleID string, seq uint64) error {
	last, ok, err := g.store.Last(bundleID)
	if err != nil {
		return err
	}
	if ok && seq < last && !g.allowReplay {
		return fmt.Errorf("%w: bundle %s sequence %d is older than sequence %d, the last accepted (%s)", replay.ErrReplay, bundleID, seq, last, g.store.Path())
	}
	return nil
}

// Accept records nothing: admission changes no state.
func (currentBundle) Accept(string, uint64) error { return nil }

// admissionExit gives admission's own errors their exit codes: an unexpressible rule
// is a policy problem (33), an image without a summary an image problem (30), bad
// options a usage error (2).
func admissionExit(err error) error {
	code := 0
	switch {
	case errors.Is(err, admission.ErrUnexpressible):
		code = exitPolicy
	case errors.Is(err, admission.ErrNoSummary):
		code = exitImage
	case errors.Is(err, admission.ErrInvalidOptions):
		code = exitUsage
	}
	if code == 0 {
		return err
	}
	return exitErr{err: err, code: code}
}

type exitErr struct {
	err  error
	code int
}

func (e exitErr) Error() string { return e.err.Error() }
func (e exitErr) Unwrap() error { return e.err }
func (e exitErr) ExitCode() int { return e.code }
