package conformance

// The import record suite (issue 9, item 2). `unpack --attest-key` writes, for every
// image, a second signed verification summary "verified at import" at the
// destination, in the publisher's form (docs/evidence.md): real cosign (v2.6.5 and
// v3.1.3) verifies it with the attest key, and only with it, and the publisher's
// verdicts stay what they are at the source. `unpack --require-evidence` refuses,
// before pushing anything (exit 34), a bundle whose image lacks a pack-side summary
// signed with the bundle key about that image.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/evidence"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/signing"
	"github.com/petra-oci/petra-oci/unpack"
)

// exitNoEvidence is unpack --require-evidence's refusal (evidence.ErrNoEvidence).
const exitNoEvidence = 34

// TestImportRecord unpacks a legacy-signed and a bundle-signed image with
// --attest-key --require-evidence into olareg and distribution, then checks with both
// cosign versions that the import record verifies with the attest key (and names the
// image, the bundle and the pack-side summary), not with another key, that the
// pack-side summary still verifies with the bundle key, and that every publisher
// verdict on the index is the source's.
func TestImportRecord(t *testing.T) {
	t.Parallel()
	clis := cosignCLIs(t)
	eachSigning(t, 51, func(t *testing.T, k registrytest.Kind, name string, signing fixture.Signing, seed int64) {
		importRecord(t, clis, k, name, signing, seed)
	})
}

// attestKeys is the disconnected side's key pair for import records.
func attestKeys(t *testing.T) (priv, pub string) {
	t.Helper()
	_, pubPEM, privPEM := fixture.KeyPair(t)
	d := t.TempDir()
	return writeFile(t, filepath.Join(d, "attest.key"), privPEM), writeFile(t, filepath.Join(d, "attest.pub"), pubPEM)
}

