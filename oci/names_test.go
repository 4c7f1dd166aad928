package oci

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateRepository(t *testing.T) {
	good := []string{"cgr.dev/chainguard/nginx", "127.0.0.1:5000/a/b", "localhost:5000/x", "reg.internal/a_b/c__d/e-f/g.h", "cgr.dev/shebash.io/nginx"}
	for _, s := range good {
		if err := ValidateRepository(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	bad := []string{
		"", "cgr.dev", "cgr.dev/", "/nginx", "cgr.dev/../esc", "cgr.dev/a/../../esc", "cgr.dev/a/./b", "cgr.dev/a//b",
		"cgr.dev/Upper", "cgr.dev/a/", "cgr.dev/a:tag", "cgr.dev/a@sha256:" + strings.Repeat("0", 64),
		"cgr.dev/a b", "cgr.dev/-a", "cgr.dev/a-", "cgr.dev/a..b", "cgr.dev/a___b", "cgr.dev/" + strings.Repeat("a", 250),
		"bad host!/a", "cgr.dev/a\n", "cgr.dev/%2e%2e",
	}
	for _, s := range bad {
		if err := ValidateRepository(s); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: err = %v, want ErrInvalidName", s, err)
		}
	}
}

func TestValidateRepositoryPath(t *testing.T) {
	if err := ValidateRepositoryPath("mirror/team"); err != nil {
		t.Error(err)
	}
	for _, p := range []string{"", "..", "a/..", "/a", "a/", "A"} {
		if err := ValidateRepositoryPath(p); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: err = %v", p, err)
		}
	}
}

func TestValidateTag(t *testing.T) {
	for _, s := range []string{"latest", "1.27", "sha256-" + strings.Repeat("a", 64) + ".sig", "_x", strings.Repeat("a", 128)} {
		if err := ValidateTag(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"", ".x", "-x", "a/b", "a:b", "a b", strings.Repeat("a", 129), "../x"} {
		if err := ValidateTag(s); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: err = %v", s, err)
		}
	}
}
