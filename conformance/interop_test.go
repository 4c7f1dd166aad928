package conformance

// The interop suite drives the real petra-oci CLI (built by TestMain) and the real
// peer tools (oras, regctl, skopeo, crane, cosign) against Chainguard-shaped fixture
// images on loopback registries. Olareg serves the referrers API; distribution does
// not, so clients fall back to the referrers tag schema there.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/schema"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/inspect"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/unpack"
)

const (
	interopRepo = "chainguard/nginx"
	interopTag  = "1.27"
)

// bundleKeys is a cosign key pair for bundles: pack signs with priv (cosign's
// encrypted format, empty password), unpack and verify check with pub.
type bundleKeys struct{ priv, pub string }

func newBundleKeys(t *testing.T) bundleKeys {
	t.Helper()
	_, pubPEM, privPEM := fixture.KeyPair(t)
	d := t.TempDir()
	return bundleKeys{priv: writeFile(t, filepath.Join(d, "bundle.key"), privPEM), pub: writeFile(t, filepath.Join(d, "bundle.pub"), pubPEM)}
}

// packCLI packs ref into a fresh bundle signed with keys, with `petra-oci pack --output json`.
func packCLI(t *testing.T, e *env, keys bundleKeys, ref string, extra ...string) (string, pack.Result) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	// no SBOMs unless asked: the referrer trees compared here are the fixture's
	args := append([]string{"pack", "--image", ref, "-o", dir, "--plain-http", "--key", keys.priv, "--output", "json", "--sbom=false"}, extra...)
	var res pack.Result
	decodeJSON(t, e.petra(args...), &res)
	if !res.Signed || res.BundleID == "" {
		t.Fatalf("pack --key: result says signed=%v, bundle %q", res.Signed, res.BundleID)
	}
	return dir, res
}

// unpackArgs is the command line of an unpack of dir to `to` that verifies the
// bundle with keys first. Flags go before DIR (urfave/cli v2 stops parsing flags
// at the first argument).
func unpackArgs(keys bundleKeys, to, dir string, extra ...string) []string {
	args := append([]string{"unpack", "--to", to, "--plain-http", "--key", keys.pub}, extra...)
	return append(args, dir)
}

// packFixture pushes a Chainguard-shaped fixture to a fresh registry of kind k, packs
// it with the CLI into a bundle signed with keys and checks the CLI's JSON result.
func packFixture(t *testing.T, e *env, keys bundleKeys, k registrytest.Kind, seed int64) (*fixture.Image, string) {
	t.Helper()
	src := registrytest.Start(t, k)
	img := fixture.Chainguard(context.Background(), t, src.Host, interopRepo, interopTag, fixture.Options{Seed: seed})
	dir, res := packCLI(t, e, keys, img.Repo+":"+img.Tag)
	if len(res.Images) != 1 || res.Images[0].Digest != img.Index.Digest || res.Images[0].Repository != img.Repo || res.Images[0].Tag != img.Tag {
		t.Fatalf("pack --output json images = %+v, want %s:%s at %s", res.Images, img.Repo, img.Tag, img.Index.Digest)
	}
	if got := res.Images[0].Platforms; !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("pack --output json platforms = %v", got)
	}
	return img, dir
}

// referrerTree maps a subject digest to the referrers a tool reported for it, with
// the artifactType the tool reported.
type referrerTree map[digest.Digest][]ocispec.Descriptor

// wantTree is the part of the fixture's referrer graph reachable from subjects.
func wantTree(img *fixture.Image, subjects ...digest.Digest) referrerTree {
	out := referrerTree{}
	queue := slices.Clone(subjects)
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if _, done := out[s]; done {
			continue
		}
		out[s] = img.Referrers[s]
		for _, r := range img.Referrers[s] {
			queue = append(queue, r.Digest)
		}
	}
	return out
}

// assertTree checks that got lists exactly the referrers of want, subject by
// subject, with the same artifactType.
func assertTree(t *testing.T, tool string, got, want referrerTree) {
	t.Helper()
	for s, ws := range want {
		gs, ok := got[s]
		if !ok {
			t.Errorf("%s: subject %s not shown at all (got %v)", tool, s, got)
			continue
		}
		if len(gs) != len(ws) {
			t.Errorf("%s: %s has %d referrers %v, want %d %v", tool, s, len(gs), gs, len(ws), ws)
		}
		for _, w := range ws {
			if !hasReferrer(gs, w) {
				t.Errorf("%s: referrer %s (%s) of %s missing; got %v", tool, w.Digest, w.ArtifactType, s, gs)
			}
		}
	}
	for s, gs := range got {
		if _, ok := want[s]; !ok && len(gs) > 0 {
			t.Errorf("%s: unexpected referrers of %s: %v", tool, s, gs)
		}
	}
}

