package imageverify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"oras.land/oras-go/v2/content/memory"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/referrers"
)

// store is an in-memory content store for building signature manifests.
type store struct {
	t *testing.T
	*memory.Store
}

func newStore(t *testing.T) *store { return &store{t: t, Store: memory.New()} }

// push stores b as mediaType (once) and returns its descriptor.
func (s *store) push(mediaType string, b []byte) ocispec.Descriptor {
	s.t.Helper()
	desc := oci.DescriptorFor(mediaType, b)
	ok, err := s.Exists(context.Background(), desc)
	if err != nil {
		s.t.Fatal(err)
	}
	if !ok {
		if err := s.Push(context.Background(), desc, bytes.NewReader(b)); err != nil {
			s.t.Fatal(err)
		}
	}
	return desc
}

func (s *store) pushJSON(mediaType string, v any) ocispec.Descriptor {
	s.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.push(mediaType, b)
}

// image stores a small image manifest named name and returns its descriptor.
func (s *store) image(name string) ocispec.Descriptor {
	s.t.Helper()
	cfg := s.push(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Labels":{"name":"`+name+`"}}}`))
	return s.pushJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfg,
		Layers:    []ocispec.Descriptor{},
	})
}

// cosignManifest stores a cosign tag-scheme manifest (.sig or .att) with the
// given layers (their blobs already stored) and returns its attachment.
func (s *store) cosignManifest(subject digest.Digest, kind oci.Kind, layers ...ocispec.Descriptor) referrers.Attachment {
	s.t.Helper()
	cfg := s.pushJSON(ocispec.MediaTypeImageConfig, map[string]any{
		"architecture": "", "os": "", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}},
	})
	desc := s.pushJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfg,
		Layers:    layers,
	})
	suffix := ".sig"
	if kind == oci.KindCosignAtt {
		suffix = ".att"
	}
	return referrers.Attachment{Subject: subject, Descriptor: desc, Kind: kind, Tag: oci.CosignTag(subject, suffix)}
}

// bundleReferrer stores a Sigstore bundle as cosign v3 attaches it to subject.
func (s *store) bundleReferrer(subject ocispec.Descriptor, bundleJSON []byte) referrers.Attachment {
	s.t.Helper()
	layer := s.push(oci.MediaTypeSigstoreBundle03, bundleJSON)
	cfg := s.push(ocispec.DescriptorEmptyJSON.MediaType, ocispec.DescriptorEmptyJSON.Data)
	subj := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	desc := s.pushJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: oci.MediaTypeSigstoreBundle03,
		Config:       cfg,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &subj,
	})
	desc.ArtifactType = oci.MediaTypeSigstoreBundle03
	return referrers.Attachment{Subject: subject.Digest, Descriptor: desc, Kind: oci.KindReferrer}
}

// wantErrs fails unless err wraps every one of want (nil: no error) and none of
// notWant.
func wantErrs(t *testing.T, err error, want []error, notWant ...error) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want %v", want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Fatalf("error does not wrap %q:\n%v", w, err)
		}
	}
	for _, w := range notWant {
		if errors.Is(err, w) {
			t.Fatalf("error wraps %q, it should not:\n%v", w, err)
		}
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func shared(t *testing.T, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{fixture.SharedTestdata(t)}, elem...)...)
}

func trustedRoot(t *testing.T, name string) root.TrustedMaterial {
	t.Helper()
	tm, err := TrustedRootFromJSON(readFile(t, shared(t, "sigstore-public-good", name)))
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// keylessRule is a rule with one keyless authority.
func keylessRule(t *testing.T, identity, issuer string, extra string) *policy.ImageRule {
	t.Helper()
	y := "apiVersion: petra-oci.dev/v1alpha1\nkind: Policy\nsources: [\"**\"]\nimages:\n- glob: \"**\"\n" +
		"  authorities: [{keyless: {identity: " + quote(identity) + ", issuer: " + quote(issuer) + "}}]\n" + extra
	return ruleFrom(t, y)
}

// keyRule is a rule with one key authority.
func keyRule(t *testing.T, pubPEM []byte, extra string) *policy.ImageRule {
	t.Helper()
	y := "apiVersion: petra-oci.dev/v1alpha1\nkind: Policy\nsources: [\"**\"]\nimages:\n- glob: \"**\"\n" +
		"  authorities: [{key: {publicKey: " + quote(string(pubPEM)) + "}}]\n" + extra
	return ruleFrom(t, y)
}

func ruleFrom(t *testing.T, y string) *policy.ImageRule {
	t.Helper()
	p, err := policy.Parse([]byte(y), "")
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	r, err := p.For("registry.example/any/image")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// flipB64 flips one bit of the i-th decoded byte of a base64 string.
func flipB64(t *testing.T, s string, i int) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		t.Fatal(err)
	}
	b[i] ^= 0x01
	return base64.StdEncoding.EncodeToString(b)
}

