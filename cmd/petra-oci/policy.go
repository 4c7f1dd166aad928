package main

import (
	"errors"
	"io/fs"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/internal/tufroot"
	"github.com/petra-oci/petra-oci/policy"
)

// policyFlags select the image verification policy.
func policyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "policy", Usage: "image verification policy `FILE`, or the name of a shipped one (chainguard-public); see docs/policy.md"},
		&cli.StringFlag{Name: "image-key", Usage: "shorthand for a policy of one rule: every image signed by this public key `FILE`"},
		&cli.StringSliceFlag{Name: "source", Usage: "with --image-key: allowed source `GLOB` (host/path, * within a segment, ** across); repeatable; default: any"},
	}
}

// trustedRootFlag is --trusted-root for commands that have no bundle verify flags.
func trustedRootFlag() cli.Flag {
	return &cli.StringFlag{Name: "trusted-root", Usage: "Sigstore trusted_root.json `FILE` for keyless image signatures; nothing is fetched"}
}

// imagePolicy reads --policy / --image-key / --trusted-root; nil when no policy is asked.
// With online (pack, on the connected side), a keyless policy without --trusted-root
// uses Sigstore's trusted root fetched through TUF; offline it is a usage error.
func imagePolicy(c *cli.Context, online bool) (*bundle.ImagePolicy, error) {
	var p *policy.Policy
	var err error
	switch name, key := c.String("policy"), c.String("image-key"); {
	case len(c.StringSlice("source")) > 0 && key == "":
		return nil, cli.Exit("--source goes with --image-key (a policy file lists its own sources)", exitUsage)
	case name != "" && key != "":
		return nil, cli.Exit("give --policy or --image-key, not both", exitUsage)
	case key != "":
		pem, rerr := os.ReadFile(key)
		if rerr != nil {
			return nil, rerr
		}
		sources := c.StringSlice("source")
		if len(sources) == 0 {
			logger(c).Warn("--image-key without --source: images from any registry are allowed")
			sources = []string{"**"}
		}
		p, err = policy.KeyPolicy(pem, sources)
	case name != "":
		if _, serr := os.Stat(name); serr == nil {
			p, err = policy.Load(name)
		} else if errors.Is(serr, fs.ErrNotExist) {
			p, err = policy.Builtin(name)
		} else {
			err = serr
		}
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ip := &bundle.ImagePolicy{Policy: p, PolicyFile: p.Bytes()}
	var trb []byte
	switch tr := c.String("trusted-root"); {
	case tr != "":
		if trb, err = readLimited(tr, 16<<20); err != nil {
			return nil, err
		}
	case online && p.NeedsTrustedMaterial():
		logger(c).Info("no --trusted-root: fetching Sigstore's trusted root through TUF")
		if trb, err = tufroot.Fetch(); err != nil {
			return nil, err
		}
	}
	if trb != nil {
		if ip.TrustedMaterial, err = imageverify.TrustedRootFromJSON(trb); err != nil {
			return nil, err
		}
		ip.TrustedRootFile = trb
	}
	if p.NeedsTrustedMaterial() && ip.TrustedMaterial == nil {
		return nil, cli.Exit("the policy has keyless authorities: give --trusted-root trusted_root.json (nothing is fetched)", exitUsage)
	}
	return ip, nil
}
