package conformance

// The admission suite (issue 9, item 4): policy-controller's own tester (v0.13.1,
// installed as policy-tester by scripts/install-tools.sh) runs the ClusterImagePolicies
// and the TrustRoot that `petra-oci admission` generates against the internal registry
// after unpack, offline. It admits the bundled image by digest, and refuses what a
// signed bundle did not carry: an image pushed there by hand and signed by the
// publisher, the bundled image without its signature, and the bundled image whose
// petra summary is signed by another key or names another digest.

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"sigs.k8s.io/yaml"

	"github.com/petra-oci/petra-oci/internal/evidence"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/internal/signing"
	"github.com/petra-oci/petra-oci/oci"
)

// policyTester returns policy-controller's tester at the pinned version; a missing
// or other tester fails the test. It is built from the module's directory, which
// embeds no module version, so the version is the one stamped into -version.
func policyTester(t *testing.T) string {
	t.Helper()
	registrytest.CheckScriptPin(t, "POLICY_CONTROLLER_VERSION", registrytest.PolicyTesterVersion)
	bin := registrytest.ToolPath(t, "policy-tester")
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil || !strings.Contains(string(out), "\tpath\t"+registrytest.PolicyTesterPackage+"\n") {
		t.Fatalf("%s is not built from %s (%v): run scripts/install-tools.sh", bin, registrytest.PolicyTesterPackage, err)
	}
	out, err = exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatalf("%s -version: %v", bin, err)
	}
	var v string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "GitVersion:" {
			v = f[1]
		}
	}
	if v != registrytest.PolicyTesterVersion {
		t.Fatalf("%s is policy-controller %q, want %s (run scripts/install-tools.sh)", bin, v, registrytest.PolicyTesterVersion)
	}
	return bin
}

// TestAdmissionTester packs a legacy-signed fixture with --image-key and --key,
// unpacks it into olareg and distribution, generates the admission resources for the
// destination and runs policy-controller's tester on them.
func TestAdmissionTester(t *testing.T) {
	t.Parallel()
	tester := policyTester(t)
	for _, k := range []registrytest.Kind{registrytest.Olareg, registrytest.Distribution} {
		for _, withPolicy := range []bool{false, true} {
			name := string(k) + "/image-key"
			if withPolicy {
				name = string(k) + "/policy-attestations"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				admissionTester(t, tester, k, withPolicy)
			})
		}
	}
}

// attestationPolicy is a petra policy for the fixture under src: the publisher's key,
// SLSA provenance of apko's build type and an SPDX document, as policies/ require.
func attestationPolicy(t *testing.T, srcHost, publisher string) string {
	t.Helper()
	return writeFile(t, filepath.Join(t.TempDir(), "policy.yaml"), []byte(`apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["`+srcHost+`/chainguard/**"]
images:
  - glob: "`+srcHost+`/chainguard/**"
    authorities:
      - key:
          path: `+publisher+`
    requireChildSignatures: true
    attestations:
      - predicateType: `+fixture.PredicateSLSAProvenance1+`
        slsaProvenance:
          buildTypes: ["`+fixture.BuildTypeApko+`"]
      - predicateType: `+fixture.PredicateSPDX+`
        spdx: {}
`))
}

// testerVerdict is one run of the tester: its exit code and the JSON it prints.
type testerVerdict struct {
	res    result
	Errors []string `json:"errors"`
	Warns  []string `json:"warnings"`
}

func runTester(t *testing.T, e *env, bin, policy, trustRoot, ref string) testerVerdict {
	t.Helper()
	args := []string{"-policy", policy, "-image", ref, "-log-level", "warn"}
	if trustRoot != "" {
		args = append(args, "-trustroot", trustRoot)
	}
	v := testerVerdict{res: e.run(bin, args...)}
	if out := strings.TrimSpace(v.res.stdout); out != "" {
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Errorf("tester output is not {errors, warnings}: %v\n%s", err, v.res)
		}
	}
	return v
}

// cipDocs splits the generated ClusterImagePolicy file into its documents by name.
func cipDocs(t *testing.T, raw []byte) (names []string, docs map[string]string) {
	t.Helper()
	docs = map[string]string{}
	for _, d := range strings.Split(string(raw), "\n---\n") {
		if strings.TrimSpace(d) == "" {
			continue
		}
		var o struct {
			Kind     string
			Metadata struct{ Name string }
		}
		must(t, yaml.Unmarshal([]byte(d), &o))
		if o.Kind != "ClusterImagePolicy" || o.Metadata.Name == "" {
			t.Fatalf("20-clusterimagepolicies.yaml holds a %q %q", o.Kind, o.Metadata.Name)
		}
		names = append(names, o.Metadata.Name)
		docs[o.Metadata.Name] = d
	}
	return names, docs
}