// virtualEntry converts a VirtualSigstore signing result into Rekor material:
// the transparency-log entry (with kind/version and a SET made by the virtual
// Rekor) and the cosign bundle annotation carrying the same entry.
func virtualEntry(t *testing.T, vs *ca.VirtualSigstore, e *ca.TestEntity, kind, version string) (*protorekor.TransparencyLogEntry, string) {
	t.Helper()
	entries, err := e.TlogEntries()
	if err != nil || len(entries) != 1 {
		t.Fatalf("tlog entries: %v, %v", entries, err)
	}
	tle := proto.Clone(entries[0].TransparencyLogEntry()).(*protorekor.TransparencyLogEntry)
	tle.KindVersion = &protorekor.KindVersion{Kind: kind, Version: version}
	payload := tlog.RekorPayload{
		Body:           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
		IntegratedTime: tle.IntegratedTime,
		LogIndex:       tle.LogIndex,
		LogID:          hex.EncodeToString(tle.LogId.KeyId),
	}
	set, err := vs.RekorSignPayload(payload)
	if err != nil {
		t.Fatal(err)
	}
	tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
	ann, err := json.Marshal(map[string]any{"SignedEntryTimestamp": set, "Payload": payload})
	if err != nil {
		t.Fatal(err)
	}
	return tle, string(ann)
}

// virtualBundle writes a VirtualSigstore signature or attestation as a v0.1
// bundle (SET, no inclusion proof; RFC 3161 timestamp included).
func virtualBundle(t *testing.T, vs *ca.VirtualSigstore, e *ca.TestEntity) []byte {
	t.Helper()
	vc, err := e.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := e.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle+json;version=0.1",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_X509CertificateChain{
				X509CertificateChain: &protocommon.X509CertificateChain{
					Certificates: []*protocommon.X509Certificate{{RawBytes: vc.Certificate().Raw}},
				},
			},
		},
	}
	if msg := sc.MessageSignatureContent(); msg != nil {
		tle, _ := virtualEntry(t, vs, e, "hashedrekord", "0.0.1")
		pb.VerificationMaterial.TlogEntries = []*protorekor.TransparencyLogEntry{tle}
		pb.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm(protocommon.HashAlgorithm_value[msg.DigestAlgorithm()]), Digest: msg.Digest()},
			Signature:     msg.Signature(),
		}}
	} else {
		tle, _ := virtualEntry(t, vs, e, "dsse", "0.0.1")
		pb.VerificationMaterial.TlogEntries = []*protorekor.TransparencyLogEntry{tle}
		env := sc.EnvelopeContent().RawEnvelope()
		payload, err := env.DecodeB64Payload()
		if err != nil {
			t.Fatal(err)
		}
		sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
		if err != nil {
			t.Fatal(err)
		}
		pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload: payload, PayloadType: env.PayloadType, Signatures: []*protodsse.Signature{{Sig: sig}},
		}}
	}
	tsrs, err := e.Timestamps()
	if err != nil {
		t.Fatal(err)
	}
	tvd := &protobundle.TimestampVerificationData{}
	for _, ts := range tsrs {
		tvd.Rfc3161Timestamps = append(tvd.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
	}
	pb.VerificationMaterial.TimestampVerificationData = tvd
	if _, err := bundle.NewBundle(pb); err != nil {
		t.Fatalf("virtual bundle is not valid: %v", err)
	}
	out, err := protojson.Marshal(pb)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// certPEM is the PEM of a TestEntity's leaf certificate.
func certPEM(t *testing.T, e *ca.TestEntity) string {
	t.Helper()
	vc, err := e.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	b, err := cryptoutils.MarshalCertificateToPEM(vc.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// inTotoStatement is an in-toto v1 statement about subject.
func inTotoStatement(subject digest.Digest, predicateType string, predicate any) []byte {
	b, _ := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "registry.example/app", "digest": map[string]string{subject.Algorithm().String(): subject.Encoded()}}},
		"predicateType": predicateType,
		"predicate":     predicate,
	})
	return b
}