// orasNode is a node of `oras discover --format json`.
type orasNode struct {
	Digest       digest.Digest `json:"digest"`
	MediaType    string        `json:"mediaType"`
	ArtifactType string        `json:"artifactType"`
	Referrers    []orasNode    `json:"referrers"`
}

func (n orasNode) tree() referrerTree {
	out := referrerTree{}
	var walk func(n orasNode)
	walk = func(n orasNode) {
		out[n.Digest] = []ocispec.Descriptor{}
		for _, r := range n.Referrers {
			out[n.Digest] = append(out[n.Digest], ocispec.Descriptor{MediaType: r.MediaType, Digest: r.Digest, ArtifactType: r.ArtifactType})
			walk(r)
		}
	}
	walk(n)
	return out
}

// orasDiscover runs `oras discover --format json` with args and returns the tree.
func orasDiscover(t *testing.T, e *env, args ...string) (orasNode, referrerTree) {
	t.Helper()
	var n orasNode
	decodeJSON(t, e.tool("oras", append([]string{"discover", "--no-tty", "--format", "json"}, args...)...), &n)
	return n, n.tree()
}

// regctlNode is a node of `regctl artifact tree --format '{{json .}}'`.
type regctlNode struct {
	Reference struct {
		Digest digest.Digest `json:"Digest"`
	} `json:"reference"`
	Manifest struct {
		MediaType    string `json:"mediaType"`
		ArtifactType string `json:"artifactType"`
	} `json:"manifest"`
	ArtifactType string            `json:"artifactType"`
	Platform     *ocispec.Platform `json:"platform"`
	Child        []regctlNode      `json:"child"`
	Referrer     []regctlNode      `json:"referrer"`
}

// tree returns the referrers regctl showed for the root, its children and every
// referrer, and the children it showed with their platforms.
func (n regctlNode) tree() (referrerTree, map[string]digest.Digest) {
	out := referrerTree{}
	children := map[string]digest.Digest{}
	var walk func(n regctlNode)
	walk = func(n regctlNode) {
		out[n.Reference.Digest] = []ocispec.Descriptor{}
		for _, r := range n.Referrer {
			out[n.Reference.Digest] = append(out[n.Reference.Digest], ocispec.Descriptor{MediaType: r.Manifest.MediaType, Digest: r.Reference.Digest, ArtifactType: r.ArtifactType})
			walk(r)
		}
		for _, c := range n.Child {
			children[oci.PlatformString(c.Platform)] = c.Reference.Digest
			walk(c)
		}
	}
	walk(n)
	return out, children
}

func regctlTree(t *testing.T, e *env, ref string) (referrerTree, map[string]digest.Digest) {
	t.Helper()
	var n regctlNode
	decodeJSON(t, e.tool("regctl", "artifact", "tree", "--format", "{{json .}}", ref), &n)
	if n.Reference.Digest == "" {
		t.Fatalf("regctl artifact tree %s: no root digest in its output", ref)
	}
	return n.tree()
}

// assertRegctlSeesFixture checks a regctl tree of the fixture's index: both children
// with their platforms, and every referrer of the index, the children and the SBOM.
func assertRegctlSeesFixture(t *testing.T, e *env, ref string, img *fixture.Image) {
	t.Helper()
	got, children := regctlTree(t, e, ref)
	want := map[string]digest.Digest{}
	for p, d := range img.Children {
		want[p] = d.Digest
	}
	if !mapsEqual(children, want) {
		t.Errorf("regctl artifact tree %s: children %v, want %v", ref, children, want)
	}
	var subjects []digest.Digest
	subjects = append(subjects, img.Index.Digest)
	for _, c := range img.Children {
		subjects = append(subjects, c.Digest)
	}
	assertTree(t, "regctl artifact tree "+ref, got, wantTree(img, subjects...))
}

