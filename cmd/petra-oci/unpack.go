package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/admission"
	"github.com/petra-oci/petra-oci/receipt"
	"github.com/petra-oci/petra-oci/signing"
	"github.com/petra-oci/petra-oci/unpack"
)

// verificationFlag names the flags that mean nothing with --unsafe-skip-verify.
var verificationFlag = map[string]bool{
	"key": true, "certificate-identity": true, "certificate-identity-regexp": true, "certificate-oidc-issuer": true,
	"certificate-oidc-issuer-regexp": true, "trusted-root": true, "policy": true, "image-key": true, "source": true,
	"state": true, "allow-replay": true, "allow-rollback": true, "require-evidence": true, "attest-key": true, "emit-admission": true,
	"receipt": true, "receipt-key": true,
}

// emitAdmission generates the admission resources for --to from the verified bundle
// before anything is pushed, and writes them to out once everything is.
func emitAdmission(c *cli.Context, vopts *bundle.VerifyOptions, attest signing.Signer, out string) func(context.Context, *bundle.Verified) (func(context.Context) error, error) {
	return func(_ context.Context, v *bundle.Verified) (func(context.Context) error, error) {
		var attestKey []byte
		if attest != nil {
			var err error
			if attestKey, err = attest.PublicKeyPEM(); err != nil {
				return nil, err
			}
		}
		gen, files, err := generateAdmission(c, v, vopts, c.String("to"), attestKey)
		if err != nil {
			return nil, fmt.Errorf("admission resources: %w", err)
		}
		return func(context.Context) error {
			if err := admission.WriteDir(out, files); err != nil {
				return admissionExit(err)
			}
			fmt.Fprintf(c.App.ErrWriter, "admission resources for %d images over %s written to %s; apply in order (docs/admission.md)\n", len(gen.Images), gen.Registry, out)
			return nil
		}, nil
	}
}

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
the bundle series sequence (--state), every file, the graph of what it holds and, with
--policy or --image-key, every image and child against this side's pinned policy. Only
that graph is pushed: the images the signed metadata lists, the children the bundle
carries, and the attachments whose subject chain reaches them in their own repository;
any other entry refuses the bundle (exit 26, or 27 when an entry's content does not
match its kind, 28 for a name outside the distribution grammar or outside --to). A
bundle packed with --platform carries an index without some of its children; most
registries refuse such an index, so unpack refuses it first, naming the index and the
children left out (exit 29), unless --allow-sparse-index (for a registry that accepts
sparse indexes).

The replay state (--state) is held locked for the whole run, so concurrent unpacks with
the same state run one after the other. Once the content is pushed, the bundle and each
tag it sets are recorded, then the tags move. A tag is never moved back to content from
a bundle older than the one that last set it, of this series or another (exit 15),
unless --allow-rollback. SIGINT or SIGTERM stops a run at any point with exit 130; tags
move last, so an interrupted run leaves no tag on incomplete content.

A registry operation that fails with a transient error (network, 408, 429, 5xx) is retried
whole (a blob opened again from the bundle and its upload restarted), honouring
Retry-After, within --retries and --retry-max-time (docs/faults.md); one that still fails
gives up with exit 70, naming the operation, the attempts and the last error.

