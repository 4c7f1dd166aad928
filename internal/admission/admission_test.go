package admission

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"sigs.k8s.io/yaml"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const testRegistry = "reg.internal/mirror"

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func publicGoodRoot(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixture.SharedTestdata(t), "sigstore-public-good", "trusted_root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fakeDigest(s string) digest.Digest { return digest.FromString(s) }

// verifiedImage is an image as the pinned policy verified it: every subject signed
// and attested by authority (label, mode) in form sigForm / attForm.
func verifiedImage(repo, rule, label, mode, sigForm, attForm string, predicates ...string) Image {
	d := fakeDigest(repo)
	child := fakeDigest(repo + "/amd64")
	subject := func(d digest.Digest) imageverify.Subject {
		s := imageverify.Subject{Digest: d,
			Signatures: []imageverify.Signature{{Source: imageverify.Source{Form: sigForm}, Signer: imageverify.Signer{Authority: label, Mode: mode}}}}
		for _, p := range predicates {
			s.Attestations = append(s.Attestations, imageverify.Attestation{Source: imageverify.Source{Form: attForm},
				Signer: imageverify.Signer{Authority: label, Mode: mode}, PredicateType: p})
		}
		return s
	}
	return Image{Repository: repo, Digest: d, Children: []digest.Digest{child}, Summary: SummaryLegacy,
		ChildSummaries: map[digest.Digest]SummaryForm{child: SummaryLegacy},
		Result: &imageverify.Result{Repository: repo, Digest: d, Rule: rule, Verified: true,
			Root: subject(d), Children: []imageverify.Subject{subject(child)}}}
}

func chainguardOptions(t testing.TB) Options {
	t.Helper()
	p, err := policy.Builtin("chainguard-public")
	if err != nil {
		t.Fatal(err)
	}
	var images []Image
	for _, name := range []string{"nginx", "static"} {
		images = append(images, verifiedImage("cgr.dev/chainguard/"+name, "cgr.dev/chainguard/**", "chainguard-release",
			imageverify.ModeKeyless, imageverify.FormCosignSig, imageverify.FormCosignAtt, policy.PredicateSLSAProvenanceV1, policy.PredicateSPDX))
	}
	return Options{Registry: testRegistry, Images: images, Policy: p, TrustedRoot: publicGoodRoot(t),
		SummaryKey: readTestdata(t, "bundle.pub"), BundleID: "3f8c2a8e-0c1f-4d6e-9d43-3a1c7e0b9a11", Sequence: 7}
}

func generate(t testing.TB, opts Options) *Files {
	t.Helper()
	f, err := Generate(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// goldenOptions are the generation cases compared with testdata/golden/<name>/.
func goldenOptions(t testing.TB) map[string]Options {
	t.Helper()
	cg := chainguardOptions(t)
	withAttest := chainguardOptions(t)
	withAttest.AttestKey = readTestdata(t, "attest.pub")
	key, err := policy.KeyPolicy(readTestdata(t, "publisher.pub"), []string{"registry.example/team/**"})
	if err != nil {
		t.Fatal(err)
	}
	keyImg := verifiedImage("registry.example/team/app", "**", "image-key", imageverify.ModeKey, imageverify.FormCosignSig, imageverify.FormCosignAtt)
	return map[string]Options{
		"chainguard-public":            cg,
		"chainguard-public-attest-key": withAttest,
		"image-key": {Registry: "reg.internal:5000", Images: []Image{keyImg}, Policy: key,
			SummaryKey: readTestdata(t, "bundle.pub"), BundleID: "b0a6c7c4-8f0e-4a55-a0f3-0d5e9c1f2b33", Sequence: 1},
		"no-policy": {Registry: "reg.internal", Images: []Image{{Repository: "cgr.dev/chainguard/nginx", Digest: fakeDigest("n"), Summary: SummaryLegacy}},
			PolicyDigest: fakeDigest("carried policy"), SummaryKey: readTestdata(t, "bundle.pub")},
	}
}

// TestGolden compares every generated file with testdata/golden; -update rewrites them.
func TestGolden(t *testing.T) {
	for name, opts := range goldenOptions(t) {
		t.Run(name, func(t *testing.T) {
			f := generate(t, opts)
			dir := filepath.Join("testdata", "golden", name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := WriteDir(dir, f); err != nil {
					t.Fatal(err)
				}
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update)", err)
			}
			if len(entries) != len(f.Files) {
				t.Errorf("%s holds %d files, Generate wrote %d", dir, len(entries), len(f.Files))
			}
			for _, file := range f.Files {
				want, err := os.ReadFile(filepath.Join(dir, file.Name))
				if err != nil {
					t.Errorf("%v (run go test -run TestGolden -update)", err)
					continue
				}
				if !bytes.Equal(file.Data, want) {
					t.Errorf("%s differs from %s (run go test -run TestGolden -update and review the diff)", file.Name, dir)
				}
			}
		})
	}
}

// TestDeterministic: two runs, and a run with the images given in another order, give
// byte-identical files.
func TestDeterministic(t *testing.T) {
	for name, opts := range goldenOptions(t) {
		t.Run(name, func(t *testing.T) {
			a := generate(t, opts)
			rev := opts
			rev.Images = append([]Image(nil), opts.Images...)
			for i, j := 0, len(rev.Images)-1; i < j; i, j = i+1, j-1 {
				rev.Images[i], rev.Images[j] = rev.Images[j], rev.Images[i]
			}
			for _, b := range []*Files{generate(t, opts), generate(t, rev)} {
				if len(a.Files) != len(b.Files) {
					t.Fatalf("%d files, then %d", len(a.Files), len(b.Files))
				}
				for i := range a.Files {
					if a.Files[i].Name != b.Files[i].Name || !bytes.Equal(a.Files[i].Data, b.Files[i].Data) {
						t.Errorf("%s differs between two runs", a.Files[i].Name)
					}
				}
			}
		})
	}
}

func TestKustomizationListsEveryFile(t *testing.T) {
	f := generate(t, chainguardOptions(t))
	k := f.Files[len(f.Files)-1]
	if k.Name != FileKustomization {
		t.Fatalf("last file is %s, want %s", k.Name, FileKustomization)
	}
	var kz struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(k.Data, &kz); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, file := range f.Files[:len(f.Files)-1] {
		names = append(names, file.Name)
	}
	if strings.Join(kz.Resources, ",") != strings.Join(names, ",") {
		t.Errorf("kustomization lists %v, the files are %v", kz.Resources, names)
	}
	want := []string{FileTrustRoot, FileClusterImagePolicies, FileTemplateAllowedRepos, FileTemplateImageDigests, FileConstraintRepos, FileConstraintDigests}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("files %v, want %v (apply order)", names, want)
	}
}

// cipsOf parses the generated ClusterImagePolicies.
func cipsOf(t testing.TB, f *Files) []struct {
	Metadata meta    `json:"metadata"`
	Spec     cipSpec `json:"spec"`
} {
	t.Helper()
	var out []struct {
		Metadata meta    `json:"metadata"`
		Spec     cipSpec `json:"spec"`
	}
	for _, file := range f.Files {
		if file.Name != FileClusterImagePolicies {
			continue
		}
		for _, doc := range strings.Split(string(file.Data), "\n---\n") {
			var c struct {
				Metadata meta    `json:"metadata"`
				Spec     cipSpec `json:"spec"`
			}
			if err := yaml.UnmarshalStrict([]byte(doc), &c, yaml.DisallowUnknownFields); err != nil {
				// apiVersion and kind are not in the struct
				if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
					t.Fatal(err)
				}
			}
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		t.Fatal("no ClusterImagePolicy generated")
	}
	return out
}

// keylessIdentities returns the identities the policy's rules require, as
// policy-controller names them.
func keylessIdentities(p *policy.Policy) map[identity]bool {
	out := map[identity]bool{}
	for _, r := range p.Images {
		for _, a := range r.Authorities {
			if k := a.Keyless; k != nil {
				out[identity{Issuer: k.Issuer, IssuerRegExp: k.IssuerRegexp, Subject: k.Identity, SubjectRegExp: k.IdentityRegexp}] = true
			}
		}
	}
	return out
}

// publicGoodPolicy is a petra policy built from the real public-good attestation
// fixture: the identity and issuer of its Fulcio certificate.
func publicGoodPolicy(t testing.TB) (*policy.Policy, identity) {
	t.Helper()
	b, err := sgbundle.LoadJSONFromPath(filepath.Join(fixture.SharedTestdata(t), fixture.PublicGoodBundleFile))
	if err != nil {
		t.Fatal(err)
	}
	vc, err := b.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	sum, err := certificate.SummarizeCertificate(vc.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	id := identity{Issuer: sum.Issuer, Subject: sum.SubjectAlternativeName}
	if id.Issuer != "https://github.com/login/oauth" || id.Subject != "cody@soyland.com" {
		t.Fatalf("the public-good fixture is signed by %+v, not as its README says", id)
	}
	doc := fmt.Sprintf(`apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["registry.example/**"]
images:
  - glob: "registry.example/**"
    authorities:
      - name: fixture-signer
        keyless: {issuer: %q, identity: %q}
    attestations:
      - predicateType: %s
`, id.Issuer, id.Subject, fixture.PredicateCosignAttestation)
	p, err := policy.Parse([]byte(doc), "")
	if err != nil {
		t.Fatal(err)
	}
	return p, id
}

// TestKeylessIdentities: the keyless identities of the generated ClusterImagePolicies
// are exactly those of the petra policy, for the shipped Chainguard policy, the filled-in
// organisation template, and a policy built from the real public-good fixture.
func TestKeylessIdentities(t *testing.T) {
	org, err := policy.BuiltinBytes("chainguard-org")
	if err != nil {
		t.Fatal(err)
	}
	filled := strings.NewReplacer("<ORGANIZATION>", "example.com", "<CATALOG_SYNCER_UIDP>", "720909c9f5279097d847ad02a2f24ba8f59de36a/b6461e99e132298f",
		"<APKO_BUILDER_UIDP>", "720909c9f5279097d847ad02a2f24ba8f59de36a/3b9b8e5c1a2d4f60").Replace(string(org))
	orgPolicy, err := policy.Parse([]byte(filled), "")
	if err != nil {
		t.Fatal(err)
	}
	pg, pgID := publicGoodPolicy(t)
	cg := chainguardOptions(t)
	cases := map[string]Options{
		"chainguard-public": cg,
		"chainguard-org": {Registry: testRegistry, Policy: orgPolicy, TrustedRoot: publicGoodRoot(t), SummaryKey: cg.SummaryKey,
			Images: []Image{verifiedImage("cgr.dev/example.com/app", "cgr.dev/example.com/**", "chainguard-org", imageverify.ModeKeyless,
				imageverify.FormCosignSig, imageverify.FormCosignAtt, policy.PredicateSLSAProvenanceV1, policy.PredicateSPDX)}},
		// the real fixture is a Sigstore bundle, which policy-controller v0.13.1 cannot
		// verify offline (refused: TestUnexpressible); its identity, in legacy form
		"public-good-fixture": {Registry: testRegistry, Policy: pg, TrustedRoot: publicGoodRoot(t), SummaryKey: cg.SummaryKey,
			Images: []Image{verifiedImage("registry.example/empty", "registry.example/**", "fixture-signer", imageverify.ModeKeyless,
				imageverify.FormCosignSig, imageverify.FormCosignAtt, fixture.PredicateCosignAttestation)}},
	}
	for name, opts := range cases {
		t.Run(name, func(t *testing.T) {
			want := keylessIdentities(opts.Policy)
			got := map[identity]bool{}
			formats := map[string]bool{}
			for _, c := range cipsOf(t, generate(t, opts)) {
				for _, a := range c.Spec.Authorities {
					if a.Keyless == nil {
						if c.Metadata.Name != NameSummary {
							t.Errorf("%s: authority %s is not keyless", c.Metadata.Name, a.Name)
						}
						continue
					}
					formats[a.SignatureFormat] = true
					if a.Keyless.TrustRootRef != Name || a.CTLog == nil || a.CTLog.TrustRootRef != Name || a.Keyless.URL != "https://fulcio.sigstore.dev" {
						t.Errorf("%s: authority %s is not pinned to the TrustRoot: %+v %+v", c.Metadata.Name, a.Name, a.Keyless, a.CTLog)
					}
					for _, id := range a.Keyless.Identities {
						got[id] = true
					}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("identities %v, the petra policy has %v", got, want)
			}
			if name == "public-good-fixture" && !got[pgID] {
				t.Errorf("the fixture's identity %+v is missing", pgID)
			}
			// legacy only: policy-controller v0.13.1 verifies no Sigstore bundle offline
			if !formats[formatLegacy] || len(formats) != 1 {
				t.Errorf("signature formats %v", formats)
			}
		})
	}
}

// TestUnexpressible: every petra rule (or image material) policy-controller cannot
// express is refused, by name, never turned into a weaker policy.
func TestUnexpressible(t *testing.T) {
	bundlePub := readTestdata(t, "bundle.pub")
	pubKey := regoString(string(readTestdata(t, "publisher.pub"))) // a JSON string is a YAML scalar
	parse := func(t *testing.T, images string) *policy.Policy {
		t.Helper()
		doc := "apiVersion: petra-oci.dev/v1alpha1\nkind: Policy\nsources: [\"**\"]\nimages:\n" + strings.ReplaceAll(images, "KEY", pubKey)
		p, err := policy.Parse([]byte(doc), "")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyImg := func(repo, rule, sigForm, attForm string, predicates ...string) Image {
		return verifiedImage(repo, rule, "key", imageverify.ModeKey, sigForm, attForm, predicates...)
	}
	keyRule := func(glob string) string {
		return "  - glob: \"" + glob + "\"\n    authorities:\n      - name: key\n        key: {publicKey: KEY}\n"
	}
	cases := []struct {
		name    string
		policy  string
		images  []Image
		trusted bool // with the public-good trusted root
		err     error
		want    []string // in the error
	}{
		{name: "countAttestationsAsSignatures", policy: keyRule("registry.example/**") + "    countAttestationsAsSignatures: true\n    attestations:\n      - predicateType: https://cosign.sigstore.dev/attestation/v1\n",
			err: ErrUnexpressible, want: []string{"images[0] (registry.example/**)", "countAttestationsAsSignatures"}},
		{name: "glob spanning host and path", policy: keyRule("**/base"),
			err: ErrUnexpressible, want: []string{"images[0] (**/base)", "glob"}},
		{name: "glob with ** in the host", policy: keyRule("reg**/base"),
			err: ErrUnexpressible, want: []string{"images[0] (reg**/base)", "glob"}},
		{name: "rules meeting at the destination", policy: keyRule("cgr.dev/chainguard/**") + keyRule("registry.example/**"),
			err: ErrUnexpressible, want: []string{"images[0] (cgr.dev/chainguard/**)", "images[1] (registry.example/**)"}},
		{name: "catch-all after a rule", policy: keyRule("cgr.dev/chainguard/**") + keyRule("**"),
			err: ErrUnexpressible, want: []string{"images[0] (cgr.dev/chainguard/**)", "images[1] (**)"}},
		{name: "rules meeting at a bundled image", policy: keyRule("a.example/x/*") + keyRule("b.example/*/y"),
			images: []Image{keyImg("a.example/x/y", "a.example/x/*", imageverify.FormCosignSig, imageverify.FormCosignAtt)},
			err:    ErrUnexpressible, want: []string{"images[0] (a.example/x/*)", "images[1] (b.example/*/y)", testRegistry + "/x/y@"}},
		{name: "key-signed Sigstore bundles", policy: keyRule("registry.example/**"),
			images: []Image{keyImg("registry.example/app", "registry.example/**", imageverify.FormSigstoreBundle, imageverify.FormSigstoreBundle)},
			err:    ErrUnexpressible, want: []string{"images[0] (registry.example/**)", "registry.example/app@", "Sigstore bundles"}},
		{name: "key-signed attestation bundles", policy: keyRule("registry.example/**") + "    attestations:\n      - predicateType: https://spdx.dev/Document\n",
			images: []Image{keyImg("registry.example/app", "registry.example/**", imageverify.FormCosignSig, imageverify.FormSigstoreBundle, policy.PredicateSPDX)},
			err:    ErrUnexpressible, want: []string{"images[0] (registry.example/**)", "attestation https://spdx.dev/Document"}},
		{name: "keyless Sigstore bundles", policy: "  - glob: \"registry.example/**\"\n    authorities:\n      - name: ci\n        keyless: {issuer: https://issuer.example, identity: ci@example.com}\n",
			images:  []Image{verifiedImage("registry.example/app", "registry.example/**", "ci", imageverify.ModeKeyless, imageverify.FormSigstoreBundle, imageverify.FormSigstoreBundle)},
			trusted: true, err: ErrUnexpressible, want: []string{"images[0] (registry.example/**)", "registry.example/app@", "Sigstore bundles", "log IDs"}},
		{name: "keyless without a trusted root", policy: "  - glob: \"registry.example/**\"\n    authorities:\n      - name: ci\n        keyless: {issuer: https://issuer.example, identity: ci@example.com}\n",
			err: ErrInvalidOptions, want: []string{"images[0] (registry.example/**)", "authorities[0] (ci)", "trusted root"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := Options{Registry: testRegistry, Policy: parse(t, c.policy), Images: c.images, SummaryKey: bundlePub}
			if c.trusted {
				opts.TrustedRoot = publicGoodRoot(t)
			}
			_, err := Generate(context.Background(), opts)
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
	t.Run("summary in bundle form", func(t *testing.T) {
		opts := chainguardOptions(t)
		opts.Images[1].Summary = SummaryBundle
		_, err := Generate(context.Background(), opts)
		if !errors.Is(err, ErrUnexpressible) || !strings.Contains(err.Error(), "cgr.dev/chainguard/static@") || !strings.Contains(err.Error(), "summary") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("no summary", func(t *testing.T) {
		opts := chainguardOptions(t)
		opts.Images[0].Summary = SummaryNone
		_, err := Generate(context.Background(), opts)
		if !errors.Is(err, ErrNoSummary) || !strings.Contains(err.Error(), "cgr.dev/chainguard/nginx@") {
			t.Fatalf("error %v", err)
		}
	})
	// a child without a summary in .att form (a bundle packed before pack attached one
	// per child) is refused by digest: a note names it, the image stays admissible
	t.Run("child without a summary", func(t *testing.T) {
		for _, form := range []SummaryForm{SummaryNone, SummaryBundle} {
			opts := chainguardOptions(t)
			im := &opts.Images[0]
			c := im.Children[0]
			im.ChildSummaries = map[digest.Digest]SummaryForm{c: form}
			f, err := Generate(context.Background(), opts)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, n := range f.Notes {
				found = found || (strings.Contains(n, c.String()) && strings.Contains(n, "refused when a pod names it by digest"))
			}
			if !found {
				t.Errorf("summary %q on child %s: notes %q", form, c, f.Notes)
			}
		}
	})
	t.Run("image without a result of the policy", func(t *testing.T) {
		opts := chainguardOptions(t)
		opts.Images[0].Result = nil
		if _, err := Generate(context.Background(), opts); !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("error %v", err)
		}
	})
}

func TestInvalidOptions(t *testing.T) {
	for name, edit := range map[string]func(*Options){
		"no summary key":   func(o *Options) { o.SummaryKey = nil },
		"bad summary key":  func(o *Options) { o.SummaryKey = []byte("not a key") },
		"bad attest key":   func(o *Options) { o.AttestKey = []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n") },
		"no registry":      func(o *Options) { o.Registry = "" },
		"registry scheme":  func(o *Options) { o.Registry = "https://reg.internal" },
		"registry glob":    func(o *Options) { o.Registry = "reg.internal/*" },
		"registry escape":  func(o *Options) { o.Registry = "reg.internal/../x" },
		"registry upper":   func(o *Options) { o.Registry = "reg.internal/Mirror" },
		"bad trusted root": func(o *Options) { o.TrustedRoot = []byte(`{"mediaType":"something else"}`) },
		"policy digest":    func(o *Options) { o.PolicyDigest = "sha512:abc" },
		"no Fulcio": func(o *Options) {
			o.TrustedRoot = []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`)
		},
	} {
		t.Run(name, func(t *testing.T) {
			opts := chainguardOptions(t)
			edit(&opts)
			if _, err := Generate(context.Background(), opts); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("error %v, want ErrInvalidOptions", err)
			}
		})
	}
}
