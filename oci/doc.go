// Package oci is petra-oci's vocabulary: media and artifact types, annotation keys,
// cosign tag names, descriptor helpers, a verifying reader and the sentinel errors the
// other packages wrap. It imports no sibling package.
package oci