func importRecord(t *testing.T, clis []cosignCLI, k registrytest.Kind, name string, signing fixture.Signing, seed int64) {
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	attestPriv, attestPub := attestKeys(t)
	src := registrytest.Start(t, k)
	repo := "chainguard/" + name
	img := fixture.Chainguard(ctx, t, src.Host, repo, "1", fixture.Options{Seed: seed, Signing: signing})
	publisher := writeFile(t, filepath.Join(t.TempDir(), "publisher.pub"), img.PublicKeyPEM)
	_, otherPEM, _ := fixture.KeyPair(t)
	other := writeFile(t, filepath.Join(t.TempDir(), "other.pub"), otherPEM)
	bundleSigned := signing == fixture.SigningBundle

	dir, _ := packCLI(t, e, keys, img.Repo+":"+img.Tag, "--image-key", publisher)
	dst := registrytest.Start(t, k)
	state := filepath.Join(t.TempDir(), "series.json")
	var res unpack.Result
	decodeJSON(t, e.petra(unpackArgs(keys, dst.Host+"/mirror", dir, "--image-key", publisher, "--state", state,
		"--require-evidence", "--attest-key", attestPriv, "--output", "json")...), &res)
	dstRepo := dst.Host + "/mirror/" + repo
	idx := img.Index.Digest
	// the index and every child: each has its pack-side summary and its record
	subjects := []struct {
		label string
		d     digest.Digest
	}{{"index", idx}}
	for _, p := range slices.Sorted(maps.Keys(img.Children)) {
		subjects = append(subjects, struct {
			label string
			d     digest.Digest
		}{p, img.Children[p].Digest})
	}

	// what unpack says it checked and wrote
	wantForm := evidence.FormCosignAtt
	if bundleSigned {
		wantForm = evidence.FormSigstoreBundle
	}
	if len(res.Evidence) != len(subjects) || len(res.ImportRecords) != len(subjects) {
		t.Fatalf("unpack checked the evidence %+v and wrote the records %+v, want one of each for the index and each child", res.Evidence, res.ImportRecords)
	}
	packSummaries := map[digest.Digest]*evidence.Summary{}
	recs := map[digest.Digest]unpack.ImportRecord{}
	for _, s := range subjects {
		for _, ev := range res.Evidence {
			if ev.Image == img.Repo+"@"+s.d.String() && ev.Summary != nil {
				packSummaries[s.d] = ev.Summary
			}
		}
		for _, r := range res.ImportRecords {
			if r.Image == dstRepo+"@"+s.d.String() {
				recs[s.d] = r
			}
		}
		sum, rec := packSummaries[s.d], recs[s.d]
		if sum == nil {
			t.Fatalf("unpack checked no summary of the %s %s: %+v", s.label, s.d, res.Evidence)
		}
		if rec.Form != wantForm || rec.Summary != sum.Statement || sum.Form != wantForm {
			t.Errorf("import record of the %s %+v (summary %+v), want %s in form %s naming the summary's statement", s.label, rec, sum, dstRepo+"@"+s.d.String(), wantForm)
		}
		assertRecordAtDestination(t, dst.Repository(t, "mirror/"+repo), img, s.d, rec, bundleSigned, state, dstRepo)
	}

	// cosign: the record (attest key), the summary (bundle key), another key, and the
	// publisher's verdicts at both ends
	type keyCase struct {
		vsaCase
		label  string
		record bool // the output must be the import record
	}
	var byKey []*keyCase
	var cases []*verdictCase
	for _, cli := range clis {
		// the record is in the publisher's form: verifiable where the publisher's signatures are
		verifiable := cli.bundles || !bundleSigned
		for _, s := range subjects {
			byKey = append(byKey,
				&keyCase{vsaCase: vsaCase{cli: cli, subject: s.label, d: s.d, key: attestPub, pass: verifiable}, label: "attest.pub", record: true},
				&keyCase{vsaCase: vsaCase{cli: cli, subject: s.label, d: s.d, key: keys.pub, pass: verifiable}, label: "bundle.pub"},
				&keyCase{vsaCase: vsaCase{cli: cli, subject: s.label, d: s.d, key: other, pass: false}, label: "other.pub"})
		}
		add := func(cmd, typ string) {
			cases = append(cases, &verdictCase{cli: cli, subject: "index", cmd: cmd, typ: typ, key: publisher,
				src: img.Repo + "@" + idx.String(), dst: dstRepo + "@" + idx.String(), wantSrc: verifiable})
		}
		add("verify", "")
		for _, p := range img.Predicates[idx] {
			add("verify-attestation", p)
		}
	}
	vsa := make([]*vsaCase, len(byKey))
	for i, c := range byKey {
		vsa[i] = &c.vsaCase
	}
	wait := runVSA(e, dstRepo, vsa)
	runVerdicts(e, cases)
	wait()

	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s, %s-signed image, after unpack --attest-key\ncosign\tsubject\tkey\tverify-attestation --type %s (destination)\trefusal\n", k, name, evidence.PredicateVSA)
	for _, c := range byKey {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.cli.name, c.subject, c.label, verdict(c.res), reason(c.res))
	}
	fmt.Fprintf(tw, "publisher key, index\ncosign\tcommand\tsource\tdestination\n")
	for _, c := range cases {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.cli.name, c.what(), verdict(c.srcRes), verdict(c.dstRes))
	}
	tw.Flush()
	t.Logf("verdicts:\n%s", table.String())

	for _, c := range byKey {
		switch {
		case (c.res.err == nil) != c.pass:
			t.Errorf("%s verify-attestation --key %s --type %s on the %s at the destination: %s, want pass=%v:\n%s", c.cli.name, c.label, evidence.PredicateVSA, c.subject, verdict(c.res), c.pass, c.res)
		case c.pass && c.record:
			assertRecordOutput(t, c.cli.name, c.res, c.d, dstRepo, recs[c.d], packSummaries[c.d])
		case c.pass:
			assertSummaryOutput(t, c.cli.name, c.res, c.d)
		}
	}
	for _, c := range cases {
		switch {
		case (c.srcRes.err == nil) != c.wantSrc:
			t.Errorf("%s %s at the SOURCE: %s, want %v:\n%s", c.cli.name, c.what(), verdict(c.srcRes), c.wantSrc, c.srcRes)
		case (c.srcRes.err == nil) != (c.dstRes.err == nil):
			t.Errorf("%s %s: %s at the source, %s at the destination: the import record changed the verdict:\n%s",
				c.cli.name, c.what(), verdict(c.srcRes), verdict(c.dstRes), c.dstRes)
		}
	}
}

