package admission

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/petra-oci/petra-oci/evidence"
	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/policy"
)

// The ClusterImagePolicy spec, as policy-controller v0.13.1 declares it
// (pkg/apis/policy/v1alpha1/clusterimagepolicy_types.go).
type cipSpec struct {
	Images      []imagePattern `json:"images"`
	Authorities []authority    `json:"authorities"`
	Policy      *cipPolicy     `json:"policy,omitempty"`
	Mode        string         `json:"mode"`
}

type imagePattern struct {
	Glob string `json:"glob"`
}

type authority struct {
	Name         string        `json:"name"`
	Key          *keyRef       `json:"key,omitempty"`
	Keyless      *keylessRef   `json:"keyless,omitempty"`
	CTLog        *tlogRef      `json:"ctlog,omitempty"`
	Attestations []attestation `json:"attestations,omitempty"`
	// SignatureFormat is "legacy" (cosign .sig/.att tags) or "bundle" (Sigstore bundle
	// referrers, which policy-controller v0.13.1 cannot verify offline: readable). Only
	// legacy is written.
	SignatureFormat string `json:"signatureFormat"`
}

type keyRef struct {
	Data string `json:"data"`
}

type keylessRef struct {
	URL          string     `json:"url"`
	Identities   []identity `json:"identities"`
	TrustRootRef string     `json:"trustRootRef"`
}

type identity struct {
	Issuer        string `json:"issuer,omitempty"`
	Subject       string `json:"subject,omitempty"`
	IssuerRegExp  string `json:"issuerRegExp,omitempty"`
	SubjectRegExp string `json:"subjectRegExp,omitempty"`
}

type tlogRef struct {
	TrustRootRef string `json:"trustRootRef"`
}

type attestation struct {
	Name          string     `json:"name"`
	PredicateType string     `json:"predicateType"`
	Policy        *cipPolicy `json:"policy,omitempty"`
}

type cipPolicy struct {
	Type string `json:"type"`
	Data string `json:"data"`
}

// Signature formats of policy-controller authorities.
const (
	formatLegacy = "legacy"
	formatBundle = "bundle"
)

// ClusterImagePolicy names.
const (
	NameSummary      = Name + "-summary"
	NameImportRecord = Name + "-import-record"
)

// cip is one ClusterImagePolicy with the globs it covers.
type cip struct {
	rule  int // index of the petra image rule; -1 for the summary policies
	globs []string
	obj   object
}

func (g *generator) clusterImagePolicies(haveTrustRoot bool) (File, error) {
	var cips []cip
	if p := g.opts.Policy; p != nil {
		for i := range p.Images {
			c, err := g.ruleCIP(p, i, haveTrustRoot)
			if err != nil {
				return File{}, fmt.Errorf("policy images[%d] (%s): %w", i, p.Images[i].Glob, err)
			}
			cips = append(cips, c)
		}
		if err := g.checkOverlaps(p, cips); err != nil {
			return File{}, err
		}
	}
	cips = append(cips, g.summaryCIP(NameSummary, g.summaryKey, true))
	if g.attestKey != "" {
		cips = append(cips, g.summaryCIP(NameImportRecord, g.attestKey, false))
	}
	objs := make([]object, len(cips))
	for i, c := range cips {
		objs[i] = c.obj
	}
	comments := []string{
		"policy-controller ClusterImagePolicies over the internal registry " + g.reg.Prefix + ".",
		"Every policy whose globs match an image must pass (policy-controller ANDs them):",
		"the rule's publisher signatures and attestations, and petra's verification summary.",
	}
	return file(FileClusterImagePolicies, comments, objs...)
}