func mapsEqual[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestInteropLayout packs a fixture with the CLI, from a registry with the referrers
// API (olareg) and from one without (distribution), and has the peer tools read the
// bundle: oras (discover, copy -r), regctl (artifact tree on ocidir://), skopeo (copy
// from oci:), the image-spec JSON schemas, and petra-oci inspect.
func TestInteropLayout(t *testing.T) {
	t.Parallel()
	for _, k := range []registrytest.Kind{registrytest.Olareg, registrytest.Distribution} {
		t.Run("from-"+string(k), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			keys := newBundleKeys(t)
			img, dir := packFixture(t, e, keys, k, 21)
			// copies go to the other kind of registry
			dstKind := registrytest.Distribution
			if k == registrytest.Distribution {
				dstKind = registrytest.Olareg
			}
			dst := registrytest.Start(t, dstKind)

			// the tools run in parallel; the group ends when all of them have
			t.Run("tools", func(t *testing.T) { layoutTools(t, img, dir, dst) })

			// the peer tools only read: the bundle still verifies, every file unchanged
			// and nothing added
			r := e.petra("verify", "--key", keys.pub, "--output", "json", dir)
			var rep struct {
				BundleID string `json:"bundleID"`
			}
			decodeJSON(t, r, &rep)
			if rep.BundleID == "" {
				t.Errorf("petra-oci verify after the tools: no bundle id in %s", r)
			}
		})
	}
}

