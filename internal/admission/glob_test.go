package admission

import (
	"strings"
	"testing"
)

func TestTranslateGlob(t *testing.T) {
	reg, err := parseRegistry("reg.internal:5000/mirror/")
	if err != nil {
		t.Fatal(err)
	}
	if reg.Base != "reg.internal:5000/mirror" || reg.Prefix != "reg.internal:5000/mirror/" {
		t.Fatalf("%+v", reg)
	}
	const d = "@sha256:8a48abbd5535a6de051dd167111e33abe996ddc7091aeac8808ae2c335d505ce"
	for _, c := range []struct {
		glob    string
		want    string
		match   []string // source repositories the petra glob matches: their destinations must match
		noMatch []string // destinations the policy must not cover
	}{
		{"**", "reg.internal:5000/mirror/**", []string{"cgr.dev/chainguard/nginx", "a.b/c"}, []string{"reg.internal:5000/other/x"}},
		{"cgr.dev/chainguard/**", "reg.internal:5000/mirror/chainguard/**", []string{"cgr.dev/chainguard/nginx", "cgr.dev/chainguard/a/b"},
			[]string{"reg.internal:5000/mirror/chainguardx/nginx", "reg.internal:5000/mirror/other/nginx", "reg.internal:5000/chainguard/nginx"}},
		{"cgr.dev/chainguard/*", "reg.internal:5000/mirror/chainguard/*", []string{"cgr.dev/chainguard/nginx"},
			[]string{"reg.internal:5000/mirror/chainguard/a/b"}},
		{"*.example/team/**", "reg.internal:5000/mirror/team/**", []string{"a.example/team/app"}, nil},
		{"cgr.dev/chainguard/nginx", "reg.internal:5000/mirror/chainguard/nginx@**,reg.internal:5000/mirror/chainguard/nginx:**", []string{"cgr.dev/chainguard/nginx"},
			[]string{"reg.internal:5000/mirror/chainguard/nginx-evil", "reg.internal:5000/mirror/chainguard/nginx/x"}},
		{"registry.example/**/base", "reg.internal:5000/mirror/**/base@**,reg.internal:5000/mirror/**/base:**", []string{"registry.example/a/b/base"},
			[]string{"reg.internal:5000/mirror/a/basement"}},
	} {
		got, err := reg.translateGlob(c.glob)
		if err != nil {
			t.Errorf("%s: %v", c.glob, err)
			continue
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("%s: %v, want %s", c.glob, got, c.want)
		}
		for _, src := range c.match {
			dest, err := reg.destination(src)
			if err != nil {
				t.Fatal(err)
			}
			if m, err := pcMatch(got, dest+d); err != nil || !m {
				t.Errorf("%s: %v miss %s%s (%v)", c.glob, got, dest, d, err)
			}
		}
		for _, dest := range c.noMatch {
			if m, _ := pcMatch(got, dest+d); m {
				t.Errorf("%s: %v cover %s%s", c.glob, got, dest, d)
			}
		}
	}
	for _, g := range []string{"**/base", "reg**/x", "host/"} {
		if _, err := reg.translateGlob(g); err == nil {
			t.Errorf("%s translated", g)
		}
	}
}

func TestParseRegistry(t *testing.T) {
	for _, ok := range []string{"reg.internal", "reg.internal/", "reg.internal:5000", "reg.internal/a/b", "127.0.0.1:5000/mirror"} {
		if _, err := parseRegistry(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/", "https://reg.internal", "reg.internal/*", "reg.internal/a@b", "reg.internal/../a", "reg.internal//a", "reg.internal/A"} {
		if _, err := parseRegistry(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