func admissionTester(t *testing.T, tester string, k registrytest.Kind, withPolicy bool) {
	ctx := context.Background()
	e := newEnv(t)
	keys := newHostileKeys(t)
	priv, pubPEM, _ := fixture.KeyPair(t)
	publisher := writeFile(t, filepath.Join(t.TempDir(), "publisher.pub"), pubPEM)
	otherKey, _, _ := fixture.KeyPair(t)
	otherSigner, err := signing.NewSigner(otherKey)
	must(t, err)

	src := registrytest.Start(t, k)
	repo := "chainguard/nginx"
	img := fixture.Chainguard(ctx, t, src.Host, repo, "1", fixture.Options{Seed: 81, Signing: fixture.SigningLegacy, Key: priv})
	trust := []string{"--image-key", publisher}
	if withPolicy {
		trust = []string{"--policy", attestationPolicy(t, src.Host, publisher)}
	}
	dir, _ := packCLI(t, e, keys.bundleKeys, img.Repo+":"+img.Tag, trust...)
	dst := registrytest.Start(t, k)
	state := filepath.Join(t.TempDir(), "series.json")
	e.petra(unpackArgs(keys.bundleKeys, dst.Host+"/mirror", dir, append(trust, "--state", state)...)...)

	out := filepath.Join(t.TempDir(), "admission")
	// the public-good trusted root: the key authorities need none, but the tester
	// must load the TrustRoot admission writes from it (-trustroot)
	root := filepath.Join(fixture.SharedTestdata(t), "sigstore-public-good", "trusted_root.json")
	e.petra(append(append([]string{"admission", "--registry", dst.Host + "/mirror", "-o", out, "--key", keys.pub}, trust...),
		"--trusted-root", root, "--state", state, dir)...)
	policies := filepath.Join(out, "20-clusterimagepolicies.yaml")
	raw, err := os.ReadFile(policies)
	must(t, err)
	names, docs := cipDocs(t, raw)
	t.Logf("ClusterImagePolicies %v:\n%s", names, raw)
	trustRoot := filepath.Join(out, "10-trustroot.yaml")
	if _, err := os.Stat(trustRoot); err != nil {
		t.Fatalf("admission --trusted-root wrote no TrustRoot: %v", err)
	}
	// the image rule's policies alone (without petra's summary), for the controls
	var rule []string
	for _, n := range names {
		if n != "petra-oci-summary" {
			rule = append(rule, docs[n])
		}
	}
	if len(rule) == len(names) {
		t.Fatalf("no petra-oci-summary among %v", names)
	}
	rulePolicy := writeFile(t, filepath.Join(t.TempDir(), "rule.yaml"), []byte(strings.Join(rule, "\n---\n")))

	dstRepo := dst.Repository(t, "mirror/"+repo)
	at := func(r string, d digest.Digest) string { return dst.Host + "/mirror/" + r + "@" + d.String() }
	idx := img.Index.Digest

	// the refused images, each in its own repository under the rule's glob
	copyImage(ctx, t, dstRepo, dst.Repository(t, "mirror/chainguard/copy"), idx, ".sig", ".att")
	copyImage(ctx, t, dstRepo, dst.Repository(t, "mirror/chainguard/stripped"), idx, ".att")
	for _, r := range []string{"otherkey", "otherdigest"} {
		copyImage(ctx, t, dstRepo, dst.Repository(t, "mirror/chainguard/"+r), idx, ".sig")
	}
	anotherDigest := digest.FromString("an image that is not this one")
	forgeSummary(ctx, t, dstRepo, dst.Repository(t, "mirror/chainguard/otherkey"), idx, func(p []byte) []byte { return p }, otherSigner)
	forgeSummary(ctx, t, dstRepo, dst.Repository(t, "mirror/chainguard/otherdigest"), idx, func(p []byte) []byte {
		var st map[string]any
		must(t, json.Unmarshal(p, &st))
		st["subject"] = []any{map[string]any{"name": img.Repo, "digest": map[string]any{"sha256": anotherDigest.Encoded()}}}
		b, err := json.Marshal(st)
		must(t, err)
		return b
	}, keys.signer)
	// signed by the publisher's key, pushed straight into the internal registry
	hand := fixture.Chainguard(ctx, t, dst.Host, "mirror/chainguard/handpushed", "1", fixture.Options{Seed: 82, Signing: fixture.SigningLegacy, Key: priv})

	summaryRefused := "attestation key validation failed for authority petra-oci-summary"
	type testerCase struct {
		name, policy, ref string
		admit             bool
		errs              []string // substrings the errors must all hold
		anyErrs           []string // substrings of which the errors must hold one
		v                 testerVerdict
	}
	cases := []*testerCase{
		{name: "bundled index", policy: policies, ref: at(repo, idx), admit: true},
		{name: "copy of the bundled index with its .sig and .att", policy: policies, ref: at("chainguard/copy", idx), admit: true},
		{name: "hand-pushed, publisher-signed, no summary", policy: policies, ref: at("chainguard/handpushed", hand.Index.Digest),
			errs: []string{summaryRefused, "no matching attestations: accepted signatures do not match threshold, Found: 0, Expected 1"}},
		{name: "hand-pushed, rule policy alone (control)", policy: rulePolicy, ref: at("chainguard/handpushed", hand.Index.Digest), admit: true},
		// The tester prints the first error of the refusing policy's authorities, in the
		// order they finish: with attestation authorities beside the signature's, that
		// may be a violation authority's (its check not matching, as it should not).
		{name: "signature stripped", policy: policies, ref: at("chainguard/stripped", idx),
			anyErrs: []string{"no signatures found", "failed evaluating rego policy for type att"}},
		{name: "summary signed by another key", policy: policies, ref: at("chainguard/otherkey", idx),
			errs: []string{summaryRefused, "no matching attestations: accepted signatures do not match threshold, Found: 0, Expected 1"}},
		{name: "summary about another digest", policy: policies, ref: at("chainguard/otherdigest", idx),
			errs: []string{summaryRefused, "no matching subject digest found"}},
		{name: "forged summaries, rule policy alone (control)", policy: rulePolicy, ref: at("chainguard/otherdigest", idx), admit: true},
	}
	// The children, by digest, against the rule's policy: the publisher's signatures
	// are admitted. (Under the whole file each child is refused by petra-oci-summary:
	// petra attaches its summary to the index only, docs/admission.md.)
	for _, p := range slices.Sorted(maps.Keys(img.Children)) {
		cases = append(cases, &testerCase{name: "bundled child " + p + ", rule policy", policy: rulePolicy, ref: at(repo, img.Children[p].Digest), admit: true})
	}
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cosignSlots <- struct{}{}
			defer func() { <-cosignSlots }()
			c.v = runTester(t, e, tester, c.policy, trustRoot, c.ref)
		}()
	}
	wg.Wait()
	for _, c := range cases {
		t.Logf("%s: %s exit %d errors %q warnings %q", k, c.name, c.v.res.exitCode, c.v.Errors, c.v.Warns)
		switch {
		case c.admit && (c.v.res.exitCode != 0 || len(c.v.Errors) != 0):
			t.Errorf("%s: refused, want admitted:\n%s", c.name, c.v.res)
		case !c.admit && (c.v.res.exitCode != 1 || len(c.v.Errors) == 0):
			t.Errorf("%s: exit %d errors %q, want refused (exit 1, errors):\n%s", c.name, c.v.res.exitCode, c.v.Errors, c.v.res)
		case !c.admit:
			all := strings.Join(c.v.Errors, "\n")
			for _, s := range c.errs {
				if !strings.Contains(all, s) {
					t.Errorf("%s: the tester's errors do not name %q:\n%s", c.name, s, all)
				}
			}
			if len(c.anyErrs) > 0 && !containsAny(all, c.anyErrs) {
				t.Errorf("%s: the tester's errors name none of %q:\n%s", c.name, c.anyErrs, all)
			}
		}
	}
}

