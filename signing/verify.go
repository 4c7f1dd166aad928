package signing

import (
	"context"
	"crypto"
	"crypto/ed25519"
	_ "crypto/sha512" // SHA-384 / SHA-512 digests
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/petra-oci/petra-oci/internal/ctxio"
)

// MaxBundleSize is the largest bundle VerifyBlob accepts. Read bundles with
// io.LimitReader(r, MaxBundleSize+1) so a larger one is refused, not loaded.
const MaxBundleSize = 16 << 20

// ReadBundle reads a bundle from r, refusing (ErrMalformedBundle) one larger
// than MaxBundleSize without reading more than one byte past the limit.
func ReadBundle(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("signing: reading the bundle: %w", err)
	}
	if len(b) > MaxBundleSize {
		return nil, fmt.Errorf("signing: %w: larger than the %d bytes allowed", ErrMalformedBundle, MaxBundleSize)
	}
	return b, nil
}

// Verification modes reported in Result.Mode.
const (
	ModeKey     = "key"
	ModeKeyless = "keyless"
)

// VerifyOptions say what a bundle must prove. Exactly one mode:
//
//   - key: PublicKey is set (PEM, as cosign.pub). The bundle's verification
//     material must be a public key (not a certificate); tlog entries and
//     timestamps are not required, and TrustedRoot is ignored. The identity
//     fields must be empty.
//   - keyless: PublicKey is empty. TrustedRoot (trusted_root.json) is
//     required; the certificate must chain to one of its Fulcio CAs at a time
//     proven by at least one transparency-log entry (SET or inclusion proof)
//     or RFC 3161 timestamp verified against it, carry at least one SCT from
//     one of its CT logs, and match an issuer (CertificateOIDCIssuer or
//     CertificateOIDCIssuerRegexp) and an identity (CertificateIdentity or
//     CertificateIdentityRegexp). Regexps must be anchored (^...$).
//
// The artifact is either the content passed to VerifyBlob or ArtifactDigest,
// never both.
type VerifyOptions struct {
	PublicKey   []byte // PEM public key; key mode
	TrustedRoot []byte // trusted_root.json; keyless mode

	CertificateIdentity         string
	CertificateIdentityRegexp   string
	CertificateOIDCIssuer       string
	CertificateOIDCIssuerRegexp string

	// ArtifactDigest is "sha256:<hex>", "sha384:<hex>" or "sha512:<hex>": the
	// artifact's digest, for when the artifact itself is not at hand (a
	// message signature must have been made over that digest; a DSSE
	// statement must name it as a subject).
	ArtifactDigest string
}

// Result is what a successful VerifyBlob proved.
type Result struct {
	Mode     string `json:"mode"`     // ModeKey or ModeKeyless
	Identity string `json:"identity"` // certificate SAN (keyless)
	Issuer   string `json:"issuer"`   // certificate OIDC issuer (keyless)
	// KeyID is base64(SHA-256(PKIX)) of the key that verified the signature:
	// the given key, or the certificate's key.
	KeyID string `json:"keyID"`
	// SignedAt is the earliest verified time (transparency-log integrated
	// time or RFC 3161 timestamp); zero when none was verified (key mode).
	SignedAt time.Time `json:"signedAt"`
	// TimeSource says what proved SignedAt: TimeSourceTlog (a transparency-log
	// entry's integrated time, under its SET) or TimeSourceRFC3161 (a signed
	// timestamp); "" when SignedAt is zero.
	TimeSource string `json:"timeSource"`
	// PredicateType is the in-toto predicate type of a DSSE bundle's signed
	// statement ("" for a message signature).
	PredicateType string `json:"predicateType"`
}

// Time sources reported in Result.TimeSource.
const (
	TimeSourceTlog    = "tlog"
	TimeSourceRFC3161 = "rfc3161"
)

// timeSource maps sigstore-go's verified timestamp type to a Result time source.
func timeSource(t string) string {
	switch t {
	case "Tlog":
		return TimeSourceTlog
	case "TimestampAuthority":
		return TimeSourceRFC3161
	}
	return strings.ToLower(t)
}

