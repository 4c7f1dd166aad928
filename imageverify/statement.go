package imageverify

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/policy"
)

// In-toto vocabulary.
const (
	payloadTypeInToto = "application/vnd.in-toto+json"
	statementV01      = "https://in-toto.io/Statement/v0.1"
	statementV1       = "https://in-toto.io/Statement/v1"
	// PredicateCosignSign is the predicate of the statement cosign v3 signs
	// (DSSE) when it signs an image: such a statement is a signature, not an
	// attestation.
	PredicateCosignSign = "https://sigstore.dev/cosign/sign/v1"
)

// statement is an in-toto statement, as signed.
type statement struct {
	Type    string `json:"_type"`
	Subject []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// parseStatement decodes a DSSE payload as an in-toto statement and checks that
// the image digest is one of its subjects. It is called before the signature is
// verified, to refuse what is not about the image; what it returns is used only
// once the signature over payload has verified.
func parseStatement(payloadType string, payload []byte, image digest.Digest) (*statement, error) {
	if payloadType != payloadTypeInToto {
		return nil, fmt.Errorf("%w: DSSE payload type %q, want %s", ErrMalformed, payloadType, payloadTypeInToto)
	}
	var st statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, fmt.Errorf("%w: in-toto statement: %v", ErrMalformed, err)
	}
	if st.Type != statementV1 && st.Type != statementV01 {
		return nil, fmt.Errorf("%w: statement _type %q", ErrMalformed, st.Type)
	}
	if st.PredicateType == "" {
		return nil, fmt.Errorf("%w: statement has no predicateType", ErrMalformed)
	}
	alg, hexDigest := image.Algorithm().String(), image.Encoded()
	var names []string
	for _, s := range st.Subject {
		if strings.EqualFold(s.Digest[alg], hexDigest) {
			return &st, nil
		}
		for a, d := range s.Digest {
			names = append(names, a+":"+d)
		}
	}
	return nil, fmt.Errorf("%w: the statement (%s) is about %v, not %s", ErrDigestMismatch, st.PredicateType, names, image)
}

// checkPredicate runs the requirement's content check on a verified statement and
// says what it checked.
func checkPredicate(req policy.AttestationRequirement, st *statement) (string, error) {
	switch {
	case st == nil:
		return "", fmt.Errorf("%w: no statement", ErrAttestationCheck)
	case req.SLSAProvenance != nil:
		return checkSLSA(req.SLSAProvenance, st.Predicate)
	case req.SPDX != nil:
		return checkSPDX(st.Predicate)
	}
	return "present and verified", nil
}

func checkSLSA(c *policy.SLSAProvenanceCheck, raw json.RawMessage) (string, error) {
	var p struct {
		BuildDefinition struct {
			BuildType string `json:"buildType"`
		} `json:"buildDefinition"`
		RunDetails struct {
			Builder struct {
				ID string `json:"id"`
			} `json:"builder"`
		} `json:"runDetails"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", fmt.Errorf("%w: SLSA provenance v1 predicate: %v", ErrAttestationCheck, err)
	}
	id, bt := p.RunDetails.Builder.ID, p.BuildDefinition.BuildType
	switch {
	case id == "":
		return "", fmt.Errorf("%w: SLSA provenance has no runDetails.builder.id", ErrAttestationCheck)
	case bt == "":
		return "", fmt.Errorf("%w: SLSA provenance has no buildDefinition.buildType", ErrAttestationCheck)
	case len(c.BuilderIDs) > 0 && !slices.Contains(c.BuilderIDs, id):
		return "", fmt.Errorf("%w: builder %q is not one of %q", ErrAttestationCheck, id, c.BuilderIDs)
	case len(c.BuildTypes) > 0 && !slices.Contains(c.BuildTypes, bt):
		return "", fmt.Errorf("%w: buildType %q is not one of %q", ErrAttestationCheck, bt, c.BuildTypes)
	}
	return fmt.Sprintf("builder %s, buildType %s", id, bt), nil
}

var spdxVersion = regexp.MustCompile(`^SPDX-[0-9]+\.[0-9]+$`)

func checkSPDX(raw json.RawMessage) (string, error) {
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		SPDXID      string `json:"SPDXID"`
		Packages    []json.RawMessage
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", fmt.Errorf("%w: SPDX predicate is not an SPDX JSON document: %v", ErrAttestationCheck, err)
	}
	if !spdxVersion.MatchString(doc.SPDXVersion) || doc.SPDXID == "" {
		return "", fmt.Errorf("%w: SPDX predicate has spdxVersion %q and SPDXID %q", ErrAttestationCheck, doc.SPDXVersion, doc.SPDXID)
	}
	return fmt.Sprintf("%s document, %d packages", doc.SPDXVersion, len(doc.Packages)), nil
}