// assertRecordAtDestination checks where the record is: for a legacy-signed image, a
// layer of the index's .att after the publisher's layers and the pack-side summary,
// the .att tag moved to it and recorded in the replay state, and no Sigstore bundle
// referrer; for a bundle-signed image, a second summary bundle referrer of the index
// (listed by the registry's API or its referrers tag schema) and no .att.
func assertRecordAtDestination(t *testing.T, repo interface {
	Resolve(context.Context, string) (ocispec.Descriptor, error)
	Referrers(context.Context, ocispec.Descriptor, string, func([]ocispec.Descriptor) error) error
	referrers.Store
}, img *fixture.Image, subject digest.Digest, rec unpack.ImportRecord, bundleSigned bool, state, dstRepo string) {
	t.Helper()
	ctx := context.Background()
	var summaries []digest.Digest
	desc, err := repo.Resolve(ctx, subject.String())
	if err != nil {
		t.Errorf("%s at the destination: %v", subject, err)
		return
	}
	if err := repo.Referrers(ctx, desc, "", func(ds []ocispec.Descriptor) error {
		for _, d := range ds {
			if d.ArtifactType == oci.MediaTypeSigstoreBundle03 && d.Annotations[fixture.AnnotationBundlePredicateType] == evidence.PredicateVSA {
				summaries = append(summaries, d.Digest)
			}
		}
		return nil
	}); err != nil {
		t.Errorf("referrers of %s at the destination: %v", subject, err)
	}
	attTag := oci.CosignTag(subject, ".att")
	att, attErr := repo.Resolve(ctx, attTag)
	if bundleSigned {
		if len(summaries) != 2 || !slices.Contains(summaries, rec.Manifest) {
			t.Errorf("bundle-signed image: summary referrers of %s %v, want the pack-side one and the record %s", subject, summaries, rec.Manifest)
		}
		if attErr == nil {
			t.Errorf("bundle-signed image: an .att %s at the destination, want none", att.Digest)
		}
		return
	}
	if len(summaries) != 0 {
		t.Errorf("legacy-signed image: summary bundle referrers %v on %s, want none", summaries, subject)
	}
	// (errors, not fatal: the cosign verdicts still run)
	if attErr != nil || att.Digest != rec.Manifest || rec.Tag != attTag {
		t.Errorf("legacy-signed image: the .att tag is %v (%v), want the record's %s (record tag %q)", att.Digest, attErr, rec.Manifest, rec.Tag)
		return
	}
	b, err := fetchManifestBytes(ctx, repo, att)
	if err != nil {
		t.Error(err)
		return
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Error(err)
		return
	}
	var preds []string
	for _, l := range m.Layers {
		preds = append(preds, l.Annotations[oci.AnnotationCosignPredicate])
	}
	if want := append(slices.Clone(img.Predicates[subject]), evidence.PredicateVSA, evidence.PredicateVSA); !slices.Equal(preds, want) {
		t.Errorf("legacy-signed image: the .att of %s at the destination holds %v, want %v (publisher, pack summary, import record)", subject, preds, want)
	}
	// the tag move is recorded with the record's .att, not the bundle's
	raw, err := os.ReadFile(state)
	if err != nil {
		t.Error(err)
		return
	}
	var st struct {
		Tags map[string]struct{ Digest digest.Digest }
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Error(err)
		return
	}
	if got := st.Tags[dstRepo+":"+attTag].Digest; got != rec.Manifest {
		t.Errorf("replay state: %s recorded at %q, want the record's .att %s", dstRepo+":"+attTag, got, rec.Manifest)
	}
}

func fetchManifestBytes(ctx context.Context, s referrers.Store, d ocispec.Descriptor) ([]byte, error) {
	rc, err := s.Fetch(ctx, d)
	if err != nil {
		return nil, err
	}
	return oci.ReadAllVerified(rc, d, oci.MaxManifestBytes)
}