// verifyConfig holds what only tests change.
type verifyConfig struct {
	trustedMaterial root.TrustedMaterial // replaces opts.TrustedRoot (VirtualSigstore)
	minSCTs         int                  // keyless: required SCTs
}

var defaultVerifyConfig = verifyConfig{minSCTs: 1}

// VerifyBlob verifies a Sigstore bundle (v0.1 to v0.3, message signature or
// DSSE) over content, or over opts.ArtifactDigest when content is nil, fully
// offline with sigstore-go's verifier. Every error wraps one of the package's
// sentinels (ErrBadSignature, ErrIdentity, ErrUntrustedChain, ErrNoTimestamp,
// ErrMalformedBundle, ErrWrongKeyType, ErrInvalidOptions).
func VerifyBlob(ctx context.Context, bundleJSON []byte, content io.Reader, opts VerifyOptions) (*Result, error) {
	return verifyBlob(ctx, bundleJSON, content, opts, defaultVerifyConfig)
}

func verifyBlob(ctx context.Context, bundleJSON []byte, content io.Reader, opts VerifyOptions, cfg verifyConfig) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	keyMode := len(opts.PublicKey) > 0
	identity, err := checkOptions(opts, keyMode, cfg)
	if err != nil {
		return nil, err
	}
	artifactOpt, digestAlg, err := artifactPolicy(ctx, content, opts.ArtifactDigest)
	if err != nil {
		return nil, err
	}

	if len(bundleJSON) > MaxBundleSize {
		return nil, fmt.Errorf("signing: %w: %d bytes, more than the %d allowed", ErrMalformedBundle, len(bundleJSON), MaxBundleSize)
	}
	b := &bundle.Bundle{}
	if err := b.UnmarshalJSON(bundleJSON); err != nil {
		return nil, fmt.Errorf("signing: %w: %w", ErrMalformedBundle, err)
	}
	return verifyParsed(ctx, b, identity, artifactOpt, digestAlg, opts, cfg)
}

// Trust is trust material already loaded, for VerifyBundle.
type Trust struct {
	// Material replaces VerifyOptions.TrustedRoot in keyless mode (one trusted
	// root parsed once for many verifications).
	Material root.TrustedMaterial
	// SkipSCTs drops the keyless requirement of an SCT. Only for test trust
	// material whose Fulcio embeds none (sigstore-go's VirtualSigstore); never
	// set it from configuration.
	SkipSCTs bool
}

// VerifyBundle is VerifyBlob for a bundle already parsed (e.g. one built from
// a legacy cosign signature), with trust material already loaded. The checks,
// thresholds and errors are VerifyBlob's.
func VerifyBundle(ctx context.Context, b *bundle.Bundle, content io.Reader, opts VerifyOptions, trust Trust) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b == nil || b.Bundle == nil {
		return nil, fmt.Errorf("signing: %w: no bundle", ErrMalformedBundle)
	}
	cfg := verifyConfig{trustedMaterial: trust.Material, minSCTs: 1}
	if trust.SkipSCTs {
		cfg.minSCTs = 0
	}
	identity, err := checkOptions(opts, len(opts.PublicKey) > 0, cfg)
	if err != nil {
		return nil, err
	}
	artifactOpt, digestAlg, err := artifactPolicy(ctx, content, opts.ArtifactDigest)
	if err != nil {
		return nil, err
	}
	return verifyParsed(ctx, b, identity, artifactOpt, digestAlg, opts, cfg)
}

