// Package policy reads petra-oci's supply-chain verification policy: which source
// repositories may be pulled at all, and per image glob who must have signed the
// image (keyless identities or public keys), whether every child of an index must be
// signed, and which attestations must be there with which content.
//
// One policy file drives pack (before anything is pulled, and again on what was
// pulled) and unpack/verify on the disconnected side. The format is documented in
// docs/policy.md. Parsing is strict: unknown fields, duplicate keys, unanchored
// regular expressions and half-specified authorities are errors, never defaults.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"oras.land/oras-go/v2/registry"
	"sigs.k8s.io/yaml"

	"github.com/petra-oci/petra-oci/signing"
)

// Version identifiers of the policy format.
const (
	APIVersion = "petra-oci.dev/v1alpha1"
	Kind       = "Policy"
)

// Predicate types with content checks.
const (
	PredicateSLSAProvenanceV1 = "https://slsa.dev/provenance/v1"
	PredicateSPDX             = "https://spdx.dev/Document"
)

// Limits on what Load reads.
const (
	// MaxPolicyBytes bounds a policy file.
	MaxPolicyBytes = 1 << 20
	// MaxKeyBytes bounds a public key file a policy refers to.
	MaxKeyBytes = 64 << 10
)

// Sentinel errors; callers test with errors.Is.
var (
	// ErrInvalidPolicy: the policy file is malformed or unsafe (unknown field,
	// unanchored regexp, authority with neither or both of key and keyless,
	// empty sources, unknown check, unreadable key ...).
	ErrInvalidPolicy = errors.New("invalid policy")
	// ErrSourceNotAllowed: the repository is not in the policy's sources.
	ErrSourceNotAllowed = errors.New("source not allowed by the policy")
	// ErrNoRule: no image rule of the policy matches the repository.
	ErrNoRule = errors.New("no policy rule for the image")
	// ErrInvalidRepository: the repository given to Allowed or For is not
	// host/path (a tag, a digest, a scheme or no host).
	ErrInvalidRepository = errors.New("invalid repository name")
	// ErrNoBuiltin: Builtin has no shipped policy of that name.
	ErrNoBuiltin = errors.New("no such shipped policy")
)

// Policy is a parsed, validated policy. Use Load, Parse, KeyPolicy or Builtin;
// a Policy built by hand is not validated.
type Policy struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Sources is the allow-list of source repositories (globs over host/path).
	// A repository no glob matches is refused before anything is pulled.
	Sources []string `json:"sources"`
	// Images are the rules, tried in order; the first whose glob matches the
	// repository applies.
	Images []ImageRule `json:"images"`
	// Vulnerabilities, when set, are the scan thresholds and exceptions pack applies
	// (docs/sbom-and-scan.md); pack then needs a vulnerability database.
	Vulnerabilities *Vulnerabilities `json:"vulnerabilities,omitempty"`

	sources   []*regexp.Regexp
	canonical []byte
	digest    digest.Digest
}

// ImageRule says what an image whose repository matches Glob must prove.
type ImageRule struct {
	// Glob over host/path: "*" matches within one path segment, "**" across
	// segments (both match at least one character).
	Glob string `json:"glob"`
	// Authorities that may sign the image. A signature verified by any one of
	// them is enough; attestations count only when signed by one of them.
	Authorities []Authority `json:"authorities"`
	// RequireChildSignatures: every child (platform manifest) of an index must
	// carry its own valid signature, not only the index.
	RequireChildSignatures bool `json:"requireChildSignatures,omitempty"`
	// RequireChildAttestations: every child of an index must carry each
	// required attestation itself; otherwise they are required on the root only.
	RequireChildAttestations bool `json:"requireChildAttestations,omitempty"`
	// CountAttestationsAsSignatures: a verified attestation about the image
	// (DSSE statement naming its digest, signed by an authority) also counts as
	// its signature. Off by default: an image must carry a signature.
	CountAttestationsAsSignatures bool `json:"countAttestationsAsSignatures,omitempty"`
	// Attestations that must be present, verified and pass their checks.
	Attestations []AttestationRequirement `json:"attestations,omitempty"`

	re *regexp.Regexp
}

