// Package spdx is the light half of internal/sbom: it reads SPDX 2.x JSON documents
// with the SPDX project's own library (github.com/spdx/tools-golang), extracts the SPDX
// document of a Chainguard in-toto attestation, and builds the OCI referrer manifest
// that attaches an SBOM to an image. It does not link syft, so the reviewer report and
// inspect can read SBOMs without carrying syft (internal/sbom generates them).
package spdx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/v2_3"

	"github.com/petra-oci/petra-oci/oci"
)

// Media and predicate types.
const (
	// MediaType is the media type of an SPDX JSON document, used both as the
	// referrer's artifactType and as its layer's media type.
	MediaType = oci.MediaTypeSPDXJSON
	// ArtifactType is the artifactType of an SBOM referrer.
	ArtifactType = MediaType
	// PredicateType is the in-toto predicate type of an SPDX attestation (Chainguard).
	PredicateType = "https://spdx.dev/Document"
)

// Annotations petra-oci writes on an SBOM referrer manifest.
const (
	// AnnotationOrigin is "generated" (syft ran at pack) or "carried" (taken from the
	// image's own SPDX attestation).
	AnnotationOrigin = "dev.petra-oci.sbom.origin"
	// AnnotationGenerator names the generator and its version, "syft v1.57.1", for a
	// generated SBOM; for a carried one, the SPDX creators of the document.
	AnnotationGenerator = "dev.petra-oci.sbom.generator"
	// AnnotationPackages is the number of packages (the image itself not counted).
	AnnotationPackages = "dev.petra-oci.sbom.packages"
	// AnnotationPlatform is the os/arch[/variant] of the image the SBOM describes.
	AnnotationPlatform = "dev.petra-oci.sbom.platform"
)

// Origin says where an SBOM came from.
type Origin string

const (
	// OriginGenerated: petra-oci generated it with syft from the image's layers.
	OriginGenerated Origin = "generated"
	// OriginCarried: the image came with it, as an SPDX attestation.
	OriginCarried Origin = "carried"
)

// MaxDocumentBytes bounds an SPDX document read whole. SBOMs of large images run to a
// few MB; 64 MiB leaves room without letting a hostile blob exhaust memory.
const MaxDocumentBytes = 64 << 20

// ErrInvalid marks an SBOM or attestation that is not what it claims to be.
var ErrInvalid = oci.ErrInvalid

// Package is one package an SPDX document lists.
type Package struct {
	SPDXID  string `json:"spdxID"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// PURL is the package URL external reference, when the document gives one.
	PURL string `json:"purl,omitempty"`
	// Supplier is the supplier, e.g. "Organization: Chainguard, Inc.".
	Supplier string `json:"supplier,omitempty"`
	// License is the declared license (NOASSERTION when unknown).
	License string `json:"license,omitempty"`
	// Purpose is the SPDX primaryPackagePurpose (CONTAINER for the image itself).
	Purpose string `json:"purpose,omitempty"`
}

// Document is a parsed SPDX document.
type Document struct {
	// Version is the spdxVersion field, e.g. "SPDX-2.3".
	Version string `json:"spdxVersion"`
	Name    string `json:"name"`
	// Creators are the creationInfo creators ("Tool: syft-v1.57.1", "Organization: ...").
	Creators []string `json:"creators,omitempty"`
	// Packages are every package of the document, the described image included.
	Packages []Package `json:"packages"`
}

// Parse reads an SPDX 2.x JSON document with tools-golang and returns its packages in
// document order. A document that is not SPDX 2.x JSON, or that tools-golang cannot
// read, is refused.
func Parse(spdxJSON []byte) ([]Package, error) {
	doc, err := ParseDocument(spdxJSON)
	if err != nil {
		return nil, err
	}
	return doc.Packages, nil
}

// ParseDocument is Parse with the document's version, name and creators.
func ParseDocument(spdxJSON []byte) (*Document, error) {
	if len(spdxJSON) > MaxDocumentBytes {
		return nil, fmt.Errorf("%w: SPDX document is over %d bytes", oci.ErrTooLarge, MaxDocumentBytes)
	}
	var probe struct {
		SPDXVersion string `json:"spdxVersion"`
	}
	if err := json.Unmarshal(spdxJSON, &probe); err != nil {
		return nil, fmt.Errorf("%w: SPDX document: %v", ErrInvalid, err)
	}
	if !strings.HasPrefix(probe.SPDXVersion, "SPDX-2.") {
		return nil, fmt.Errorf("%w: SPDX document: spdxVersion %q, want SPDX-2.x", ErrInvalid, probe.SPDXVersion)
	}
	var d v2_3.Document
	if err := spdxjson.ReadInto(bytes.NewReader(spdxJSON), &d); err != nil {
		return nil, fmt.Errorf("%w: SPDX document: %v", ErrInvalid, err)
	}
	if d.SPDXIdentifier == "" {
		return nil, fmt.Errorf("%w: SPDX document has no SPDXID", ErrInvalid)
	}
	out := &Document{Version: probe.SPDXVersion, Name: d.DocumentName}
	if d.CreationInfo != nil {
		for _, c := range d.CreationInfo.Creators {
			out.Creators = append(out.Creators, c.CreatorType+": "+c.Creator)
		}
	}
	for _, p := range d.Packages {
		if p == nil {
			continue
		}
		pkg := Package{
			SPDXID:  string(p.PackageSPDXIdentifier),
			Name:    p.PackageName,
			Version: p.PackageVersion,
			License: p.PackageLicenseDeclared,
			Purpose: p.PrimaryPackagePurpose,
		}
		if p.PackageSupplier != nil && p.PackageSupplier.Supplier != "" {
			pkg.Supplier = p.PackageSupplier.Supplier
			if p.PackageSupplier.SupplierType != "" {
				pkg.Supplier = p.PackageSupplier.SupplierType + ": " + p.PackageSupplier.Supplier
			}
		}
		for _, r := range p.PackageExternalReferences {
			if r != nil && r.RefType == "purl" && pkg.PURL == "" {
				pkg.PURL = r.Locator
			}
		}
		out.Packages = append(out.Packages, pkg)
	}
	return out, nil
}

// ContentPackages returns the packages of pkgs that are content of the image: the
// package(s) that stand for the image or its source (SPDX primaryPackagePurpose
// CONTAINER, or a pkg:oci purl) are left out. Counts in reports use this.
func ContentPackages(pkgs []Package) []Package {
	var out []Package
	for _, p := range pkgs {
		if p.Purpose == "CONTAINER" || strings.HasPrefix(p.PURL, "pkg:oci/") {
			continue
		}
		out = append(out, p)
	}
	return out
}

// NameVersions returns the sorted, de-duplicated "name@version" set of pkgs.
func NameVersions(pkgs []Package) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range pkgs {
		k := p.Name + "@" + p.Version
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// statement is the part of an in-toto statement FromAttestation reads.
type statement struct {
	Type          string          `json:"_type"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
	Subject       []struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	} `json:"subject"`
}

