package conformance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/petra-oci/petra-oci/internal/registrytest"
)

// TestServeContainerdMirror: containerd pulls an image from `petra-oci serve` as a
// mirror of the internal registry name, configured the way nodes are (a hosts.toml
// under a hosts directory), by tag and by digest, with the source digest, and unpacks
// it for the host platform. The internal registry host does not exist: every byte comes
// through the mirror.
func TestServeContainerdMirror(t *testing.T) {
	e := newEnv(t)
	keys := newBundleKeys(t)
	img, dir := packFixture(t, e, keys, registrytest.Olareg, 33)
	s := startServe(t, e, keys, dir, "--prefix", "mirror")
	ctrd := startContainerd(t)

	const internal = "reg.internal.invalid" // .invalid never resolves (RFC 2606)
	hosts := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(hosts, internal), 0o755))
	writeFile(t, filepath.Join(hosts, internal, "hosts.toml"), []byte(`server = "https://`+internal+`"

[host."http://`+s.host+`"]
  capabilities = ["pull", "resolve"]
`))
	name := internal + "/mirror/" + interopRepo
	idx := img.Index.Digest.String()

	for _, ref := range []string{name + ":" + img.Tag, name + "@" + idx} {
		out, err := ctrd.ctr(t, "-n", k8sNamespace, "images", "pull", "--hosts-dir", hosts, ref)
		if err != nil {
			t.Fatalf("ctr images pull %s through the serve mirror: %v\n%s\ncontainerd log:\n%s", ref, err, out, tail(ctrd.Log(), 40))
		}
	}
	got := map[string]string{}
	for _, im := range ctrd.images(t, k8sNamespace) {
		got[im.Name] = im.Digest
	}
	want := map[string]string{name + ":" + img.Tag: idx, name + "@" + idx: idx}
	if !mapsEqual(got, want) {
		t.Errorf("containerd images after the pulls:\n got  %v\n want %v", got, want)
	}
	assertUnpacked(t, ctrd, want)

	// every request reached serve, under the served repository
	if log := s.p.stderr.String(); !strings.Contains(log, "/v2/mirror/"+interopRepo+"/manifests/") || !strings.Contains(log, "/blobs/") {
		t.Errorf("serve's access log shows no manifest and blob pulls of mirror/%s:\n%s", interopRepo, tail(log, 30))
	}
}