// Authority is one signer: exactly one of Keyless and Key.
type Authority struct {
	// Name labels the authority in results (optional).
	Name    string   `json:"name,omitempty"`
	Keyless *Keyless `json:"keyless,omitempty"`
	Key     *Key     `json:"key,omitempty"`
}

// Keyless is a Fulcio certificate identity: an OIDC issuer (exact or regexp)
// and a subject identity (SAN: exact or regexp). Regexps must be anchored.
type Keyless struct {
	Issuer         string `json:"issuer,omitempty"`
	IssuerRegexp   string `json:"issuerRegexp,omitempty"`
	Identity       string `json:"identity,omitempty"`
	IdentityRegexp string `json:"identityRegexp,omitempty"`
}

// Key is a public key: PEM inline, or a path relative to the policy file. After
// parsing, PublicKey holds the normalised PEM and Path is empty.
type Key struct {
	PublicKey string `json:"publicKey,omitempty"`
	Path      string `json:"path,omitempty"`
}

// AttestationRequirement requires an attestation of PredicateType, read from the
// signed in-toto statement, with optional checks on its predicate. At most one
// check, matching the predicate type.
type AttestationRequirement struct {
	PredicateType  string               `json:"predicateType"`
	SLSAProvenance *SLSAProvenanceCheck `json:"slsaProvenance,omitempty"`
	SPDX           *SPDXCheck           `json:"spdx,omitempty"`
}

// SLSAProvenanceCheck checks an SLSA provenance v1 predicate: runDetails.builder.id
// and buildDefinition.buildType must be present, and in the lists when given.
type SLSAProvenanceCheck struct {
	BuilderIDs []string `json:"builderIDs,omitempty"`
	BuildTypes []string `json:"buildTypes,omitempty"`
}

// SPDXCheck checks that the predicate is an SPDX JSON document (an object with
// spdxVersion "SPDX-<major>.<minor>" and SPDXID). It has no options.
type SPDXCheck struct{}

// Load reads and parses the policy file at path; key paths in it are relative to
// the file's directory.
func Load(path string) (*Policy, error) {
	b, err := readBounded(path, MaxPolicyBytes)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p, err := Parse(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Parse parses and validates a policy. baseDir resolves relative key paths; with
// baseDir "" a relative key path is an error.
func Parse(b []byte, baseDir string) (*Policy, error) {
	if len(b) > MaxPolicyBytes {
		return nil, fmt.Errorf("policy: %w: %d bytes, more than %d", ErrInvalidPolicy, len(b), MaxPolicyBytes)
	}
	var p Policy
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		return nil, fmt.Errorf("policy: %w: %v", ErrInvalidPolicy, err)
	}
	if err := p.validate(baseDir); err != nil {
		return nil, fmt.Errorf("policy: %w: %w", ErrInvalidPolicy, err)
	}
	// The canonical form has every key inline and is what Digest covers.
	j, err := json.Marshal(&p)
	if err != nil {
		return nil, fmt.Errorf("policy: encoding: %w", err)
	}
	if p.canonical, err = yaml.JSONToYAML(j); err != nil {
		return nil, fmt.Errorf("policy: encoding: %w", err)
	}
	p.digest = digest.FromBytes(p.canonical)
	return &p, nil
}

// KeyPolicy is the one-key policy of --image-key: sources as given, and one rule
// for every image ("**") requiring a signature by the public key pubPEM.
func KeyPolicy(pubPEM []byte, sources []string) (*Policy, error) {
	p := Policy{
		APIVersion: APIVersion,
		Kind:       Kind,
		Sources:    sources,
		Images: []ImageRule{{
			Glob:        "**",
			Authorities: []Authority{{Name: "image-key", Key: &Key{PublicKey: string(pubPEM)}}},
		}},
	}
	j, err := json.Marshal(&p)
	if err != nil {
		return nil, fmt.Errorf("policy: encoding: %w", err)
	}
	b, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("policy: encoding: %w", err)
	}
	return Parse(b, "")
}

