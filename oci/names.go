package oci

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/distribution/reference"
)

// ErrInvalidName marks a repository or tag that breaks the distribution-spec grammar
// (uppercase, empty or dot segments, "..", over the length limits) or a destination
// that would not stay under the prefix it was given.
var ErrInvalidName = errors.New("invalid repository or tag name")

// MaxNameBytes is the distribution-spec limit on a repository name, host included.
const MaxNameBytes = reference.NameTotalLengthMax

var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// ValidateRepository checks that s is host[:port]/path, exactly as the distribution-spec
// grammar writes a repository: a valid host, one or more path components of lowercase
// letters, digits and single separators (".", "_", "__", "-"), no tag, no digest, at
// most MaxNameBytes in all. "..", "." and empty components never pass, so a repository
// joined under a prefix cannot leave it.
func ValidateRepository(s string) error {
	host, p, ok := strings.Cut(s, "/")
	if !ok || host == "" || p == "" {
		return fmt.Errorf("%w: repository %q is not host/path", ErrInvalidName, s)
	}
	if len(s) > MaxNameBytes {
		return fmt.Errorf("%w: repository of %d bytes, limit %d", ErrInvalidName, len(s), MaxNameBytes)
	}
	r, err := reference.Parse(s)
	if err != nil {
		return fmt.Errorf("%w: repository %q: %v", ErrInvalidName, s, err)
	}
	n, ok := r.(reference.Named)
	if !ok || n.Name() != s || n.String() != s {
		return fmt.Errorf("%w: repository %q names a tag or digest", ErrInvalidName, s)
	}
	if reference.Domain(n) != host || reference.Path(n) != p {
		return fmt.Errorf("%w: repository %q: %q is not a registry host", ErrInvalidName, s, host)
	}
	return nil
}

// ValidateRepositoryPath checks a repository path without host (what a registry calls
// the name): path components as ValidateRepository wants them.
func ValidateRepositoryPath(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty repository path", ErrInvalidName)
	}
	if err := ValidateRepository("registry.invalid/" + p); err != nil {
		return fmt.Errorf("%w: repository path %q", ErrInvalidName, p)
	}
	return nil
}

// ValidateTag checks a tag against the distribution-spec grammar
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func ValidateTag(t string) error {
	if !tagRE.MatchString(t) {
		return fmt.Errorf("%w: tag %q", ErrInvalidName, t)
	}
	return nil
}
