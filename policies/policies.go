// Package policies holds the verification policies petra-oci ships, embedded so
// that the CLI and tests can use them by name (see internal/policy.Builtin).
// The files are documented in docs/policy.md.
package policies

import "embed"

// FS holds the shipped policy files, <name>.yaml at its root.
//
//go:embed *.yaml
var FS embed.FS
