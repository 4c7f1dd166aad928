package evidence

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/signing"
)

// formLayout is a layout holding an image manifest to attach things to.
type formLayout struct {
	t      *testing.T
	l      *layout.Layout
	root   ocispec.Descriptor
	signer signing.Signer
}

func newFormLayout(t *testing.T) *formLayout {
	t.Helper()
	l, err := layout.Create(filepath.Join(t.TempDir(), "bundle"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := signing.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	f := &formLayout{t: t, l: l, signer: s}
	f.root = f.manifest(ocispec.Manifest{Config: f.blob(ocispec.MediaTypeImageConfig, `{"rootfs":{"type":"layers","diff_ids":[]}}`)})
	return f
}

func (f *formLayout) blob(mediaType, s string) ocispec.Descriptor {
	f.t.Helper()
	d, err := f.l.PushBytes(context.Background(), mediaType, []byte(s))
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *formLayout) manifest(m ocispec.Manifest) ocispec.Descriptor {
	f.t.Helper()
	m.Versioned, m.MediaType = specs.Versioned{SchemaVersion: 2}, ocispec.MediaTypeImageManifest
	b, err := json.Marshal(m)
	if err != nil {
		f.t.Fatal(err)
	}
	d, err := f.l.PushBytes(context.Background(), ocispec.MediaTypeImageManifest, b)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// referrer attaches to subject a referrer whose layers have the given media types
// and contents.
func (f *formLayout) referrer(subject ocispec.Descriptor, layers ...[2]string) referrers.Attachment {
	f.t.Helper()
	var ls []ocispec.Descriptor
	for _, l := range layers {
		ls = append(ls, f.blob(l[0], l[1]))
	}
	s := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	d := f.manifest(ocispec.Manifest{ArtifactType: "application/x-test", Config: f.blob(ocispec.MediaTypeEmptyJSON, "{}"), Layers: ls, Subject: &s})
	return referrers.Attachment{Subject: subject.Digest, Descriptor: d, Kind: oci.KindReferrer}
}

// A Sigstore bundle v0.3 with a public-key hint and a DSSE envelope, as cosign v3
// writes for a key-signed attestation (the signature need not verify: cosign switches
// on the bundle's presence).
const bundleV03 = `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":"aGludA=="}},"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"c2ln"}]}}`

// The same as a v0.1 bundle without the tlog entries v0.1 requires: cosign does not load it.
const bundleV01 = `{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=0.1","verificationMaterial":{"publicKey":{"hint":"aGludA=="}},"dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"c2ln"}]}}`

func TestFormFor(t *testing.T) {
	ctx := context.Background()
	f := newFormLayout(t)
	other := f.manifest(ocispec.Manifest{Config: f.blob(ocispec.MediaTypeImageConfig, `{"rootfs":{"type":"layers","diff_ids":[]},"os":"x"}`)})
	sig := referrers.Attachment{Subject: f.root.Digest, Descriptor: f.blob(ocispec.MediaTypeImageManifest, `{}`), Kind: oci.KindCosignSig}
	bundle := [2]string{oci.MediaTypeSigstoreBundle03, bundleV03}
	for _, c := range []struct {
		name string
		atts []referrers.Attachment
		want Form
	}{
		{"nothing attached", nil, FormCosignAtt},
		{"legacy .sig only", []referrers.Attachment{sig}, FormCosignAtt},
		{"an SPDX referrer", []referrers.Attachment{sig, f.referrer(f.root, [2]string{oci.MediaTypeSPDXJSON, `{"spdxVersion":"SPDX-2.3"}`})}, FormCosignAtt},
		{"a bundle v0.3 referrer", []referrers.Attachment{sig, f.referrer(f.root, bundle)}, FormSigstoreBundle},
		{"a bundle on another subject", []referrers.Attachment{sig, f.referrer(other, bundle)}, FormCosignAtt},
		{"a bundle v0.1 (cosign skips it)", []referrers.Attachment{f.referrer(f.root, [2]string{"application/vnd.dev.sigstore.bundle+json;version=0.1", bundleV01})}, FormCosignAtt},
		{"two layers (cosign skips it)", []referrers.Attachment{f.referrer(f.root, bundle, bundle)}, FormCosignAtt},
		{"a bundle media type holding no bundle", []referrers.Attachment{f.referrer(f.root, [2]string{oci.MediaTypeSigstoreBundle03, `{"not":"a bundle"}`})}, FormCosignAtt},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := FormFor(ctx, f.l, f.root.Digest, c.atts)
			if err != nil || got != c.want {
				t.Fatalf("FormFor = %q, %v; want %q", got, err, c.want)
			}
		})
	}
	// an attachment the layout does not hold is an error, not a guess
	missing := referrers.Attachment{Subject: f.root.Digest, Kind: oci.KindReferrer,
		Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("absent"), Size: 6}}
	if _, err := FormFor(ctx, f.l, f.root.Digest, []referrers.Attachment{missing}); err == nil {
		t.Fatal("FormFor with a referrer missing from the layout: no error")
	}
}

