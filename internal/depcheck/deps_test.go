// Package depcheck holds the module's import rules as a test: which package may
// import which. It has no code of its own; `go test ./...` (make test) runs it.
package depcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/petra-oci/petra-oci"

// pkg is what `go list -json` says of one package of the module.
type pkg struct {
	ImportPath string
	Imports    []string // direct imports
	Deps       []string // everything linked, transitively
}

// rule is one import rule, checked against every package of the module.
type rule struct {
	name string
	// applies says whether the rule constrains package p (a path relative to the module).
	applies func(p string) bool
	// forbidden says whether importing dep (a full import path) breaks the rule.
	forbidden func(dep string) bool
	// transitive checks everything p links, not only its direct imports.
	transitive bool
}

var rules = []rule{
	{
		name:      "oci is the leaf: it imports no package of the module",
		applies:   func(p string) bool { return p == "oci" },
		forbidden: func(dep string) bool { return strings.HasPrefix(dep, module+"/") },
	},
	{
		name:      "internal/ctxio is a leaf: it imports no package of the module",
		applies:   func(p string) bool { return p == "internal/ctxio" },
		forbidden: func(dep string) bool { return strings.HasPrefix(dep, module+"/") },
	},
	{
		name:    "layout builds on oci (and the io adapters of internal/ctxio) only",
		applies: func(p string) bool { return p == "layout" },
		forbidden: func(dep string) bool {
			return strings.HasPrefix(dep, module+"/") && dep != module+"/oci" && dep != module+"/internal/ctxio"
		},
	},
	{
		name:    "referrers builds on oci and layout only",
		applies: func(p string) bool { return p == "referrers" },
		forbidden: func(dep string) bool {
			return strings.HasPrefix(dep, module+"/") && dep != module+"/oci" && dep != module+"/layout"
		},
	},
	{
		name:      "library code never imports cmd/ or conformance/",
		applies:   func(p string) bool { return !strings.HasPrefix(p, "cmd/") && p != "conformance" },
		forbidden: func(dep string) bool { return under(dep, "cmd") || under(dep, "conformance") },
	},
	{
		name:       "petra-oci does not link syft or grype (they run in petra-oci-analyze)",
		applies:    func(p string) bool { return p == "cmd/petra-oci" },
		forbidden:  anchoreTool,
		transitive: true,
	},
	{
		name:       "the analyzer does not link pack: pack depends on the analyzer's request type, not the reverse",
		applies:    func(p string) bool { return p == "cmd/petra-oci-analyze" || under(module+"/"+p, "internal/analyze") },
		forbidden:  func(dep string) bool { return dep == module+"/pack" },
		transitive: true,
	},
	{
		name:       "the analyzer protocol (internal/analyze/job) does not link syft or grype",
		applies:    func(p string) bool { return p == "internal/analyze/job" },
		forbidden:  anchoreTool,
		transitive: true,
	},
}

// under reports whether import path dep is the module's package dir or below it.
func under(dep, dir string) bool {
	p := module + "/" + dir
	return dep == p || strings.HasPrefix(dep, p+"/")
}

func anchoreTool(dep string) bool {
	for _, m := range []string{"github.com/anchore/syft", "github.com/anchore/grype", "github.com/anchore/stereoscope"} {
		if dep == m || strings.HasPrefix(dep, m+"/") {
			return true
		}
	}
	return false
}

// violations checks every rule against pkgs and returns one line per broken import.
func violations(pkgs []pkg) []string {
	var out []string
	for _, r := range rules {
		for _, p := range pkgs {
			rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
			if !r.applies(rel) {
				continue
			}
			deps := p.Imports
			if r.transitive {
				deps = p.Deps
			}
			for _, d := range deps {
				if r.forbidden(d) {
					out = append(out, fmt.Sprintf("%s imports %s: breaks %q", p.ImportPath, d, r.name))
				}
			}
		}
	}
	return out
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	// every rule must constrain at least one real package, or a rename would empty it
	for _, r := range rules {
		if !slices.ContainsFunc(pkgs, func(p pkg) bool {
			return r.applies(strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/"))
		}) {
			t.Errorf("rule %q applies to no package of the module: update it", r.name)
		}
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// TestRulesCatchViolations feeds the rules a module that breaks each of them: every
// rule must report its own violation, so a rule that can no longer fail is caught.
func TestRulesCatchViolations(t *testing.T) {
	bad := []pkg{
		{ImportPath: module + "/oci", Imports: []string{module + "/layout"}},
		{ImportPath: module + "/internal/ctxio", Imports: []string{module + "/oci"}},
		{ImportPath: module + "/layout", Imports: []string{module + "/bundle"}},
		{ImportPath: module + "/referrers", Imports: []string{module + "/pack"}},
		{ImportPath: module + "/unpack", Imports: []string{module + "/cmd/petra-oci"}},
		{ImportPath: module + "/cmd/petra-oci", Deps: []string{"github.com/anchore/syft/syft"}},
		{ImportPath: module + "/internal/analyze", Deps: []string{module + "/pack"}},
		{ImportPath: module + "/internal/analyze/job", Deps: []string{"github.com/anchore/grype/grype/db"}},
	}
	got := strings.Join(violations(bad), "\n")
	for _, r := range rules {
		if !strings.Contains(got, fmt.Sprintf("%q", r.name)) {
			t.Errorf("rule %q did not report its violation; got:\n%s", r.name, got)
		}
	}
}
