package conformance

// The pre-pull suite exports a signed bundle with `petra-oci export --format
// containerd` and imports the archive into a real containerd (the Debian package,
// 1.6.20, started by startContainerd) with `ctr -n k8s.io images import`, the way an
// operator or the k3s/RKE2 image folders load nodes without a registry.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/prepull"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/oci"
)

const (
	prepullRegistry = "reg.internal:5000/mirror"
	k8sNamespace    = "k8s.io"
)

// prepullCase is a packed, signed bundle of two fixture images: chainguard/nginx:1.27
// (three platforms: linux/amd64, linux/arm64, linux/386, each signed and attested,
// with referrers) packed by tag, and chainguard/static packed by digest.
type prepullCase struct {
	e        *env
	keys     bundleKeys
	dir      string
	nginx    *fixture.Image
	static   *fixture.Image
	contents []bundle.Repository
	// want is every containerd image name the archive must create, with its digest.
	want map[string]string
}

func newPrepullCase(t *testing.T) *prepullCase {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	src := registrytest.Start(t, registrytest.InProcess)
	nginx := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27",
		fixture.Options{Seed: 41, Platforms: []string{"linux/amd64", "linux/arm64", "linux/386"}})
	static := fixture.Chainguard(ctx, t, src.Host, "chainguard/static", "latest", fixture.Options{Seed: 42})
	dir, _ := packCLI(t, e, keys, nginx.Repo+":1.27", "--image", static.Repo+"@"+static.Index.Digest.String())
	var rep bundle.Report
	decodeJSON(t, e.petra("verify", "--key", keys.pub, "--state", filepath.Join(t.TempDir(), "s.json"), "--output", "json", dir), &rep)
	return &prepullCase{
		e: e, keys: keys, dir: dir, nginx: nginx, static: static, contents: rep.Contents,
		want: map[string]string{
			prepullRegistry + "/chainguard/nginx:1.27":                             nginx.Index.Digest.String(),
			prepullRegistry + "/chainguard/nginx@" + nginx.Index.Digest.String():   nginx.Index.Digest.String(),
			prepullRegistry + "/chainguard/static@" + static.Index.Digest.String(): static.Index.Digest.String(),
		},
	}
}

// export runs `petra-oci export --format containerd` on dir (the case's bundle unless
// given) and returns the run; flags go before DIR.
func (c *prepullCase) export(t *testing.T, dir, out string, extra ...string) result {
	t.Helper()
	if dir == "" {
		dir = c.dir
	}
	args := append([]string{"export", "--format", "containerd", "--registry", prepullRegistry, "--key", c.keys.pub,
		"--state", filepath.Join(t.TempDir(), "s.json"), "-o", out}, extra...)
	return c.e.run(petraBin, append(args, dir)...)
}

// mustExport exports and decodes the JSON result.
func (c *prepullCase) mustExport(t *testing.T, out string, extra ...string) prepull.Result {
	t.Helper()
	r := c.export(t, "", out, append(extra, "--output", "json")...)
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	var res prepull.Result
	decodeJSON(t, r, &res)
	return res
}

// attachments returns every attachment manifest the bundle holds.
func (c *prepullCase) attachments() []bundle.Manifest {
	var out []bundle.Manifest
	for _, r := range c.contents {
		for _, im := range r.Images {
			out = append(out, im.Attachments...)
		}
	}
	return out
}

// prepullArchive is a pre-pull archive read back.
type prepullArchive struct {
	names []string // in archive order
	blobs map[digest.Digest][]byte
	index ocispec.Index
}

func readArchive(t *testing.T, r io.Reader) *prepullArchive {
	t.Helper()
	a := &prepullArchive{blobs: map[digest.Digest][]byte{}}
	tr := tar.NewReader(r)
	var indexBytes []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the archive: %v", err)
		}
		if h.Typeflag != tar.TypeReg || h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 || h.Mode != 0o644 {
			t.Errorf("entry %s: type %c, mtime %v, owner %d:%d, mode %o; want regular files, time 0, owner 0:0, mode 644", h.Name, h.Typeflag, h.ModTime, h.Uid, h.Gid, h.Mode)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		a.names = append(a.names, h.Name)
		switch {
		case h.Name == "index.json":
			indexBytes = b
		case h.Name == "oci-layout":
			if string(b) != `{"imageLayoutVersion":"1.0.0"}` {
				t.Errorf("oci-layout = %s", b)
			}
		case strings.HasPrefix(h.Name, "blobs/sha256/"):
			d := digest.NewDigestFromEncoded(digest.SHA256, strings.TrimPrefix(h.Name, "blobs/sha256/"))
			if digest.FromBytes(b) != d {
				t.Errorf("blob %s does not hash to its name", h.Name)
			}
			a.blobs[d] = b
		default:
			t.Errorf("unexpected entry %s", h.Name)
		}
	}
	if !sort.StringsAreSorted(a.names) {
		t.Errorf("entries are not sorted: %v", a.names)
	}
	if err := json.Unmarshal(indexBytes, &a.index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	return a
}

