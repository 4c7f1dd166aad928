package admission

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	pbtrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// pemBlocks decodes every PEM block of b.
func pemBlocks(t testing.TB, b []byte, typ string) [][]byte {
	t.Helper()
	var out [][]byte
	for len(bytes.TrimSpace(b)) > 0 {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil || blk.Type != typ {
			t.Fatalf("not a %s PEM block: %q", typ, b)
		}
		out = append(out, blk.Bytes)
	}
	return out
}

// TestTrustRootFromTrustedRoot: every certificate and key of the pinned public-good
// trusted_root.json is in the TrustRoot, byte for byte, in order, as base64 of PEM.
func TestTrustRootFromTrustedRoot(t *testing.T) {
	raw := publicGoodRoot(t)
	var tr pbtrustroot.TrustedRoot
	if err := protojson.Unmarshal(raw, &tr); err != nil {
		t.Fatal(err)
	}
	f := generate(t, chainguardOptions(t))
	var obj struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   meta   `json:"metadata"`
		Spec       trustRootSpec
	}
	if f.Files[0].Name != FileTrustRoot {
		t.Fatalf("first file %s", f.Files[0].Name)
	}
	if err := yaml.Unmarshal(f.Files[0].Data, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.APIVersion != "policy.sigstore.dev/v1alpha1" || obj.Kind != "TrustRoot" || obj.Metadata.Name != Name {
		t.Fatalf("object %s %s %s", obj.APIVersion, obj.Kind, obj.Metadata.Name)
	}
	sk := obj.Spec.SigstoreKeys
	cas := func(got []certificateAuthority, want []*pbtrustroot.CertificateAuthority, what string) {
		if len(got) != len(want) {
			t.Fatalf("%d %s, the trusted root has %d", len(got), what, len(want))
		}
		for i, ca := range want {
			ders := pemBlocks(t, got[i].CertChain, "CERTIFICATE")
			if len(ders) != len(ca.GetCertChain().GetCertificates()) {
				t.Fatalf("%s %d: %d certificates, want %d", what, i, len(ders), len(ca.GetCertChain().GetCertificates()))
			}
			for j, c := range ca.GetCertChain().GetCertificates() {
				if !bytes.Equal(ders[j], c.GetRawBytes()) {
					t.Errorf("%s %d certificate %d differs", what, i, j)
				}
			}
			if got[i].URI != ca.GetUri() || got[i].Subject.CommonName != ca.GetSubject().GetCommonName() || got[i].Subject.Organization != ca.GetSubject().GetOrganization() {
				t.Errorf("%s %d: %+v", what, i, got[i])
			}
		}
	}
	cas(sk.CertificateAuthorities, tr.GetCertificateAuthorities(), "certificate authorities")
	cas(sk.TimestampAuthorities, tr.GetTimestampAuthorities(), "timestamp authorities")
	logs := func(got []transparencyLog, want []*pbtrustroot.TransparencyLogInstance, what string) {
		if len(got) != len(want) {
			t.Fatalf("%d %s, the trusted root has %d", len(got), what, len(want))
		}
		for i, l := range want {
			der := pemBlocks(t, got[i].PublicKey, "PUBLIC KEY")
			if len(der) != 1 || !bytes.Equal(der[0], l.GetPublicKey().GetRawBytes()) || got[i].BaseURL != l.GetBaseUrl() || got[i].HashAlgorithm != "sha-256" {
				t.Errorf("%s %d: %+v", what, i, got[i])
			}
		}
	}
	logs(sk.TLogs, tr.GetTlogs(), "transparency logs")
	logs(sk.CTLogs, tr.GetCtlogs(), "CT logs")
	// the base64 in the YAML is of PEM, as policy-controller's []byte fields read it
	if !strings.Contains(string(f.Files[0].Data), "certChain: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t") {
		t.Error("certChain is not base64 of a PEM chain")
	}
	// validity windows policy-controller drops are reported
	var ended int
	for _, n := range f.Notes {
		if strings.Contains(n, "no validity window") {
			ended++
		}
	}
	if ended != 2 { // the 2021 Fulcio CA and the 2021-2022 CT log
		t.Errorf("%d notes on ended validity windows, want 2: %q", ended, f.Notes)
	}
}

// TestTrustRootLeavesOutNonECDSARekorKeys: policy-controller v0.13.1 fails on any
// non-ECDSA Rekor key of a TrustRoot; such a log is left out, with a note.
func TestTrustRootLeavesOutNonECDSARekorKeys(t *testing.T) {
	var m map[string]any
	if err := json.Unmarshal(publicGoodRoot(t), &m); err != nil {
		t.Fatal(err)
	}
	tlogs := m["tlogs"].([]any)
	ed := map[string]any{
		"baseUrl": "https://log2025-1.rekor.sigstore.dev", "hashAlgorithm": "SHA2_256",
		// an Ed25519 SubjectPublicKeyInfo
		"publicKey": map[string]any{"rawBytes": "MCowBQYDK2VwAyEAt8rlp1knGwjfbcXAYPYAkn0XiLz1x8O4t0YkEhie244=", "keyDetails": "PKIX_ED25519",
			"validFor": map[string]any{"start": "2025-09-23T00:00:00Z"}},
		"logId": map[string]any{"keyId": "zxGZFVvd0FEmjR8WrFwMdcAJ9vtaY/QXf44Y1wUeP6A="},
	}
	m["tlogs"] = append(tlogs, ed)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	tr, notes, err := parseTrustedRoot(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.keys.TLogs) != 1 || tr.keys.TLogs[0].BaseURL != "https://rekor.sigstore.dev" {
		t.Errorf("tlogs %+v", tr.keys.TLogs)
	}
	found := false
	for _, n := range notes {
		found = found || strings.Contains(n, "log2025-1.rekor.sigstore.dev") && strings.Contains(n, "left out")
	}
	if !found {
		t.Errorf("no note on the left-out log: %q", notes)
	}
}

func TestTrustedRootRefused(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":        "{",
		"wrong type":      `{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`,
		"empty chain":     `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","certificateAuthorities":[{"uri":"https://f","certChain":{"certificates":[]}}]}`,
		"bad certificate": `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","certificateAuthorities":[{"uri":"https://f","certChain":{"certificates":[{"rawBytes":"AAAA"}]}}]}`,
		"bad key":         `{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[{"baseUrl":"https://r","hashAlgorithm":"SHA2_256","publicKey":{"rawBytes":"AAAA"}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := parseTrustedRoot([]byte(doc)); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("error %v", err)
			}
		})
	}
}
