package unpack

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/receipt"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/replay"
)

// checkExpected asks the destination (HEAD) for every blob the delta expects, in the
// destination repository of its source repository, and refuses the bundle with the
// list of every one missing (ErrMissingAtDestination). It pushes nothing.
func checkExpected(ctx context.Context, opts Options, d *layout.Delta) (int, error) {
	var missing []string
	for _, e := range d.Expected {
		ref, err := Destination(opts.To, e.Repository)
		if err != nil {
			return 0, fmt.Errorf("expected blob %s of %s: %w", e.Digest, e.Repository, err)
		}
		repo, err := opts.Client.Repository(ref)
		if err != nil {
			return 0, err
		}
		var ok bool
		where := ref.Registry + "/" + ref.Repository
		err = opts.Client.Retry(ctx, "checking blob "+e.Digest.String()+" in "+where, func(ctx context.Context) (err error) {
			ok, err = repo.Blobs().Exists(ctx, ocispec.Descriptor{Digest: e.Digest, Size: e.Size})
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("checking expected blob %s in %s: %w", e.Digest, where, err)
		}
		if !ok {
			missing = append(missing, fmt.Sprintf("%s@%s (%d bytes)", where, e.Digest, e.Size))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		base := "no base bundle named"
		if d.BundleID != "" {
			base = fmt.Sprintf("base bundle %s sequence %d", d.BundleID, d.Sequence)
		}
		return 0, fmt.Errorf("%w: %d of %d blobs the delta relies on (receipt %s of %s, %s) are not at %s; unpack the base first or pack a full bundle:\n  %s",
			ErrMissingAtDestination, len(missing), len(d.Expected), d.Receipt, d.Registry, base, opts.To, strings.Join(missing, "\n  "))
	}
	return len(d.Expected), nil
}

// plans2names returns the destination repository paths of the graph's repositories
// under --to's prefix (the source paths without their host), as a receipt names them.
func plans2names(to string, g *referrers.Graph) []string {
	var out []string
	for _, r := range g.Repositories() {
		out = append(out, receipt.PathOf(r.Name))
	}
	return out
}

// writeReceipt reads back what the bundle's destination repositories hold and signs
// it as the receipt of this unpack.
func writeReceipt(ctx context.Context, opts Options, res *Result, names []string, b replay.Bundle) error {
	r, err := receipt.Collect(ctx, receipt.CollectOptions{
		Registry: strings.TrimSuffix(opts.To, "/"), Repositories: names, Client: opts.Client, ToolVersion: opts.Version, Log: opts.Log,
		Bundle: &receipt.Bundle{BundleID: b.ID, Sequence: b.Sequence, Metadata: digest.Digest(b.Metadata)},
	})
	if err != nil {
		return fmt.Errorf("reading the receipt back from %s: %w", opts.To, err)
	}
	s, err := receipt.Sign(ctx, opts.ReceiptSigner, r)
	if err != nil {
		return err
	}
	res.Receipt, res.ReceiptDigest = s, s.Digest()
	opts.Log.Info("receipt written", "digest", res.ReceiptDigest, "repositories", len(r.Repositories))
	return nil
}
