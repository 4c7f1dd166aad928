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
	if res.Verified < 10*len(Samples) {
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
	for _, r := range res.Unpack.Repositories {
		if r.ReferrersAPI {
			t.Errorf("destination %s reported the referrers API; the demo's destination has none", r.Name)
		}
	}
}