// copyImage copies the image idx (the index and its children) from one repository to
// another, with the cosign attachments of the index named by suffixes (".sig", ".att").
func copyImage(ctx context.Context, t *testing.T, from, to *remote.Repository, idx digest.Digest, suffixes ...string) {
	t.Helper()
	if _, err := oras.Copy(ctx, from, idx.String(), to, "1", oras.DefaultCopyOptions); err != nil {
		t.Fatalf("copying %s to %s: %v", idx, to.Reference, err)
	}
	for _, s := range suffixes {
		tag := oci.CosignTag(idx, s)
		if _, err := oras.Copy(ctx, from, tag, to, tag, oras.DefaultCopyOptions); err != nil {
			t.Fatalf("copying %s to %s: %v", tag, to.Reference, err)
		}
	}
}

// forgeSummary writes to `to` the .att of idx as it is in `from`, with petra's
// summary layer replaced by edit's payload signed by s; the other layers are kept.
func forgeSummary(ctx context.Context, t *testing.T, from, to *remote.Repository, idx digest.Digest, edit func([]byte) []byte, s signing.Signer) {
	t.Helper()
	tag := oci.CosignTag(idx, ".att")
	desc, err := from.Resolve(ctx, tag)
	must(t, err)
	// the publisher's layers and the config
	_, err = oras.Copy(ctx, from, tag, to, "", oras.DefaultCopyOptions)
	must(t, err)
	b, err := fetchAll(ctx, from, desc)
	must(t, err)
	var m ocispec.Manifest
	must(t, json.Unmarshal(b, &m))
	n := 0
	for i, l := range m.Layers {
		if l.Annotations[oci.AnnotationCosignPredicate] != evidence.PredicateVSA {
			continue
		}
		raw, err := fetchAll(ctx, from, l)
		must(t, err)
		var env signing.Envelope
		must(t, json.Unmarshal(raw, &env))
		envJSON, _, err := signing.SignDSSE(ctx, s, env.PayloadType, edit(env.Payload))
		must(t, err)
		nl := content.NewDescriptorFromBytes(l.MediaType, envJSON)
		nl.Annotations = l.Annotations
		must(t, to.Push(ctx, nl, bytes.NewReader(envJSON)))
		m.Layers[i] = nl
		n++
	}
	if n != 1 {
		t.Fatalf("test bug: %d summary layers in the .att of %s", n, idx)
	}
	mb, err := json.Marshal(m)
	must(t, err)
	md := content.NewDescriptorFromBytes(desc.MediaType, mb)
	must(t, to.PushReference(ctx, md, bytes.NewReader(mb), tag))
}