func verifyParsed(ctx context.Context, b *bundle.Bundle, identity verify.CertificateIdentity, artifactOpt verify.ArtifactPolicyOption, digestAlg string, opts VerifyOptions, cfg verifyConfig) (*Result, error) {
	keyMode := len(opts.PublicKey) > 0
	vc, err := b.VerificationContent()
	if err != nil {
		return nil, fmt.Errorf("signing: %w: %w", ErrMalformedBundle, err)
	}
	sc, err := b.SignatureContent()
	if err != nil {
		return nil, fmt.Errorf("signing: %w: %w", ErrMalformedBundle, err)
	}
	isDSSE := sc.EnvelopeContent() != nil
	switch {
	case keyMode && vc.Certificate() != nil:
		return nil, fmt.Errorf("signing: %w: the bundle is signed with a certificate, a public key was asked for", ErrWrongKeyType)
	case !keyMode && vc.Certificate() == nil:
		return nil, fmt.Errorf("signing: %w: the bundle is signed with a bare public key, a certificate (keyless) was asked for", ErrWrongKeyType)
	}
	if msg := sc.MessageSignatureContent(); msg != nil && digestAlg != "" {
		if got := hashName(msg.DigestAlgorithm()); got != digestAlg {
			return nil, fmt.Errorf("signing: %w: the bundle signs a %s digest, the artifact digest given is %s", ErrBadSignature, got, digestAlg)
		}
	}

	var (
		tm       root.TrustedMaterial
		vopts    []verify.VerifierOption
		popts    []verify.PolicyOption
		keyIDStr string
	)
	if keyMode {
		pub, v, err := keyVerifier(opts.PublicKey, isDSSE)
		if err != nil {
			return nil, err
		}
		if keyIDStr, err = keyID(pub); err != nil {
			return nil, fmt.Errorf("signing: %w: %w", ErrWrongKeyType, err)
		}
		// The bundle's hint is only a hint: the given key is the one tried.
		key := root.NewExpiringKey(v, time.Time{}, time.Time{})
		tm = root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
		vopts = []verify.VerifierOption{verify.WithNoObserverTimestamps()}
		popts = []verify.PolicyOption{verify.WithKey()}
	} else {
		if len(b.GetVerificationMaterial().GetTlogEntries()) == 0 {
			return nil, fmt.Errorf("signing: %w: the keyless bundle has no transparency-log entry", ErrNoTimestamp)
		}
		tm = cfg.trustedMaterial
		if tm == nil {
			if tm, err = root.NewTrustedRootFromJSON(opts.TrustedRoot); err != nil {
				return nil, fmt.Errorf("signing: %w: trusted root: %w", ErrInvalidOptions, err)
			}
		}
		vopts = []verify.VerifierOption{verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1)}
		if cfg.minSCTs > 0 {
			vopts = append(vopts, verify.WithSignedCertificateTimestamps(cfg.minSCTs))
		}
		popts = []verify.PolicyOption{verify.WithCertificateIdentity(identity)}
		if keyIDStr, err = keyID(vc.Certificate().PublicKey); err != nil {
			return nil, fmt.Errorf("signing: %w: certificate key: %w", ErrWrongKeyType, err)
		}
	}

	verifier, err := verify.NewVerifier(tm, vopts...)
	if err != nil {
		return nil, fmt.Errorf("signing: %w: %w", ErrInvalidOptions, err)
	}
	res, err := verifier.Verify(b, verify.NewPolicy(artifactOpt, popts...))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("signing: %w: %w", classify(err), err)
	}

	r := &Result{Mode: ModeKey, KeyID: keyIDStr}
	if !keyMode {
		r.Mode = ModeKeyless
		if c := res.Signature.Certificate; c != nil {
			r.Identity = c.SubjectAlternativeName
			r.Issuer = c.Issuer
		}
	}
	for _, ts := range res.VerifiedTimestamps {
		if r.SignedAt.IsZero() || ts.Timestamp.Before(r.SignedAt) {
			r.SignedAt = ts.Timestamp.UTC()
			r.TimeSource = timeSource(ts.Type)
		}
	}
	if res.Statement != nil {
		r.PredicateType = res.Statement.GetPredicateType()
	}
	return r, nil
}

