package admission

import (
	"fmt"
	"strings"

	"github.com/petra-oci/petra-oci/evidence"
	"github.com/petra-oci/petra-oci/policy"
)

// Rego for policy-controller (cosign's pkg/cosign/rego, v0 syntax): package sigstore,
// the rule isCompliant. Attestation policies get the verified in-toto statement as
// input ({_type, predicateType, subject, predicate}); the CIP-level policy gets the
// authorities that passed ({"authorityMatches": {<name>: ...}}).

// attestationCheck returns the body of the Rego rule "passes" for what the petra
// policy checks on an attestation (imageverify's checkSLSA, checkSPDX), or "" when
// the requirement checks presence only.
func attestationCheck(req policy.AttestationRequirement) string {
	var b strings.Builder
	switch {
	case req.SLSAProvenance != nil:
		c := req.SLSAProvenance
		b.WriteString("\tbuilder := input.predicate.runDetails.builder.id\n")
		b.WriteString("\tis_string(builder)\n")
		b.WriteString("\tbuilder != \"\"\n")
		b.WriteString("\tbuild_type := input.predicate.buildDefinition.buildType\n")
		b.WriteString("\tis_string(build_type)\n")
		b.WriteString("\tbuild_type != \"\"\n")
		if len(c.BuilderIDs) > 0 {
			fmt.Fprintf(&b, "\t%s[builder]\n", regoSet(sortedCopy(c.BuilderIDs)))
		}
		if len(c.BuildTypes) > 0 {
			fmt.Fprintf(&b, "\t%s[build_type]\n", regoSet(sortedCopy(c.BuildTypes)))
		}
	case req.SPDX != nil:
		b.WriteString("\tversion := input.predicate.spdxVersion\n")
		b.WriteString("\tis_string(version)\n")
		b.WriteString("\tregex.match(`^SPDX-[0-9]+\\.[0-9]+$`, version)\n")
		b.WriteString("\tid := input.predicate.SPDXID\n")
		b.WriteString("\tis_string(id)\n")
		b.WriteString("\tid != \"\"\n")
	default:
		return ""
	}
	return b.String()
}

// attestationRego is the attestation policy: the check, or (negate) its negation,
// which passes exactly on a verified attestation that fails the check.
func attestationRego(check string, negate bool) string {
	var b strings.Builder
	b.WriteString("package sigstore\n\ndefault isCompliant = false\n\n")
	if negate {
		b.WriteString("# Passes on an attestation that FAILS the check: the authority matching it\n# makes the ClusterImagePolicy fail.\nisCompliant {\n\tnot passes\n}\n\n")
	} else {
		b.WriteString("isCompliant {\n\tpasses\n}\n\n")
	}
	b.WriteString("passes {\n" + check + "}\n")
	return b.String()
}

// ruleRego is the CIP-level policy of rule i: what must have passed among the
// authorities, with a message naming what is missing.
func ruleRego(i int, r *policy.ImageRule, sigNames []string, attNames, violationNames [][]string) string {
	var b strings.Builder
	b.WriteString("package sigstore\n\n")
	fmt.Fprintf(&b, "# petra-oci policy images[%d] (%s): what petra requires of an image.\n", i, r.Glob)
	b.WriteString("isCompliant[result] {\n\tcount(problems) == 0\n\tresult := {\"result\": true}\n}\n\n")
	b.WriteString("isCompliant[result] {\n\tcount(problems) > 0\n\tresult := {\"result\": false, \"error\": concat(\"; \", problems)}\n}\n\n")
	b.WriteString("matched(names) {\n\tinput.authorityMatches[name]\n\tnames[name]\n}\n\n")
	fmt.Fprintf(&b, "problems[%s] {\n\tnot matched(%s)\n}\n",
		regoString(fmt.Sprintf("no signature verified by an authority of petra policy images[%d] (%s)", i, r.Glob)), regoSet(sigNames))
	for k, req := range r.Attestations {
		fmt.Fprintf(&b, "\nproblems[%s] {\n\tnot matched(%s)\n}\n",
			regoString(fmt.Sprintf("no attestation %s verified by an authority of petra policy images[%d] passes its check", req.PredicateType, i)), regoSet(attNames[k]))
		if len(violationNames[k]) > 0 {
			fmt.Fprintf(&b, "\nproblems[%s] {\n\tmatched(%s)\n}\n",
				regoString(fmt.Sprintf("a verified attestation %s fails the check of petra policy images[%d] (every one must pass)", req.PredicateType, i)), regoSet(violationNames[k]))
		}
	}
	return b.String()
}

// summaryRego is the policy on petra's verification summary (packSide) or on the
// import record of the disconnected side (evidence.ImportStatement): each names its own
// verifier, so neither passes for the other.
func (g *generator) summaryRego(packSide bool) string {
	verifier := evidence.VerifierID
	checkPolicy := g.policyDigest != ""
	if !packSide {
		verifier = evidence.VerifierImportID
		// unpack records the policy it pinned; without a pinned policy here there is
		// nothing to compare it with
		checkPolicy = checkPolicy && g.opts.Policy != nil
	}
	var b strings.Builder
	b.WriteString("package sigstore\n\ndefault isCompliant = false\n\n")
	b.WriteString("# policy-controller has checked, before this runs, that a subject digest of the\n# statement is the admitted image's (cosign IntotoSubjectClaimVerifier): it must be the only one.\n")
	b.WriteString("isCompliant {\n")
	fmt.Fprintf(&b, "\tinput.predicateType == %s\n", regoString(evidence.PredicateVSA))
	b.WriteString("\tcount(input.subject) == 1\n")
	b.WriteString("\tis_string(input.subject[0].digest.sha256)\n")
	b.WriteString("\tinput.predicate.verificationResult == \"PASSED\"\n")
	b.WriteString("\tverifier(input.predicate.verifier.id)\n")
	if checkPolicy {
		fmt.Fprintf(&b, "\tinput.predicate.policy.digest.sha256 == %s\n", regoString(g.policyDigest.Encoded()))
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "\nverifier(id) {\n\tid == %s\n}\n\nverifier(id) {\n\tstartswith(id, %s)\n}\n",
		regoString(verifier), regoString(verifier+"@"))
	return b.String()
}
