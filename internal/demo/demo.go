// Package demo runs petra-oci's main job end to end with nothing but Go: two
// in-process registries on 127.0.0.1 (the source serves the referrers API, the
// destination does not, so both referrer paths run), sample Chainguard-shaped images
// signed and attested in the source, then pack → inspect → unpack, and a check that
// every digest arrived unchanged. Images are verified against a one-key policy at pack
// (each gets a signed SLSA verification summary) and again at unpack; the bundle is
// signed with a key made for the run and verified (signature, sequence, every file,
// images) before anything is pushed.
package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/admission"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/inspect"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/replay"
	"github.com/petra-oci/petra-oci/signing"
	"github.com/petra-oci/petra-oci/unpack"
)

// Options configure Run.
type Options struct {
	// Dir is where the bundle is written; empty means a temporary directory that is
	// removed afterwards.
	Dir string
	Log *slog.Logger
}

// admissionParent is where the admission resources go: beside the bundle when it is
// kept, else in the demo's temporary directory.
func (o Options) admissionParent(work string) string {
	if o.Dir != "" {
		return filepath.Dir(filepath.Clean(o.Dir))
	}
	return work
}

// Result is what the demo did.
type Result struct {
	Bundle   string          `json:"bundle"`
	Pack     *pack.Result    `json:"pack"`
	Inspect  *inspect.Report `json:"inspect"`
	Unpack   *unpack.Result  `json:"unpack"`
	Verified int             `json:"verified"` // manifests found at the destination: by their source digest, and each .att (rewritten with its summary) by its tag
	// Admission is what the cluster is given: the policy-controller and Gatekeeper
	// resources generated for the destination (unpack's Finish), written to
	// AdmissionDir.
	Admission    *admission.Files `json:"admission"`
	AdmissionDir string           `json:"admissionDir"`
	// Tester holds policy-controller's tester verdicts, when its binary
	// (policy-tester, installed by make tools) is found; TesterMissing says why not.
	Tester        []TesterVerdict `json:"tester,omitempty"`
	TesterMissing string          `json:"testerMissing,omitempty"`
}

// TesterVerdict is one run of policy-controller's tester against the destination.
type TesterVerdict struct {
	What     string `json:"what"`
	Image    string `json:"image"`
	Admitted bool   `json:"admitted"`
	Output   string `json:"output"`
}

// Samples are the images the demo seeds: repository path and tag.
var Samples = []struct{ Repo, Tag string }{
	{"chainguard/nginx", "1.27"},
	{"chainguard/static", "latest"},
}