// assertRecordOutput checks that what cosign verified with the attest key is the
// import record about the index: verifier petra-oci's import, the destination
// repository as subject name and resource, the bundle and the pack-side summary as
// inputs, PASSED.
func assertRecordOutput(t *testing.T, cli string, r result, idx digest.Digest, dstRepo string, rec unpack.ImportRecord, sum *evidence.Summary) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 1 {
		t.Errorf("%s: %d envelopes verified with the attest key, want the record alone:\n%s", cli, len(lines), r.stdout)
	}
	var env struct{ Payload []byte }
	if err := json.Unmarshal([]byte(lines[0]), &env); err != nil {
		t.Errorf("%s: the output is not a DSSE envelope: %v\n%s", cli, err, r.stdout)
		return
	}
	if digest.FromBytes(env.Payload) != rec.Statement {
		t.Errorf("%s: cosign verified statement %s, unpack wrote %s", cli, digest.FromBytes(env.Payload), rec.Statement)
	}
	var st struct {
		PredicateType string
		Subject       []struct {
			Name   string
			Digest map[string]string
		}
		Predicate struct {
			Verifier           struct{ ID string }
			ResourceURI        string
			VerificationResult string
			InputAttestations  []struct {
				URI    string
				Digest map[string]string
			}
			Policy struct{ Digest map[string]string }
		}
	}
	if err := json.Unmarshal(env.Payload, &st); err != nil {
		t.Errorf("%s: the envelope's payload: %v", cli, err)
		return
	}
	p := st.Predicate
	ok := st.PredicateType == evidence.PredicateVSA && p.VerificationResult == "PASSED" &&
		len(st.Subject) == 1 && st.Subject[0].Name == dstRepo && st.Subject[0].Digest["sha256"] == idx.Encoded() &&
		strings.HasPrefix(p.Verifier.ID, evidence.VerifierImportID+"@") && p.ResourceURI == dstRepo+"@"+idx.String() &&
		p.Policy.Digest["sha256"] != "" && len(p.InputAttestations) == 2 &&
		strings.HasPrefix(p.InputAttestations[0].URI, "urn:petra-oci:bundle:") &&
		p.InputAttestations[1].Digest["sha256"] == sum.Statement.Encoded()
	if !ok {
		t.Errorf("%s: cosign verified %+v, want petra's import record about %s naming the summary %s", cli, st, idx, sum.Statement)
	}
}

