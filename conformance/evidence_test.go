package conformance

// The evidence suite: what petra-oci attaches (its signed SLSA verification summary)
// must never change a standard verifier's verdict on the publisher's signatures. For
// cosign v2.6.5 and v3.1.3, on a registry with the referrers API (olareg) and one
// without (distribution), for an image signed the legacy way (.sig/.att) and one
// signed with Sigstore bundles (cosign v3's default), every `cosign verify` and
// `cosign verify-attestation --type P` with the publisher's key must reach the same
// verdict at the destination (after pack --image-key --key and unpack) as at the
// source. The summary itself, on the index and on every child, must verify with the
// bundle key there, and not with another key. See docs/evidence.md.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/evidence"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/oci"
)

// cosignCLI is one cosign version with one set of offline flags.
type cosignCLI struct {
	name, bin string
	flags     []string
	// bundles: these flags let this version verify key-signed Sigstore bundles
	// offline. cosign v2.6.5 refuses to without --trusted-root ("trusted root is
	// required when using new bundle format"); v3.1.3 does with
	// --insecure-ignore-tlog alone.
	bundles bool
}

// cosignCLIs returns both cosign versions, each with the flags a disconnected
// verifier of key-signed images has to add, and no more:
//   - --insecure-ignore-tlog: the publisher signed with a key and no transparency
//     log; without it both versions look for Rekor (its keys from TUF), online;
//   - --trusted-root with an EMPTY trusted root, with and without: once a subject has
//     a Sigstore bundle referrer cosign verifies bundles only, and v2.6.5 then wants
//     trust material (or TUF, online) even though the key does the checking;
//   - --allow-http-registry --allow-insecure-registry: the loopback registries.
//
// A missing cosign fails the test (scripts/install-tools.sh installs both).
func cosignCLIs(t *testing.T) []cosignCLI {
	t.Helper()
	root := writeFile(t, filepath.Join(t.TempDir(), "empty_trusted_root.json"),
		[]byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
	base := []string{"--allow-http-registry", "--allow-insecure-registry", "--insecure-ignore-tlog=true"}
	withRoot := append(slices.Clone(base), "--trusted-root", root)
	var out []cosignCLI
	for _, c := range []struct {
		name, module, version, scriptVar string
		bundlesWithoutRoot               bool
	}{
		{"cosign", registrytest.CosignModule, registrytest.CosignVersion, "COSIGN_VERSION", false},
		{"cosign3", registrytest.Cosign3Module, registrytest.Cosign3Version, "COSIGN3_VERSION", true},
	} {
		registrytest.CheckScriptPin(t, c.scriptVar, c.version)
		bin := registrytest.ToolPath(t, c.name)
		if v := registrytest.ToolModuleVersion(t, bin, c.module); v != c.version {
			t.Fatalf("%s is %s %s, want %s (run scripts/install-tools.sh)", bin, c.module, v, c.version)
		}
		out = append(out,
			cosignCLI{name: c.version + " ignore-tlog", bin: bin, flags: base, bundles: c.bundlesWithoutRoot},
			cosignCLI{name: c.version + " ignore-tlog+root", bin: bin, flags: withRoot, bundles: true})
	}
	return out
}

// cosignSlots bounds the cosign processes of the suite: start-up dominates, and
// two at a time keep a small machine responsive.
var cosignSlots = make(chan struct{}, 2)

// verdictCase is one cosign command on one subject, run at the source and at the
// destination.
type verdictCase struct {
	cli     cosignCLI
	subject string // "index", "linux/amd64", ...
	cmd     string // "verify" or "verify-attestation"
	typ     string // --type of verify-attestation
	key     string
	// src, dst are the image references; wantSrc is the verdict the source must
	// give (the publisher's signatures are there), so that equal verdicts mean
	// something.
	src, dst string
	wantSrc  bool
	// results
	srcRes, dstRes result
}

func (c *verdictCase) args(ref string) []string {
	args := append([]string{c.cmd, "--key", c.key}, c.cli.flags...)
	if c.typ != "" {
		args = append(args, "--type", c.typ)
	}
	return append(args, ref)
}

func (c *verdictCase) what() string {
	if c.typ == "" {
		return c.cmd
	}
	return c.cmd + " --type " + c.typ
}

// runVerdicts runs every case at both ends, two cosign processes at a time.
func runVerdicts(e *env, cases []*verdictCase) {
	var wg sync.WaitGroup
	for _, c := range cases {
		for _, side := range []struct {
			ref string
			res *result
		}{{c.src, &c.srcRes}, {c.dst, &c.dstRes}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cosignSlots <- struct{}{}
				defer func() { <-cosignSlots }()
				*side.res = e.run(c.cli.bin, c.args(side.ref)...)
			}()
		}
	}
	wg.Wait()
}

