package policy

import (
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/petra-oci/petra-oci/policies"
)

// Builtin parses the shipped policy name (policies/<name>.yaml, e.g.
// "chainguard-public"). Templates (chainguard-org) do not parse until their
// placeholders are filled in: copy the file, edit it and Load it.
func Builtin(name string) (*Policy, error) {
	b, err := BuiltinBytes(name)
	if err != nil {
		return nil, err
	}
	p, err := Parse(b, "")
	if err != nil {
		return nil, fmt.Errorf("shipped policy %s: %w", name, err)
	}
	return p, nil
}

// BuiltinBytes returns the file of the shipped policy name, comments included.
func BuiltinBytes(name string) ([]byte, error) {
	if name == "" || strings.ContainsAny(name, `/\.`) {
		return nil, fmt.Errorf("policy: %w: no shipped policy %q (have %v)", ErrNoBuiltin, name, BuiltinNames())
	}
	b, err := fs.ReadFile(policies.FS, name+".yaml")
	if err != nil {
		return nil, fmt.Errorf("policy: %w: no shipped policy %q (have %v)", ErrNoBuiltin, name, BuiltinNames())
	}
	return b, nil
}

// BuiltinNames lists the shipped policies, sorted.
func BuiltinNames() []string {
	var names []string
	entries, _ := fs.ReadDir(policies.FS, ".")
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}