// ruleCIP translates petra image rule i. Its authorities are tried in parallel and
// policy-controller keeps those that pass; the CIP-level Rego policy then requires
// what petra requires of the rule, which any-of authorities alone cannot say:
//
//   - a signature verified by one of the rule's authorities ("<a>-signature-<format>");
//   - per required attestation, one verified by one of them that passes the check
//     ("<a>-att<k>-<format>", the check as the attestation's policy);
//   - per checked attestation, none verified that fails the check
//     ("<a>-att<k>-violation-<format>": the check negated, so that authority passes
//     exactly when a verified attestation fails): petra refuses an image if any
//     verified attestation of a required type fails its check.
func (g *generator) ruleCIP(p *policy.Policy, i int, haveTrustRoot bool) (cip, error) {
	r := &p.Images[i]
	if r.CountAttestationsAsSignatures {
		return cip{}, fmt.Errorf("%w: countAttestationsAsSignatures: policy-controller counts an authority's attestations only as attestations, and an authority with attestations listed verifies no signature, so an image without a signature of its own cannot be admitted on its attestations alone as petra admits it", ErrUnexpressible)
	}
	globs, err := g.reg.translateGlob(r.Glob)
	if err != nil {
		return cip{}, fmt.Errorf("%w: glob: %v", ErrUnexpressible, err)
	}
	for _, gl := range globs {
		if _, err := pcGlobRE(gl); err != nil {
			return cip{}, fmt.Errorf("%w: glob: %v", ErrUnexpressible, err)
		}
	}
	images, err := g.imagesOf(p, r)
	if err != nil {
		return cip{}, err
	}
	uses, err := authorityUses(r, images)
	if err != nil {
		return cip{}, err
	}
	if err := checkReadable(r, images); err != nil {
		return cip{}, err
	}
	var auths []authority
	var sigNames []string
	attNames := make([][]string, len(r.Attestations))
	violationNames := make([][]string, len(r.Attestations))
	for j, a := range r.Authorities {
		base, err := g.authorityBase(a, haveTrustRoot)
		if err != nil {
			return cip{}, fmt.Errorf("authorities[%d] (%s): %w", j, a.Label(), err)
		}
		label := authorityLabel(j, a)
		for _, f := range uses[j].signatureFormats(a) {
			au := base
			au.Name, au.SignatureFormat = label+"-signature-"+f, f
			auths = append(auths, au)
			sigNames = append(sigNames, au.Name)
		}
		for k, req := range r.Attestations {
			check := attestationCheck(req)
			for _, f := range uses[j].attestationFormats(a) {
				au := base
				au.Name, au.SignatureFormat = fmt.Sprintf("%s-att%d-%s", label, k, f), f
				at := attestation{Name: attestationName(k, req.PredicateType), PredicateType: req.PredicateType}
				if check != "" {
					at.Policy = &cipPolicy{Type: "rego", Data: spaces(attestationRego(check, false))}
				}
				au.Attestations = []attestation{at}
				auths = append(auths, au)
				attNames[k] = append(attNames[k], au.Name)
				if check == "" {
					continue
				}
				v := base
				v.Name, v.SignatureFormat = fmt.Sprintf("%s-att%d-violation-%s", label, k, f), f
				v.Attestations = []attestation{{Name: attestationName(k, req.PredicateType) + "-violation", PredicateType: req.PredicateType,
					Policy: &cipPolicy{Type: "rego", Data: spaces(attestationRego(check, true))}}}
				auths = append(auths, v)
				violationNames[k] = append(violationNames[k], v.Name)
			}
		}
	}
	spec := cipSpec{Images: patterns(globs), Authorities: auths, Mode: "enforce"}
	if len(r.Attestations) > 0 {
		spec.Policy = &cipPolicy{Type: "rego", Data: spaces(ruleRego(i, r, sigNames, attNames, violationNames))}
	}
	ann := map[string]string{AnnotationRule: fmt.Sprintf("images[%d] %s", i, r.Glob)}
	g.bundleAnnotations(ann)
	return cip{rule: i, globs: globs, obj: object{APIVersion: APIVersionPolicy, Kind: "ClusterImagePolicy",
		Metadata: meta{Name: ruleName(i, r.Glob), Labels: labels(), Annotations: ann}, Spec: spec}}, nil
}

