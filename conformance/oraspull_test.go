package conformance

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/internal/scan/scantest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// TestOrasPullEvidence pulls every SBOM and scan-report referrer petra-oci generates
// with the real oras CLI (`oras pull --oci-layout DIR@<digest> -o OUT`), as a reviewer
// fetches them: each writes its file, byte for byte the layer's content, under the
// layer's title (issue 13 item 5: oras skipped layers without a title and wrote
// nothing).
func TestOrasPullEvidence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	db := scantest.WriteDB(t)
	src := registrytest.Start(t, registrytest.InProcess)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/xz", "5.6", fixture.Options{Seed: 43})
	dir, _ := packCLI(t, e, keys, img.Repo+":"+img.Tag, "--sbom", "--vuln-db", db.Archive)

	l, entries, err := layout.OpenEntries(dir)
	must(t, err)
	pulled := map[string]int{}
	for _, en := range entries {
		at := en.Descriptor.ArtifactType
		generated := (at == oci.MediaTypeSPDXJSON && en.Descriptor.Annotations["dev.petra-oci.sbom.origin"] != "") ||
			at == "application/vnd.petra-oci.scan.report.v1+json"
		if en.Kind != oci.KindReferrer || !generated {
			continue // the fixture's own SBOM referrer is the publisher's, untitled
		}
		b, err := l.FetchManifest(ctx, en.Descriptor)
		must(t, err)
		m, err := oci.ParseManifest(en.Descriptor, b)
		must(t, err)
		out := t.TempDir()
		r := e.tool("oras", "pull", "--no-tty", "--oci-layout", dir+"@"+en.Descriptor.Digest.String(), "-o", out)
		for _, layer := range m.Layers {
			title := layer.Annotations[ocispec.AnnotationTitle]
			if title == "" {
				t.Errorf("%s %s: layer %s has no title; oras said:\n%s", at, en.Descriptor.Digest, layer.Digest, r.stdout)
				continue
			}
			got, err := os.ReadFile(filepath.Join(out, title))
			if err != nil {
				t.Errorf("%s %s: oras pull wrote no %s: %v\n%s", at, en.Descriptor.Digest, title, err, r)
				continue
			}
			if digest.FromBytes(got) != layer.Digest || int64(len(got)) != layer.Size {
				t.Errorf("%s %s: %s pulled by oras is not the layer %s", at, en.Descriptor.Digest, title, layer.Digest)
			}
			pulled[at]++
		}
	}
	// one SBOM and one scan report per platform of the fixture (2)
	if pulled[oci.MediaTypeSPDXJSON] != 2 || pulled["application/vnd.petra-oci.scan.report.v1+json"] != 2 {
		t.Errorf("files pulled by artifact type: %v, want 2 SBOMs and 2 scan reports", pulled)
	}
}