--require-evidence refuses the bundle before anything is pushed (exit 34) unless every
image and every child of it carries pack's verification summary signed with the key that verified the bundle
(--key), naming that digest, PASSED and, with --policy or --image-key, the pinned
policy's digest. --attest-key (a key of this side: cosign key file with
$COSIGN_PASSWORD, or KMS reference) signs an import record per image and child once its content is
pushed and before any tag moves: a SLSA verification summary "verified at import"
(bundle id and sequence, metadata digest, the summary checked, the pinned policy),
attached in the form the image's signatures call for, as pack attaches its summary (see
docs/evidence.md). Check it with:
  cosign verify-attestation --key attest.pub --insecure-ignore-tlog \
    --type https://slsa.dev/verification_summary/v1 IMAGE@DIGEST`,
		Flags: append(append(append([]cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "destination `HOST[:PORT][/PREFIX]`"},
			outputFlag(),
			&cli.BoolFlag{Name: "unsafe-skip-verify", Usage: "UNSAFE: push without verifying the bundle's signature, files and images (refuses verification flags given with it)"},
			&cli.BoolFlag{Name: "allow-rollback", Usage: "let a tag move back to content from an older bundle (of any series) than the one that last set it"},
			&cli.BoolFlag{Name: "allow-sparse-index", Usage: "push an index whose children the bundle does not all carry (pack --platform), for a registry that accepts sparse indexes; without it such a bundle is refused before anything is pushed (exit 29)"},
			&cli.BoolFlag{Name: "require-evidence", Usage: "refuse the bundle, before pushing, unless every image and child carries pack's verification summary signed with the bundle key (--key), about its digest, PASSED, naming the pinned policy"},
			&cli.StringFlag{Name: "emit-admission", Usage: "once everything is pushed, write the admission resources for --to to `OUTDIR`, as 'petra-oci admission' does (checked before the first push: a policy they cannot express refuses the bundle)"},
			&cli.StringFlag{Name: "receipt", Usage: "once everything is pushed, write this side's signed receipt of what the destination repositories hold to `FILE` (signature beside it; docs/delta.md), for pack --since"},
			&cli.StringFlag{Name: "receipt-key", Usage: "sign the --receipt with this cosign private key `FILE` or KMS reference of this side (default: --attest-key)"},
			&cli.StringFlag{Name: "attest-key", Usage: "sign an import record for every image and child with this cosign private key `FILE` (password from $COSIGN_PASSWORD) or KMS reference (hashivault://, awskms://, gcpkms://, azurekms://), attached at the destination"},
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
				RequireEvidence:  c.Bool("require-evidence"), Version: version,
				AllowSparseIndex: c.Bool("allow-sparse-index"),
			}
			if opts.UnsafeSkipVerify {
				for _, f := range c.Command.Flags {
					for _, name := range f.Names() {
						if verificationFlag[name] && c.IsSet(name) {
							return cli.Exit("--unsafe-skip-verify verifies nothing, so --"+name+" would be ignored: drop one of them", exitUsage)
						}
					}
				}
			} else {
				if opts.Verify, err = bundleVerifyOptions(c); err != nil {
					return err
				}
				if ref := c.String("attest-key"); ref != "" {
					if opts.AttestSigner, err = loadSignerRef(c.Context, ref); err != nil {
						return fmt.Errorf("--attest-key: %w", err)
					}
				}
				if out := c.String("receipt"); out != "" {
					switch ref := c.String("receipt-key"); {
					case ref != "":
						if opts.ReceiptSigner, err = signing.LoadSigner(c.Context, ref, signing.PasswordFromEnv); err != nil {
							return fmt.Errorf("--receipt-key: %w", err)
						}
					case opts.AttestSigner != nil:
						opts.ReceiptSigner = opts.AttestSigner
					default:
						return cli.Exit("unpack --receipt: sign it with a key of this side: --receipt-key (or --attest-key)", exitUsage)
					}
				} else if c.IsSet("receipt-key") {
					return cli.Exit("unpack: --receipt-key without --receipt", exitUsage)
				}
				if out := c.String("emit-admission"); out != "" {
					opts.Finish = emitAdmission(c, opts.Verify, opts.AttestSigner, out)
				}
			}
			prog := newProgress(c.App.ErrWriter)
			opts.OnBlob = prog.onBlob()
			res, err := unpack.Unpack(c.Context, opts)
			prog.done()
			if res != nil && res.Receipt != nil {
				if werr := res.Receipt.WriteFiles(c.String("receipt")); werr != nil {
					return werr
				}
				fmt.Fprintf(c.App.ErrWriter, "receipt %s written to %s (signature %s)\n", res.ReceiptDigest, c.String("receipt"), receipt.SignaturePath(c.String("receipt")))
			}
			if res != nil {
				auditBundle(c, reportBundle(res.Verification))
				if rerr := render(c, asJSON, res, func() {
					for _, m := range res.Images {
						fmt.Fprintf(c.App.Writer, "%s -> %s\t%s\t%d attachments\n", m.Source, m.Destination, m.Digest, m.Attachments)
					}
					for _, r := range res.ImportRecords {
						where := r.Tag
						if where == "" {
							where = "referrer " + r.Manifest.String()
						}
						fmt.Fprintf(c.App.ErrWriter, "import record: %s (%s, %s)\n", r.Image, r.Form, where)
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
