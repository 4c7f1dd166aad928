package pack_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/signing"
	"github.com/petra-oci/petra-oci/unpack"
)

// A mirroring program: pull a publisher-signed image into a signed bundle, verifying it
// against a policy before any layer is copied; on the far side verify the bundle offline,
// walk what it holds, and push exactly that into the internal registry.
func Example_mirror() {
	ctx := context.Background()
	source, internal, publisherKey, work := exampleRegistries() // two registries on 127.0.0.1, one signed image
	defer os.RemoveAll(work)

	client, err := remote.NewClient(remote.Options{PlainHTTP: true})
	check(err)
	pol, err := policy.KeyPolicy(publisherKey, []string{source + "/chainguard/**"})
	check(err)
	bundleKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // in real use: a cosign key file or KMS
	check(err)
	signer, err := signing.NewSigner(bundleKey)
	check(err)
	bundlePub, err := signer.PublicKeyPEM()
	check(err)

	// the connected side
	dir := filepath.Join(work, "bundle")
	packed, err := pack.Pack(ctx, pack.Options{Images: []pack.ImageSpec{{Ref: source + "/chainguard/nginx:1.27"}},
		Dir: dir, Client: client, Policy: pol, Seal: bundle.SealOptions{Signer: signer}})
	check(err)
	fmt.Printf("packed %d image, signed: %t\n", len(packed.Images), packed.Signed)

	// the disconnected side: nothing is read before the bundle signature verifies
	verify := bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: bundlePub}, Images: &bundle.ImagePolicy{Policy: pol}}
	report, err := bundle.Verify(ctx, dir, verify)
	check(err)
	for _, repo := range report.Contents {
		for _, img := range repo.Images {
			fmt.Printf("%s: %d children, %d attachments\n", strings.TrimPrefix(repo.Name, source+"/"), len(img.Children), len(img.Attachments))
		}
	}
	unpacked, err := unpack.Unpack(ctx, unpack.Options{Dir: dir, To: internal + "/mirror", Client: client, Verify: &verify})
	check(err)
	for _, m := range unpacked.Images {
		fmt.Println("pushed", strings.TrimPrefix(m.Destination, internal+"/"), m.Digest == packed.Images[0].Digest)
	}
	// Output:
	// packed 1 image, signed: true
	// chainguard/nginx: 2 children, 7 attachments
	// pushed mirror/chainguard/nginx:1.27 true
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// exampleRegistries starts a source registry (with the referrers API) and an internal
// one (without), seeds the source with a Chainguard-shaped two-platform image signed
// and attested by a publisher key, and returns both hosts, the publisher's public key
// and a work folder.
func exampleRegistries() (source, internal string, publisherKey []byte, work string) {
	quiet := registry.Logger(log.New(io.Discard, "", 0))
	src := httptest.NewServer(registry.New(registry.WithReferrersSupport(true), quiet))
	dst := httptest.NewServer(registry.New(quiet))
	source, internal = strings.TrimPrefix(src.URL, "http://"), strings.TrimPrefix(dst.URL, "http://")
	work, err := os.MkdirTemp("", "petra-oci-example-")
	check(err)
	img, err := fixture.Build(context.Background(), work, source, "chainguard/nginx", "1.27", fixture.Options{Seed: 1, Signing: fixture.SigningLegacy})
	check(err)
	return source, internal, img.PublicKeyPEM, work
}
