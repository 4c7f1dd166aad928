package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/evidence"
	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/signing"
	"github.com/petra-oci/petra-oci/unpack"
)

// TestExitCodes: every sentinel of the table maps to its code when wrapped the way the
// library wraps errors (one or two %w levels, joined with another error), and the
// precedence the table relies on holds.
func TestExitCodes(t *testing.T) {
	seen := map[error]bool{}
	for _, e := range exitCodes {
		if seen[e.err] {
			t.Errorf("%v listed twice", e.err)
		}
		seen[e.err] = true
		for name, err := range map[string]error{
			"bare":    e.err,
			"wrapped": fmt.Errorf("unpack %s: %w", "bundle", e.err),
			"twice":   fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", e.err)),
			"joined":  errors.Join(errors.New("cleanup failed"), fmt.Errorf("x: %w", e.err)),
		} {
			if got := exitCode(err); got != e.code {
				t.Errorf("%s %v: exit %d, want %d", name, e.err, got, e.code)
			}
		}
	}
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"unknown error", errors.New("disk on fire"), exitFailure},
		{"cli.Exit keeps its own code", cli.Exit("bad flag", exitUsage), exitUsage},
		{"cli.Exit wrapped", fmt.Errorf("x: %w", cli.Exit("nope", exitRollback)), exitRollback},
		// a missing summary wraps why each candidate failed (a bad signature among them):
		// the refusal is still --require-evidence's
		{"no evidence wraps a signature error", fmt.Errorf("%w: %w", evidence.ErrNoEvidence, imageverify.ErrNoValidSignature), exitNoEvidence},
		{"no evidence wraps invalid options", fmt.Errorf("%w: %w", evidence.ErrNoEvidence, signing.ErrInvalidOptions), exitNoEvidence},
		{"file error kind", &layout.FileError{Path: "blobs/sha256/ab", Kind: layout.ErrFileChanged}, exitFileChanged},
		{"delta coverage", &layout.FileError{Path: "blobs/sha256/ab", Kind: layout.ErrDelta}, exitDelta},
		{"sparse index", fmt.Errorf("bundle: %w", &unpack.SparseIndexError{Indexes: []unpack.SparseIndex{{Repository: "cgr.dev/chainguard/nginx"}}}), exitSparseIndex},
		// a signature that could not be read is undecided, not refused
		{"gave up inside a policy refusal", fmt.Errorf("%w; refused: %w", imageverify.ErrNoValidSignature, &remote.GaveUpError{Attempts: 3, Err: errors.New("503")}), exitGaveUp},
	}
	for _, c := range cases {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("%s: exit %d, want %d", c.name, got, c.want)
		}
	}
}

// TestExitCodesDocumented: every code the command line can return is a row of the exit
// table in docs/bundle-format.md, and the table lists no code the command cannot return.
func TestExitCodesDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/bundle-format.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[int]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \|`).FindAllSubmatch(b, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		documented[n] = true
	}
	codes := map[int]bool{0: true, exitFailure: true, exitUsage: true, exitInterrupted: true}
	for _, e := range exitCodes {
		codes[e.code] = true
	}
	for c := range codes {
		if !documented[c] {
			t.Errorf("exit %d is not in the exit table of docs/bundle-format.md", c)
		}
	}
	for c := range documented {
		if !codes[c] {
			t.Errorf("docs/bundle-format.md lists exit %d, which no error maps to", c)
		}
	}
}