// TestImportRequireEvidence: unpack --require-evidence refuses, with nothing pushed
// and exit 34, a bundle packed without evidence (--no-evidence, or without a policy),
// one whose summary a forger holding the bundle key re-signed with another key, one
// whose summary, signed with the bundle key, names another digest, and one where only a
// child's summary does; it accepts the bundle as packed. Each forged bundle unpacks without --require-evidence (control),
// so what refuses it is the evidence check.
func TestImportRequireEvidence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newHostileKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	mixed := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1", fixture.Options{Seed: 61})
	legacy := fixture.Chainguard(ctx, t, src.Host, "chainguard/python", "1", fixture.Options{Seed: 62, Signing: fixture.SigningLegacy})
	if mixed.PublicKeyPEM == nil || legacy.PublicKeyPEM == nil {
		t.Fatal("fixture without a public key")
	}
	mixedKey := writeFile(t, filepath.Join(t.TempDir(), "mixed.pub"), mixed.PublicKeyPEM)
	legacyKey := writeFile(t, filepath.Join(t.TempDir(), "legacy.pub"), legacy.PublicKeyPEM)
	mixedRef, legacyRef := mixed.Repo+":"+mixed.Tag, legacy.Repo+":"+legacy.Tag

	good, _ := packCLI(t, e, keys.bundleKeys, mixedRef, "--image-key", mixedKey)
	noEvidence, _ := packCLI(t, e, keys.bundleKeys, mixedRef, "--image-key", mixedKey, "--no-evidence")
	noPolicy, _ := packCLI(t, e, keys.bundleKeys, mixedRef)
	legacyGood, _ := packCLI(t, e, keys.bundleKeys, legacyRef, "--image-key", legacyKey)

	otherKey, _, _ := fixture.KeyPair(t)
	otherSigner, err := signing.NewSigner(otherKey)
	must(t, err)
	// the summary (a bundle referrer of the index) re-signed with another key
	otherKeyed := copyBundle(t, good, keys.signer)
	swapBundleSummary(t, otherKeyed, mixed, func(payload []byte) ([]byte, signing.Signer) { return payload, otherSigner })
	otherKeyed.forge(nil)
	// the summary (a layer of the index's .att), signed with the bundle key, about another digest
	anotherDigest := digest.FromString("an image that is not this one")
	aboutAnother := func(payload []byte) []byte {
		var st map[string]any
		must(t, json.Unmarshal(payload, &st))
		st["subject"] = []any{map[string]any{"name": legacy.Repo, "digest": map[string]any{"sha256": anotherDigest.Encoded()}}}
		b, err := json.Marshal(st)
		must(t, err)
		return b
	}
	otherDigest := copyBundle(t, legacyGood, keys.signer)
	swapAttSummary(t, otherDigest, src, legacy, legacy.Index, aboutAnother, keys.signer)
	otherDigest.forge(nil)
	// the same on a child only: the index's summary is intact, the child's is not
	child := legacy.Children["linux/arm64"]
	childOtherDigest := copyBundle(t, legacyGood, keys.signer)
	swapAttSummary(t, childOtherDigest, src, legacy, child, aboutAnother, keys.signer)
	childOtherDigest.forge(nil)

	for _, k := range []registrytest.Kind{registrytest.Olareg, registrytest.Distribution} {
		t.Run(string(k), func(t *testing.T) {
			for _, c := range []struct {
				name, dir, key string
				exit           int
				names          []string
				control        bool // without --require-evidence the bundle unpacks
			}{
				{"as packed", good, mixedKey, 0, nil, false},
				{"as packed, legacy-signed (.att form)", legacyGood, legacyKey, 0, nil, false},
				{"packed with --no-evidence", noEvidence, mixedKey, exitNoEvidence, []string{"no " + evidence.PredicateVSA + " statement"}, true},
				{"packed without a policy", noPolicy, mixedKey, exitNoEvidence, []string{"no " + evidence.PredicateVSA + " statement"}, true},
				{"summary re-signed with another key", otherKeyed.dir, mixedKey, exitNoEvidence, []string{"signature does not verify"}, true},
				{"summary about another digest", otherDigest.dir, legacyKey, exitNoEvidence, []string{anotherDigest.Encoded()}, true},
				{"a child's summary about another digest", childOtherDigest.dir, legacyKey, exitNoEvidence, []string{legacy.Repo + "@" + child.Digest.String(), anotherDigest.Encoded()}, true},
			} {
				t.Run(c.name, func(t *testing.T) {
					dst := registrytest.Start(t, k)
					r := runPetra(t, e, unpackArgs(keys.bundleKeys, dst.Host+"/mirror", c.dir, "--image-key", c.key,
						"--state", filepath.Join(t.TempDir(), "s.json"), "--require-evidence")...)
					assertExit(t, c.name, r, c.exit, c.names...)
					if c.exit != 0 {
						t.Logf("%s: exit %d: %s", c.name, r.exitCode, reason(r))
						if !strings.Contains(r.stderr, "nothing was pushed") {
							t.Errorf("%s: the refusal does not say nothing was pushed:\n%s", c.name, r)
						}
						assertNothingPushed(t, dst)
					} else if len(dst.Catalog(t)) == 0 {
						t.Errorf("%s: accepted, but nothing is at the destination", c.name)
					}
					if c.control {
						ctl := registrytest.Start(t, k)
						r := runPetra(t, e, unpackArgs(keys.bundleKeys, ctl.Host+"/mirror", c.dir, "--image-key", c.key,
							"--state", filepath.Join(t.TempDir(), "s.json"))...)
						assertExit(t, c.name+" without --require-evidence", r, 0)
					}
				})
			}
		})
	}
}

// swapBundleSummary replaces the pack-side summary of img's index in b (a Sigstore
// bundle referrer) by a new referrer holding edit's payload signed by edit's signer.
func swapBundleSummary(t *testing.T, b *hostileBundle, img *fixture.Image, edit func(payload []byte) ([]byte, signing.Signer)) {
	t.Helper()
	old := b.entry("the summary referrer of the index", func(e layout.Entry) bool {
		return e.Kind == oci.KindReferrer && e.Subject == img.Index.Digest && e.Descriptor.Annotations[fixture.AnnotationBundlePredicateType] == evidence.PredicateVSA
	})
	m := readBundleManifest(t, b, old.Descriptor)
	raw, err := os.ReadFile(blobFile(b.dir, m.Layers[0].Digest))
	must(t, err)
	var sb struct {
		DSSEEnvelope struct{ Payload []byte } `json:"dsseEnvelope"`
	}
	must(t, json.Unmarshal(raw, &sb))
	payload, s := edit(sb.DSSEEnvelope.Payload)
	l, err := layout.Create(b.dir)
	must(t, err)
	root := ocispec.Descriptor{MediaType: img.Index.MediaType, Digest: img.Index.Digest, Size: img.Index.Size}
	added, _, err := evidence.AttachStatement(context.Background(), l, l, root, evidence.FormSigstoreBundle, evidence.PredicateVSA, payload, s, nil)
	must(t, err)
	must(t, l.Close())
	replaceEntry(t, b, old, added)
}