// layoutTools has oras, regctl, skopeo, the image-spec schemas and petra-oci inspect
// read the bundle at dir, packed from img; copies go to dst.
func layoutTools(t *testing.T, img *fixture.Image, dir string, dst *registrytest.Registry) {
	idx := img.Index.Digest
	amd, arm := img.Children["linux/amd64"].Digest, img.Children["linux/arm64"].Digest
	refName := img.Repo + ":" + img.Tag // org.opencontainers.image.ref.name of the image

	t.Run("oras-discover", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		// the index, by digest: the Sigstore bundle referrer
		root, got := orasDiscover(t, e, "--oci-layout", dir+"@"+idx.String())
		if root.Digest != idx {
			t.Errorf("oras discover resolved %s, want %s", root.Digest, idx)
		}
		assertTree(t, "oras discover index", got, wantTree(img, idx))
		// the index by its ref.name, as oras addresses tags in a layout
		_, got = orasDiscover(t, e, "--oci-layout-path", dir, refName)
		assertTree(t, "oras discover "+refName, got, wantTree(img, idx))
		// the amd64 child by digest: the SBOM and, nested, the SBOM's signature
		root, got = orasDiscover(t, e, "--oci-layout", dir+"@"+amd.String())
		if root.Digest != amd {
			t.Errorf("oras discover resolved %s, want %s", root.Digest, amd)
		}
		assertTree(t, "oras discover amd64", got, wantTree(img, amd))
		if len(got[img.SBOM.Digest]) != 1 {
			t.Errorf("oras discover did not show the SBOM's nested signature: %v", got)
		}
		// the same through the index with --platform
		root, got = orasDiscover(t, e, "--oci-layout", "--platform", "linux/amd64", dir+"@"+idx.String())
		if root.Digest != amd {
			t.Errorf("oras discover --platform linux/amd64 resolved %s, want %s", root.Digest, amd)
		}
		assertTree(t, "oras discover --platform linux/amd64", got, wantTree(img, amd))
		// arm64 has nothing attached but cosign tags, which are not referrers
		_, got = orasDiscover(t, e, "--oci-layout", dir+"@"+arm.String())
		assertTree(t, "oras discover arm64", got, referrerTree{arm: nil})
	})

	t.Run("oras-copy", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		to := dst.Host + "/oras/nginx:" + img.Tag
		e.tool("oras", "copy", "-r", "--no-tty", "--from-oci-layout", dir+"@"+idx.String(), "--to-plain-http", to)
		repo := dst.Repository(t, "oras/nginx")
		ctx := context.Background()
		if got, err := repo.Resolve(ctx, img.Tag); err != nil || got.Digest != idx {
			t.Fatalf("after oras copy -r, %s is %v (%v), want %s", to, got.Digest, err, idx)
		}
		for subject, want := range img.Referrers {
			var found []ocispec.Descriptor
			if err := repo.Referrers(ctx, ocispec.Descriptor{Digest: subject}, "", func(p []ocispec.Descriptor) error {
				found = append(found, p...)
				return nil
			}); err != nil {
				t.Fatalf("referrers of %s after oras copy -r: %v", subject, err)
			}
			for _, w := range want {
				if !hasReferrer(found, w) {
					t.Errorf("oras copy -r did not carry referrer %s (%s) of %s; found %v", w.Digest, w.ArtifactType, subject, found)
				}
			}
		}
		for _, c := range img.Children {
			if ok, err := repo.Exists(ctx, c); err != nil || !ok {
				t.Errorf("oras copy -r did not carry child %s: %v", c.Digest, err)
			}
		}
	})

	t.Run("regctl-tree", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		// The layout interop trap: regctl finds referrers in a layout only through
		// the referrers tag schema index tagged sha256-<hex>; oras through the
		// manifests index.json lists. The bundle carries both; both tools see all.
		assertRegctlSeesFixture(t, e, "ocidir://"+dir+"@"+idx.String(), img)
		got, _ := regctlTree(t, e, "ocidir://"+dir+"@"+amd.String())
		assertTree(t, "regctl artifact tree amd64", got, wantTree(img, amd))
		// the pretty default output names the referrers too
		out := e.tool("regctl", "artifact", "tree", "ocidir://"+dir+"@"+idx.String()).stdout
		for _, d := range []digest.Digest{img.Referrers[idx][0].Digest, img.SBOM.Digest, img.SBOMSignature.Digest} {
			if !strings.Contains(out, d.String()) {
				t.Errorf("regctl artifact tree output lacks %s:\n%s", d, out)
			}
		}

		// Control: without the referrers tag schema indexes regctl sees no
		// referrers while oras still does, so each form is what one tool reads.
		stripped := copyLayoutWithout(t, dir, oci.KindReferrersIndex)
		got, _ = regctlTree(t, e, "ocidir://"+stripped+"@"+idx.String())
		for s, rs := range got {
			if len(rs) > 0 {
				t.Errorf("control: regctl found referrers of %s without the sha256-<hex> indexes: %v", s, rs)
			}
		}
		_, ograph := orasDiscover(t, e, "--oci-layout", stripped+"@"+idx.String())
		assertTree(t, "control: oras discover without referrers indexes", ograph, wantTree(img, idx))
	})

	t.Run("skopeo-copy", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		to := dst.Host + "/skopeo/nginx:" + img.Tag
		e.tool("skopeo", "--policy", filepath.Join(e.home, "policy.json"), "--registries.d", filepath.Join(e.home, "registries.d"),
			"copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
			"oci:"+dir+":"+refName, "docker://"+to)
		if got := strings.TrimSpace(e.tool("crane", "digest", "--insecure", to).stdout); got != idx.String() {
			t.Errorf("skopeo copy: %s has digest %s, want %s", to, got, idx)
		}
		for p, c := range img.Children {
			assertCraneManifest(t, e, dst.Host+"/skopeo/nginx", c.Digest, p)
		}
	})

	t.Run("schemas", func(t *testing.T) {
		t.Parallel()
		n := validateLayoutSchemas(t, dir)
		// 12 fixture manifests and one referrers tag schema index per subject with
		// referrers (index, amd64 child, SBOM)
		if want := len(img.AllManifests) + len(img.Referrers); n != want {
			t.Errorf("validated %d manifests and indexes, want %d", n, want)
		}
		// control: the validators do refuse a broken document
		b, err := os.ReadFile(filepath.Join(dir, "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		broken := bytes.Replace(b, []byte(`"digest": "sha256:`), []byte(`"digest": "`), 1)
		if bytes.Equal(broken, b) {
			t.Fatalf("control: index.json has no digest to break:\n%s", b)
		}
		if err := schema.ValidatorMediaTypeImageIndex.Validate(bytes.NewReader(broken)); err == nil {
			t.Errorf("control: the index schema accepted a digest without an algorithm")
		}
		if err := schema.ValidatorMediaTypeLayoutHeader.Validate(strings.NewReader(`{"imageLayoutVersion":1}`)); err == nil {
			t.Errorf("control: the oci-layout schema accepted a number for imageLayoutVersion")
		}
	})

	t.Run("inspect", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		var rep inspect.Report
		decodeJSON(t, e.petra("inspect", "--output", "json", dir), &rep)
		assertInspectTree(t, rep, img)
		text := e.petra("inspect", dir).stdout
		for _, s := range []string{refName, "linux/amd64", "linux/arm64", img.SBOMSignature.Digest.String(), fixture.PredicateSLSAProvenance1} {
			if !strings.Contains(text, s) {
				t.Errorf("inspect text output lacks %q:\n%s", s, text)
			}
		}
	})
}

// copyLayoutWithout copies the layout at dir (blobs hard-linked) with the index.json
// entries of kind dropped.
func copyLayoutWithout(t *testing.T, dir string, kind oci.Kind) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "stripped")
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(filepath.Join(out, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(blobs)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if err := os.Link(filepath.Join(blobs, en.Name()), filepath.Join(out, "blobs", "sha256", en.Name())); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(out, "oci-layout"), b)
	var idx ocispec.Index
	b, err = os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	n := len(idx.Manifests)
	idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool { return d.Annotations[oci.AnnotationKind] == string(kind) })
	if len(idx.Manifests) == n {
		t.Fatalf("the bundle has no %s entries to drop", kind)
	}
	b, err = json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(out, "index.json"), b)
	return out
}

