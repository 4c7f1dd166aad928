package admission

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/petra-oci/petra-oci/unpack"
)

// internalRegistry is the --registry HOST[:PORT][/PREFIX], checked: Base has no
// trailing "/", Prefix is Base + "/" (what Gatekeeper matches images against).
type internalRegistry struct {
	Base   string
	Prefix string
}

// parseRegistry checks registry the way unpack checks --to and returns its base.
// Where an image lands is unpack.Destination's answer; the translation below must
// agree with it, so it is checked against Destination on a sample name.
func parseRegistry(registry string) (internalRegistry, error) {
	base := strings.TrimSuffix(registry, "/")
	if base == "" || strings.Contains(base, "://") || strings.ContainsAny(base, "*@ \t\r\n") {
		return internalRegistry{}, fmt.Errorf("%w: --registry %q: give HOST[:PORT][/PREFIX]", ErrInvalidOptions, registry)
	}
	const sample = "example.com/a/b"
	ref, err := unpack.Destination(base, sample)
	if err != nil {
		return internalRegistry{}, fmt.Errorf("%w: --registry %q: %w", ErrInvalidOptions, registry, err)
	}
	if got, want := ref.Registry+"/"+ref.Repository, base+"/a/b"; got != want {
		return internalRegistry{}, fmt.Errorf("%w: --registry %q: unpack puts %s at %s, admission would expect %s", ErrInvalidOptions, registry, sample, got, want)
	}
	return internalRegistry{Base: base, Prefix: base + "/"}, nil
}

// CheckRegistry checks --registry (HOST[:PORT][/PREFIX]) as Generate does, so that a
// caller can refuse it before any other work.
func CheckRegistry(registry string) error {
	_, err := parseRegistry(registry)
	return err
}

// destination returns where unpack puts a source repository (host/path).
func (r internalRegistry) destination(sourceRepository string) (string, error) {
	ref, err := unpack.Destination(r.Base, sourceRepository)
	if err != nil {
		return "", err
	}
	return ref.Registry + "/" + ref.Repository, nil
}

// translateGlob turns a petra image glob over source repositories (host/path) into
// the policy-controller globs that cover every place unpack puts a matching
// repository, digest reference included (policy-controller matches a glob against
// the whole reference, "repo@sha256:..."). unpack drops the source host and keeps the
// path, so the glob's host segment is dropped too; a glob whose first segment holds
// "**" spans host and path, which the destination no longer shows: it cannot be
// translated (except "**" itself, every repository). The result is never narrower
// than the petra glob: policy-controller's "*" and "**" also match the empty string,
// which only adds names the distribution grammar forbids (an empty path segment) or
// the repository the glob ends in itself.
func (r internalRegistry) translateGlob(g string) ([]string, error) {
	if g == "**" {
		return []string{r.Base + "/**"}, nil
	}
	host, path, ok := strings.Cut(g, "/")
	if !ok || path == "" {
		return nil, fmt.Errorf("glob %q has no path", g)
	}
	if strings.Contains(host, "**") {
		return nil, fmt.Errorf("glob %q: \"**\" in the host segment spans host and path, and unpack drops the source host (the destination is %s/<path>): policy-controller cannot tell where the host ended", g, r.Base)
	}
	dest := r.Base + "/" + path
	if strings.HasSuffix(path, "*") {
		// "*" ([^/]*) and "**" (.*) both take the "@sha256:<hex>" of a digest reference
		return []string{dest}, nil
	}
	// a literal last segment: the reference goes on with "@sha256:<hex>" (admission
	// sees digests only) or ":<tag>" (before tags are resolved)
	return []string{dest + "@**", dest + ":**"}, nil
}

// pcGlobRE is policy-controller's glob compilation (pkg/apis/glob.Compile, v0.13.1):
// "**" is ".*", "*" is "[^/]*", "." is literal, anchored.
func pcGlobRE(g string) (*regexp.Regexp, error) {
	if !pcValidGlob.MatchString(g) {
		return nil, fmt.Errorf("invalid policy-controller glob %q", g)
	}
	s := strings.ReplaceAll(g, ".", `\.`)
	s = strings.ReplaceAll(s, "**", "#")
	s = strings.ReplaceAll(s, "*", "[^/]*")
	s = strings.ReplaceAll(s, "#", ".*")
	return regexp.Compile("^" + s + "$")
}

var pcValidGlob = regexp.MustCompile(`^[a-zA-Z0-9-_:\/\*\.@]+$`)

// pcMatch reports whether any of globs matches the reference (repo@digest) as
// policy-controller matches it.
func pcMatch(globs []string, ref string) (bool, error) {
	for _, g := range globs {
		re, err := pcGlobRE(g)
		if err != nil {
			return false, err
		}
		if re.MatchString(ref) {
			return true, nil
		}
	}
	return false, nil
}
