package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/receipt"
	"github.com/petra-oci/petra-oci/signing"
)

// receiptResult is the --output json document of `receipt` (and the receipt part of
// unpack's): where the receipt went and what it holds.
type receiptResult struct {
	Path      string           `json:"path"`
	Signature string           `json:"signature"`
	Digest    string           `json:"digest"`
	Receipt   *receipt.Receipt `json:"receipt"`
}

func receiptCommand() *cli.Command {
	return &cli.Command{
		Name:      "receipt",
		Usage:     "write the far side's signed receipt of what its registry holds (for pack --since)",
		ArgsUsage: " ",
		Description: `Reads, from the registry itself, every manifest reachable from the tags of each
repository (index children, referrers through the API or the tag schema) and asks for
every config and layer they name (HEAD); writes the receipt (docs/delta.md) to -o and
its Sigstore signature beside it (receipt.json -> receipt.sigstore.json), signed with
--key, a key of this side. The repositories are --repository paths under the --registry
prefix, or those of the images of --bundle DIR (verified with --bundle-key first), whose
series and sequence the receipt then names as the last bundle unpacked.

Examples:
  petra-oci receipt --registry reg.internal/mirror --repository chainguard/nginx --key far.key -o receipt.json
  petra-oci receipt --registry reg.internal/mirror --bundle DIR --bundle-key cosign.pub --key far.key -o receipt.json`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "registry", Usage: "destination `HOST[:PORT][/PREFIX]`, as unpack's --to"},
			&cli.StringSliceFlag{Name: "repository", Usage: "repository `PATH` under the prefix (chainguard/nginx); repeatable"},
			&cli.StringFlag{Name: "bundle", Usage: "take the repositories, series and sequence from this unpacked bundle `DIR`"},
			&cli.StringFlag{Name: "bundle-key", Usage: "public key `FILE` the --bundle must verify with"},
			&cli.StringFlag{Name: "key", Usage: "sign the receipt with this cosign private key `FILE` (password from $COSIGN_PASSWORD) or KMS reference"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "receipt `FILE` to write (its signature goes to FILE minus .json plus .sigstore.json)"},
			outputFlag(),
		}, registryFlags()...),
		Action: func(c *cli.Context) error {
			for _, f := range []string{"registry", "key", "out"} {
				if err := required(c, f); err != nil {
					return err
				}
			}
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			repos := c.StringSlice("repository")
			if (len(repos) == 0) == (c.String("bundle") == "") {
				return cli.Exit("receipt: give --repository (repeatable) or --bundle DIR, one of them", exitUsage)
			}
			signer, err := signing.LoadSigner(c.Context, c.String("key"), signing.PasswordFromEnv)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			client, err := registryClient(c)
			if err != nil {
				return err
			}
			opts := receipt.CollectOptions{Registry: c.String("registry"), Repositories: repos, Client: client, ToolVersion: version, Log: logger(c)}
			if dir := c.String("bundle"); dir != "" {
				if err := required(c, "bundle-key"); err != nil {
					return err
				}
				pub, err := os.ReadFile(c.String("bundle-key"))
				if err != nil {
					return fmt.Errorf("--bundle-key: %w", err)
				}
				rep, err := bundle.Verify(c.Context, dir, bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: pub}})
				if err != nil {
					return err
				}
				opts.Bundle = &receipt.Bundle{BundleID: rep.BundleID, Sequence: rep.Sequence, Metadata: rep.MetadataDigest}
				for _, r := range rep.Contents {
					opts.Repositories = append(opts.Repositories, receipt.PathOf(r.Name))
				}
			}
			r, err := receipt.Collect(c.Context, opts)
			if err != nil {
				return err
			}
			s, err := receipt.Sign(c.Context, signer, r)
			if err != nil {
				return err
			}
			return writeReceiptFiles(c, asJSON, c.String("out"), s)
		},
	}
}

// writeReceiptFiles writes s to path and its signature beside it, and renders it.
func writeReceiptFiles(c *cli.Context, asJSON bool, path string, s *receipt.Signed) error {
	if err := s.WriteFiles(path); err != nil {
		return err
	}
	res := receiptResult{Path: path, Signature: receipt.SignaturePath(path), Digest: s.Digest().String(), Receipt: s.Receipt}
	return render(c, asJSON, res, func() {
		blobs := 0
		for _, r := range s.Receipt.Repositories {
			blobs += len(r.Blobs)
		}
		fmt.Fprintf(c.App.Writer, "%s\t%s\t%d repositories\t%d blobs\n", path, res.Digest, len(s.Receipt.Repositories), blobs)
	})
}