// authorityBase is the authority without name, format and attestations.
func (g *generator) authorityBase(a policy.Authority, haveTrustRoot bool) (authority, error) {
	switch {
	case a.Key != nil:
		return authority{Key: &keyRef{Data: a.Key.PublicKey}}, nil
	case a.Keyless != nil:
		if !haveTrustRoot {
			return authority{}, fmt.Errorf("%w: a keyless authority needs the pinned trusted root (--trusted-root), for the TrustRoot it verifies against offline", ErrInvalidOptions)
		}
		if g.trust.fulcioURL == "" {
			return authority{}, fmt.Errorf("%w: a keyless authority needs a certificate authority (Fulcio) with a URI in the trusted root", ErrInvalidOptions)
		}
		k := a.Keyless
		return authority{
			Keyless: &keylessRef{URL: g.trust.fulcioURL, TrustRootRef: Name, Identities: []identity{{
				Issuer: k.Issuer, IssuerRegExp: k.IssuerRegexp, Subject: k.Identity, SubjectRegExp: k.IdentityRegexp}}},
			// the Rekor keys of the TrustRoot: a transparency-log entry (SET) is
			// required, as petra requires one for keyless signatures
			CTLog: &tlogRef{TrustRootRef: Name},
		}, nil
	}
	return authority{}, fmt.Errorf("%w: neither key nor keyless", ErrInvalidOptions)
}

// uses records in which forms an authority's signatures and attestations were found
// on the rule's images, as the pinned policy verified them.
type uses struct {
	sig, att map[string]bool // policy-controller format -> seen
}

func (u uses) signatureFormats(a policy.Authority) []string   { return formats(u.sig, a) }
func (u uses) attestationFormats(a policy.Authority) []string { return formats(u.att, a) }

// formats lists the policy-controller formats an authority is emitted in: legacy
// only. policy-controller v0.13.1 verifies no Sigstore bundle offline (readable), so
// an authority in bundle format would never pass, and its violation authorities
// would never see a failing attestation. Which forms the authority's material was
// found in (seen) decides nothing here; checkReadable refuses an image whose
// material policy-controller cannot read.
func formats(seen map[string]bool, a policy.Authority) []string {
	return []string{formatLegacy}
}

// pcFormat maps an imageverify form to policy-controller's signatureFormat.
func pcFormat(form string) string {
	if form == imageverify.FormSigstoreBundle {
		return formatBundle
	}
	return formatLegacy
}

// readable says whether policy-controller v0.13.1 can verify material in form
// offline: the cosign .sig/.att tags (legacy), and no Sigstore bundle, whatever the
// authority:
//
//   - with a key authority, signatureFormat bundle is refused outright
//     (pkg/webhook/validator.go checkOptsFromAuthority: "when using the new bundle
//     format, the authority must be keyless");
//   - with a keyless one, the bundle is verified against the TrustRoot's keys
//     converted by pkg/apis/config/sigstore_keys.go ConvertTransparencyLogInstance,
//     which sets every log's ID to the bytes of its hex string
//     (LogId.KeyId = []byte(hex)), where sigstore-go v0.7.2 (pkg/root and
//     pkg/verify/tlog.go) looks logs up by the hex of the raw key ID: no Rekor entry
//     (and no SCT) is ever found, and the tester refuses with "not enough verified
//     log entries from transparency log: 0 < 1" (conformance/admission_test.go,
//     TestAdmissionKeyless). A TrustRoot cannot say otherwise: the CRD has no log ID
//     field, and the webhook's reconciler recomputes the IDs the same way.
func readable(form string) bool {
	return pcFormat(form) == formatLegacy
}

// imagesOf returns the bundle's images the rule applies to (first match wins), each
// with the result of the pinned policy.
func (g *generator) imagesOf(p *policy.Policy, r *policy.ImageRule) ([]Image, error) {
	var out []Image
	for _, im := range g.images {
		applied, err := p.For(im.Repository)
		if err != nil {
			return nil, fmt.Errorf("image %s@%s: %w", im.Repository, im.Digest, err)
		}
		if applied != r {
			continue
		}
		if im.Result == nil || !im.Result.Verified || im.Result.Digest != im.Digest {
			return nil, fmt.Errorf("%w: image %s@%s has no passing result of the pinned policy (verify the bundle with the policy first)", ErrInvalidOptions, im.Repository, im.Digest)
		}
		if im.Result.Rule != r.Glob {
			return nil, fmt.Errorf("%w: image %s@%s was verified under rule %q, the policy applies %q", ErrInvalidOptions, im.Repository, im.Digest, im.Result.Rule, r.Glob)
		}
		out = append(out, im)
	}
	return out, nil
}