func readArchiveFile(t *testing.T, path string) *prepullArchive {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return readArchive(t, f)
}

// namedEntries maps io.containerd.image.name to digest over index.json; unnamed
// counts the entries without a name.
func (a *prepullArchive) namedEntries(t *testing.T) (named map[string]string, unnamed []ocispec.Descriptor) {
	t.Helper()
	named = map[string]string{}
	for _, d := range a.index.Manifests {
		n := d.Annotations[oci.AnnotationContainerdName]
		if n == "" {
			if d.Annotations[ocispec.AnnotationRefName] != "" {
				t.Errorf("entry %s has a ref.name %q but no containerd name: ctr would import it as import-<date>:%s", d.Digest, d.Annotations[ocispec.AnnotationRefName], d.Annotations[ocispec.AnnotationRefName])
			}
			unnamed = append(unnamed, d)
			continue
		}
		named[n] = d.Digest.String()
	}
	return named, unnamed
}

// assertImages checks that ns holds exactly want (name -> digest).
func assertImages(t *testing.T, ctrd *containerdEnv, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, img := range ctrd.images(t, k8sNamespace) {
		got[img.Name] = img.Digest
	}
	if !mapsEqual(got, want) {
		t.Errorf("containerd images:\n got  %v\n want %v", got, want)
	}
}

// assertUnpacked checks that `ctr images check` finds every image complete for
// platform and unpacked into the snapshotter.
func assertUnpacked(t *testing.T, ctrd *containerdEnv, want map[string]string) {
	t.Helper()
	out, err := ctrd.ctr(t, "-n", k8sNamespace, "images", "check")
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, line := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if _, ok := want[f[0]]; !ok {
			continue
		}
		seen++
		// REF TYPE DIGEST STATUS SIZE UNPACKED, STATUS e.g. "complete (3/3)"
		if !strings.Contains(line, " complete ") || f[len(f)-1] != "true" {
			t.Errorf("ctr images check: %s is not complete and unpacked:\n%s", f[0], line)
		}
	}
	if seen != len(want) {
		t.Errorf("ctr images check lists %d of the %d images:\n%s", seen, len(want), out)
	}
}

