package main

import (
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/graphcopy"
	"github.com/petra-oci/petra-oci/internal/prepull"
)

// containerdExportFlags are the flags of `export --format containerd` (besides the
// bundle verification flags, which every format shares).
func containerdExportFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "registry", Usage: "containerd format: name the images for this internal registry `HOST[:PORT][/PREFIX]`, as unpack --to names them"},
		&cli.StringFlag{Name: "platform", Usage: "containerd format: keep only this platform's manifests (`OS/ARCH[/VARIANT]`) of every image index; the index itself is kept unchanged"},
		&cli.BoolFlag{Name: "zstd", Usage: "containerd format: compress the whole archive with zstd (implied by -o ending in .zst or .tzst); k3s and RKE2 read it, ctr does not"},
		&cli.BoolFlag{Name: "with-attachments", Usage: "containerd format: also carry signatures, attestations and referrers, as unnamed entries (containerd creates no image for them)"},
	}
}

// uniqueFlags joins flag groups, keeping the first flag of each name: the shared
// definitions come first, then each format's own.
func uniqueFlags(groups ...[]cli.Flag) []cli.Flag {
	seen := map[string]bool{}
	var out []cli.Flag
	for _, g := range groups {
		for _, f := range g {
			if name := f.Names()[0]; !seen[name] {
				seen[name] = true
				out = append(out, f)
			}
		}
	}
	return out
}

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write a bundle for the transfer (--format bundle: one deterministic archive, or chunks with a signed index and parity) or as a containerd pre-pull archive (--format containerd)",
		ArgsUsage: "DIR",
		Description: `--format bundle (the default) writes the bundle as one deterministic tar (-o FILE), or
with --split SIZE as numbered chunks plus a chunk index signed with --key (the bundle's
private key), with --parity N Reed-Solomon chunks so that any N lost or corrupted
chunks are rebuilt by 'petra-oci import' (docs/transfer.md).

--format containerd writes an OCI image layout tar holding only the images and their
children, each listed under the name the internal registry gives it (--registry, named
as unpack --to names them) by tag and by digest, every digest unchanged. Import it with
  ctr -n k8s.io images import images.tar
or place it in /var/lib/rancher/k3s/agent/images/ (k3s) or
/var/lib/rancher/rke2/agent/images/ (RKE2). Signatures, attestations and referrers are
left out (they belong in the registry, for admission) unless --with-attachments.
--platform keeps one platform's manifests (import with ctr --platform, see
docs/prepull.md); --zstd, or -o ending in .zst, compresses the whole archive (k3s and
RKE2 read .tar.zst; ctr reads only plain tar: zstd -dc images.tar.zst | ctr ... import -).

Nothing is written before the whole bundle is verified, offline, exactly as unpack
verifies it, with the same flags and exit codes (see 'petra-oci verify --help'). The
replay state is checked, never recorded. The archive is written to a temporary file
next to -o and renamed once complete; -o - streams it to stdout (a failure half way
then leaves a truncated stream and a non-zero exit). The same bundle and flags give the
same bytes.`,
		Flags: uniqueFlags(
			[]cli.Flag{
				&cli.StringFlag{Name: "format", Value: "bundle", Usage: "archive `FORMAT`: bundle (a petra-oci archive or chunks, for import on the far side: docs/transfer.md) or containerd (a pre-pull archive: docs/prepull.md)"},
				&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "`FILE` to write (containerd: - for stdout; bundle with --split: the chunk DIR to create)"},
				&cli.StringFlag{Name: "key", Usage: "bundle format: the bundle's private key `KEY` (file or KMS) that signs the chunk index; containerd format: the bundle's public key that verifies it"},
				&cli.BoolFlag{Name: "zstd", Usage: "compress with zstd (containerd: implied by -o ending in .zst or .tzst; k3s and RKE2 read it, ctr does not)"},
				outputFlag(),
			},
			archiveExportFlags(), containerdExportFlags(), verifyFlags(), replayFlags(),
		),
		Action: func(c *cli.Context) error {
			only := map[string][]string{"bundle": {"split", "parity", "sync", "audit-segment"}, prepull.Format: {"registry", "platform", "with-attachments"}}
			for format, flags := range only {
				for _, fl := range flags {
					if c.IsSet(fl) && c.String("format") != format {
						return cli.Exit(fmt.Sprintf("export: --%s is a flag of --format %s (this is --format %s)", fl, format, c.String("format")), exitUsage)
					}
				}
			}
			switch f := c.String("format"); f {
			case "bundle":
				return exportArchive(c)
			case prepull.Format:
				if c.NArg() != 1 {
					return cli.Exit("export: give exactly one bundle DIR", exitUsage)
				}
				return exportContainerd(c)
			default:
				return cli.Exit(fmt.Sprintf("export: --format %q: want bundle or containerd", f), exitUsage)
			}
		},
	}
}

// exportContainerd is `export --format containerd`.
func exportContainerd(c *cli.Context) error {
	if err := required(c, "registry", "out"); err != nil {
		return err
	}
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	out := c.String("out")
	toStdout := out == "-"
	if toStdout && asJSON {
		return cli.Exit("export: -o - writes the archive to stdout: --output json cannot go there too", exitUsage)
	}
	lower := strings.ToLower(out)
	for _, ext := range []string{".gz", ".tgz", ".bz2", ".tbz", ".lz4", ".xz"} {
		if strings.HasSuffix(lower, ext) {
			return cli.Exit(fmt.Sprintf("export: -o %s: the archive is a plain tar or, with --zstd, a .tar.zst; name it so", out), exitUsage)
		}
	}
	opts := prepull.Options{
		Dir: c.Args().First(), Registry: c.String("registry"), Platform: c.String("platform"),
		WithAttachments: c.Bool("with-attachments"), Log: logger(c),
	}
	zstdName := strings.HasSuffix(lower, ".zst") || strings.HasSuffix(lower, ".tzst")
	if c.Bool("zstd") || zstdName {
		opts.Compression = prepull.CompressionZstd
		if !zstdName && !toStdout {
			opts.Log.Warn("--zstd: name the file .tar.zst, k3s and RKE2 choose how to read an archive by its name", "out", out)
		}
	}
	if opts.Verify, err = bundleVerifyOptions(c); err != nil {
		return err
	}
	prog := newProgress(c.App.ErrWriter)
	if cb := prog.onBlob(); cb != nil {
		opts.OnBlob = func(d ocispec.Descriptor) { cb(d, graphcopy.Copied) }
	}
	var res *prepull.Result
	if toStdout {
		res, err = prepull.Export(c.Context, c.App.Writer, opts)
	} else {
		res, err = prepull.WriteFile(c.Context, out, opts)
	}
	prog.done()
	if err != nil || res == nil {
		return err
	}
	if asJSON {
		return writeJSON(c, res)
	}
	w := c.App.Writer
	if toStdout {
		w = c.App.ErrWriter // stdout holds the archive
	}
	for _, im := range res.Images {
		for _, n := range im.Names {
			fmt.Fprintf(w, "%s -> %s\n", im.Source, n)
		}
	}
	where := res.Output
	if toStdout {
		where = "stdout"
	}
	compression := "tar"
	if res.Compression == prepull.CompressionZstd {
		compression = "tar.zst"
	}
	fmt.Fprintf(c.App.ErrWriter, "exported %d images (%d blobs, %d bytes) to %s: %s, %d bytes, sha256 %s\n",
		len(res.Images), res.Blobs, res.BlobBytes, where, compression, res.ArchiveBytes, res.ArchiveSHA256)
	return nil
}