// Run seeds, packs, inspects, unpacks and checks.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	work, err := os.MkdirTemp("", "petra-oci-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	dir := opts.Dir
	if dir == "" {
		dir = filepath.Join(work, "bundle")
	}

	srcHost, stopSrc, err := serve(registry.New(registry.WithReferrersSupport(true), registry.Logger(discardLogger())))
	if err != nil {
		return nil, err
	}
	defer stopSrc()
	dstHost, stopDst, err := serve(registry.New(registry.Logger(discardLogger())))
	if err != nil {
		return nil, err
	}
	defer stopDst()
	opts.Log.Info("registries up", "source", srcHost+" (referrers API)", "destination", dstHost+" (referrers tag schema)")

	// the publisher's image signing key (Chainguard signs keyless; the demo has no Fulcio)
	imageKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var images []*fixture.Image
	var specs []pack.ImageSpec
	for i, s := range Samples {
		// signed the legacy way (.sig/.att): what policy-controller v0.13.1 verifies with a key
		img, err := fixture.Build(ctx, filepath.Join(work, "seed"), srcHost, s.Repo, s.Tag, fixture.Options{Seed: int64(i + 1), Key: imageKey, Signing: fixture.SigningLegacy})
		if err != nil {
			return nil, fmt.Errorf("seeding %s: %w", s.Repo, err)
		}
		images = append(images, img)
		specs = append(specs, pack.ImageSpec{Ref: img.Repo + ":" + img.Tag})
		opts.Log.Info("seeded sample image", "image", img.Repo+":"+img.Tag, "digest", img.Index.Digest, "manifests", len(img.AllManifests))
	}

	client, err := remote.NewClient(remote.Options{PlainHTTP: true, UserAgent: "petra-oci-demo"})
	if err != nil {
		return nil, err
	}
	// the bundle key: in real use a cosign key file or a KMS key
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := signing.NewSigner(key)
	if err != nil {
		return nil, err
	}
	pub, err := signer.PublicKeyPEM()
	if err != nil {
		return nil, err
	}
	// one policy on both sides: every image signed by the publisher's key
	pol, err := policy.KeyPolicy(images[0].PublicKeyPEM, []string{srcHost + "/chainguard/**"})
	if err != nil {
		return nil, err
	}
	res := &Result{Bundle: dir}
	if res.Pack, err = pack.Pack(ctx, pack.Options{Images: specs, Dir: dir, Client: client, Log: opts.Log,
		Seal:   bundle.SealOptions{Signer: signer, ToolVersion: "demo"},
		Policy: pol, PolicyFile: pol.Bytes(), Evidence: true}); err != nil {
		return res, err
	}
	if res.Inspect, err = inspect.Inspect(ctx, dir); err != nil {
		return res, err
	}
	guard, err := replay.New(replay.Options{Path: filepath.Join(work, "series.json")})
	if err != nil {
		return res, err
	}
	verify := &bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: pub}, Replay: guard,
		Images: &bundle.ImagePolicy{Policy: pol, PolicyFile: pol.Bytes()}}
	res.AdmissionDir = filepath.Join(opts.admissionParent(work), "admission")
	finish := func(ctx context.Context, v *bundle.Verified) (func(context.Context) error, error) {
		images, err := admission.ImagesFromBundle(ctx, v)
		if err != nil {
			return nil, err
		}
		if res.Admission, err = admission.Generate(ctx, admission.Options{Registry: dstHost + "/mirror", Images: images,
			SummaryKey: pub, Policy: pol, BundleID: v.Report.BundleID, Sequence: v.Report.Sequence}); err != nil {
			return nil, err
		}
		return func(context.Context) error { return admission.WriteDir(res.AdmissionDir, res.Admission) }, nil
	}
	if res.Unpack, err = unpack.Unpack(ctx, unpack.Options{Dir: dir, To: dstHost + "/mirror", Client: client, Log: opts.Log, Verify: verify, Finish: finish}); err != nil {
		return res, err
	}

	// every manifest the source had is at the destination under the same digest
	for _, img := range images {
		ref, err := unpack.Destination(dstHost+"/mirror", img.Repo)
		if err != nil {
			return res, err
		}
		repo, err := client.Repository(ref)
		if err != nil {
			return res, err
		}
		// the .att manifests of the index and of every child are re-written with their
		// verification summaries added (their layers, the signed envelopes, are
		// unchanged): check the tags instead
		rewritten := map[digest.Digest]bool{}
		for subject, att := range img.Attestations {
			rewritten[att.Digest] = true
			if _, err := repo.Resolve(ctx, oci.CosignTag(subject, ".att")); err != nil {
				return res, fmt.Errorf("%w: .att of %s at %s/%s: %v", oci.ErrNotFound, subject, ref.Registry, ref.Repository, err)
			}
			res.Verified++
		}
		for _, m := range img.AllManifests {
			if rewritten[m.Digest] {
				continue
			}
			d, err := repo.Resolve(ctx, m.Digest.String())
			if err != nil || d.Digest != m.Digest {
				return res, fmt.Errorf("%w: %s missing at %s/%s: %v", oci.ErrNotFound, m.Digest, ref.Registry, ref.Repository, err)
			}
			res.Verified++
		}
	}

	// admission: the bundled image is admitted; one signed by the same publisher key
	// but pushed straight into the internal registry, never in a bundle, is not
	hand, err := fixture.Build(ctx, filepath.Join(work, "seed"), dstHost, "mirror/chainguard/handpushed", "1",
		fixture.Options{Seed: 99, Key: imageKey, Signing: fixture.SigningLegacy})
	if err != nil {
		return res, err
	}
	tester, why := findTester()
	if tester == "" {
		res.TesterMissing = why
		return res, nil
	}
	bundled, _ := unpack.Destination(dstHost+"/mirror", images[0].Repo)
	for _, c := range []struct{ what, image string }{
		{"bundled image", bundled.Registry + "/" + bundled.Repository + "@" + images[0].Index.Digest.String()},
		{"hand-pushed image, signed by the publisher, never in a bundle", hand.Repo + "@" + hand.Index.Digest.String()},
	} {
		out, err := exec.CommandContext(ctx, tester, "-policy", filepath.Join(res.AdmissionDir, "20-clusterimagepolicies.yaml"),
			"-image", c.image, "-log-level", "error").Output()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return res, fmt.Errorf("running %s: %w", tester, err)
		}
		res.Tester = append(res.Tester, TesterVerdict{What: c.what, Image: c.image, Admitted: err == nil, Output: strings.TrimSpace(string(out))})
	}
	return res, nil
}

// findTester looks for policy-controller's tester (make tools installs it as
// policy-tester into $(go env GOPATH)/bin).
func findTester() (string, string) {
	if p, err := exec.LookPath("policy-tester"); err == nil {
		return p, ""
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	if p := filepath.Join(gopath, "bin", "policy-tester"); gopath != "" {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, ""
		}
	}
	return "", "policy-controller's tester (policy-tester) is not installed: `make tools` installs it"
}

// serve runs h on a free 127.0.0.1 port.
func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listening on 127.0.0.1: %w", err)
	}
	srv := &http.Server{Handler: h}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("demo registry stopped", "error", err)
		}
	}()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
