package admission

import "fmt"

// Gatekeeper kinds of petra-oci's own constraint templates.
const (
	KindAllowedRepos = "PetraOCIAllowedRepos"
	KindImageDigests = "PetraOCIImageDigests"
	// Constraint names.
	NameConstraintRepos   = Name + "-internal-registry"
	NameConstraintDigests = Name + "-image-digests"
)

// containersRego collects every container of a pod, of each kind users meet
// (containers, initContainers, ephemeralContainers), as the library's
// K8sAllowedRepos does.
const containersRego = `
input_containers[{"field": "containers", "name": c.name, "image": c.image}] {
	c := input.review.object.spec.containers[_]
}

input_containers[{"field": "initContainers", "name": c.name, "image": c.image}] {
	c := input.review.object.spec.initContainers[_]
}

input_containers[{"field": "ephemeralContainers", "name": c.name, "image": c.image}] {
	c := input.review.object.spec.ephemeralContainers[_]
}
`

// allowedReposRego admits images whose reference starts with one of the repos, each
// of which must end with "/": without it the prefix reg.internal also admits
// reg.internal.evil.example/... (a misconfigured constraint refuses every pod).
const allowedReposRego = `package petraociallowedrepos

violation[{"msg": msg}] {
	r := input.parameters.repos[_]
	not endswith(r, "/")
	msg := sprintf("petra-oci: the allowed prefix %q does not end with \"/\", so it would also admit look-alike hosts (%q matches %q); fix the constraint", [r, r, concat("", [r, ".evil.example/x"])])
}

violation[{"msg": msg}] {
	count(input.parameters.repos) == 0
	msg := "petra-oci: the constraint lists no internal registry prefix"
}

violation[{"msg": msg}] {
	c := input_containers[_]
	not allowed(c.image)
	msg := sprintf("petra-oci: %v <%v> has image <%v>, which is not under the internal registry %v", [c.field, c.name, c.image, input.parameters.repos])
}

allowed(image) {
	r := input.parameters.repos[_]
	endswith(r, "/")
	startswith(image, r)
}
` + containersRego

// imageDigestsRego admits only images referenced by digest: a tag can move, a digest
// is what the bundle signed.
const imageDigestsRego = `package petraociimagedigests

violation[{"msg": msg}] {
	c := input_containers[_]
	not regex.match(` + "`^[^@]+@sha256:[a-f0-9]{64}$`" + `, c.image)
	msg := sprintf("petra-oci: %v <%v> has image <%v>, which is not pinned by digest (@sha256:<64 hex>)", [c.field, c.name, c.image])
}
` + containersRego

// The ConstraintTemplate, as Gatekeeper's templates.gatekeeper.sh/v1 declares it.
type templateSpec struct {
	CRD     templateCRD      `json:"crd"`
	Targets []templateTarget `json:"targets"`
}

type templateCRD struct {
	Spec struct {
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Validation *struct {
			OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
		} `json:"validation,omitempty"`
	} `json:"spec"`
}

type templateTarget struct {
	Target string `json:"target"`
	Rego   string `json:"rego"`
}

func template(kind, rego string, schema map[string]any) object {
	var s templateSpec
	s.CRD.Spec.Names.Kind = kind
	if schema != nil {
		s.CRD.Spec.Validation = &struct {
			OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
		}{OpenAPIV3Schema: schema}
	}
	s.Targets = []templateTarget{{Target: "admission.k8s.gatekeeper.sh", Rego: spaces(rego)}}
	return object{APIVersion: "templates.gatekeeper.sh/v1", Kind: "ConstraintTemplate",
		Metadata: meta{Name: lower(kind), Labels: labels()}, Spec: s}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// constraintSpec is a Gatekeeper constraint on pods.
type constraintSpec struct {
	EnforcementAction string         `json:"enforcementAction"`
	Match             map[string]any `json:"match"`
	Parameters        map[string]any `json:"parameters,omitempty"`
}

func constraint(kind, name string, params map[string]any) object {
	return object{APIVersion: "constraints.gatekeeper.sh/v1beta1", Kind: kind,
		Metadata: meta{Name: name, Labels: labels()},
		Spec: constraintSpec{EnforcementAction: "deny",
			Match:      map[string]any{"kinds": []any{map[string]any{"apiGroups": []string{""}, "kinds": []string{"Pod"}}}},
			Parameters: params}}
}

// gatekeeper renders the templates and constraints.
func (g *generator) gatekeeper() ([]File, error) {
	reposSchema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"repos": map[string]any{
				"type":        "array",
				"description": "Image reference prefixes that are allowed, each ending with \"/\" (registry host, optional path).",
				"items":       map[string]any{"type": "string"},
			},
		},
	}
	var files []File
	for _, f := range []struct {
		name     string
		comments []string
		obj      object
	}{
		{FileTemplateAllowedRepos, []string{"Gatekeeper template: images only from the listed prefixes (containers, initContainers, ephemeralContainers)."},
			template(KindAllowedRepos, allowedReposRego, reposSchema)},
		{FileTemplateImageDigests, []string{"Gatekeeper template: images only by digest (@sha256:<64 hex>)."},
			template(KindImageDigests, imageDigestsRego, nil)},
		{FileConstraintRepos, []string{fmt.Sprintf("Pods may run images from the internal registry %s only (the trailing \"/\" keeps look-alike hosts out).", g.reg.Prefix)},
			constraint(KindAllowedRepos, NameConstraintRepos, map[string]any{"repos": []string{g.reg.Prefix}})},
		{FileConstraintDigests, []string{"Pods may run images pinned by digest only."},
			constraint(KindImageDigests, NameConstraintDigests, nil)},
	} {
		out, err := file(f.name, f.comments, f.obj)
		if err != nil {
			return nil, err
		}
		files = append(files, out)
	}
	return files, nil
}
