package conformance

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// TestPolicyPackUnpack runs the verification policy through the CLI: pack verifies
// every image against the policy before it is listed and attaches a signed SLSA
// verification summary; unpack verifies again, offline, against the policy pinned on
// its side, and refuses a bundle whose carried policy differs; after unpack, real
// cosign verifies the summary with the bundle key at the destination.
func TestPolicyPackUnpack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/python", "3.13", fixture.Options{Seed: 31})
	imageKey := writeFile(t, filepath.Join(t.TempDir(), "image.pub"), img.PublicKeyPEM)
	_, otherPEM, _ := fixture.KeyPair(t)
	otherKey := writeFile(t, filepath.Join(t.TempDir(), "other.pub"), otherPEM)
	ref := img.Repo + ":" + img.Tag

	// pack: the image verifies against --image-key; the summary is attached
	dir, res := packCLI(t, e, keys, ref, "--image-key", imageKey)
	v := res.Images[0].Verification
	if v == nil || !v.Verified || len(v.Root.Signatures) == 0 || len(v.Children) != 2 {
		t.Fatalf("pack verification = %+v", v)
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(layout.PolicyPath)))
	if err != nil || !strings.Contains(string(b), "image-key") {
		t.Fatalf("the bundle does not carry the policy: %v %q", err, b)
	}
	// the summary is attached to the index in the publisher's form (docs/evidence.md):
	// this index carries a Sigstore bundle referrer, so the summary is one too, listed
	// in index.json with its predicate type and shown by inspect
	var ix ocispec.Index
	if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err != nil || json.Unmarshal(b, &ix) != nil {
		t.Fatalf("reading the bundle's index.json: %v", err)
	}
	var summary digest.Digest
	for _, d := range ix.Manifests {
		if d.Annotations[oci.AnnotationKind] == string(oci.KindReferrer) && d.Annotations[oci.AnnotationSubject] == img.Index.Digest.String() &&
			d.Annotations[fixture.AnnotationBundlePredicateType] == "https://slsa.dev/verification_summary/v1" {
			summary = d.Digest
		}
	}
	if insp := e.petra("inspect", dir); summary == "" || !strings.Contains(insp.stdout, summary.String()) {
		t.Errorf("no verification summary referrer of the index in the bundle (%q), or inspect does not show it:\n%s", summary, insp.stdout)
	}

	// pack refuses an image signed by another key: nothing sealed, exit 30
	bad := filepath.Join(t.TempDir(), "bad")
	r := e.run(petraBin, "pack", "--image", ref, "-o", bad, "--plain-http", "--key", keys.priv, "--image-key", otherKey)
	if r.exitCode != 30 || !strings.Contains(r.stderr, "no valid signature") {
		t.Errorf("pack with another image key: %s", r)
	}
	if _, err := os.Stat(filepath.Join(bad, filepath.FromSlash(layout.MetadataPath))); !os.IsNotExist(err) {
		t.Errorf("a refused pack sealed its bundle: %v", err)
	}
	// a source outside the allow-list is refused before any pull: the host is not even dialled
	pol := writeFile(t, filepath.Join(t.TempDir(), "policy.yaml"), []byte(`apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["cgr.dev/chainguard/**"]
images:
  - glob: "**"
    authorities:
      - key:
          path: `+imageKey+`
`))
	r = e.run(petraBin, "pack", "--image", "127.0.0.1:1/evil/image:latest", "-o", filepath.Join(t.TempDir(), "b"), "--plain-http", "--policy", pol)
	if r.exitCode != 32 || strings.Contains(r.stderr, "connection refused") {
		t.Errorf("pack of a source outside the allow-list: %s", r)
	}

	// unpack: pinned policy = the carried one, images verified again, summary verifiable
	dst := registrytest.Start(t, registrytest.Distribution)
	var ures struct {
		Verification struct {
			ImageResults []struct{ Verified bool } `json:"imageResults"`
		} `json:"verification"`
	}
	state := filepath.Join(t.TempDir(), "series.json")
	decodeJSON(t, e.petra(unpackArgs(keys, dst.Host+"/mirror", dir, "--image-key", imageKey, "--state", state, "--output", "json")...), &ures)
	if len(ures.Verification.ImageResults) != 1 || !ures.Verification.ImageResults[0].Verified {
		t.Fatalf("unpack did not re-verify the image: %+v", ures)
	}
	mirror := dst.Host + "/mirror/chainguard/python@" + img.Index.Digest.String()
	runCosign(t, e,
		cosignCase{cmd: "verify-attestation", key: keys.pub, ref: mirror, pass: true, marker: "Verification for",
			extra: []string{"--type", "https://slsa.dev/verification_summary/v1"}},
		cosignCase{cmd: "verify-attestation", key: otherKey, ref: mirror, pass: false,
			extra: []string{"--type", "https://slsa.dev/verification_summary/v1"}},
	)

	// what cosign verified is our summary: decode the payload it prints
	trustedRoot := filepath.Join(fixture.SharedTestdata(t), "sigstore-public-good", "trusted_root.json")
	out := e.tool("cosign", "verify-attestation", "--key", keys.pub, "--insecure-ignore-tlog=true", "--allow-http-registry",
		"--allow-insecure-registry", "--trusted-root", trustedRoot, "--type", "https://slsa.dev/verification_summary/v1", mirror)
	var env struct{ Payload []byte }
	if err := json.Unmarshal([]byte(strings.SplitN(out.stdout, "\n", 2)[0]), &env); err != nil {
		t.Fatalf("cosign output: %v\n%s", err, out.stdout)
	}
	var st struct {
		PredicateType string
		Subject       []struct{ Digest map[string]string }
		Predicate     struct {
			VerificationResult string
			Policy             struct{ Digest map[string]string }
		}
	}
	if err := json.Unmarshal(env.Payload, &st); err != nil {
		t.Fatal(err)
	}
	if st.PredicateType != "https://slsa.dev/verification_summary/v1" || st.Predicate.VerificationResult != "PASSED" ||
		len(st.Subject) != 1 || "sha256:"+st.Subject[0].Digest["sha256"] != img.Index.Digest.String() || st.Predicate.Policy.Digest["sha256"] == "" {
		t.Errorf("verification summary at the destination: %+v", st)
	}

	// a pinned policy other than the carried one is refused, and nothing is pushed
	dst2 := registrytest.Start(t, registrytest.Distribution)
	r = e.run(petraBin, unpackArgs(keys, dst2.Host+"/mirror", dir, "--image-key", otherKey, "--state", filepath.Join(t.TempDir(), "s.json"))...)
	if r.exitCode != 31 {
		t.Errorf("unpack with another pinned policy: %s", r)
	}
	// a bundle packed without a policy is checked against the pinned one at unpack
	plain, _ := packCLI(t, e, keys, ref)
	r = e.run(petraBin, unpackArgs(keys, dst2.Host+"/mirror", plain, "--image-key", otherKey, "--state", filepath.Join(t.TempDir(), "s.json"))...)
	if r.exitCode != 30 {
		t.Errorf("unpack of an image signed by another key: %s", r)
	}
	if cat := dst2.Catalog(t); len(cat) != 0 {
		t.Errorf("refused unpacks pushed %v", cat)
	}
}