// checkOptions validates the mode and, in keyless mode, builds the identity.
func checkOptions(opts VerifyOptions, keyMode bool, cfg verifyConfig) (verify.CertificateIdentity, error) {
	idSet := opts.CertificateIdentity != "" || opts.CertificateIdentityRegexp != "" ||
		opts.CertificateOIDCIssuer != "" || opts.CertificateOIDCIssuerRegexp != ""
	if keyMode {
		if idSet {
			return verify.CertificateIdentity{}, fmt.Errorf("signing: %w: a public key and a certificate identity at once: choose key or keyless", ErrInvalidOptions)
		}
		return verify.CertificateIdentity{}, nil
	}
	if len(opts.TrustedRoot) == 0 && cfg.trustedMaterial == nil {
		return verify.CertificateIdentity{}, fmt.Errorf("signing: %w: keyless verification needs a trusted root (or give a public key)", ErrInvalidOptions)
	}
	if err := oneOf("certificate identity", opts.CertificateIdentity, opts.CertificateIdentityRegexp); err != nil {
		return verify.CertificateIdentity{}, err
	}
	if err := oneOf("certificate OIDC issuer", opts.CertificateOIDCIssuer, opts.CertificateOIDCIssuerRegexp); err != nil {
		return verify.CertificateIdentity{}, err
	}
	for _, re := range []string{opts.CertificateIdentityRegexp, opts.CertificateOIDCIssuerRegexp} {
		if re == "" {
			continue
		}
		if err := checkAnchored(re); err != nil {
			return verify.CertificateIdentity{}, err
		}
	}
	id, err := verify.NewShortCertificateIdentity(opts.CertificateOIDCIssuer, opts.CertificateOIDCIssuerRegexp,
		opts.CertificateIdentity, opts.CertificateIdentityRegexp)
	if err != nil {
		return verify.CertificateIdentity{}, fmt.Errorf("signing: %w: %w", ErrInvalidOptions, err)
	}
	return id, nil
}

func oneOf(what, exact, re string) error {
	switch {
	case exact == "" && re == "":
		return fmt.Errorf("signing: %w: keyless verification needs a %s (exact or regexp)", ErrInvalidOptions, what)
	case exact != "" && re != "":
		return fmt.Errorf("signing: %w: both an exact %s and a regexp: give one", ErrInvalidOptions, what)
	}
	return nil
}

// checkAnchored refuses a regexp that can match inside a longer string: its
// parsed form must be ^ (begin of text), then anything, then $ (end of text),
// so "^a|b$" and "(?m)^a$" are refused.
func checkAnchored(expr string) error {
	if _, err := regexp.Compile(expr); err != nil {
		return fmt.Errorf("signing: %w: regexp %q: %w", ErrInvalidOptions, expr, err)
	}
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return fmt.Errorf("signing: %w: regexp %q: %w", ErrInvalidOptions, expr, err)
	}
	if re.Op == syntax.OpConcat && len(re.Sub) >= 2 &&
		re.Sub[0].Op == syntax.OpBeginText && re.Sub[len(re.Sub)-1].Op == syntax.OpEndText {
		return nil
	}
	return fmt.Errorf("signing: %w: regexp %q is not anchored: write ^...$ (alternatives inside a group)", ErrInvalidOptions, expr)
}

// artifactPolicy returns the sigstore-go artifact option and, for a digest,
// its algorithm name ("sha256", ...).
func artifactPolicy(ctx context.Context, content io.Reader, digest string) (verify.ArtifactPolicyOption, string, error) {
	switch {
	case content != nil && digest != "":
		return nil, "", fmt.Errorf("signing: %w: both content and an artifact digest: give one", ErrInvalidOptions)
	case content != nil:
		return verify.WithArtifact(ctxio.Reader(ctx, content)), "", nil
	case digest == "":
		return nil, "", fmt.Errorf("signing: %w: no content and no artifact digest", ErrInvalidOptions)
	}
	alg, hexDigest, _ := strings.Cut(digest, ":")
	var size int
	switch alg {
	case "sha256":
		size = 32
	case "sha384":
		size = 48
	case "sha512":
		size = 64
	default:
		return nil, "", fmt.Errorf("signing: %w: artifact digest %q: want sha256:, sha384: or sha512: and hex", ErrInvalidOptions, digest)
	}
	raw, err := hex.DecodeString(hexDigest)
	if err != nil || len(raw) != size || strings.ToLower(hexDigest) != hexDigest {
		return nil, "", fmt.Errorf("signing: %w: artifact digest %q: want %d lowercase hex digits", ErrInvalidOptions, digest, 2*size)
	}
	return verify.WithArtifactDigest(alg, raw), alg, nil
}