// FromAttestation returns the SPDX document of an in-toto statement whose predicateType
// is https://spdx.dev/Document (Chainguard's SPDX attestation), after checking that it
// parses as SPDX 2.x. The statement must already be verified (its DSSE signature):
// this only extracts. The document bytes are the predicate as the statement holds it.
func FromAttestation(statementJSON []byte) ([]byte, error) {
	var st statement
	if err := json.Unmarshal(statementJSON, &st); err != nil {
		return nil, fmt.Errorf("%w: in-toto statement: %v", ErrInvalid, err)
	}
	if !strings.HasPrefix(st.Type, "https://in-toto.io/Statement/") {
		return nil, fmt.Errorf("%w: in-toto statement: _type %q", ErrInvalid, st.Type)
	}
	if st.PredicateType != PredicateType {
		return nil, fmt.Errorf("%w: in-toto statement: predicateType %q, want %q", ErrInvalid, st.PredicateType, PredicateType)
	}
	pred := bytes.TrimSpace(st.Predicate)
	if len(pred) == 0 || pred[0] != '{' {
		return nil, fmt.Errorf("%w: in-toto statement: predicate is not a JSON object", ErrInvalid)
	}
	if _, err := ParseDocument(pred); err != nil {
		return nil, fmt.Errorf("SPDX attestation: %w", err)
	}
	return append([]byte(nil), pred...), nil
}

// Info describes an SBOM attached to an image.
type Info struct {
	Origin Origin `json:"origin"`
	// Generator and GeneratorVersion name the tool that made it ("syft", "v1.57.1");
	// for a carried SBOM, Generator lists the document's creators.
	Generator        string `json:"generator,omitempty"`
	GeneratorVersion string `json:"generatorVersion,omitempty"`
	// SPDXVersion is the document's spdxVersion.
	SPDXVersion string `json:"spdxVersion,omitempty"`
	// Packages counts the content packages (ContentPackages).
	Packages int `json:"packages"`
	// Platform is os/arch[/variant] of the image described.
	Platform string `json:"platform,omitempty"`
}

// InfoFor fills an Info for a document that came with the image (origin carried).
func InfoFor(doc *Document, origin Origin) Info {
	info := Info{Origin: origin, SPDXVersion: doc.Version, Packages: len(ContentPackages(doc.Packages))}
	if origin == OriginCarried {
		info.Generator = strings.Join(doc.Creators, ", ")
	}
	return info
}

// Annotations returns the referrer manifest annotations recording info.
func (i Info) Annotations() map[string]string {
	gen := i.Generator
	if i.GeneratorVersion != "" {
		gen += " " + i.GeneratorVersion
	}
	ann := map[string]string{
		AnnotationOrigin:   string(i.Origin),
		AnnotationPackages: strconv.Itoa(i.Packages),
	}
	if gen = strings.TrimSpace(gen); gen != "" {
		ann[AnnotationGenerator] = gen
	}
	if i.Platform != "" {
		ann[AnnotationPlatform] = i.Platform
	}
	return ann
}

// InfoFromAnnotations reads back what Annotations wrote; ok is false when the manifest
// carries no petra-oci SBOM annotations.
func InfoFromAnnotations(ann map[string]string) (Info, bool) {
	o, ok := ann[AnnotationOrigin]
	if !ok {
		return Info{}, false
	}
	info := Info{Origin: Origin(o), Generator: ann[AnnotationGenerator], Platform: ann[AnnotationPlatform]}
	if n, err := strconv.Atoi(ann[AnnotationPackages]); err == nil && n >= 0 {
		info.Packages = n
	}
	return info, true
}

// ErrNoSBOM marks an image with no SBOM.
var ErrNoSBOM = errors.New("no SBOM")