// TestPolicyPublicGoodEndToEnd carries the real public-good keyless attestation on
// go-containerregistry's empty image through pack (verified against a keyless policy
// and the public-good trusted root) and unpack (verified again, offline, against the
// same pinned policy and root), and refuses it when the pinned identity differs.
func TestPolicyPublicGoodEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	src := registrytest.Start(t, registrytest.InProcess)
	subject, _ := fixture.PublicGoodEmptyImage(ctx, t, src.Host, "test/empty")
	root := filepath.Join(fixture.SharedTestdata(t), "sigstore-public-good", "trusted_root_pgi.json")
	writePolicy := func(identity string) string {
		return writeFile(t, filepath.Join(t.TempDir(), "policy.yaml"), []byte(`apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["**"]
images:
  - glob: "**"
    authorities:
      - keyless: {issuer: https://github.com/login/oauth, identity: `+identity+`}
    countAttestationsAsSignatures: true
    attestations:
      - predicateType: https://cosign.sigstore.dev/attestation/v1
`))
	}
	pol := writePolicy("cody@soyland.com")
	dir, res := packCLI(t, e, keys, src.Host+"/test/empty@"+subject.Digest.String(), "--policy", pol, "--trusted-root", root)
	v := res.Images[0].Verification
	if v == nil || !v.Verified || len(v.Root.Attestations) == 0 || v.Root.Attestations[0].Identity != "cody@soyland.com" || v.Root.Attestations[0].SignedAt.IsZero() {
		t.Fatalf("pack verification = %+v", v)
	}
	dst := registrytest.Start(t, registrytest.Olareg)
	out := e.petra(unpackArgs(keys, dst.Host, dir, "--policy", pol, "--trusted-root", root, "--state", filepath.Join(t.TempDir(), "s.json"))...)
	if !strings.Contains(out.stdout, "test/empty") {
		t.Errorf("unpack output: %s", out)
	}
	rj := filepath.Join(t.TempDir(), "report.json")
	vr := e.petra("verify", "--key", keys.pub, "--policy", pol, "--trusted-root", root, "--state", filepath.Join(t.TempDir(), "s.json"), "--report", rj, dir)
	var rep struct {
		Verified bool
		Signers  []struct{ Identity, What string }
		Images   []struct {
			Signers []struct{ Identity, Issuer, What string }
		}
	}
	if b, err := os.ReadFile(rj); err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("verify --report: %v", err)
	}
	if !rep.Verified || len(rep.Signers) != 1 || rep.Signers[0].What != "bundle metadata" ||
		len(rep.Images) != 1 || len(rep.Images[0].Signers) == 0 || rep.Images[0].Signers[0].Identity != "cody@soyland.com" {
		t.Errorf("reviewer report after verify: %+v", rep)
	}
	if !strings.Contains(vr.stdout, "cody@soyland.com (issuer https://github.com/login/oauth)") || !strings.Contains(vr.stdout, "(tlog)") {
		t.Errorf("verify does not show who signed and when:\n%s", vr.stdout)
	}
	// the disconnected side pins another identity: the carried policy differs (31);
	// pinned without a carried policy, the image itself fails (30)
	other := writePolicy("someone@example.com")
	if r := e.run(petraBin, unpackArgs(keys, dst.Host+"/x", dir, "--policy", other, "--trusted-root", root, "--state", filepath.Join(t.TempDir(), "s.json"))...); r.exitCode != 31 {
		t.Errorf("unpack with another pinned policy: %s", r)
	}
	plain, _ := packCLI(t, e, keys, src.Host+"/test/empty@"+subject.Digest.String())
	if r := e.run(petraBin, unpackArgs(keys, dst.Host+"/y", plain, "--policy", other, "--trusted-root", root, "--state", filepath.Join(t.TempDir(), "s.json"))...); r.exitCode != 30 {
		t.Errorf("unpack of an image signed by another identity: %s", r)
	}
}