// assertCraneManifest fetches repo@d with crane and checks the bytes hash to d.
func assertCraneManifest(t *testing.T, e *env, repo string, d digest.Digest, what string) {
	t.Helper()
	r := e.run(registrytest.ToolPath(t, "crane"), "manifest", "--insecure", repo+"@"+d.String())
	if r.err != nil {
		t.Errorf("%s %s missing at %s: %s", what, d, repo, r)
		return
	}
	if got := sha256.Sum256([]byte(r.stdout)); "sha256:"+hex.EncodeToString(got[:]) != d.String() {
		t.Errorf("crane manifest %s@%s returned bytes that hash to sha256:%x", repo, d, got)
	}
}

// validateLayoutSchemas validates oci-layout, index.json and every manifest and index
// reachable from index.json against the image-spec v1.1.1 JSON schemas (and image
// configs against the config schema), checking every blob hashes to its name on the
// way. It returns the number of manifests and indexes validated.
func validateLayoutSchemas(t *testing.T, dir string) int {
	t.Helper()
	validate := func(v schema.Validator, what string, b []byte) {
		t.Helper()
		if err := v.Validate(bytes.NewReader(b)); err != nil {
			t.Errorf("%s does not validate against the %s schema: %v\n%s", what, string(v), err, b)
		}
	}
	read := func(rel string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	validate(schema.ValidatorMediaTypeLayoutHeader, "oci-layout", read("oci-layout"))
	indexJSON := read("index.json")
	validate(schema.ValidatorMediaTypeImageIndex, "index.json", indexJSON)

	var idx ocispec.Index
	if err := json.Unmarshal(indexJSON, &idx); err != nil {
		t.Fatal(err)
	}
	blob := func(d ocispec.Descriptor) []byte {
		t.Helper()
		b := read(filepath.Join("blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
		if digest.FromBytes(b) != d.Digest || int64(len(b)) != d.Size {
			t.Fatalf("blob %s (%d bytes) does not match its descriptor (%d bytes)", d.Digest, len(b), d.Size)
		}
		return b
	}
	seen := map[digest.Digest]bool{}
	queue := slices.Clone(idx.Manifests)
	n := 0
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		b := blob(d)
		switch d.MediaType {
		case ocispec.MediaTypeImageIndex:
			validate(schema.ValidatorMediaTypeImageIndex, "index "+d.Digest.String(), b)
			var child ocispec.Index
			if err := json.Unmarshal(b, &child); err != nil {
				t.Fatal(err)
			}
			queue = append(queue, child.Manifests...)
		case ocispec.MediaTypeImageManifest:
			validate(schema.ValidatorMediaTypeManifest, "manifest "+d.Digest.String(), b)
			var m ocispec.Manifest
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if m.Config.MediaType == ocispec.MediaTypeImageConfig && !seen[m.Config.Digest] {
				seen[m.Config.Digest] = true
				validate(schema.ValidatorMediaTypeImageConfig, "config "+m.Config.Digest.String(), blob(m.Config))
			}
			for _, l := range m.Layers {
				if !seen[l.Digest] {
					seen[l.Digest] = true
					blob(l)
				}
			}
		default:
			t.Errorf("unexpected media type %s for %s in the bundle", d.MediaType, d.Digest)
			continue
		}
		n++
	}
	return n
}

// assertInspectTree checks `petra-oci inspect --output json` against the fixture:
// one image, two platforms, the cosign .sig/.att and the Sigstore bundle referrer on
// the index, .sig/.att on each child, the SBOM on amd64 and its nested signature.
func assertInspectTree(t *testing.T, rep inspect.Report, img *fixture.Image) {
	t.Helper()
	if len(rep.Images) != 1 {
		t.Fatalf("inspect shows %d images, want 1: %+v", len(rep.Images), rep)
	}
	im := rep.Images[0]
	if im.Name != img.Repo+":"+img.Tag || im.Digest != img.Index.Digest || im.MediaType != ocispec.MediaTypeImageIndex {
		t.Errorf("inspect image = %s %s %s", im.Name, im.Digest, im.MediaType)
	}
	checkAttachments := func(where string, subject digest.Digest, got []inspect.Artifact) {
		t.Helper()
		want := map[digest.Digest]oci.Kind{
			img.Signatures[subject].Digest:   oci.KindCosignSig,
			img.Attestations[subject].Digest: oci.KindCosignAtt,
		}
		for _, r := range img.Referrers[subject] {
			want[r.Digest] = oci.KindReferrer
		}
		if len(got) != len(want) {
			t.Errorf("inspect: %s has %d attachments, want %d: %+v", where, len(got), len(want), got)
		}
		for _, a := range got {
			k, ok := want[a.Digest]
			if !ok || a.Kind != k {
				t.Errorf("inspect: %s shows %s %s, not attached in the fixture (want %v)", where, a.Kind, a.Digest, want)
				continue
			}
			switch a.Kind {
			case oci.KindCosignSig:
				if a.Tag != oci.CosignTag(subject, ".sig") {
					t.Errorf("inspect: %s .sig tag %q", where, a.Tag)
				}
			case oci.KindCosignAtt:
				if !slices.Equal(a.PredicateTypes, []string{fixture.PredicateSPDX, fixture.PredicateSLSAProvenance1}) {
					t.Errorf("inspect: %s .att predicate types %v", where, a.PredicateTypes)
				}
			case oci.KindReferrer:
				for _, r := range img.Referrers[subject] {
					if r.Digest == a.Digest && (a.ArtifactType != r.ArtifactType || a.Size != r.Size) {
						t.Errorf("inspect: %s referrer %s is %s (%d bytes), want %s (%d bytes)", where, a.Digest, a.ArtifactType, a.Size, r.ArtifactType, r.Size)
					}
				}
				// what is attached to the referrer, recursively (the SBOM's signature)
				var nested []digest.Digest
				for _, n := range a.Attachments {
					nested = append(nested, n.Digest)
				}
				var wantNested []digest.Digest
				for _, n := range img.Referrers[a.Digest] {
					wantNested = append(wantNested, n.Digest)
				}
				if !slices.Equal(nested, wantNested) {
					t.Errorf("inspect: %s referrer %s has attachments %v, want %v", where, a.Digest, nested, wantNested)
				}
			}
		}
	}
	checkAttachments("the index", img.Index.Digest, im.Attachments)
	if len(im.Platforms) != len(img.Children) {
		t.Fatalf("inspect shows %d platforms, want %d: %+v", len(im.Platforms), len(img.Children), im.Platforms)
	}
	for _, p := range im.Platforms {
		c, ok := img.Children[p.Platform]
		if !ok || c.Digest != p.Digest {
			t.Errorf("inspect platform %s %s, fixture has %v", p.Platform, p.Digest, img.Children)
			continue
		}
		checkAttachments(p.Platform, c.Digest, p.Attachments)
	}
	// the SBOM's signature is in the tree, below the SBOM on amd64
	found := false
	for _, p := range im.Platforms {
		for _, a := range p.Attachments {
			for _, n := range a.Attachments {
				found = found || (a.Digest == img.SBOM.Digest && n.Digest == img.SBOMSignature.Digest && n.Kind == oci.KindReferrer)
			}
		}
	}
	if !found {
		t.Errorf("inspect does not show the SBOM signature %s below the SBOM %s", img.SBOMSignature.Digest, img.SBOM.Digest)
	}
}

// Markers in cosign verify's output of which artifact it verified.
const (
	cosignLegacyMarker = `"type":"cosign container image signature"`         // a .sig simple-signing payload
	cosignBundleMarker = `"type":"` + fixture.PredicateSLSAProvenance1 + `"` // the bundle referrer on the index
	cosignInTotoMarker = `"payloadType":"application/vnd.in-toto+json"`      // a DSSE envelope of an .att
)

// cosignCase is one cosign verify or verify-attestation run and what it must do.
type cosignCase struct {
	cmd, key, ref string
	extra         []string
	pass          bool
	marker        string // must appear in the output of a passing run
}

// runCosign runs the cases with cosign v2.6.5 and v3.1.3 (cosign3), two at a time
// (cosign's start-up dominates), offline and over plain HTTP: the fixture signs with
// a key and no transparency log. The trusted root is the shared public-good one;
// cosign 2.6.5 insists on one as soon as the subject has a Sigstore bundle referrer
// (and would fetch it from TUF), but signatures are checked against --key either way.
func runCosign(t *testing.T, e *env, cases ...cosignCase) {
	t.Helper()
	bins := []string{registrytest.ToolPath(t, "cosign"), registrytest.ToolPath(t, "cosign3")}
	trustedRoot := filepath.Join(fixture.SharedTestdata(t), "sigstore-public-good", "trusted_root.json")
	results := make([]result, len(cases)*len(bins))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i := range results {
		c, bin := cases[i%len(cases)], bins[i/len(cases)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			args := append([]string{c.cmd, "--key", c.key, "--insecure-ignore-tlog=true",
				"--allow-http-registry", "--allow-insecure-registry", "--trusted-root", trustedRoot}, c.extra...)
			results[i] = e.run(bin, append(args, c.ref)...)
		}()
	}
	wg.Wait()
	for i, r := range results {
		c := cases[i%len(cases)]
		switch {
		case c.pass && r.err != nil:
			t.Errorf("%s", r)
		case !c.pass && r.err == nil:
			t.Errorf("succeeded, want a refusal: %s", r)
		case c.pass && !strings.Contains(r.stdout+r.stderr, c.marker):
			t.Errorf("output lacks %s: %s", c.marker, r)
		}
	}
}

// TestInteropUnpack unpacks a bundle with the CLI into a registry without the
// referrers API (distribution) and one with it (olareg), and checks the result with
// crane (digests), oras and regctl (referrers) and cosign (signatures and
// attestations verify against the mirror).
func TestInteropUnpack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	keys := newBundleKeys(t)
	img, dir := packFixture(t, e, keys, registrytest.Olareg, 22)
	pub := writeFile(t, filepath.Join(t.TempDir(), "cosign.pub"), img.PublicKeyPEM)
	_, otherPEM, _ := fixture.KeyPair(t)
	other := writeFile(t, filepath.Join(t.TempDir(), "other.pub"), otherPEM)
	idx := img.Index.Digest
	amd, arm := img.Children["linux/amd64"].Digest, img.Children["linux/arm64"].Digest

	for _, k := range []registrytest.Kind{registrytest.Distribution, registrytest.Olareg} {
		t.Run("to-"+string(k), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			dst := registrytest.Start(t, k)
			var res unpack.Result
			decodeJSON(t, e.petra(unpackArgs(keys, dst.Host+"/mirror", dir, "--output", "json")...), &res)
			repo := dst.Host + "/mirror/" + interopRepo
			want := repo + ":" + img.Tag
			if len(res.Images) != 1 || res.Images[0].Destination != want || res.Images[0].Digest != idx || res.Images[0].Source != img.Repo+":"+img.Tag {
				t.Fatalf("unpack --output json images = %+v, want %s -> %s at %s", res.Images, img.Repo+":"+img.Tag, want, idx)
			}
			if res.Verification == nil || res.Verification.BundleID == "" {
				t.Errorf("unpack --key did not report verifying the bundle: %+v", res.Verification)
			}
			if len(res.Repositories) != 1 || res.Repositories[0].Name != repo || res.Repositories[0].ReferrersAPI != (k == registrytest.Olareg) {
				t.Errorf("unpack --output json repositories = %+v, want %s with referrersAPI=%v", res.Repositories, repo, k == registrytest.Olareg)
			}

			// crane: the tag resolves to the source digest; every manifest is there, byte for byte
			if got := strings.TrimSpace(e.tool("crane", "digest", "--insecure", want).stdout); got != idx.String() {
				t.Errorf("crane digest %s = %s, want %s", want, got, idx)
			}
			for _, m := range img.AllManifests {
				assertCraneManifest(t, e, repo, m.Digest, "manifest")
			}
			for subject, sig := range img.Signatures {
				tag := repo + ":" + oci.CosignTag(subject, ".sig")
				if got := strings.TrimSpace(e.tool("crane", "digest", "--insecure", tag).stdout); got != sig.Digest.String() {
					t.Errorf("crane digest %s = %s, want %s", tag, got, sig.Digest)
				}
			}

			// oras: referrers through the API (olareg) or the tag schema (distribution)
			_, got := orasDiscover(t, e, "--plain-http", repo+"@"+idx.String())
			assertTree(t, "oras discover index", got, wantTree(img, idx))
			_, got = orasDiscover(t, e, "--plain-http", repo+"@"+amd.String())
			assertTree(t, "oras discover amd64", got, wantTree(img, amd))

			// regctl, with plain HTTP configured in the throwaway HOME
			e.tool("regctl", "registry", "set", dst.Host, "--tls", "disabled")
			assertRegctlSeesFixture(t, e, repo+"@"+idx.String(), img)

			// cosign at the mirror: the index verifies through its Sigstore bundle
			// referrer (cosign prefers it), a child through its .sig, an .att through
			// verify-attestation; another key is refused
			indexRef, amdRef, armRef := repo+"@"+idx.String(), repo+"@"+amd.String(), repo+"@"+arm.String()
			runCosign(t, e,
				cosignCase{"verify", pub, indexRef, nil, true, cosignBundleMarker},
				cosignCase{"verify", pub, armRef, nil, true, cosignLegacyMarker},
				cosignCase{"verify", other, indexRef, nil, false, ""},
				cosignCase{"verify", other, armRef, nil, false, ""},
				cosignCase{"verify-attestation", pub, amdRef, []string{"--type", fixture.PredicateSPDX}, true, cosignInTotoMarker},
				cosignCase{"verify-attestation", other, amdRef, []string{"--type", fixture.PredicateSPDX}, false, ""},
			)
			// Without the bundle referrer cosign reads the index's .sig and .att: they
			// arrived too, and verify.
			mirror := dst.Repository(t, "mirror/"+interopRepo)
			ctx := context.Background()
			bundle := img.Referrers[idx][0]
			if err := mirror.Referrers(ctx, img.Index, "", func([]ocispec.Descriptor) error { return nil }); err != nil {
				t.Fatal(err) // oras-go learns whether to maintain the tag schema on delete
			}
			if err := mirror.Delete(ctx, bundle); err != nil {
				t.Fatalf("deleting the bundle referrer at the mirror: %v", err)
			}
			runCosign(t, e,
				cosignCase{"verify", pub, indexRef, nil, true, cosignLegacyMarker},
				cosignCase{"verify", other, indexRef, nil, false, ""},
				cosignCase{"verify-attestation", pub, indexRef, []string{"--type", fixture.PredicateSLSAProvenance1}, true, cosignInTotoMarker},
				cosignCase{"verify-attestation", pub, indexRef, []string{"--type", "https://example.com/not-attached/v1"}, false, ""},
			)
		})
	}
}

