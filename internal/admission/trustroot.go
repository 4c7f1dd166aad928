package admission

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	pbcommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	pbtrustroot "github.com/sigstore/protobuf-specs/gen/pb-go/trustroot/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// APIVersionPolicy is policy-controller's API group and version for TrustRoot and
// ClusterImagePolicy (v1alpha1 is the stored version in v0.13.1).
const APIVersionPolicy = "policy.sigstore.dev/v1alpha1"

// The TrustRoot spec, as policy-controller v0.13.1 declares it
// (pkg/apis/policy/v1alpha1/trustroot_types.go): byte fields are base64 in YAML and
// hold PEM (certificate chains, leaf first and root last; PKIX public keys).
type trustRootSpec struct {
	SigstoreKeys sigstoreKeys `json:"sigstoreKeys"`
}

type sigstoreKeys struct {
	CertificateAuthorities []certificateAuthority `json:"certificateAuthorities"`
	TLogs                  []transparencyLog      `json:"tLogs,omitempty"`
	CTLogs                 []transparencyLog      `json:"ctLogs,omitempty"`
	TimestampAuthorities   []certificateAuthority `json:"timestampAuthorities,omitempty"`
}

type distinguishedName struct {
	Organization string `json:"organization"`
	CommonName   string `json:"commonName"`
}

type certificateAuthority struct {
	Subject   distinguishedName `json:"subject"`
	URI       string            `json:"uri,omitempty"`
	CertChain []byte            `json:"certChain"`
}

type transparencyLog struct {
	BaseURL       string `json:"baseURL"`
	HashAlgorithm string `json:"hashAlgorithm"`
	PublicKey     []byte `json:"publicKey"`
}

// trustedRoot is the parsed trusted root with what the ClusterImagePolicies need.
type trustedRoot struct {
	keys sigstoreKeys
	// fulcioURL is the URI of the first certificate authority (keyless.url: required
	// by policy-controller, not contacted: the certificates come from the TrustRoot).
	fulcioURL string
}

// parseTrustedRoot converts trusted_root.json (application/vnd.dev.sigstore.trustedroot
// +json) into policy-controller's SigstoreKeys. It returns notes on what
// policy-controller cannot represent: it has no validity windows (every entry is
// trusted at any time, pkg/apis/config ConvertSigstoreKeys), and it takes only ECDSA
// Rekor keys (others are left out: a left-out log verifies nothing, so admission is
// stricter, never weaker).
func parseTrustedRoot(b []byte) (*trustedRoot, []string, error) {
	var tr pbtrustroot.TrustedRoot
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &tr); err != nil {
		return nil, nil, fmt.Errorf("%w: trusted root: %v", ErrInvalidOptions, err)
	}
	if !strings.HasPrefix(tr.GetMediaType(), "application/vnd.dev.sigstore.trustedroot") {
		return nil, nil, fmt.Errorf("%w: trusted root media type %q", ErrInvalidOptions, tr.GetMediaType())
	}
	out := &trustedRoot{keys: sigstoreKeys{CertificateAuthorities: []certificateAuthority{}}}
	var notes []string
	window := func(what string, vf *pbcommon.TimeRange) {
		if vf.GetEnd() != nil {
			notes = append(notes, fmt.Sprintf("trusted root: %s is valid until %s; policy-controller's TrustRoot has no validity window, so it trusts it at any time (petra verify honours the window)",
				what, vf.GetEnd().AsTime().UTC().Format(time.RFC3339)))
		}
	}
	for i, ca := range tr.GetCertificateAuthorities() {
		what := fmt.Sprintf("certificate authority %d (%s)", i, ca.GetUri())
		c, err := convertCA(what, ca)
		if err != nil {
			return nil, nil, err
		}
		window(what, ca.GetValidFor())
		out.keys.CertificateAuthorities = append(out.keys.CertificateAuthorities, c)
		if out.fulcioURL == "" {
			out.fulcioURL = ca.GetUri()
		}
	}
	for i, ta := range tr.GetTimestampAuthorities() {
		what := fmt.Sprintf("timestamp authority %d (%s)", i, ta.GetSubject().GetCommonName())
		c, err := convertCA(what, ta)
		if err != nil {
			return nil, nil, err
		}
		window(what, ta.GetValidFor())
		out.keys.TimestampAuthorities = append(out.keys.TimestampAuthorities, c)
	}
	for i, l := range tr.GetTlogs() {
		what := fmt.Sprintf("transparency log %d (%s)", i, l.GetBaseUrl())
		t, pub, err := convertLog(what, l)
		if err != nil {
			return nil, nil, err
		}
		if _, ok := pub.(*ecdsa.PublicKey); !ok {
			notes = append(notes, fmt.Sprintf("trusted root: %s has a %T key; policy-controller v0.13.1 takes only ECDSA Rekor keys, so it is left out (signatures logged only there do not verify at admission)", what, pub))
			continue
		}
		window(what, l.GetPublicKey().GetValidFor())
		out.keys.TLogs = append(out.keys.TLogs, t)
	}
	for i, l := range tr.GetCtlogs() {
		what := fmt.Sprintf("CT log %d (%s)", i, l.GetBaseUrl())
		t, _, err := convertLog(what, l)
		if err != nil {
			return nil, nil, err
		}
		window(what, l.GetPublicKey().GetValidFor())
		out.keys.CTLogs = append(out.keys.CTLogs, t)
	}
	return out, notes, nil
}