// vsaCase is one `cosign verify-attestation --type <VSA>` of a subject at the
// destination, with the key it is run with and the verdict it must give.
type vsaCase struct {
	cli     cosignCLI
	subject string // "index", "linux/amd64", ...
	d       digest.Digest
	key     string
	pass    bool
	res     result
}

// runVSA starts every case (two cosign processes at a time, shared with runVerdicts)
// against repo and returns the wait for them.
func runVSA(e *env, repo string, cases []*vsaCase) (wait func()) {
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cosignSlots <- struct{}{}
			defer func() { <-cosignSlots }()
			args := append([]string{"verify-attestation", "--key", c.key}, c.cli.flags...)
			c.res = e.run(c.cli.bin, append(args, "--type", evidence.PredicateVSA, repo+"@"+c.d.String())...)
		}()
	}
	return wg.Wait
}

func verdict(r result) string {
	if r.err == nil {
		return "pass"
	}
	return "FAIL"
}

// reason is the error cosign printed (its "Error: " line), shortened.
func reason(r result) string {
	if r.err == nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	s := lines[len(lines)-1]
	for _, l := range lines {
		if strings.HasPrefix(l, "Error: ") {
			s = strings.TrimPrefix(l, "Error: ")
			break
		}
	}
	if len(s) > 110 {
		s = s[:110] + "…"
	}
	return s
}

// eachSigning runs fn, in parallel, on both registry kinds for a legacy-signed and a
// bundle-signed publisher (fixture seeds seed and seed+1).
func eachSigning(t *testing.T, seed int64, fn func(t *testing.T, k registrytest.Kind, name string, signing fixture.Signing, seed int64)) {
	for _, k := range []registrytest.Kind{registrytest.Olareg, registrytest.Distribution} {
		for _, f := range []struct {
			name    string
			signing fixture.Signing
			seed    int64
		}{{"legacy", fixture.SigningLegacy, seed}, {"bundle", fixture.SigningBundle, seed + 1}} {
			t.Run(string(k)+"/"+f.name, func(t *testing.T) {
				t.Parallel()
				fn(t, k, f.name, f.signing, f.seed)
			})
		}
	}
}

// TestEvidenceVerdicts is the verdict comparison: see the top of this file.
func TestEvidenceVerdicts(t *testing.T) {
	t.Parallel()
	clis := cosignCLIs(t)
	eachSigning(t, 41, func(t *testing.T, k registrytest.Kind, name string, signing fixture.Signing, seed int64) {
		evidenceVerdicts(t, clis, k, name, signing, seed)
	})
}