// Bytes returns the canonical form of the policy: YAML, keys sorted, every public
// key inline and normalised, no comments. Parse(Bytes()) gives the same policy and
// the same Digest; it is what a bundle carries as petra/policy.yaml.
func (p *Policy) Bytes() []byte { return bytes.Clone(p.canonical) }

// Digest is the SHA-256 digest of Bytes(): it identifies what the policy
// requires, whatever the file's comments, layout or key file locations.
func (p *Policy) Digest() digest.Digest { return p.digest }

// Allowed returns nil when repository (host/path, no tag or digest) matches one
// of the policy's sources, else an error wrapping ErrSourceNotAllowed (or
// ErrInvalidRepository).
func (p *Policy) Allowed(repository string) error {
	name, err := repositoryName(repository)
	if err != nil {
		return err
	}
	for _, re := range p.sources {
		if re.MatchString(name) {
			return nil
		}
	}
	return fmt.Errorf("policy: %w: %s is not in sources %q", ErrSourceNotAllowed, name, p.Sources)
}

// For returns the first image rule whose glob matches repository (host/path), or
// an error wrapping ErrNoRule (or ErrInvalidRepository).
func (p *Policy) For(repository string) (*ImageRule, error) {
	name, err := repositoryName(repository)
	if err != nil {
		return nil, err
	}
	for i := range p.Images {
		if r := &p.Images[i]; r.re != nil && r.re.MatchString(name) {
			return r, nil
		}
	}
	return nil, fmt.Errorf("policy: %w: no image glob matches %s", ErrNoRule, name)
}

// NeedsTrustedMaterial reports whether any rule has a keyless authority, which
// needs a trusted root (Fulcio, Rekor, CT logs) to verify.
func (p *Policy) NeedsTrustedMaterial() bool {
	for _, r := range p.Images {
		if r.NeedsTrustedMaterial() {
			return true
		}
	}
	return false
}

// NeedsTrustedMaterial reports whether the rule has a keyless authority.
func (r *ImageRule) NeedsTrustedMaterial() bool {
	for _, a := range r.Authorities {
		if a.Keyless != nil {
			return true
		}
	}
	return false
}

// Label names the authority in results: its name, else its identity or key.
func (a Authority) Label() string {
	switch {
	case a.Name != "":
		return a.Name
	case a.Keyless != nil:
		id, iss := a.Keyless.Identity, a.Keyless.Issuer
		if id == "" {
			id = a.Keyless.IdentityRegexp
		}
		if iss == "" {
			iss = a.Keyless.IssuerRegexp
		}
		return "keyless " + id + " (" + iss + ")"
	case a.Key != nil:
		if _, id, err := signing.PublicKeyVerifier([]byte(a.Key.PublicKey)); err == nil {
			return "key " + id
		}
		return "key"
	}
	return "authority"
}

// repositoryName checks that s is host/path without scheme, tag or digest.
func repositoryName(s string) (string, error) {
	if strings.Contains(s, "://") {
		return "", fmt.Errorf("policy: %w: %q has a scheme", ErrInvalidRepository, s)
	}
	ref, err := registry.ParseReference(s)
	if err != nil {
		return "", fmt.Errorf("policy: %w: %q: %v", ErrInvalidRepository, s, err)
	}
	if ref.Reference != "" {
		return "", fmt.Errorf("policy: %w: %q names a tag or digest; give host/path", ErrInvalidRepository, s)
	}
	if ref.Repository == "" {
		return "", fmt.Errorf("policy: %w: %q has no path", ErrInvalidRepository, s)
	}
	return ref.Registry + "/" + ref.Repository, nil
}