func convertCA(what string, ca *pbtrustroot.CertificateAuthority) (certificateAuthority, error) {
	certs := ca.GetCertChain().GetCertificates()
	if len(certs) == 0 {
		return certificateAuthority{}, fmt.Errorf("%w: trusted root: %s has no certificates", ErrInvalidOptions, what)
	}
	var chain []byte
	for j, c := range certs {
		if _, err := x509.ParseCertificate(c.GetRawBytes()); err != nil {
			return certificateAuthority{}, fmt.Errorf("%w: trusted root: %s certificate %d: %v", ErrInvalidOptions, what, j, err)
		}
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.GetRawBytes()})...)
	}
	return certificateAuthority{
		Subject:   distinguishedName{Organization: ca.GetSubject().GetOrganization(), CommonName: ca.GetSubject().GetCommonName()},
		URI:       ca.GetUri(),
		CertChain: chain,
	}, nil
}

func convertLog(what string, l *pbtrustroot.TransparencyLogInstance) (transparencyLog, any, error) {
	raw := l.GetPublicKey().GetRawBytes()
	pub, err := x509.ParsePKIXPublicKey(raw)
	if err != nil {
		return transparencyLog{}, nil, fmt.Errorf("%w: trusted root: %s public key: %v", ErrInvalidOptions, what, err)
	}
	var hash string
	switch l.GetHashAlgorithm() {
	case pbcommon.HashAlgorithm_SHA2_256:
		hash = "sha-256"
	case pbcommon.HashAlgorithm_SHA2_384:
		hash = "sha-384"
	case pbcommon.HashAlgorithm_SHA2_512:
		hash = "sha-512"
	default:
		return transparencyLog{}, nil, fmt.Errorf("%w: trusted root: %s hash algorithm %s has no policy-controller name", ErrInvalidOptions, what, l.GetHashAlgorithm())
	}
	if l.GetBaseUrl() == "" {
		return transparencyLog{}, nil, fmt.Errorf("%w: trusted root: %s has no base URL", ErrInvalidOptions, what)
	}
	return transparencyLog{
		BaseURL:       l.GetBaseUrl(),
		HashAlgorithm: hash,
		PublicKey:     pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: raw}),
	}, pub, nil
}

// trustRootFile renders the TrustRoot named Name.
func trustRootFile(tr *trustedRoot) (File, error) {
	o := object{APIVersion: APIVersionPolicy, Kind: "TrustRoot",
		Metadata: meta{Name: Name, Labels: labels()},
		Spec:     trustRootSpec{SigstoreKeys: tr.keys}}
	return file(FileTrustRoot, []string{
		"policy-controller TrustRoot from the pinned trusted_root.json: Fulcio chains, Rekor and CT log",
		"keys and TSAs, so keyless signatures verify offline (no TUF). Byte fields are base64 of PEM.",
	}, o)
}
