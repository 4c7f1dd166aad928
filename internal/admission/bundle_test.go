package admission

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/signing"
)

// packed is a bundle packed from fixture images and verified with its policy.
type packed struct {
	verified  *bundle.Verified
	policy    *policy.Policy
	bundlePub []byte
	images    []*fixture.Image
}

// packFixtures pushes two Chainguard-shaped fixture images signed in form by one
// publisher key into an in-process registry, packs them with a one-key policy (with
// verification summaries when evidence, signed by a bundle key) and opens the bundle as verify does.
func packFixtures(t *testing.T, form fixture.Signing, evidence bool) *packed {
	t.Helper()
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.InProcess)
	imageKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var images []*fixture.Image
	var specs []pack.ImageSpec
	for i, name := range []string{"chainguard/nginx", "chainguard/static"} {
		img := fixture.Chainguard(ctx, t, reg.Host, name, "latest", fixture.Options{Seed: int64(i + 1), Key: imageKey, Signing: form})
		images = append(images, img)
		specs = append(specs, pack.ImageSpec{Ref: img.Repo + ":" + img.Tag})
	}
	client, err := remote.NewClient(remote.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signing.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signer.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.KeyPolicy(images[0].PublicKeyPEM, []string{reg.Host + "/chainguard/**"})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "bundle")
	if _, err := pack.Pack(ctx, pack.Options{Images: specs, Dir: dir, Client: client,
		Seal: bundle.SealOptions{Signer: signer, ToolVersion: "test"}, Policy: pol, PolicyFile: pol.Bytes(), Evidence: evidence}); err != nil {
		t.Fatal(err)
	}
	v, err := bundle.Open(ctx, dir, bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: pub},
		Images: &bundle.ImagePolicy{Policy: pol, PolicyFile: pol.Bytes()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return &packed{verified: v, policy: pol, bundlePub: pub, images: images}
}

func (p *packed) options(t *testing.T) Options {
	t.Helper()
	images, err := ImagesFromBundle(context.Background(), p.verified)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Registry: testRegistry, Images: images, Policy: p.policy, SummaryKey: p.bundlePub,
		BundleID: p.verified.Report.BundleID, Sequence: p.verified.Report.Sequence}
}

// TestFromLegacyBundle: a bundle of legacy-signed images (cosign .sig/.att, the
// summary in the .att) gives a key authority in legacy format, the summary policy
// with the pinned policy's digest, and a glob covering where unpack puts the images.
func TestFromLegacyBundle(t *testing.T) {
	p := packFixtures(t, fixture.SigningLegacy, true)
	opts := p.options(t)
	if len(opts.Images) != 2 {
		t.Fatalf("%d images", len(opts.Images))
	}
	for i, im := range opts.Images {
		if im.Summary != SummaryLegacy || im.Result == nil || !im.Result.Verified || len(im.Children) != 2 {
			t.Errorf("image %d: %+v", i, im)
		}
		// pack attaches a summary to every child too, in its .att
		for _, c := range im.Children {
			if im.ChildSummaries[c] != SummaryLegacy {
				t.Errorf("image %d: child %s: summary %q", i, c, im.ChildSummaries[c])
			}
		}
	}
	if d := PolicyDigestOf(p.verified.Report); d != p.policy.Digest() {
		t.Errorf("carried policy digest %s, the policy's %s", d, p.policy.Digest())
	}
	f := generate(t, opts)
	if len(f.Notes) != 0 {
		t.Errorf("notes %q", f.Notes)
	}
	cips := cipsOf(t, f)
	if len(cips) != 2 {
		t.Fatalf("%d ClusterImagePolicies", len(cips))
	}
	rule := cips[0]
	if len(rule.Spec.Authorities) != 1 || rule.Spec.Authorities[0].Key == nil || rule.Spec.Authorities[0].SignatureFormat != formatLegacy ||
		rule.Spec.Authorities[0].Key.Data != string(p.images[0].PublicKeyPEM) {
		t.Errorf("rule authorities %+v", rule.Spec.Authorities)
	}
	if rule.Spec.Images[0].Glob != testRegistry+"/**" || rule.Spec.Mode != "enforce" {
		t.Errorf("rule %+v", rule.Spec)
	}
	sum := cips[1]
	if sum.Metadata.Name != NameSummary || sum.Spec.Authorities[0].Key.Data != string(p.bundlePub) ||
		!strings.Contains(sum.Spec.Authorities[0].Attestations[0].Policy.Data, p.policy.Digest().Encoded()) {
		t.Errorf("summary policy %+v", sum)
	}
	for _, im := range p.images {
		dest, err := parseRegistryMust(t).destination(im.Repo)
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := pcMatch([]string{rule.Spec.Images[0].Glob}, dest+"@"+im.Index.Digest.String()); !m {
			t.Errorf("%s@%s not covered", dest, im.Index.Digest)
		}
	}
}

func parseRegistryMust(t *testing.T) internalRegistry {
	r, err := parseRegistry(testRegistry)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFromBundleSignedBundle: images signed the cosign v3 way (Sigstore bundles, with
// a key) carry petra's summary as a bundle too; policy-controller v0.13.1 verifies
// neither, so generation is refused, naming the image.
func TestFromBundleSignedBundle(t *testing.T) {
	p := packFixtures(t, fixture.SigningBundle, true)
	opts := p.options(t)
	for _, im := range opts.Images {
		if im.Summary != SummaryBundle {
			t.Errorf("%s: summary %q", im.Repository, im.Summary)
		}
	}
	_, err := Generate(context.Background(), opts)
	if !errors.Is(err, ErrUnexpressible) || !strings.Contains(err.Error(), "chainguard/nginx@") {
		t.Fatalf("error %v", err)
	}
	// even without the summary in the way, the key-signed bundles are unreadable
	for i := range opts.Images {
		opts.Images[i].Summary = SummaryLegacy
	}
	_, err = Generate(context.Background(), opts)
	if !errors.Is(err, ErrUnexpressible) || !strings.Contains(err.Error(), "Sigstore bundles") || !strings.Contains(err.Error(), "images[0]") {
		t.Fatalf("error %v", err)
	}
}

// TestFromBundleWithoutSummaries: a bundle packed without evidence has no summaries;
// the generated policy would refuse its images, so generation is refused.
func TestFromBundleWithoutSummaries(t *testing.T) {
	p := packFixtures(t, fixture.SigningLegacy, false)
	opts := p.options(t)
	for _, im := range opts.Images {
		if im.Summary != SummaryNone {
			t.Errorf("%s: summary %q", im.Repository, im.Summary)
		}
	}
	if _, err := Generate(context.Background(), opts); !errors.Is(err, ErrNoSummary) {
		t.Fatalf("error %v", err)
	}
}