// authorityUses maps each authority of the rule to the forms its verified signatures
// and attestations take on the rule's images (root and children).
func authorityUses(r *policy.ImageRule, images []Image) ([]uses, error) {
	out := make([]uses, len(r.Authorities))
	byLabel := map[string][]int{}
	for j, a := range r.Authorities {
		out[j] = uses{sig: map[string]bool{}, att: map[string]bool{}}
		byLabel[a.Label()] = append(byLabel[a.Label()], j)
	}
	mark := func(label, form string, att bool, im Image) error {
		js, ok := byLabel[label]
		if !ok {
			return fmt.Errorf("%w: image %s@%s: verified by authority %q, which the rule does not have", ErrInvalidOptions, im.Repository, im.Digest, label)
		}
		for _, j := range js {
			if att {
				out[j].att[pcFormat(form)] = true
			} else {
				out[j].sig[pcFormat(form)] = true
			}
		}
		return nil
	}
	for _, im := range images {
		for _, s := range append([]imageverify.Subject{im.Result.Root}, im.Result.Children...) {
			for _, sg := range s.Signatures {
				if err := mark(sg.Authority, sg.Form, false, im); err != nil {
					return nil, err
				}
			}
			for _, at := range s.Attestations {
				if err := mark(at.Authority, at.Form, true, im); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// checkReadable refuses a rule whose images policy-controller could not admit: a root
// (what a pod references) whose every verified signature, or every verified
// attestation of a required type, is in a form policy-controller cannot verify (a
// Sigstore bundle, readable).
func checkReadable(r *policy.ImageRule, images []Image) error {
	for _, im := range images {
		root := im.Result.Root
		ok := false
		for _, s := range root.Signatures {
			ok = ok || readable(s.Form)
		}
		if !ok {
			return fmt.Errorf("%w: %s@%s: its signatures verify only as Sigstore bundles (%s); policy-controller v0.13.1 verifies no Sigstore bundle offline (with a key authority it refuses the bundle format, with a keyless one its TrustRoot's log IDs never match a bundle's entries, docs/admission.md), and there is no .sig for this image",
				ErrUnexpressible, im.Repository, im.Digest, signers(root.Signatures))
		}
		for _, req := range r.Attestations {
			ok := false
			var found []string
			for _, a := range root.Attestations {
				if a.PredicateType == req.PredicateType {
					ok = ok || readable(a.Form)
					found = append(found, a.Authority+" "+a.Form)
				}
			}
			if !ok {
				return fmt.Errorf("%w: %s@%s: attestation %s: policy-controller v0.13.1 cannot verify any verified one (%s): it verifies no Sigstore bundle offline, docs/admission.md",
					ErrUnexpressible, im.Repository, im.Digest, req.PredicateType, strings.Join(found, ", "))
			}
		}
	}
	return nil
}

func signers(sigs []imageverify.Signature) string {
	var s []string
	for _, sg := range sigs {
		s = append(s, sg.Authority+" "+sg.Form)
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// checkOverlaps refuses rules whose internal-registry globs overlap: petra applies the
// first rule that matches a source repository, policy-controller every policy that
// matches the destination, and unpack drops the source host, so two rules can meet
// at one destination (cgr.dev/chainguard/x and registry.example/chainguard/x both land
// at <registry>/chainguard/x). It checks every bundled image, and each rule's globs
// against the others' (a catch-all such as "**" covers every other rule).
func (g *generator) checkOverlaps(p *policy.Policy, cips []cip) error {
	overlap := func(a, b cip, where string) error {
		return fmt.Errorf("%w: policy images[%d] (%s) and images[%d] (%s) both cover %s at the internal registry: petra applies the first matching rule to a source repository, policy-controller every matching policy to the destination, and unpack drops the source host; narrow or merge the rules",
			ErrUnexpressible, a.rule, p.Images[a.rule].Glob, b.rule, p.Images[b.rule].Glob, where)
	}
	for _, a := range cips {
		for _, b := range cips {
			if a.rule >= b.rule {
				continue
			}
			for _, ga := range a.globs {
				for _, gb := range b.globs {
					if m, _ := pcMatch([]string{ga}, gb); m {
						return overlap(a, b, gb)
					}
					if m, _ := pcMatch([]string{gb}, ga); m {
						return overlap(a, b, ga)
					}
				}
			}
		}
	}
	for _, im := range g.images {
		applied, err := p.For(im.Repository)
		if err != nil {
			return err
		}
		dest, err := g.reg.destination(im.Repository)
		if err != nil {
			return fmt.Errorf("image %s: %w", im.Repository, err)
		}
		ref := dest + "@" + im.Digest.String()
		var own *cip
		for i := range cips {
			if &p.Images[cips[i].rule] == applied {
				own = &cips[i]
			}
		}
		for _, c := range cips {
			m, err := pcMatch(c.globs, ref)
			if err != nil {
				return err
			}
			switch {
			case m && &p.Images[c.rule] != applied:
				return overlap(*own, c, ref)
			case !m && &p.Images[c.rule] == applied:
				return fmt.Errorf("%w: policy images[%d] (%s): its policy-controller globs %q miss %s, where unpack puts %s@%s", ErrUnexpressible, c.rule, p.Images[c.rule].Glob, c.globs, ref, im.Repository, im.Digest)
			}
		}
	}
	return nil
}

// summaryCIP requires petra's verification summary signed by key on everything under
// the internal registry prefix: an image that was not in a signed bundle carries none.
// policy-controller checks that the statement's subject digest is the admitted image's
// before the policy runs (cosign's IntotoSubjectClaimVerifier); the policy requires
// that it is the only subject, that the result is PASSED, that the verifier is petra-oci's
// pack (packSide) or unpack (the import record), and that the policy is the pinned one.
func (g *generator) summaryCIP(name, key string, packSide bool) cip {
	globs := []string{g.reg.Base + "/**"}
	var what string
	if packSide {
		what = "petra-oci's verification summary, signed by the bundle key"
	} else {
		what = "the import record of the disconnected side, signed by the attest key"
	}
	au := authority{
		Name: name, Key: &keyRef{Data: key}, SignatureFormat: formatLegacy,
		Attestations: []attestation{{Name: "verification-summary", PredicateType: evidence.PredicateVSA,
			Policy: &cipPolicy{Type: "rego", Data: spaces(g.summaryRego(packSide))}}},
	}
	ann := map[string]string{AnnotationRule: what}
	g.bundleAnnotations(ann)
	return cip{rule: -1, globs: globs, obj: object{APIVersion: APIVersionPolicy, Kind: "ClusterImagePolicy",
		Metadata: meta{Name: name, Labels: labels(), Annotations: ann},
		Spec:     cipSpec{Images: patterns(globs), Authorities: []authority{au}, Mode: "enforce"}}}
}

func (g *generator) bundleAnnotations(ann map[string]string) {
	if g.opts.BundleID != "" {
		ann[AnnotationBundleID] = g.opts.BundleID
		ann[AnnotationSequence] = strconv.FormatUint(g.opts.Sequence, 10)
	}
	if g.policyDigest != "" {
		ann[AnnotationPolicyDigest] = g.policyDigest.String()
	}
}

func patterns(globs []string) []imagePattern {
	out := make([]imagePattern, len(globs))
	for i, gl := range globs {
		out[i] = imagePattern{Glob: gl}
	}
	return out
}

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

// slug turns s into a lower-case DNS label fragment of at most n characters.
func slug(s string, n int) string {
	s = strings.Trim(nonName.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > n {
		s = strings.Trim(s[:n], "-")
	}
	return s
}

func ruleName(i int, glob string) string {
	n := fmt.Sprintf("%s-images-%d", Name, i)
	if s := slug(glob, 40); s != "" {
		n += "-" + s
	}
	return n
}

func authorityLabel(j int, a policy.Authority) string {
	l := fmt.Sprintf("a%d", j)
	if s := slug(a.Name, 30); s != "" {
		l += "-" + s
	}
	return l
}

func attestationName(k int, predicateType string) string {
	return fmt.Sprintf("att%d-%s", k, slug(strings.TrimPrefix(strings.TrimPrefix(predicateType, "https://"), "http://"), 40))
}

// sortedCopy returns a sorted copy of s.
func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
