package evidence

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/signing"
)

// importRecord is the statement of an import record as a reader decodes it.
type importRecord struct {
	Type          string `json:"_type"`
	PredicateType string
	Subject       []struct {
		Name   string
		Digest map[string]string
	}
	Predicate struct {
		Verifier     struct{ ID string }
		TimeVerified time.Time
		ResourceURI  string
		Policy       struct {
			URI    string
			Digest map[string]string
		}
		InputAttestations []struct {
			URI    string
			Digest map[string]string
		}
		VerificationResult string
		VerifiedLevels     []string
	}
}

func TestImportStatement(t *testing.T) {
	img := digest.FromString("image")
	meta := digest.FromString("metadata.json")
	pol := digest.FromString("policy")
	sum := &Summary{Form: FormCosignAtt, Manifest: digest.FromString("att manifest"), Statement: digest.FromString("summary statement")}
	at := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	const repo = "reg.internal:5000/mirror/chainguard/nginx"
	const id = "0123456789abcdef0123456789abcdef"
	r := Record{Repository: repo, Image: img, Version: "v1.2.3", Time: at, BundleID: id, Sequence: 7, Metadata: meta,
		Summary: sum, PolicyDigest: pol}
	b, err := ImportStatement(r)
	if err != nil {
		t.Fatal(err)
	}
	var st importRecord
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	p := st.Predicate
	switch {
	case st.Type != "https://in-toto.io/Statement/v1" || st.PredicateType != PredicateVSA:
		t.Errorf("statement type %q predicate %q", st.Type, st.PredicateType)
	case len(st.Subject) != 1 || st.Subject[0].Name != repo || st.Subject[0].Digest["sha256"] != img.Encoded():
		t.Errorf("subject %+v", st.Subject)
	case p.Verifier.ID != VerifierImportID+"@v1.2.3" || p.Verifier.ID == VerifierID+"@v1.2.3":
		t.Errorf("verifier %q", p.Verifier.ID)
	case !p.TimeVerified.Equal(at) || p.ResourceURI != repo+"@"+img.String() || p.VerificationResult != "PASSED":
		t.Errorf("time %v resource %q result %q", p.TimeVerified, p.ResourceURI, p.VerificationResult)
	case p.Policy.URI != "petra/policy.yaml" || p.Policy.Digest["sha256"] != pol.Encoded():
		t.Errorf("policy %+v", p.Policy)
	case len(p.InputAttestations) != 2:
		t.Errorf("inputs %+v", p.InputAttestations)
	case p.InputAttestations[0].URI != "urn:petra-oci:bundle:"+id+":7:petra/metadata.json" || p.InputAttestations[0].Digest["sha256"] != meta.Encoded():
		t.Errorf("bundle input %+v", p.InputAttestations[0])
	case p.InputAttestations[1].URI != repo+"@"+sum.Manifest.String()+"#"+PredicateVSA || p.InputAttestations[1].Digest["sha256"] != sum.Statement.Encoded():
		t.Errorf("summary input %+v", p.InputAttestations[1])
	case strings.Join(p.VerifiedLevels, ",") != "PETRA_BUNDLE_VERIFIED,PETRA_POLICY_PASSED,PETRA_EVIDENCE_VERIFIED":
		t.Errorf("levels %v", p.VerifiedLevels)
	}

	// no policy pinned, no summary checked: said so, not left out silently
	r.Summary, r.PolicyDigest = nil, ""
	b, err = ImportStatement(r)
	if err != nil {
		t.Fatal(err)
	}
	st = importRecord{}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Predicate.Policy.URI != PolicyNoneURI || st.Predicate.Policy.Digest != nil || len(st.Predicate.InputAttestations) != 1 ||
		strings.Join(st.Predicate.VerifiedLevels, ",") != "PETRA_BUNDLE_VERIFIED" {
		t.Errorf("record without policy or summary: %+v", st.Predicate)
	}

	for name, bad := range map[string]func(r *Record){
		"no repository":      func(r *Record) { r.Repository = "" },
		"bad image digest":   func(r *Record) { r.Image = "sha256:xyz" },
		"no metadata digest": func(r *Record) { r.Metadata = "" },
		"no bundle id":       func(r *Record) { r.BundleID = "" },
		"sequence 0":         func(r *Record) { r.Sequence = 0 },
	} {
		r2 := r
		bad(&r2)
		if _, err := ImportStatement(r2); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// summaryFixture is a layout holding an image and the tools to attach summaries to it.
type summaryFixture struct {
	*formLayout
	other  signing.Signer
	pubPEM []byte
	policy digest.Digest
}

func newSummaryFixture(t *testing.T) *summaryFixture {
	t.Helper()
	f := newFormLayout(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := signing.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := f.signer.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return &summaryFixture{formLayout: f, other: other, pubPEM: pub, policy: digest.FromString("policy")}
}

// summary returns the pack-side summary statement about d.
func (f *summaryFixture) summary(d digest.Digest, policy digest.Digest) []byte {
	f.t.Helper()
	b, err := Statement("reg.example/a", &imageverify.Result{Digest: d, Verified: true}, Options{Version: "v1", PolicyURI: "petra/policy.yaml", PolicyDigest: policy})
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// attach signs stmt with s and attaches it to the root in form.
func (f *summaryFixture) attach(form Form, stmt []byte, s signing.Signer, atts []referrers.Attachment) []referrers.Attachment {
	f.t.Helper()
	added, replaced, err := AttachStatement(context.Background(), f.l, f.l, f.root, form, PredicateVSA, stmt, s, atts)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []referrers.Attachment
	for i := range atts {
		if &atts[i] != replaced {
			out = append(out, atts[i])
		}
	}
	return append(out, added)
}

func (f *summaryFixture) opts() CheckOptions {
	return CheckOptions{Signature: signing.VerifyOptions{PublicKey: f.pubPEM}, PolicyDigest: f.policy}
}

func TestEvidenceCheckSummary(t *testing.T) {
	ctx := context.Background()
	for _, form := range []Form{FormCosignAtt, FormSigstoreBundle} {
		t.Run(string(form), func(t *testing.T) {
			f := newSummaryFixture(t)
			good := f.summary(f.root.Digest, f.policy)
			atts := f.attach(form, good, f.signer, nil)
			s, err := CheckSummary(ctx, f.l, f.root.Digest, atts, f.opts())
			if err != nil {
				t.Fatalf("a valid summary: %v", err)
			}
			if s.Form != form || s.Manifest != atts[0].Descriptor.Digest || s.Statement != digest.FromBytes(good) || s.KeyID != f.signer.KeyID() {
				t.Errorf("summary %+v, want form %s in %s, statement %s", s, form, atts[0].Descriptor.Digest, digest.FromBytes(good))
			}
			// without a pinned policy, any policy digest passes
			if _, err := CheckSummary(ctx, f.l, f.root.Digest, f.attach(form, f.summary(f.root.Digest, digest.FromString("other policy")), f.signer, nil), CheckOptions{Signature: f.opts().Signature}); err != nil {
				t.Errorf("no pinned policy: %v", err)
			}

			otherDigest := digest.FromString("another image")
			failed := func() []byte {
				var st map[string]any
				if err := json.Unmarshal(good, &st); err != nil {
					t.Fatal(err)
				}
				st["predicate"].(map[string]any)["verificationResult"] = "FAILED"
				b, _ := json.Marshal(st)
				return b
			}()
			imported, err := ImportStatement(Record{Repository: "reg.example/a", Image: f.root.Digest, BundleID: "b", Sequence: 1, Metadata: digest.FromString("m"), PolicyDigest: f.policy})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name string
				atts func() []referrers.Attachment
				opts CheckOptions
				why  string
			}{
				{"nothing attached", func() []referrers.Attachment { return nil }, f.opts(), "no " + PredicateVSA},
				{"signed by another key", func() []referrers.Attachment { return f.attach(form, good, f.other, nil) }, f.opts(), "signature does not verify"},
				{"about another digest", func() []referrers.Attachment { return f.attach(form, f.summary(otherDigest, f.policy), f.signer, nil) }, f.opts(), otherDigest.Encoded()},
				{"another policy than the pinned one", func() []referrers.Attachment {
					return f.attach(form, f.summary(f.root.Digest, digest.FromString("other policy")), f.signer, nil)
				}, f.opts(), "pinned policy"},
				{"FAILED", func() []referrers.Attachment { return f.attach(form, failed, f.signer, nil) }, f.opts(), `"FAILED"`},
				{"an import record, not a pack summary", func() []referrers.Attachment { return f.attach(form, imported, f.signer, nil) }, f.opts(), "not petra-oci's pack"},
				{"keyless bundle identity: a key-signed summary does not verify", func() []referrers.Attachment { return atts }, CheckOptions{Signature: signing.VerifyOptions{
					TrustedRoot:         []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`),
					CertificateIdentity: "a@example.com", CertificateOIDCIssuer: "https://issuer.example",
				}}, "signature does not verify"},
			} {
				t.Run(c.name, func(t *testing.T) {
					_, err := CheckSummary(ctx, f.l, f.root.Digest, c.atts(), c.opts)
					if !errors.Is(err, ErrNoEvidence) || !strings.Contains(err.Error(), c.why) {
						t.Fatalf("err = %v, want ErrNoEvidence saying %q", err, c.why)
					}
				})
			}

			// a bad summary next to a good one: the good one is found
			mixed := f.attach(form, good, f.signer, f.attach(FormSigstoreBundle, good, f.other, nil))
			if s, err := CheckSummary(ctx, f.l, f.root.Digest, mixed, f.opts()); err != nil || s.KeyID != f.signer.KeyID() {
				t.Errorf("a good summary beside one by another key: %+v %v", s, err)
			}
			// a good summary of another subject does not count for this one
			otherRoot := f.manifest(ocispec.Manifest{Config: f.blob(ocispec.MediaTypeImageConfig, `{"rootfs":{"type":"layers","diff_ids":[]},"os":"other"}`)})
			if _, err := CheckSummary(ctx, f.l, otherRoot.Digest, atts, f.opts()); !errors.Is(err, ErrNoEvidence) {
				t.Errorf("another subject's summary: %v", err)
			}
		})
	}
}

// TestEvidenceAttachStatementKeepsLayers: an import record in the .att form keeps every layer
// of the image's .att (the publisher's and the pack-side summary), in order, and the
// summary still checks; the record verifies with the attest key.
func TestEvidenceAttachStatementKeepsLayers(t *testing.T) {
	ctx := context.Background()
	f := newSummaryFixture(t)
	pubLayer := f.blob(oci.MediaTypeDSSEEnvelope, `{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`)
	att := referrers.Attachment{Subject: f.root.Digest, Kind: oci.KindCosignAtt, Tag: oci.CosignTag(f.root.Digest, ".att"),
		Descriptor: f.manifest(ocispec.Manifest{Config: f.blob(ocispec.MediaTypeImageConfig, `{"rootfs":{"type":"layers","diff_ids":[]},"os":"att"}`), Layers: []ocispec.Descriptor{pubLayer}})}
	packed := f.attach(FormCosignAtt, f.summary(f.root.Digest, f.policy), f.signer, []referrers.Attachment{att})
	rec, err := ImportStatement(Record{Repository: "reg.internal/a", Image: f.root.Digest, BundleID: "b", Sequence: 1, Metadata: digest.FromString("m")})
	if err != nil {
		t.Fatal(err)
	}
	added, replaced, err := AttachStatement(ctx, f.l, f.l, f.root, FormCosignAtt, PredicateVSA, rec, f.other, packed)
	if err != nil {
		t.Fatal(err)
	}
	if replaced == nil || replaced.Descriptor.Digest != packed[0].Descriptor.Digest || added.Tag != att.Tag {
		t.Fatalf("replaced %+v, added %+v", replaced, added)
	}
	m, err := fetchManifest(ctx, f.l, added.Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 3 || m.Layers[0].Digest != pubLayer.Digest || m.Layers[2].Annotations[oci.AnnotationCosignPredicate] != PredicateVSA {
		t.Fatalf(".att layers %+v", m.Layers)
	}
	if _, err := CheckSummary(ctx, f.l, f.root.Digest, []referrers.Attachment{added}, f.opts()); err != nil {
		t.Errorf("the pack summary after the record was added: %v", err)
	}
	// the record itself: verifies with the attest key (the "other" signer here)
	otherPub, _ := f.other.PublicKeyPEM()
	if _, err := CheckSummary(ctx, f.l, f.root.Digest, []referrers.Attachment{added}, CheckOptions{Signature: signing.VerifyOptions{PublicKey: otherPub}}); err == nil ||
		!strings.Contains(err.Error(), "not petra-oci's pack") {
		t.Errorf("the import record is taken for a pack summary: %v", err)
	}
	if _, _, err := AttachStatement(ctx, f.l, f.l, f.root, FormCosignAtt, PredicateVSA, rec, nil, packed); err == nil {
		t.Error("AttachStatement without a signer: no error")
	}
	if _, _, err := AttachStatement(ctx, f.l, f.l, f.root, Form("other"), PredicateVSA, rec, f.signer, packed); err == nil {
		t.Error("AttachStatement in an unknown form: no error")
	}
}