// hashName maps a bundle's message digest algorithm to the digest prefix.
func hashName(protoName string) string {
	switch protoName {
	case protocommon.HashAlgorithm_SHA2_256.String():
		return "sha256"
	case protocommon.HashAlgorithm_SHA2_384.String():
		return "sha384"
	case protocommon.HashAlgorithm_SHA2_512.String():
		return "sha512"
	}
	return strings.ToLower(protoName)
}

// keyVerifier parses the PEM public key of key mode and returns the verifier
// cosign and sigstore-go use for it: ECDSA with the curve's hash, RSA PKCS #1
// v1.5 with SHA-256, Ed25519 (pure for DSSE, Ed25519ph for a message
// signature, as in hashedrekord).
func keyVerifier(pemKey []byte, isDSSE bool) (crypto.PublicKey, signature.Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %w: public key: %w", ErrInvalidOptions, err)
	}
	if err := cryptoutils.ValidatePubKey(pub); err != nil {
		return nil, nil, fmt.Errorf("signing: %w: %w", ErrWrongKeyType, err)
	}
	var lo []signature.LoadOption
	if _, ok := pub.(ed25519.PublicKey); ok && !isDSSE {
		lo = append(lo, options.WithED25519ph())
	}
	v, err := signature.LoadDefaultVerifier(pub, lo...)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %w: %w", ErrWrongKeyType, err)
	}
	return pub, v, nil
}

// classify maps a sigstore-go Verify error to a sentinel by the step that
// failed (sigstore-go v1.3.0 prefixes each step's error; the tests pin them).
func classify(err error) error {
	msg := err.Error()
	step := func(p string) bool { return strings.HasPrefix(msg, p) }
	switch {
	case step("failed to verify log inclusion"):
		// The log entry is checked against the bundle's signature, key and
		// digest / payload: a mismatch there is tampered content.
		if strings.Contains(msg, "does not match") || strings.Contains(msg, "mismatch") {
			return ErrBadSignature
		}
		return ErrNoTimestamp
	case step("failed to verify timestamps"), step("must provide timestamp"):
		return ErrNoTimestamp
	case step("failed to verify leaf certificate"), step("failed to verify signed certificate timestamp"):
		return ErrUntrustedChain
	case step("failed to verify certificate identity"), step("can't verify certificate identities"):
		return ErrIdentity
	case step("expected key signature"), step("SCTs required but bundle is signed with a public key"),
		step("failed to get signature verifier"):
		return ErrWrongKeyType
	case step("failed to fetch"), step("failed to summarize certificate"):
		return ErrMalformedBundle
	case step("failed to build policy"):
		return ErrInvalidOptions
	}
	return ErrBadSignature
}

// CheckAnchoredRegexp returns an error wrapping ErrInvalidOptions unless expr
// compiles and is anchored at both ends (^...$, alternatives inside a group),
// the rule VerifyBlob applies to identity and issuer regexps.
func CheckAnchoredRegexp(expr string) error { return checkAnchored(expr) }

// PublicKeyVerifier parses a PEM public key (PKIX, as cosign.pub) and returns
// the verifier cosign uses for signatures over raw content (a legacy cosign
// payload, a DSSE pre-authentication encoding): ECDSA with the curve's hash,
// RSA PKCS #1 v1.5 with SHA-256, pure Ed25519. keyID is base64(SHA-256(PKIX)).
// Errors wrap ErrInvalidOptions (not a public key) or ErrWrongKeyType.
func PublicKeyVerifier(pemKey []byte) (v signature.Verifier, keyID string, err error) {
	pub, v, err := keyVerifier(pemKey, true)
	if err != nil {
		return nil, "", err
	}
	if keyID, err = KeyID(pub); err != nil {
		return nil, "", fmt.Errorf("signing: %w: %w", ErrWrongKeyType, err)
	}
	return v, keyID, nil
}

// KeyID is base64(SHA-256(PKIX DER)) of pub, the key id Result reports.
func KeyID(pub crypto.PublicKey) (string, error) { return keyID(pub) }
