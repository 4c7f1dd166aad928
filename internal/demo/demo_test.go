package demo

import (
	"context"
	"path/filepath"
	"testing"
)

// TestRun is what `make demo` runs: it must succeed with nothing but Go and prove the
// round trip (every sample manifest found at the destination by digest).
func TestRun(t *testing.T) {
	res, err := Run(context.Background(), Options{Dir: filepath.Join(t.TempDir(), "bundle")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Pack.Images) != len(Samples) || len(res.Unpack.Images) != len(Samples) {
		t.Fatalf("packed %d, unpacked %d images, want %d", len(res.Pack.Images), len(res.Unpack.Images), len(Samples))
	}
	// legacy-signed samples: index, 2 children, 3 .sig by digest, 3 .att (each rewritten
	// with its subject's summary) by tag
	if res.Verified < 9*len(Samples) {
		t.Fatalf("only %d manifests verified at the destination", res.Verified)
	}
	for _, im := range res.Inspect.Images {
		if len(im.Platforms) != 2 || len(im.Attachments) == 0 {
			t.Errorf("inspect %s: %d platforms, %d attachments", im.Name, len(im.Platforms), len(im.Attachments))
		}
	}
	for _, im := range res.Pack.Images {
		if im.Verification == nil || !im.Verification.Verified {
			t.Errorf("%s was not verified at pack", im.Source)
		}
	}
	if v := res.Unpack.Verification; v == nil || len(v.ImageResults) != len(Samples) {
		t.Errorf("unpack did not re-verify every image: %+v", v)
	}
	if res.Admission == nil || len(res.Admission.Files) < 5 {
		t.Fatalf("admission resources: %+v", res.Admission)
	}
	// with the tester installed (make tools), the bundled image is admitted and the
	// hand-pushed one refused
	if res.TesterMissing == "" {
		if len(res.Tester) != 2 || !res.Tester[0].Admitted || res.Tester[1].Admitted {
			t.Errorf("tester verdicts %+v, want the bundled image admitted and the hand-pushed one refused", res.Tester)
		}
	} else {
		t.Logf("tester not run: %s", res.TesterMissing)
	}
	for _, r := range res.Unpack.Repositories {
		if r.ReferrersAPI {
			t.Errorf("destination %s reported the referrers API; the demo's destination has none", r.Name)
		}
	}
}
