package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/internal/unpack"
)

func unpackCommand() *cli.Command {
	return &cli.Command{
		Name:      "unpack",
		Usage:     "push a bundle into a registry with every digest unchanged",
		ArgsUsage: "DIR",
		Description: `Pushes blobs, then child manifests, then indexes, then attached manifests and cosign
tags, then the image tags, so no tag ever points at content that is not all there. The
destination repository is --to joined with the source path without its registry host:
cgr.dev/shebash.io/nginx:1.27 with --to reg.internal/mirror lands at
reg.internal/mirror/shebash.io/nginx:1.27. Registries without the referrers API get the
referrers tag schema.

Nothing is pushed before the whole bundle is verified, offline, as 'petra-oci verify'
does: the signature over its metadata (--key, or the keyless flags with --trusted-root),
the bundle series sequence (--state), and every file. The sequence is recorded once the
push has succeeded, so the same or an older bundle is refused next time.`,
		Flags: append(append(append([]cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "destination `HOST[:PORT][/PREFIX]`"},
			outputFlag(),
			&cli.BoolFlag{Name: "unsafe-skip-verify", Usage: "UNSAFE: push without verifying the bundle's signature and files"},
		}, verifyFlags()...), replayFlags()...), registryFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("unpack: give exactly one bundle DIR", exitUsage)
			}
			if err := required(c, "to"); err != nil {
				return err
			}
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			client, err := registryClient(c)
			if err != nil {
				return err
			}
			opts := unpack.Options{
				Dir: c.Args().First(), To: c.String("to"), Client: client,
				Concurrency: c.Int("concurrency"), Log: logger(c),
				UnsafeSkipVerify: c.Bool("unsafe-skip-verify"),
			}
			if !opts.UnsafeSkipVerify {
				if opts.Verify, err = bundleVerifyOptions(c); err != nil {
					return err
				}
			}
			prog := newProgress(c.App.ErrWriter)
			opts.OnBlob = prog.onBlob()
			res, err := unpack.Unpack(c.Context, opts)
			prog.done()
			if res != nil {
				if rerr := render(c, asJSON, res, func() {
					for _, m := range res.Images {
						fmt.Fprintf(c.App.Writer, "%s -> %s\t%s\t%d attachments\n", m.Source, m.Destination, m.Digest, m.Attachments)
					}
					for _, r := range res.Repositories {
						mode := "referrers tag schema"
						if r.ReferrersAPI {
							mode = "referrers API"
						}
						fmt.Fprintf(c.App.ErrWriter, "%s: %s\n", r.Name, mode)
					}
					s := res.Stats
					fmt.Fprintf(c.App.ErrWriter, "unpacked %d images: %d blobs uploaded (%d bytes), %d mounted, %d already there, %d manifests pushed\n",
						len(res.Images), s.BlobsCopied, s.BytesCopied, s.BlobsMounted, s.BlobsExisted, s.Manifests)
				}); rerr != nil {
					return rerr
				}
			}
			return err
		},
	}
}