// swapAttSummary replaces the .att of subject (img's index or a child) in b by one
// holding the publisher's layers (read from the source registry) and the pack-side
// summary's payload as edit returns it, signed by s.
func swapAttSummary(t *testing.T, b *hostileBundle, src *registrytest.Registry, img *fixture.Image, subject ocispec.Descriptor, edit func(payload []byte) []byte, s signing.Signer) {
	t.Helper()
	old := b.entry("the .att of "+subject.Digest.String(), func(e layout.Entry) bool {
		return e.Kind == oci.KindCosignAtt && e.Subject == subject.Digest
	})
	m := readBundleManifest(t, b, old.Descriptor)
	var payload []byte
	for _, l := range m.Layers {
		if l.Annotations[oci.AnnotationCosignPredicate] == evidence.PredicateVSA {
			raw, err := os.ReadFile(blobFile(b.dir, l.Digest))
			must(t, err)
			var env signing.Envelope
			must(t, json.Unmarshal(raw, &env))
			payload = env.Payload
		}
	}
	if payload == nil {
		t.Fatal("test bug: no summary layer in the .att")
	}
	l, err := layout.Create(b.dir)
	must(t, err)
	root := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	publisherAtt := referrers.Attachment{Subject: subject.Digest, Kind: oci.KindCosignAtt, Descriptor: img.Attestations[subject.Digest]}
	srcRepo := src.Repository(t, strings.TrimPrefix(img.Repo, src.Host+"/"))
	added, _, err := evidence.AttachStatement(context.Background(), l, srcRepo, root, evidence.FormCosignAtt, evidence.PredicateVSA, edit(payload), s, []referrers.Attachment{publisherAtt})
	must(t, err)
	must(t, l.Close())
	replaceEntry(t, b, old, added)
}

// replaceEntry points b's index.json entry of old at added and removes old's blob from
// the bundle (the replaced manifest is left out).
func replaceEntry(t *testing.T, b *hostileBundle, old layout.Entry, added referrers.Attachment) {
	t.Helper()
	if n := b.rewrite(func(e *layout.Entry) bool {
		if e.Descriptor.Digest == old.Descriptor.Digest {
			e.Descriptor = added.Descriptor
		}
		return true
	}); n != 1 {
		t.Fatalf("test bug: %d entries rewritten", n)
	}
	must(t, os.Remove(blobFile(b.dir, old.Descriptor.Digest)))
}

func readBundleManifest(t *testing.T, b *hostileBundle, d ocispec.Descriptor) ocispec.Manifest {
	t.Helper()
	raw, err := os.ReadFile(blobFile(b.dir, d.Digest))
	must(t, err)
	var m ocispec.Manifest
	must(t, json.Unmarshal(raw, &m))
	return m
}

// TestImportRecordRefusals: --attest-key and --require-evidence verify, so they are
// refused with --unsafe-skip-verify (exit 2); an unreachable KMS key is refused before
// anything is pushed.
func TestImportRecordRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	attestPriv, _ := attestKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1", fixture.Options{Seed: 71})
	dir, _ := packCLI(t, e, keys, img.Repo+":"+img.Tag)
	dst := registrytest.Start(t, registrytest.Olareg)
	for _, flag := range [][]string{{"--attest-key", attestPriv}, {"--require-evidence"}} {
		r := runPetra(t, e, append([]string{"unpack", "--to", dst.Host, "--plain-http", "--unsafe-skip-verify"}, append(flag, dir)...)...)
		assertExit(t, "--unsafe-skip-verify "+flag[0], r, exitUsageCode, flag[0])
	}
	// a KMS reference goes to the KMS (here a closed loopback port, no retries)
	kms := *e
	kms.vars = append(slices.Clone(e.vars), "VAULT_ADDR=http://127.0.0.1:1", "VAULT_TOKEN=test-token", "VAULT_MAX_RETRIES=0")
	r := runPetra(t, &kms, unpackArgs(keys, dst.Host, dir, "--state", filepath.Join(t.TempDir(), "s.json"), "--attest-key", "hashivault://petra-attest")...)
	if r.exitCode == 0 || !strings.Contains(r.stderr, "--attest-key") {
		t.Errorf("unpack with an unreachable KMS attest key: %s", r)
	}
	assertNothingPushed(t, dst)
}