func TestAttachForms(t *testing.T) {
	ctx := context.Background()
	res := &imageverify.Result{Verified: true}
	opts := func(f *formLayout) Options { return Options{Signer: f.signer, PolicyURI: "petra/policy.yaml"} }
	layersOf := func(f *formLayout, d ocispec.Descriptor) []ocispec.Descriptor {
		t.Helper()
		b, err := f.l.FetchManifest(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		m, err := oci.ParseManifest(d, b)
		if err != nil {
			t.Fatal(err)
		}
		return m.Layers
	}

	t.Run("legacy: the .att gains the summary, nothing else changes", func(t *testing.T) {
		f := newFormLayout(t)
		res.Digest = f.root.Digest
		pubLayer := f.blob(oci.MediaTypeDSSEEnvelope, `{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`)
		att := referrers.Attachment{Subject: f.root.Digest, Kind: oci.KindCosignAtt, Tag: oci.CosignTag(f.root.Digest, ".att"),
			Descriptor: f.manifest(ocispec.Manifest{Config: f.blob(ocispec.MediaTypeImageConfig, `{"rootfs":{"type":"layers","diff_ids":[]},"os":"att"}`), Layers: []ocispec.Descriptor{pubLayer}})}
		sig := referrers.Attachment{Subject: f.root.Digest, Kind: oci.KindCosignSig, Tag: oci.CosignTag(f.root.Digest, ".sig"), Descriptor: f.blob(ocispec.MediaTypeImageManifest, `{}`)}
		sbom := f.referrer(f.root, [2]string{oci.MediaTypeSPDXJSON, `{}`})
		in := []referrers.Attachment{sig, att, sbom}
		out, form, err := Attach(ctx, f.l, "reg.example/a", f.root, res, in, opts(f))
		if err != nil || form != FormCosignAtt {
			t.Fatalf("Attach = %q, %v", form, err)
		}
		if len(out) != 3 || out[0].Descriptor.Digest != sig.Descriptor.Digest || out[1].Descriptor.Digest != sbom.Descriptor.Digest || out[2].Kind != oci.KindCosignAtt || out[2].Tag != att.Tag || out[2].Descriptor.Digest == att.Descriptor.Digest {
			t.Fatalf("attachments = %+v", out)
		}
		ls := layersOf(f, out[2].Descriptor)
		if len(ls) != 2 || ls[0].Digest != pubLayer.Digest || ls[1].Annotations[oci.AnnotationCosignPredicate] != PredicateVSA {
			t.Fatalf(".att layers = %+v", ls)
		}
		if !slices.EqualFunc(in, []referrers.Attachment{sig, att, sbom}, func(a, b referrers.Attachment) bool { return a.Descriptor.Digest == b.Descriptor.Digest }) {
			t.Fatalf("Attach changed its input: %+v", in)
		}
	})

	t.Run("legacy without an .att: one with the summary alone", func(t *testing.T) {
		f := newFormLayout(t)
		res.Digest = f.root.Digest
		out, form, err := Attach(ctx, f.l, "reg.example/a", f.root, res, nil, opts(f))
		if err != nil || form != FormCosignAtt || len(out) != 1 || out[0].Kind != oci.KindCosignAtt {
			t.Fatalf("Attach = %+v, %q, %v", out, form, err)
		}
		if ls := layersOf(f, out[0].Descriptor); len(ls) != 1 || ls[0].MediaType != oci.MediaTypeDSSEEnvelope {
			t.Fatalf(".att layers = %+v", ls)
		}
	})

	t.Run("bundle: a bundle referrer, the publisher's .att untouched", func(t *testing.T) {
		f := newFormLayout(t)
		res.Digest = f.root.Digest
		pub := f.referrer(f.root, [2]string{oci.MediaTypeSigstoreBundle03, bundleV03})
		att := referrers.Attachment{Subject: f.root.Digest, Kind: oci.KindCosignAtt, Tag: oci.CosignTag(f.root.Digest, ".att"),
			Descriptor: f.manifest(ocispec.Manifest{Config: f.blob(ocispec.MediaTypeImageConfig, `{"rootfs":{"type":"layers","diff_ids":[]},"os":"att"}`)})}
		out, form, err := Attach(ctx, f.l, "reg.example/a", f.root, res, []referrers.Attachment{pub, att}, opts(f))
		if err != nil || form != FormSigstoreBundle {
			t.Fatalf("Attach = %q, %v", form, err)
		}
		if len(out) != 3 || out[0].Descriptor.Digest != pub.Descriptor.Digest || out[1].Descriptor.Digest != att.Descriptor.Digest {
			t.Fatalf("attachments = %+v", out)
		}
		ref := out[2]
		if ref.Kind != oci.KindReferrer || ref.Subject != f.root.Digest || ref.Descriptor.ArtifactType != oci.MediaTypeSigstoreBundle03 ||
			ref.Descriptor.Annotations[annotationBundlePredicateType] != PredicateVSA {
			t.Fatalf("summary referrer = %+v", ref)
		}
		// what petra attached is itself a bundle cosign loads: packing the
		// destination again keeps the bundle form
		if got, err := FormFor(ctx, f.l, f.root.Digest, []referrers.Attachment{ref}); err != nil || got != FormSigstoreBundle {
			t.Fatalf("FormFor(petra's own summary) = %q, %v", got, err)
		}
	})

	t.Run("a child: its own .att gains a summary about it, the root's is untouched", func(t *testing.T) {
		f := newFormLayout(t)
		child := f.manifest(ocispec.Manifest{Config: f.blob(ocispec.MediaTypeImageConfig, `{"rootfs":{"type":"layers","diff_ids":[]},"os":"child"}`)})
		stranger := f.manifest(ocispec.Manifest{Config: f.blob(ocispec.MediaTypeImageConfig, `{"rootfs":{"type":"layers","diff_ids":[]},"os":"stranger"}`)})
		res := &imageverify.Result{Verified: true, Digest: f.root.Digest, Children: []imageverify.Subject{{Digest: child.Digest}}}
		cfg := f.blob(ocispec.MediaTypeImageConfig, `{"rootfs":{"type":"layers","diff_ids":[]},"os":"att"}`)
		rootAtt := referrers.Attachment{Subject: f.root.Digest, Kind: oci.KindCosignAtt, Tag: oci.CosignTag(f.root.Digest, ".att"),
			Descriptor: f.manifest(ocispec.Manifest{Config: cfg})}
		pubLayer := f.blob(oci.MediaTypeDSSEEnvelope, `{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`)
		childAtt := referrers.Attachment{Subject: child.Digest, Kind: oci.KindCosignAtt, Tag: oci.CosignTag(child.Digest, ".att"),
			Descriptor: f.manifest(ocispec.Manifest{Config: cfg, Layers: []ocispec.Descriptor{pubLayer}})}
		out, form, err := Attach(ctx, f.l, "reg.example/a", child, res, []referrers.Attachment{rootAtt, childAtt}, opts(f))
		if err != nil || form != FormCosignAtt {
			t.Fatalf("Attach = %q, %v", form, err)
		}
		if len(out) != 2 || out[0].Descriptor.Digest != rootAtt.Descriptor.Digest || out[1].Subject != child.Digest || out[1].Tag != childAtt.Tag || out[1].Descriptor.Digest == childAtt.Descriptor.Digest {
			t.Fatalf("attachments = %+v", out)
		}
		ls := layersOf(f, out[1].Descriptor)
		if len(ls) != 2 || ls[0].Digest != pubLayer.Digest {
			t.Fatalf(".att layers = %+v", ls)
		}
		pub, err := f.signer.PublicKeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		copts := CheckOptions{Signature: signing.VerifyOptions{PublicKey: pub}}
		s, err := CheckSummary(ctx, f.l, child.Digest, out, copts)
		if err != nil || s.Form != FormCosignAtt {
			t.Fatalf("CheckSummary(child) = %+v, %v", s, err)
		}
		if _, err := CheckSummary(ctx, f.l, f.root.Digest, out, copts); !errors.Is(err, ErrNoEvidence) {
			t.Fatalf("the child's summary passes for the root: %v", err)
		}
		// a digest the verification did not cover gets no summary
		if _, _, err := Attach(ctx, f.l, "reg.example/a", stranger, res, out, opts(f)); !errors.Is(err, oci.ErrInvalid) {
			t.Fatalf("Attach about a digest the policy did not verify: %v", err)
		}
	})

	t.Run("no signer", func(t *testing.T) {
		f := newFormLayout(t)
		if _, _, err := Attach(ctx, f.l, "reg.example/a", f.root, res, nil, Options{}); err == nil {
			t.Fatal("Attach without a signer: no error")
		}
	})
}
