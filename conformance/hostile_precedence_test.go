package conformance

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// TestHostilePrecedence pins which exit code wins on a bundle broken twice, signed by
// the bundle key: the metadata's coverage of index.json and what it reaches (25,
// layout's check, run while the files are verified) comes before the subject graph
// (26, referrers.Build), and the graph before the check of the signed image list
// against the graph's images (25 again, bundle's check). A refactoring that moves one
// of these checks changes the code a doubly-broken bundle gets; this test says so.
func TestHostilePrecedence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newHostileKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	nginx := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 51})
	base, _ := packCLI(t, e, keys.bundleKeys, nginx.Repo+":"+nginx.Tag)
	N := nginx.Repo

	ghost := digest.FromString("a subject that is in no bundle")
	// orphan lists nginx's Sigstore bundle referrer again, under a subject that is in
	// no bundle: covered by the metadata, unreachable in the graph (26)
	orphan := func(b *hostileBundle) {
		ref := nginx.Referrers[nginx.Index.Digest][0]
		b.add(layout.AttachmentEntry(ocispec.Descriptor{MediaType: ref.MediaType, Digest: ref.Digest, Size: ref.Size}, oci.KindReferrer, N, "", ghost))
	}
	// uncovered adds an image entry whose manifest the bundle does not hold: named by
	// index.json, listed by no metadata (25, coverage)
	uncovered := func(b *hostileBundle) {
		d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("not in the bundle"), Size: 2}
		b.add(layout.ImageEntry(d, N, "uncovered"))
	}
	// unlisted adds a well-formed image the signed image list does not name (25, the
	// image list against the graph)
	unlisted := func(b *hostileBundle) {
		child := b.runnable("unlisted", nil)
		child.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
		b.add(layout.ImageEntry(b.unsignedIndex(child), N, "unlisted"))
	}

	cases := []struct {
		name   string
		tamper []func(*hostileBundle)
		exit   int
	}{
		// each break alone, so the pairs below are about order, not detection
		{"orphan alone", []func(*hostileBundle){orphan}, exitOrphan},
		{"uncovered alone", []func(*hostileBundle){uncovered}, exitNotCoveredCode},
		{"unlisted alone", []func(*hostileBundle){unlisted}, exitNotCoveredCode},
		{"uncovered and orphan: coverage first", []func(*hostileBundle){orphan, uncovered}, exitNotCoveredCode},
		{"orphan and unlisted: the graph first", []func(*hostileBundle){unlisted, orphan}, exitOrphan},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := copyBundle(t, base, keys.signer)
			for _, f := range tc.tamper {
				f(b)
			}
			b.forge(nil)
			r := e.run(petraBin, "verify", "--key", keys.pub, "--state", filepath.Join(t.TempDir(), "s.json"), b.dir)
			assertExit(t, "verify", r, tc.exit)
		})
	}
}
