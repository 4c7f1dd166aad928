package signing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
)

// Real public-good Sigstore data (shared/testdata/sigstore-public-good, see its
// README): identities, subjects and log times as recorded there.
const (
	pgOCIBundle   = "oci-attestation-empty-image.sigstore.json"
	pgJSBundle    = "sigstore-js-2.0.0-provenance.sigstore.json"
	pgDSSEBundle  = "dsse.sigstore.json"
	pgRoot        = "trusted_root.json"
	pgRootPGI     = "trusted_root_pgi.json"
	githubOAuth   = "https://github.com/login/oauth"
	githubActions = "https://token.actions.githubusercontent.com"
	jsIdentity    = "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"
	jsDigest      = "sha512:46d4e2f74c4877316640000a6fdf8a8b59f1e0847667973e9859f774dd31b8f1e0937813b777fb66a2ac67d50540fe34640966eee9fc2ccca387082b4c85cd3c"
	dsseDigest    = "sha512:bbfd372fc9beeb777fe35d05bb10c0c70a9733d366a75fed7dd18866c7391de3ee7e88ba74dd47abf3e15c845e547fcf0e5c3da80854c751554224d3a6d4e55f"
	emptyDigest   = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
)

func emptyManifest(t *testing.T) []byte {
	t.Helper()
	m, err := empty.Image.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tamperPayload changes one character inside the signed statement of a DSSE
// bundle (still valid JSON), leaving the signature as it was.
func tamperPayload(t *testing.T, m map[string]any) {
	t.Helper()
	env := obj(t, m, "dsseEnvelope").(map[string]any)
	payload, err := base64.StdEncoding.DecodeString(env["payload"].(string))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(payload, []byte(`"predicateType"`))
	if i < 0 {
		t.Fatal("no predicateType in the statement")
	}
	payload[i+len(`"predicateType":"h`)] ^= 0x20 // https -> hTtps
	var st map[string]any
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatalf("tampered payload is no longer JSON: %v", err)
	}
	env["payload"] = base64.StdEncoding.EncodeToString(payload)
}

// trimRoot removes the named list ("certificateAuthorities", "ctlogs",
// "tlogs", "timestampAuthorities") from a trusted root.
func trimRoot(t *testing.T, trustedRoot []byte, key string) []byte {
	t.Helper()
	return editJSON(t, trustedRoot, func(m map[string]any) {
		if _, ok := m[key]; !ok {
			t.Fatalf("trusted root has no %q", key)
		}
		m[key] = []any{}
	})
}