func evidenceVerdicts(t *testing.T, clis []cosignCLI, k registrytest.Kind, name string, signing fixture.Signing, seed int64) {
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	src := registrytest.Start(t, k)
	repo := "chainguard/" + name
	img := fixture.Chainguard(ctx, t, src.Host, repo, "1", fixture.Options{Seed: seed, Signing: signing})
	publisher := writeFile(t, filepath.Join(t.TempDir(), "publisher.pub"), img.PublicKeyPEM)
	_, otherPEM, _ := fixture.KeyPair(t)
	other := writeFile(t, filepath.Join(t.TempDir(), "other.pub"), otherPEM)

	// pack verifies the publisher's signatures and attaches the summary; unpack
	// pushes everything to a registry of the same kind
	dir, res := packCLI(t, e, keys, img.Repo+":"+img.Tag, "--image-key", publisher)
	if v := res.Images[0].Verification; v == nil || !v.Verified {
		t.Fatalf("pack did not verify the image: %+v", v)
	}
	dst := registrytest.Start(t, k)
	e.petra(unpackArgs(keys, dst.Host+"/mirror", dir)...)
	dstRepo := dst.Host + "/mirror/" + repo
	subjects := []struct {
		label string
		d     digest.Digest
	}{{"index", img.Index.Digest}}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		subjects = append(subjects, struct {
			label string
			d     digest.Digest
		}{p, img.Children[p].Digest})
	}
	// a summary on the index and on every child, each in its subject's form
	for _, s := range subjects {
		assertSummaryForm(t, dst.Repository(t, "mirror/"+repo), img, s.d, signing)
	}
	// every subject of these fixtures is signed in one form: bundles, or .sig/.att
	bundleSigned := signing == fixture.SigningBundle
	var cases []*verdictCase
	for _, cli := range clis {
		// what the publisher signed verifies at the source, unless these flags do
		// not let this cosign verify the form it is in offline
		verifiable := cli.bundles || !bundleSigned
		for _, s := range subjects {
			add := func(cmd, typ string, wantSrc bool) {
				cases = append(cases, &verdictCase{cli: cli, subject: s.label, cmd: cmd, typ: typ, key: publisher,
					src: img.Repo + "@" + s.d.String(), dst: dstRepo + "@" + s.d.String(), wantSrc: wantSrc})
			}
			add("verify", "", verifiable)
			for _, p := range img.Predicates[s.d] {
				add("verify-attestation", p, verifiable)
			}
			// petra's own predicate: not the publisher's, so refused at both ends
			add("verify-attestation", evidence.PredicateVSA, false)
		}
	}
	// the summary at the destination: verifies with the bundle key, not with another
	var summary []*vsaCase
	for _, cli := range clis {
		for _, s := range subjects {
			// the summary is in the publisher's form: verifiable where the publisher's
			// signatures are
			summary = append(summary, &vsaCase{cli: cli, subject: s.label, d: s.d, key: keys.pub, pass: cli.bundles || !bundleSigned},
				&vsaCase{cli: cli, subject: s.label, d: s.d, key: other, pass: false})
		}
	}
	wait := runVSA(e, dstRepo, summary)
	runVerdicts(e, cases)
	wait()

	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s, %s-signed image, publisher key (flags: ignore-tlog = --insecure-ignore-tlog, root = --trusted-root with an empty root)\ncosign\tsubject\tcommand\tsource\tdestination\tdestination refusal\n", k, name)
	for _, c := range cases {
		mark := ""
		if verdict(c.srcRes) != verdict(c.dstRes) {
			mark = "  <-- differs"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s%s\n", c.cli.name, c.subject, c.what(), verdict(c.srcRes), verdict(c.dstRes), reason(c.dstRes), mark)
	}
	fmt.Fprintf(tw, "summary at the destination\ncosign\tsubject\tkey\tverify-attestation --type %s\t\trefusal\n", evidence.PredicateVSA)
	for _, c := range summary {
		key := "bundle.pub"
		if c.key != keys.pub {
			key = "other.pub"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t%s\n", c.cli.name, c.subject, key, verdict(c.res), reason(c.res))
	}
	tw.Flush()
	t.Logf("verdicts:\n%s", table.String())

	for _, c := range cases {
		switch {
		case (c.srcRes.err == nil) != c.wantSrc:
			t.Errorf("%s %s on %s at the SOURCE: %s, want %v (the fixture is wrong, or cosign changed):\n%s",
				c.cli.name, c.what(), c.subject, verdict(c.srcRes), c.wantSrc, c.srcRes)
		case (c.srcRes.err == nil) != (c.dstRes.err == nil):
			t.Errorf("%s %s on %s: %s at the source, %s at the destination: petra's evidence changed the verdict:\n%s",
				c.cli.name, c.what(), c.subject, verdict(c.srcRes), verdict(c.dstRes), c.dstRes)
		}
	}
	for _, c := range summary {
		if (c.res.err == nil) != c.pass {
			t.Errorf("%s: the summary of the %s with %s: %s, want pass=%v:\n%s", c.cli.name, c.subject, c.key, verdict(c.res), c.pass, c.res)
		} else if c.pass {
			assertSummaryOutput(t, c.cli.name, c.res, c.d)
		}
	}
}

// assertSummaryOutput checks that what cosign verified is petra's summary about
// subject (the index or a child): the first line of its output is the DSSE envelope (docs/evidence.md).
func assertSummaryOutput(t *testing.T, cli string, r result, subject digest.Digest) {
	t.Helper()
	var env struct{ Payload []byte }
	if err := json.Unmarshal([]byte(strings.SplitN(r.stdout, "\n", 2)[0]), &env); err != nil {
		t.Errorf("%s: the first line of the output is not a DSSE envelope: %v\n%s", cli, err, r.stdout)
		return
	}
	var st struct {
		PredicateType string
		Subject       []struct{ Digest map[string]string }
		Predicate     struct{ VerificationResult string }
	}
	if err := json.Unmarshal(env.Payload, &st); err != nil {
		t.Errorf("%s: the envelope's payload: %v", cli, err)
		return
	}
	if st.PredicateType != evidence.PredicateVSA || st.Predicate.VerificationResult != "PASSED" ||
		len(st.Subject) != 1 || st.Subject[0].Digest[subject.Algorithm().String()] != subject.Encoded() {
		t.Errorf("%s: cosign verified %+v, want petra's PASSED summary about %s", cli, st, subject)
	}
}

// assertSummaryForm checks where the summary about subject (the index or a child) is
// at the destination: in subject's .att (next to the publisher's layers) for a
// legacy-signed image, with no Sigstore bundle referrer; as a Sigstore bundle referrer
// of subject, and no .att, for a bundle-signed one.
func assertSummaryForm(t *testing.T, repo *remote.Repository, img *fixture.Image, subject digest.Digest, signing fixture.Signing) {
	t.Helper()
	ctx := context.Background()
	var bundles, summaries int
	desc, err := repo.Resolve(ctx, subject.String())
	if err != nil {
		t.Fatalf("%s at the destination: %v", subject, err)
	}
	if err := repo.Referrers(ctx, desc, "", func(ds []ocispec.Descriptor) error {
		for _, d := range ds {
			if d.ArtifactType == oci.MediaTypeSigstoreBundle03 {
				bundles++
				if d.Annotations[fixture.AnnotationBundlePredicateType] == evidence.PredicateVSA {
					summaries++
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("referrers of %s at the destination: %v", subject, err)
	}
	att, attErr := repo.Resolve(ctx, oci.CosignTag(subject, ".att"))
	switch signing {
	case fixture.SigningLegacy:
		if bundles != 0 {
			t.Errorf("legacy-signed image: %d Sigstore bundle referrers on %s at the destination, want none", bundles, subject)
		}
		if attErr != nil {
			t.Fatalf("legacy-signed image: no .att on %s at the destination: %v", subject, attErr)
		}
		b, err := fetchAll(ctx, repo, att)
		if err != nil {
			t.Fatal(err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var preds []string
		for _, l := range m.Layers {
			preds = append(preds, l.Annotations[oci.AnnotationCosignPredicate])
		}
		if want := append(slices.Clone(img.Predicates[subject]), evidence.PredicateVSA); !slices.Equal(preds, want) {
			t.Errorf("legacy-signed image: the .att of %s at the destination holds %v, want %v", subject, preds, want)
		}
	case fixture.SigningBundle:
		if summaries != 1 {
			t.Errorf("bundle-signed image: %d summary bundle referrers on %s at the destination, want 1", summaries, subject)
		}
		if !errors.Is(attErr, errdef.ErrNotFound) {
			t.Errorf("bundle-signed image: .att on %s at the destination: %v %v, want none", subject, att.Digest, attErr)
		}
	}
}
