package unpack

import (
	"errors"
	"strings"
	"testing"

	"github.com/petra-oci/petra-oci/oci"
)

func TestDestination(t *testing.T) {
	good := []struct{ to, src, want string }{
		{"reg.internal/mirror", "cgr.dev/shebash.io/nginx", "reg.internal/mirror/shebash.io/nginx"},
		{"reg.internal/mirror/", "cgr.dev/chainguard/nginx", "reg.internal/mirror/chainguard/nginx"},
		{"127.0.0.1:5000", "cgr.dev/chainguard/nginx", "127.0.0.1:5000/chainguard/nginx"},
	}
	for _, tc := range good {
		ref, err := Destination(tc.to, tc.src)
		if err != nil {
			t.Errorf("Destination(%q, %q): %v", tc.to, tc.src, err)
			continue
		}
		if got := ref.Registry + "/" + ref.Repository; got != tc.want {
			t.Errorf("Destination(%q, %q) = %s, want %s", tc.to, tc.src, got, tc.want)
		}
	}
	bad := []struct{ to, src string }{
		{"reg/pfx/team", "cgr.dev/../esc"},
		{"reg/pfx/team", "cgr.dev/a/../../../esc"},
		{"reg/pfx/team", "cgr.dev/./x"},
		{"reg/pfx/team", "cgr.dev//x"},
		{"reg/pfx/team", "cgr.dev/Upper"},
		{"reg/pfx/team", "cgr.dev"},
		{"reg/../x", "cgr.dev/a/b"},
		{"reg/Pfx", "cgr.dev/a/b"},
		{"/pfx", "cgr.dev/a/b"},
		{"reg/pfx", "cgr.dev/" + strings.Repeat("a", 250)},
	}
	for _, tc := range bad {
		if ref, err := Destination(tc.to, tc.src); !errors.Is(err, oci.ErrInvalidName) {
			t.Errorf("Destination(%q, %q) = %v, %v; want ErrInvalidName", tc.to, tc.src, ref, err)
		}
	}
}