func TestPublicGood(t *testing.T) {
	ctx := context.Background()
	oci := readFile(t, publicGood(t, pgOCIBundle))
	js := readFile(t, publicGood(t, pgJSBundle))
	dsse := readFile(t, publicGood(t, pgDSSEBundle))
	root := readFile(t, publicGood(t, pgRoot))
	rootPGI := readFile(t, publicGood(t, pgRootPGI))
	manifest := emptyManifest(t)

	ociOpts := VerifyOptions{TrustedRoot: rootPGI, CertificateIdentity: "cody@soyland.com", CertificateOIDCIssuer: githubOAuth}
	jsOpts := VerifyOptions{TrustedRoot: root, CertificateIdentity: jsIdentity, CertificateOIDCIssuer: githubActions, ArtifactDigest: jsDigest}
	dsseOpts := VerifyOptions{TrustedRoot: root, CertificateIdentity: "brian@dehamer.com", CertificateOIDCIssuer: githubOAuth, ArtifactDigest: dsseDigest}
	with := func(o VerifyOptions, f func(*VerifyOptions)) VerifyOptions { f(&o); return o }

	cases := []struct {
		name     string
		bundle   []byte
		content  []byte // nil: opts.ArtifactDigest
		opts     VerifyOptions
		want     error
		signedAt string // RFC 3339, checked on success
		predType string
	}{
		{name: "oci/ok", bundle: oci, content: manifest, opts: ociOpts,
			signedAt: "2025-02-28T19:18:11Z", predType: "https://cosign.sigstore.dev/attestation/v1"},
		{name: "oci/ok-digest", bundle: oci, opts: with(ociOpts, func(o *VerifyOptions) { o.ArtifactDigest = emptyDigest }),
			signedAt: "2025-02-28T19:18:11Z"},
		{name: "oci/ok-regexp", bundle: oci, content: manifest, opts: with(ociOpts, func(o *VerifyOptions) {
			o.CertificateIdentity, o.CertificateIdentityRegexp = "", `^cody@soyland\.com$`
			o.CertificateOIDCIssuer, o.CertificateOIDCIssuerRegexp = "", `^https://github\.com/login/oauth$`
		})},
		{name: "oci/ok-other-public-good-root", bundle: oci, content: manifest, opts: with(ociOpts, func(o *VerifyOptions) { o.TrustedRoot = root })},
		{name: "js/ok", bundle: js, opts: jsOpts, signedAt: "2023-08-18T16:05:35Z", predType: "https://slsa.dev/provenance/v1"},
		{name: "dsse/ok", bundle: dsse, opts: dsseOpts, signedAt: "2022-11-09T23:00:36Z", predType: "https://slsa.dev/provenance/v0.2"},

		{name: "oci/wrong-identity", bundle: oci, content: manifest, want: ErrIdentity,
			opts: with(ociOpts, func(o *VerifyOptions) { o.CertificateIdentity = "mallory@example.com" })},
		{name: "oci/wrong-issuer", bundle: oci, content: manifest, want: ErrIdentity,
			opts: with(ociOpts, func(o *VerifyOptions) { o.CertificateOIDCIssuer = githubActions })},
		{name: "js/wrong-identity-regexp", bundle: js, want: ErrIdentity,
			opts: with(jsOpts, func(o *VerifyOptions) {
				o.CertificateIdentity, o.CertificateIdentityRegexp = "", `^https://github\.com/sigstore/sigstore-go/.*$`
			})},
		{name: "oci/unanchored-regexp", bundle: oci, content: manifest, want: ErrInvalidOptions,
			opts: with(ociOpts, func(o *VerifyOptions) { o.CertificateIdentity, o.CertificateIdentityRegexp = "", `cody@soyland\.com` })},
		{name: "oci/half-anchored-regexp", bundle: oci, content: manifest, want: ErrInvalidOptions,
			opts: with(ociOpts, func(o *VerifyOptions) { o.CertificateIdentity, o.CertificateIdentityRegexp = "", `^cody@soyland\.com` })},
		{name: "oci/unanchored-issuer-regexp", bundle: oci, content: manifest, want: ErrInvalidOptions,
			opts: with(ociOpts, func(o *VerifyOptions) { o.CertificateOIDCIssuer, o.CertificateOIDCIssuerRegexp = "", `github\.com` })},
		{name: "oci/no-identity", bundle: oci, content: manifest, want: ErrInvalidOptions,
			opts: with(ociOpts, func(o *VerifyOptions) { o.CertificateIdentity = "" })},
		{name: "oci/no-issuer", bundle: oci, content: manifest, want: ErrInvalidOptions,
			opts: with(ociOpts, func(o *VerifyOptions) { o.CertificateOIDCIssuer = "" })},
		{name: "oci/no-trusted-root", bundle: oci, content: manifest, want: ErrInvalidOptions,
			opts: with(ociOpts, func(o *VerifyOptions) { o.TrustedRoot = nil })},

		{name: "oci/wrong-artifact", bundle: oci, content: append(manifest, '\n'), opts: ociOpts, want: ErrBadSignature},
		{name: "js/wrong-artifact-digest", bundle: js, want: ErrBadSignature,
			opts: with(jsOpts, func(o *VerifyOptions) { o.ArtifactDigest = dsseDigest })},
		{name: "dsse/wrong-digest-algorithm", bundle: dsse, want: ErrBadSignature,
			opts: with(dsseOpts, func(o *VerifyOptions) { o.ArtifactDigest = emptyDigest })},

		{name: "oci/tampered-payload", content: manifest, opts: ociOpts, want: ErrBadSignature,
			bundle: editJSON(t, oci, func(m map[string]any) { tamperPayload(t, m) })},
		{name: "js/tampered-payload", opts: jsOpts, want: ErrBadSignature,
			bundle: editJSON(t, js, func(m map[string]any) { tamperPayload(t, m) })},
		{name: "dsse/tampered-payload", opts: dsseOpts, want: ErrBadSignature,
			bundle: editJSON(t, dsse, func(m map[string]any) { tamperPayload(t, m) })},
		{name: "oci/tampered-signature", content: manifest, opts: ociOpts, want: ErrBadSignature,
			bundle: editJSON(t, oci, func(m map[string]any) {
				flipB64(t, obj(t, m, "dsseEnvelope", "signatures", 0).(map[string]any), "sig")
			})},
		{name: "js/tampered-signature", opts: jsOpts, want: ErrBadSignature,
			bundle: editJSON(t, js, func(m map[string]any) {
				flipB64(t, obj(t, m, "dsseEnvelope", "signatures", 0).(map[string]any), "sig")
			})},
		{name: "dsse/tampered-set", opts: dsseOpts, want: ErrNoTimestamp,
			bundle: editJSON(t, dsse, func(m map[string]any) {
				flipB64(t, obj(t, m, "verificationMaterial", "tlogEntries", 0, "inclusionPromise").(map[string]any), "signedEntryTimestamp")
			})},
		{name: "oci/no-tlog-entry", content: manifest, opts: ociOpts, want: ErrNoTimestamp,
			bundle: editJSON(t, oci, func(m map[string]any) {
				obj(t, m, "verificationMaterial").(map[string]any)["tlogEntries"] = []any{}
			})},

		{name: "oci/root-without-fulcio", bundle: oci, content: manifest, want: ErrUntrustedChain,
			opts: with(ociOpts, func(o *VerifyOptions) { o.TrustedRoot = trimRoot(t, rootPGI, "certificateAuthorities") })},
		{name: "js/root-without-fulcio", bundle: js, want: ErrUntrustedChain,
			opts: with(jsOpts, func(o *VerifyOptions) { o.TrustedRoot = trimRoot(t, root, "certificateAuthorities") })},
		{name: "oci/root-without-ctlogs", bundle: oci, content: manifest, want: ErrUntrustedChain,
			opts: with(ociOpts, func(o *VerifyOptions) { o.TrustedRoot = trimRoot(t, rootPGI, "ctlogs") })},
		{name: "oci/root-without-rekor", bundle: oci, content: manifest, want: ErrNoTimestamp,
			opts: with(ociOpts, func(o *VerifyOptions) { o.TrustedRoot = trimRoot(t, rootPGI, "tlogs") })},

		{name: "oci/key-mode-on-certificate", bundle: oci, content: manifest, want: ErrWrongKeyType,
			opts: VerifyOptions{PublicKey: pubPEM(t, newP256(t))}},
		{name: "oci/not-json", bundle: []byte("{"), content: manifest, opts: ociOpts, want: ErrMalformedBundle},
		{name: "oci/unknown-media-type", content: manifest, opts: ociOpts, want: ErrMalformedBundle,
			bundle: editJSON(t, oci, func(m map[string]any) { m["mediaType"] = "application/json" })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var content io.Reader
			if tc.content != nil {
				content = bytes.NewReader(tc.content)
			}
			res, err := VerifyBlob(ctx, tc.bundle, content, tc.opts)
			wantErr(t, err, tc.want)
			if err != nil {
				return
			}
			if res.Mode != ModeKeyless || res.Identity != tc.opts.CertificateIdentity && tc.opts.CertificateIdentity != "" ||
				res.Issuer == "" || res.KeyID == "" {
				t.Errorf("result %+v does not match the options", res)
			}
			if tc.signedAt != "" {
				if got := res.SignedAt.Format(time.RFC3339); got != tc.signedAt {
					t.Errorf("SignedAt = %s, want %s (the log's integrated time)", got, tc.signedAt)
				}
				if res.TimeSource != TimeSourceTlog {
					t.Errorf("TimeSource = %q, want %q", res.TimeSource, TimeSourceTlog)
				}
			}
			if tc.predType != "" && res.PredicateType != tc.predType {
				t.Errorf("PredicateType = %q, want %q", res.PredicateType, tc.predType)
			}
		})
	}
}
