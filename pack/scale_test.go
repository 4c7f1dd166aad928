package pack_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/remote"
)

// TestPackRequestsLinear counts what pack asks of the source registry (operations, not
// time) and fails if that grows faster than the graph: four times the images (two tags
// a repository, each a Chainguard-shaped image: index, two children, .sig/.att on each
// and referrers) may cost at most four times the requests (2.5 % slack), copy only and with a key
// policy. A per-image listing of every repository or of every image packed so far, or
// a probe per image of every repository, would break it.
func TestPackRequestsLinear(t *testing.T) {
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.MarshalPublicKeyToPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	r := registrytest.Start(t, registrytest.InProcess)
	const n = 3
	var specs []pack.ImageSpec
	for i := range 4 * n {
		repo := fmt.Sprintf("chainguard/app-%d", i/2)
		tag := fmt.Sprintf("v%d", i%2)
		fixture.Chainguard(ctx, t, r.Host, repo, tag, fixture.Options{Key: key, Seed: int64(i), LayerBytes: 64, Signing: fixture.SigningLegacy})
		specs = append(specs, pack.ImageSpec{Ref: r.Host + "/" + repo + ":" + tag})
	}
	pol, err := policy.KeyPolicy(pub, []string{"**"})
	if err != nil {
		t.Fatal(err)
	}
	requests := func(images []pack.ImageSpec, p *policy.Policy) int {
		t.Helper()
		proxy := registrytest.StartHookProxy(t, r, registrytest.HookOptions{})
		var viaProxy []pack.ImageSpec
		for _, s := range images {
			viaProxy = append(viaProxy, pack.ImageSpec{Ref: proxy.Host + s.Ref[len(r.Host):]})
		}
		client, err := remote.NewClient(remote.Options{PlainHTTP: true})
		if err != nil {
			t.Fatal(err)
		}
		res, err := pack.Pack(ctx, pack.Options{Images: viaProxy, Dir: filepath.Join(t.TempDir(), "bundle"), Client: client,
			Policy: p, UnsafeNoPolicy: p == nil})
		if err != nil {
			t.Fatalf("pack of %d images: %v", len(images), err)
		}
		if len(res.Images) != len(images) {
			t.Fatalf("packed %d images, want %d", len(res.Images), len(images))
		}
		return len(proxy.Requests())
	}
	for _, c := range []struct {
		name string
		p    *policy.Policy
	}{{"copy only", nil}, {"key policy", pol}} {
		small, large := requests(specs[:n], c.p), requests(specs, c.p)
		t.Logf("%s: %d images: %d requests; %d images: %d requests", c.name, n, small, 4*n, large)
		if float64(large) > 4.1*float64(small) { // linear: a+4bn < 4(a+bn); 2.5 % for noise
			t.Errorf("%s: %d images took %d requests, %d images %d: more than 4x (%.2fx): superlinear", c.name, n, small, 4*n, large, float64(large)/float64(small))
		}
	}
}
