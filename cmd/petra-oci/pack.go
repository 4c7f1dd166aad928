package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/receipt"
	"github.com/petra-oci/petra-oci/signing"
)

func packCommand() *cli.Command {
	return &cli.Command{
		Name:      "pack",
		Usage:     "copy images and everything attached to them from registries into a bundle (an OCI image layout)",
		ArgsUsage: " ",
		Description: `Resolves each reference to a digest once, copies the index and every child manifest,
config and layer byte for byte, and collects recursively what is attached to the index,
every child and every attachment: OCI 1.1 referrers (API or tag schema) and cosign's
sha256-<hex>.sig/.att/.sbom tags. Re-running on the same directory skips blobs already there.
A registry operation that fails with a transient error (network, 408, 429, 5xx) is retried
whole, honouring Retry-After, within --retries and --retry-max-time (docs/faults.md); one
that still fails gives up with exit 70 and writes no metadata.

Examples:
  petra-oci pack --image cgr.dev/chainguard/nginx:latest -o bundle
  petra-oci pack -f images.yaml --platform linux/amd64 -o bundle`,
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "image", Aliases: []string{"i"}, Usage: "image `REF` to pack (host/path:tag or @digest); repeatable"},
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "images `FILE` (YAML: images: [{ref: ..., platforms: [...]}])"},
			&cli.StringFlag{Name: "dir", Aliases: []string{"o"}, Usage: "bundle `DIR` to write (created or added to)"},
			&cli.StringSliceFlag{Name: "platform", Usage: "keep only this `OS/ARCH[/VARIANT]` of multi-platform images; repeatable"},
			outputFlag(),
			&cli.StringFlag{Name: "series-from", Usage: "continue the bundle series of this previous petra/metadata.json `FILE` (its bundle id, sequence + 1); default: the series of DIR's existing metadata, else a new series"},
			trustedRootFlag(),
			&cli.StringFlag{Name: "since", Usage: "pack a delta against the far side's receipt `FILE` (docs/delta.md): configs and layers it lists are left out and recorded as expected; verified with --receipt-key first"},
			&cli.StringFlag{Name: "receipt-key", Usage: "public key `FILE` of the far side that the --since receipt must verify with"},
			&cli.BoolFlag{Name: "no-evidence", Usage: "do not attach a signed SLSA verification summary to each verified image"},
		}, append(append(append(signFlags(), policyFlags()...), analyzeFlags()...), registryFlags()...)...),
		Action: func(c *cli.Context) error {
			if err := required(c, "dir"); err != nil {
				return err
			}
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			var images []pack.ImageSpec
			for _, r := range c.StringSlice("image") {
				images = append(images, pack.ImageSpec{Ref: r})
			}
			if f := c.String("file"); f != "" {
				more, err := pack.LoadSpecFile(f)
				if err != nil {
					return err
				}
				images = append(images, more...)
			}
			if len(images) == 0 {
				return cli.Exit("pack: name at least one image with --image or --file", exitUsage)
			}
			client, err := registryClient(c)
			if err != nil {
				return err
			}
			signer, err := loadSigner(c)
			if err != nil {
				return err
			}
			if signer == nil {
				logger(c).Warn("no --key: the bundle is NOT signed; verify and unpack refuse it until `petra-oci sign` signs it")
			}
			seal := bundle.SealOptions{Signer: signer, ToolVersion: version}
			var since *receipt.Signed
			if f := c.String("series-from"); f != "" {
				b, err := readLimited(f, layout.MaxMetadataBytes)
				if err != nil {
					return err
				}
				if seal.Previous, err = layout.ParseMetadata(b); err != nil {
					return fmt.Errorf("--series-from %s: %w", f, err)
				}
			}
			if f := c.String("since"); f != "" {
				if err := required(c, "receipt-key"); err != nil {
					return err
				}
				pub, err := os.ReadFile(c.String("receipt-key"))
				if err != nil {
					return fmt.Errorf("--receipt-key: %w", err)
				}
				// fail closed: nothing of the receipt is read before its signature verifies
				if since, err = receipt.ReadVerified(c.Context, f, signing.VerifyOptions{PublicKey: pub}); err != nil {
					return fmt.Errorf("--since: %w", err)
				}
			}
			ip, err := imagePolicy(c, true)
			if err != nil {
				return err
			}
			popts := pack.Options{
				Images: images, Platforms: c.StringSlice("platform"), Dir: c.String("dir"),
				Client: client, Concurrency: c.Int("concurrency"), Log: logger(c), Seal: seal, Since: since,
			}
			if ip != nil {
				popts.Policy, popts.TrustedMaterial = ip.Policy, ip.TrustedMaterial
				popts.PolicyFile, popts.TrustedRootFile = ip.PolicyFile, ip.TrustedRootFile
				popts.Evidence = signer != nil && !c.Bool("no-evidence")
			} else {
				popts.UnsafeNoPolicy = true
				logger(c).Warn("no --policy or --image-key: image signatures are NOT verified at pack")
			}
			var pol *policy.Policy
			if ip != nil {
				pol = ip.Policy
			}
			hook, stop, err := analyzer(c, pol, c.String("dir"))
			if err != nil {
				return err
			}
			defer stop()
			popts.Analyze = hook
			prog := newProgress(c.App.ErrWriter)
			popts.OnBlob = prog.onBlob()
			res, err := pack.Pack(c.Context, popts)
			prog.done()
			if res != nil {
				if rerr := render(c, asJSON, res, func() {
					for _, im := range res.Images {
						fmt.Fprintf(c.App.Writer, "%s\t%s\t%d platforms\t%d attachments\n", im.Source, im.Digest, len(im.Platforms), im.Attachments)
					}
					s := res.Stats
					fmt.Fprintf(c.App.ErrWriter, "packed %d images into %s: %d blobs copied (%d bytes), %d already there, %d manifests written\n",
						len(res.Images), res.Dir, s.BlobsCopied, s.BytesCopied, s.BlobsExisted, s.Manifests)
					if d := res.Delta; d != nil {
						fmt.Fprintf(c.App.ErrWriter, "delta against receipt %s: %d blobs (%d bytes) left out, expected at the destination\n", d.Receipt, d.Expected, d.ExpectedBytes)
					}
					if res.BundleID != "" {
						fmt.Fprintf(c.App.ErrWriter, "bundle %s sequence %d, signed: %v\n", res.BundleID, res.Sequence, res.Signed)
					}
				}); rerr != nil {
					return rerr
				}
			}
			return err
		},
	}
}