// importArchive runs ctr images import and checks every image was unpacked.
func importArchive(t *testing.T, ctrd *containerdEnv, path string, flags ...string) string {
	t.Helper()
	out, err := ctrd.ctr(t, append(append([]string{"-n", k8sNamespace, "images", "import"}, flags...), path)...)
	if err != nil {
		t.Fatalf("import: %v\ncontainerd log:\n%s", err, tail(ctrd.Log(), 40))
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tarDir writes the regular files under dir to a tar at out, named relative to dir.
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: filepath.ToSlash(rel), Size: fi.Size(), Mode: 0o644}); err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestPrepullContainerd: the pre-pull archive of a signed bundle imports into
// containerd 1.6 under the internal registry's names, with the source digests, and
// nothing else; containerd unpacks it for the host platform; the platform-filtered,
// zstd and --with-attachments variants behave as docs/prepull.md says; a tampered
// bundle is refused before anything is written.
func TestPrepullContainerd(t *testing.T) {
	c := newPrepullCase(t)
	ctrd := startContainerd(t)
	host := "linux/" + runtime.GOARCH
	work := t.TempDir()
	// the plain archive of every image, which the variants are compared with
	full := filepath.Join(work, "images.tar")
	fullRes := c.mustExport(t, full)

	// the control: the bundle directory itself, tarred, is what containerd cannot take
	// (the measurement): it unpacks the cosign .att as a filesystem layer and
	// fails, leaving import-<date>:sha256-<hex>.att images behind
	t.Run("bundle-tar-control", func(t *testing.T) {
		t.Cleanup(func() { ctrd.removeAllImages(t, k8sNamespace) })
		raw := filepath.Join(work, "bundle.tar")
		tarDir(t, c.dir, raw)
		o, err := ctrd.ctr(t, "-n", k8sNamespace, "images", "import", "--all-platforms", raw)
		if err == nil || !strings.Contains(err.Error(), "no processor for media-type") {
			t.Errorf("ctr import of the bundle directory's tar: err = %v, want the DSSE layer failure:\n%s", err, o)
		}
		att := 0
		for _, img := range ctrd.images(t, k8sNamespace) {
			if strings.HasPrefix(img.Name, "import-") && strings.HasSuffix(img.Name, ".att") {
				att++
			}
		}
		if att == 0 {
			t.Errorf("no import-<date>:sha256-<hex>.att image after importing the bundle directory's tar")
		}
	})

	t.Run("full", func(t *testing.T) {
		t.Cleanup(func() { ctrd.removeAllImages(t, k8sNamespace) })
		res := fullRes
		if res.ArchiveSHA256 != fileSHA256(t, full) || res.Output != full || res.Format != "containerd" {
			t.Errorf("result %+v does not describe %s", res, full)
		}
		gotNames := map[string]string{}
		for _, im := range res.Images {
			for _, n := range im.Names {
				gotNames[n] = im.Digest.String()
			}
			if im.Attachments != 0 || im.AttachmentsLeftOut == 0 {
				t.Errorf("image %s: %d attachments carried, %d left out; want none carried", im.Source, im.Attachments, im.AttachmentsLeftOut)
			}
		}
		if !mapsEqual(gotNames, c.want) {
			t.Errorf("result names %v, want %v", gotNames, c.want)
		}
		a := readArchiveFile(t, full)
		named, unnamed := a.namedEntries(t)
		if !mapsEqual(named, c.want) || len(unnamed) != 0 {
			t.Errorf("index.json names %v and %d unnamed entries; want %v and none", named, len(unnamed), c.want)
		}
		// every manifest of every image is there, byte for byte; no attachment is
		for _, want := range []ocispec.Descriptor{c.nginx.Index, c.static.Index, c.nginx.BaseLayer} {
			if _, ok := a.blobs[want.Digest]; !ok {
				t.Errorf("blob %s missing", want.Digest)
			}
		}
		for p, child := range c.nginx.Children {
			if _, ok := a.blobs[child.Digest]; !ok {
				t.Errorf("%s child %s missing", p, child.Digest)
			}
		}
		for _, m := range c.attachments() {
			if _, ok := a.blobs[m.Digest]; ok {
				t.Errorf("attachment %s %s (on %s) is in the archive", m.Kind, m.Digest, m.Subject)
			}
		}
		// the same bundle and flags give the same bytes
		again := filepath.Join(work, "again.tar")
		c.mustExport(t, again)
		if fileSHA256(t, again) != res.ArchiveSHA256 {
			t.Errorf("a second export differs from the first")
		}

		out := importArchive(t, ctrd, full, "--all-platforms")
		for name := range c.want {
			if !strings.Contains(out, "unpacking "+name+" ") {
				t.Errorf("ctr import did not unpack %s:\n%s", name, out)
			}
		}
		assertImages(t, ctrd, c.want)
		assertUnpacked(t, ctrd, c.want)
		// and with containerd's default platform matching
		ctrd.removeAllImages(t, k8sNamespace)
		importArchive(t, ctrd, full)
		assertImages(t, ctrd, c.want)
		assertUnpacked(t, ctrd, c.want)
	})

	t.Run("platform", func(t *testing.T) {
		t.Cleanup(func() { ctrd.removeAllImages(t, k8sNamespace) })
		out := filepath.Join(work, "host.tar")
		res := c.mustExport(t, out, "--platform", host)
		for _, im := range res.Images {
			if !slices.Equal(im.Platforms, []string{host}) {
				t.Errorf("image %s: platforms %v, want [%s]", im.Source, im.Platforms, host)
			}
		}
		a := readArchiveFile(t, out)
		if named, _ := a.namedEntries(t); !mapsEqual(named, c.want) {
			t.Errorf("index.json names %v, want %v", named, c.want)
		}
		// the index is there unchanged; only the host platform's manifest of it
		if b := a.blobs[c.nginx.Index.Digest]; digest.FromBytes(b) != c.nginx.Index.Digest {
			t.Errorf("image index %s missing or changed", c.nginx.Index.Digest)
		}
		for p, child := range c.nginx.Children {
			if _, ok := a.blobs[child.Digest]; ok != (p == host) {
				t.Errorf("%s child %s in the archive: %v, want %v", p, child.Digest, ok, p == host)
			}
		}
		if len(a.blobs) >= len(readArchiveFile(t, full).blobs) {
			t.Errorf("the %s archive holds %d blobs, not fewer than the full one", host, len(a.blobs))
		}

		// containerd walks every child with --all-platforms: the left-out ones are missing
		if o, err := ctrd.ctr(t, "-n", k8sNamespace, "images", "import", "--all-platforms", out); err == nil || !strings.Contains(err.Error(), "not found") {
			t.Errorf("import --all-platforms of a %s-only archive: err = %v, want a not found failure:\n%s", host, err, o)
		}
		assertImages(t, ctrd, map[string]string{})
		if runtime.GOARCH == "amd64" {
			// containerd's default matcher on amd64 also takes linux/386 children
			if o, err := ctrd.ctr(t, "-n", k8sNamespace, "images", "import", out); err == nil || !strings.Contains(err.Error(), "not found") {
				t.Errorf("import without --platform of a linux/amd64-only archive of an image with a linux/386 child: err = %v, want not found:\n%s", err, o)
			}
			assertImages(t, ctrd, map[string]string{})
		}
		importArchive(t, ctrd, out, "--platform", host)
		assertImages(t, ctrd, c.want)
		assertUnpacked(t, ctrd, c.want)

		// a platform no image has is refused, nothing written
		none := filepath.Join(work, "s390x.tar")
		r := c.export(t, "", none, "--platform", "linux/s390x")
		assertExit(t, "export --platform linux/s390x", r, exitFailureCode, "linux/s390x")
		if _, err := os.Stat(none); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused export: %v", none, err)
		}
	})

	t.Run("zstd", func(t *testing.T) {
		t.Cleanup(func() { ctrd.removeAllImages(t, k8sNamespace) })
		out := filepath.Join(work, "images.tar.zst")
		res := c.mustExport(t, out)
		if res.Compression != prepull.CompressionZstd {
			t.Errorf("-o %s: compression %q, want zstd", out, res.Compression)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
			t.Fatalf("%s does not start with the zstd magic", out)
		}
		// the same bytes on every run, and the plain archive inside
		again := filepath.Join(work, "again.tar.zst")
		c.mustExport(t, again, "--zstd")
		if fileSHA256(t, again) != res.ArchiveSHA256 {
			t.Errorf("a second zstd export differs from the first")
		}
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		zr.Close()
		if err != nil {
			t.Fatal(err)
		}
		fullBytes, err := os.ReadFile(full)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(plain, fullBytes) {
			t.Errorf("the zstd archive does not hold the plain archive")
		}
		// ctr reads only a plain tar (containerd 1.6 does not decompress its input)
		if o, err := ctrd.ctr(t, "-n", k8sNamespace, "images", "import", out); err == nil || !strings.Contains(err.Error(), "invalid tar header") {
			t.Errorf("ctr import of a .tar.zst: err = %v, want invalid tar header (docs/prepull.md says ctr reads plain tar only):\n%s", err, o)
		}
		assertImages(t, ctrd, map[string]string{})
		// decompressed into its stdin, it does
		if o, err := ctrd.ctrStdin(t, bytes.NewReader(plain), "-n", k8sNamespace, "images", "import", "--all-platforms", "-"); err != nil {
			t.Fatalf("zstd -dc | ctr images import -: %v\n%s", err, o)
		}
		assertImages(t, ctrd, c.want)
		assertUnpacked(t, ctrd, c.want)
	})

	t.Run("with-attachments", func(t *testing.T) {
		t.Cleanup(func() { ctrd.removeAllImages(t, k8sNamespace) })
		out := filepath.Join(work, "att.tar")
		res := c.mustExport(t, out, "--with-attachments")
		want := c.attachments()
		carried := 0
		for _, im := range res.Images {
			carried += im.Attachments
			if im.AttachmentsLeftOut != 0 {
				t.Errorf("image %s: %d attachments left out", im.Source, im.AttachmentsLeftOut)
			}
		}
		if carried != len(want) {
			t.Errorf("%d attachments carried, the bundle holds %d", carried, len(want))
		}
		a := readArchiveFile(t, out)
		named, unnamed := a.namedEntries(t)
		if !mapsEqual(named, c.want) {
			t.Errorf("index.json names %v, want %v", named, c.want)
		}
		if len(unnamed) != len(want) {
			t.Errorf("%d unnamed index.json entries, want one per attachment (%d)", len(unnamed), len(want))
		}
		kinds := map[oci.Kind]int{}
		for _, m := range want {
			if _, ok := a.blobs[m.Digest]; !ok {
				t.Errorf("attachment %s %s missing", m.Kind, m.Digest)
			}
			kinds[m.Kind]++
		}
		if kinds[oci.KindCosignSig] == 0 || kinds[oci.KindCosignAtt] == 0 || kinds[oci.KindReferrer] == 0 {
			t.Fatalf("the fixture bundle should hold .sig, .att and referrers: %v", kinds)
		}
		for _, d := range unnamed {
			if d.Annotations[oci.AnnotationKind] == "" || d.Annotations[oci.AnnotationSubject] == "" {
				t.Errorf("attachment entry %s lacks the petra-oci kind and subject: %v", d.Digest, d.Annotations)
			}
		}

		// containerd imports it, unpacks the images, and creates no attachment image
		before := ctrd.contentDigests(t, k8sNamespace)
		importArchive(t, ctrd, out, "--all-platforms")
		assertImages(t, ctrd, c.want)
		assertUnpacked(t, ctrd, c.want)
		for _, img := range ctrd.images(t, k8sNamespace) {
			if strings.HasPrefix(img.Name, "import-") || strings.HasSuffix(img.Name, ".att") || strings.HasSuffix(img.Name, ".sig") {
				t.Errorf("attachment imported as image %s", img.Name)
			}
		}
		// no image holds the attachments, so containerd's garbage collector removes
		// them (as docs/prepull.md says); the images' content stays
		ctrd.collectGarbage(t, k8sNamespace)
		after := ctrd.contentDigests(t, k8sNamespace)
		for _, m := range want {
			if after[m.Digest.String()] && !before[m.Digest.String()] {
				t.Errorf("attachment %s %s is still in containerd's content store after garbage collection", m.Kind, m.Digest)
			}
		}
		for _, d := range []digest.Digest{c.nginx.Index.Digest, c.static.Index.Digest, c.nginx.BaseLayer.Digest} {
			if !after[d.String()] {
				t.Errorf("image content %s was collected", d)
			}
		}
	})

	t.Run("stdout", func(t *testing.T) {
		r := c.export(t, "", "-")
		if r.err != nil {
			t.Fatalf("%s", r)
		}
		if s := sha256.Sum256([]byte(r.stdout)); hex.EncodeToString(s[:]) != fileSHA256(t, full) {
			t.Errorf("-o - wrote other bytes than -o FILE")
		}
		if !strings.Contains(r.stderr, prepullRegistry+"/chainguard/nginx:1.27") {
			t.Errorf("-o -: the names are not on stderr:\n%s", r.stderr)
		}
	})

	t.Run("tampered", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bundle")
		copyTree(t, c.dir, bad)
		flipByte(t, someBlob(t, bad), 10)
		verify := c.e.run(petraBin, "verify", "--key", c.keys.pub, "--state", filepath.Join(t.TempDir(), "s.json"), bad)
		if verify.exitCode != exitFileChangedCode {
			t.Fatalf("verify of the tampered bundle: %s", verify)
		}
		outDir := t.TempDir()
		out := filepath.Join(outDir, "images.tar")
		r := c.export(t, bad, out)
		assertExit(t, "export of a tampered bundle", r, verify.exitCode, "nothing was written")
		if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
			t.Errorf("the refused export left %v in the output directory", entries)
		}
		r = c.export(t, bad, "-")
		assertExit(t, "export -o - of a tampered bundle", r, verify.exitCode)
		if r.stdout != "" {
			t.Errorf("the refused export wrote %d bytes to stdout", len(r.stdout))
		}
		// a wrong key: refused as unpack refuses it
		other := newBundleKeys(t)
		r = c.e.run(petraBin, "export", "--format", "containerd", "--registry", prepullRegistry, "--key", other.pub, "-o", out, c.dir)
		assertExit(t, "export with another key", r, exitSignatureCode)
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused export", out)
		}
	})

	t.Run("usage", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "x.tar")
		for name, args := range map[string][]string{
			"registry, bundle format": {"export", "--registry", prepullRegistry, "--key", c.keys.pub, "-o", out, c.dir},
			"other format":            {"export", "--format", "oci-archive", "--registry", prepullRegistry, "--key", c.keys.pub, "-o", out, c.dir},
			"no registry":             {"export", "--format", "containerd", "--key", c.keys.pub, "-o", out, c.dir},
			"json + stdout":           {"export", "--format", "containerd", "--registry", prepullRegistry, "--key", c.keys.pub, "-o", "-", "--output", "json", c.dir},
			"gzip name":               {"export", "--format", "containerd", "--registry", prepullRegistry, "--key", c.keys.pub, "-o", out + ".gz", c.dir},
		} {
			r := c.e.run(petraBin, args...)
			assertExit(t, name, r, exitUsageCode)
		}
		r := c.e.run(petraBin, "export", "--format", "containerd", "--registry", "reg.internal/../x", "--key", c.keys.pub, "-o", out, c.dir)
		assertExit(t, "a registry prefix outside the grammar", r, exitInvalidName)
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Errorf("%s exists after refused exports", out)
		}
	})
}