// TestCLIRefusesBadInput: the CLI exits non-zero with a message on stderr, and
// nothing on stdout, for input it cannot act on.
func TestCLIRefusesBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	notLayout := t.TempDir()
	writeFile(t, filepath.Join(notLayout, "index.json"), []byte(`{"schemaVersion":2,"manifests":[]}`))
	emptyLayout := filepath.Join(t.TempDir(), "empty")
	if _, err := layout.Create(emptyLayout); err != nil {
		t.Fatal(err)
	}
	neverDir := filepath.Join(t.TempDir(), "never")
	keys := newBundleKeys(t)
	for _, c := range []struct {
		name   string
		args   []string
		stderr string // a fragment the message must hold
		usage  bool   // urfave/cli prints the command help on stdout (unknown command)
	}{
		{"pack without --image or -f", []string{"pack", "-o", neverDir}, "--image", false},
		{"pack without -o", []string{"pack", "--image", "127.0.0.1:1/a/b:c"}, "--dir is required", false},
		{"pack --output yaml", []string{"pack", "--image", "127.0.0.1:1/a/b:c", "-o", neverDir, "--output", "yaml"}, "yaml", false},
		{"pack of a missing images file", []string{"pack", "-f", filepath.Join(neverDir, "images.yaml"), "-o", neverDir}, "images.yaml", false},
		// the message names the directory (unpack verifies first, so it may say it is
		// not a layout or that it carries no signed metadata)
		{"unpack of a directory that is not a layout", unpackArgs(keys, "127.0.0.1:1/mirror", notLayout), notLayout, false},
		{"unpack of a missing directory", unpackArgs(keys, "127.0.0.1:1/mirror", neverDir), neverDir, false},
		{"unpack without --to", []string{"unpack", emptyLayout}, "--to is required", false},
		// flags after DIR are parsed too: this gets past --to and fails on the key
		{"unpack DIR --to (flags after DIR)", []string{"unpack", emptyLayout, "--to", "127.0.0.1:1/mirror"}, "say who must have signed", false},
		{"unpack without DIR", []string{"unpack", "--to", "127.0.0.1:1/mirror"}, "DIR", false},
		{"unpack --output yaml", unpackArgs(keys, "127.0.0.1:1/mirror", emptyLayout, "--output", "yaml"), "yaml", false},
		{"inspect --output yaml", []string{"inspect", "--output", "yaml", emptyLayout}, "yaml", false},
		{"inspect of a directory that is not a layout", []string{"inspect", notLayout}, "not an OCI image layout", false},
		{"unknown command", []string{"frobnicate"}, "frobnicate", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.run(petraBin, c.args...)
			if r.err == nil || r.exitCode == 0 {
				t.Fatalf("exit 0, want a refusal: %s", r)
			}
			if !strings.Contains(r.stderr, c.stderr) {
				t.Errorf("stderr does not mention %q: %s", c.stderr, r)
			}
			if r.stdout != "" && !c.usage {
				t.Errorf("a refusal wrote to stdout: %s", r)
			}
		})
	}
	if _, err := os.Stat(neverDir); !os.IsNotExist(err) {
		t.Errorf("a refused pack created %s (%v)", neverDir, err)
	}
}