func (p *Policy) validate(baseDir string) error {
	if p.APIVersion != APIVersion {
		return fmt.Errorf("apiVersion %q: want %q", p.APIVersion, APIVersion)
	}
	if p.Kind != Kind {
		return fmt.Errorf("kind %q: want %q", p.Kind, Kind)
	}
	if len(p.Sources) == 0 {
		return errors.New("sources is empty: list the repositories that may be pulled (globs, e.g. cgr.dev/chainguard/**)")
	}
	if p.Vulnerabilities != nil {
		if err := p.Vulnerabilities.validate(); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for i, s := range p.Sources {
		re, err := compileGlob(s)
		if err != nil {
			return fmt.Errorf("sources[%d]: %w", i, err)
		}
		if seen[s] {
			return fmt.Errorf("sources[%d]: %q listed twice", i, s)
		}
		seen[s] = true
		p.sources = append(p.sources, re)
	}
	if len(p.Images) == 0 {
		return errors.New("images is empty: give at least one rule (glob and authorities)")
	}
	seen = map[string]bool{}
	for i := range p.Images {
		r := &p.Images[i]
		if err := r.validate(baseDir); err != nil {
			return fmt.Errorf("images[%d] (%s): %w", i, r.Glob, err)
		}
		if seen[r.Glob] {
			return fmt.Errorf("images[%d]: glob %q listed twice (only the first would apply)", i, r.Glob)
		}
		seen[r.Glob] = true
	}
	return nil
}

func (r *ImageRule) validate(baseDir string) error {
	re, err := compileGlob(r.Glob)
	if err != nil {
		return fmt.Errorf("glob: %w", err)
	}
	r.re = re
	if len(r.Authorities) == 0 {
		return errors.New("authorities is empty: name at least one keyless identity or key")
	}
	for i := range r.Authorities {
		if err := r.Authorities[i].validate(baseDir); err != nil {
			return fmt.Errorf("authorities[%d]: %w", i, err)
		}
	}
	seen := map[string]bool{}
	for i, a := range r.Attestations {
		if err := a.validate(); err != nil {
			return fmt.Errorf("attestations[%d]: %w", i, err)
		}
		if seen[a.PredicateType] {
			return fmt.Errorf("attestations[%d]: predicateType %q listed twice", i, a.PredicateType)
		}
		seen[a.PredicateType] = true
	}
	if r.RequireChildAttestations && len(r.Attestations) == 0 {
		return errors.New("requireChildAttestations without attestations")
	}
	return nil
}

func (a *Authority) validate(baseDir string) error {
	switch {
	case a.Keyless == nil && a.Key == nil:
		return errors.New("neither keyless nor key: give exactly one")
	case a.Keyless != nil && a.Key != nil:
		return errors.New("both keyless and key: give exactly one (list two authorities for either)")
	case a.Keyless != nil:
		return a.Keyless.validate()
	}
	return a.Key.resolve(baseDir)
}

func (k *Keyless) validate() error {
	if err := exactlyOne("issuer", k.Issuer, k.IssuerRegexp); err != nil {
		return err
	}
	if err := exactlyOne("identity", k.Identity, k.IdentityRegexp); err != nil {
		return err
	}
	for _, v := range []string{k.Issuer, k.IssuerRegexp, k.Identity, k.IdentityRegexp} {
		if p := placeholder.FindString(v); p != "" {
			return fmt.Errorf("keyless: %q holds the placeholder %s: fill it in", v, p)
		}
	}
	for _, re := range []string{k.IssuerRegexp, k.IdentityRegexp} {
		if re == "" {
			continue
		}
		if err := signing.CheckAnchoredRegexp(re); err != nil {
			return fmt.Errorf("keyless: %w", err)
		}
	}
	return nil
}

func exactlyOne(what, exact, re string) error {
	switch {
	case exact == "" && re == "":
		return fmt.Errorf("keyless: no %s: give %s or %sRegexp", what, what, what)
	case exact != "" && re != "":
		return fmt.Errorf("keyless: both %s and %sRegexp: give one", what, what)
	}
	return nil
}

// resolve reads the key file when Path is set, checks the key, and leaves the
// normalised PEM in PublicKey.
func (k *Key) resolve(baseDir string) error {
	var pemKey []byte
	switch {
	case k.PublicKey == "" && k.Path == "":
		return errors.New("key: neither publicKey nor path")
	case k.PublicKey != "" && k.Path != "":
		return errors.New("key: both publicKey and path: give one")
	case k.PublicKey != "":
		pemKey = []byte(k.PublicKey)
	default:
		path := k.Path
		if !filepath.IsAbs(path) {
			if baseDir == "" {
				return fmt.Errorf("key: path %q is relative and the policy has no directory", k.Path)
			}
			path = filepath.Join(baseDir, path)
		}
		b, err := readBounded(path, MaxKeyBytes)
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		pemKey = b
	}
	if _, _, err := signing.PublicKeyVerifier(pemKey); err != nil {
		return fmt.Errorf("key: %w", err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemKey)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	norm, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	k.PublicKey, k.Path = string(norm), ""
	return nil
}

func (a *AttestationRequirement) validate() error {
	if a.PredicateType == "" || strings.ContainsAny(a.PredicateType, " \t\r\n") {
		return fmt.Errorf("predicateType %q: give the in-toto predicate type URI", a.PredicateType)
	}
	if a.SLSAProvenance != nil {
		if a.PredicateType != PredicateSLSAProvenanceV1 {
			return fmt.Errorf("slsaProvenance checks apply to predicateType %s, not %s", PredicateSLSAProvenanceV1, a.PredicateType)
		}
		for _, l := range [][]string{a.SLSAProvenance.BuilderIDs, a.SLSAProvenance.BuildTypes} {
			for _, v := range l {
				if v == "" {
					return errors.New("slsaProvenance: empty builder id or build type")
				}
			}
		}
	}
	if a.SPDX != nil && a.PredicateType != PredicateSPDX {
		return fmt.Errorf("spdx checks apply to predicateType %s, not %s", PredicateSPDX, a.PredicateType)
	}
	return nil
}

// placeholder matches the <UPPER_CASE> placeholders of policy templates.
var placeholder = regexp.MustCompile(`<[A-Z][A-Z0-9_]*>`)

// compileGlob turns a repository glob into an anchored regexp: "**" matches one
// or more characters of any kind, "*" one or more characters other than "/",
// everything else itself.
func compileGlob(g string) (*regexp.Regexp, error) {
	switch {
	case g == "":
		return nil, errors.New("empty glob")
	case placeholder.MatchString(g):
		return nil, fmt.Errorf("glob %q holds the placeholder %s: fill it in", g, placeholder.FindString(g))
	case strings.Contains(g, "://"):
		return nil, fmt.Errorf("glob %q: no scheme, write host/path", g)
	case strings.Contains(g, "***"):
		return nil, fmt.Errorf("glob %q: \"***\" means nothing; use * or **", g)
	case g != "**" && !strings.Contains(g, "/"):
		return nil, fmt.Errorf("glob %q: match host/path (e.g. %s/**)", g, g)
	case strings.HasPrefix(g, "/") || strings.HasSuffix(g, "/") || strings.Contains(g, "//"):
		return nil, fmt.Errorf("glob %q: empty path segment", g)
	}
	if host, path, _ := strings.Cut(g, "/"); strings.Contains(path, ":") || strings.Contains(g, "@") {
		return nil, fmt.Errorf("glob %q: repositories only, no tag or digest (host %q)", g, host)
	}
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(g); i++ {
		c := g[i]
		switch {
		case c == '*' && i+1 < len(g) && g[i+1] == '*':
			b.WriteString(".+")
			i++
		case c == '*':
			b.WriteString("[^/]+")
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-', c == '/', c == ':':
			b.WriteString(regexp.QuoteMeta(string(c)))
		default:
			return nil, fmt.Errorf("glob %q: character %q is not allowed in a repository glob", g, c)
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
