package prepull

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/signing"
)

// testBundle packs one signed fixture image (linux/amd64 and linux/arm64) once for
// the package's tests.
type testBundle struct {
	dir    string
	img    *fixture.Image
	verify bundle.VerifyOptions
}

var (
	sharedOnce sync.Once
	shared     *testBundle
	sharedErr  error
)

func packed(t *testing.T) *testBundle {
	t.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = packBundle(t)
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	if shared == nil {
		t.Fatal("packing the test bundle failed in an earlier test")
	}
	return shared
}

func packBundle(t *testing.T) (*testBundle, error) {
	ctx := context.Background()
	// the registry lives as long as the test that packs; the bundle is on disk
	reg := registrytest.Start(t, registrytest.InProcess)
	img := fixture.Chainguard(ctx, t, reg.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 7})
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := signing.NewSigner(k)
	if err != nil {
		return nil, err
	}
	client, err := remote.NewClient(remote.Options{PlainHTTP: true})
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "prepull-bundle-")
	if err != nil {
		return nil, err
	}
	dir = filepath.Join(dir, "bundle")
	if _, err := pack.Pack(ctx, pack.Options{UnsafeNoPolicy: true, Images: []pack.ImageSpec{{Ref: img.Repo + ":1.27"}}, Dir: dir, Client: client,
		Seal: bundle.SealOptions{Signer: signer}}); err != nil {
		return nil, err
	}
	pub, err := signer.PublicKeyPEM()
	if err != nil {
		return nil, err
	}
	return &testBundle{dir: dir, img: img, verify: bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: pub}}}, nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		os.RemoveAll(filepath.Dir(shared.dir))
	}
	os.Exit(code)
}

func (b *testBundle) opts() Options {
	v := b.verify
	return Options{Dir: b.dir, Registry: "reg.internal/mirror", Verify: &v}
}

// copyBundle copies the bundle, so a test can change it.
func copyBundle(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "bundle")
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestExportNamesAndDeterminism(t *testing.T) {
	b := packed(t)
	var first, second bytes.Buffer
	res, err := Export(context.Background(), &first, b.opts())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Export(context.Background(), &second, b.opts()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatal("two exports of the same bundle differ")
	}
	if res.ArchiveBytes != int64(first.Len()) || res.Verification == nil {
		t.Errorf("result %+v does not describe the %d bytes written", res, first.Len())
	}
	want := []string{"reg.internal/mirror/chainguard/nginx:1.27", "reg.internal/mirror/chainguard/nginx@" + b.img.Index.Digest.String()}
	if len(res.Images) != 1 || strings.Join(res.Images[0].Names, " ") != strings.Join(want, " ") {
		t.Fatalf("images %+v, want names %v", res.Images, want)
	}
	idx := indexOf(t, first.Bytes())
	if len(idx.Manifests) != 2 {
		t.Fatalf("index.json has %d entries, want 2", len(idx.Manifests))
	}
	for i, d := range idx.Manifests {
		if d.Digest != b.img.Index.Digest || d.Annotations[oci.AnnotationContainerdName] != want[i] {
			t.Errorf("entry %d: %s named %q, want %s named %q", i, d.Digest, d.Annotations[oci.AnnotationContainerdName], b.img.Index.Digest, want[i])
		}
	}
	if got := idx.Manifests[0].Annotations[ocispec.AnnotationRefName]; got != want[0] {
		t.Errorf("tag entry ref.name %q, want %q", got, want[0])
	}
	if got, ok := idx.Manifests[1].Annotations[ocispec.AnnotationRefName]; ok {
		t.Errorf("digest entry has ref.name %q", got)
	}
}

func indexOf(t *testing.T, archive []byte) ocispec.Index {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no index.json in the archive: %v", err)
		}
		if h.Name == layout.IndexFile {
			var idx ocispec.Index
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				t.Fatal(err)
			}
			return idx
		}
	}
}

// TestBlobChangedWhileExporting: a blob changed on disk after verification, while the
// archive is written, fails the export, and WriteFile leaves no file behind.
func TestBlobChangedWhileExporting(t *testing.T) {
	b := packed(t)
	dir := copyBundle(t, b.dir)
	out := filepath.Join(t.TempDir(), "images.tar")
	// once the first blob is in the archive, change the blob written last
	var last ocispec.Descriptor
	plan := b.opts()
	plan.Dir = dir
	var buf bytes.Buffer
	if _, err := Export(context.Background(), &buf, plan); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "blobs/sha256/") && h.Size > 0 {
			last = ocispec.Descriptor{Digest: digest.NewDigestFromEncoded(digest.SHA256, strings.TrimPrefix(h.Name, "blobs/sha256/")), Size: h.Size}
		}
	}
	changed := false
	opts := plan
	opts.OnBlob = func(d ocispec.Descriptor) {
		if changed || d.Digest == last.Digest {
			return
		}
		changed = true
		p := filepath.Join(dir, "blobs", "sha256", last.Digest.Encoded())
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		one := []byte{0}
		if _, err := f.ReadAt(one, 0); err != nil {
			t.Error(err)
		}
		one[0] ^= 1
		if _, err := f.WriteAt(one, 0); err != nil {
			t.Error(err)
		}
	}
	_, err := WriteFile(context.Background(), out, opts)
	if !changed {
		t.Fatal("the blob was never changed")
	}
	if !errors.Is(err, layout.ErrFileChanged) {
		t.Fatalf("export with a blob changed half way: err = %v, want ErrFileChanged", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 0 {
		t.Errorf("the failed export left %v", entries)
	}
}

// TestRefusesBeforeWriting: a tampered bundle, a bundle signed by another key and
// bad options write nothing.
func TestRefusesBeforeWriting(t *testing.T) {
	b := packed(t)
	tampered := copyBundle(t, b.dir)
	if err := os.WriteFile(filepath.Join(tampered, "blobs", "sha256", b.img.BaseLayer.Digest.Encoded()), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	otherKey, _, _ := fixture.KeyPair(t)
	otherPub, err := fixture.PublicKeyPEM(&otherKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		edit func(o *Options)
		want error
	}{
		"tampered": {func(o *Options) { o.Dir = tampered }, layout.ErrFileChanged},
		"other key": {func(o *Options) {
			o.Verify = &bundle.VerifyOptions{Signature: signing.VerifyOptions{PublicKey: otherPub}}
		}, bundle.ErrSignature},
		"no verify":    {func(o *Options) { o.Verify = nil }, oci.ErrInvalid},
		"no registry":  {func(o *Options) { o.Registry = "" }, oci.ErrInvalid},
		"bad registry": {func(o *Options) { o.Registry = "reg/../x" }, oci.ErrInvalidName},
		"bad platform": {func(o *Options) { o.Platform = "linux" }, oci.ErrInvalid},
		"absent":       {func(o *Options) { o.Platform = "linux/s390x" }, oci.ErrNotFound},
		"compression":  {func(o *Options) { o.Compression = "gzip" }, oci.ErrInvalid},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := b.opts()
			tc.edit(&o)
			var buf bytes.Buffer
			if _, err := Export(context.Background(), &buf, o); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("%d bytes written", buf.Len())
			}
			out := filepath.Join(t.TempDir(), "x.tar")
			if _, err := WriteFile(context.Background(), out, o); !errors.Is(err, tc.want) {
				t.Errorf("WriteFile: err = %v, want %v", err, tc.want)
			}
			if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
				t.Errorf("WriteFile left %v", entries)
			}
		})
	}
}

// TestAttachmentEntriesAreUnnamed: an attachment's index.json entry never carries a
// name containerd imports by, even when its own annotations hold one.
func TestAttachmentEntriesAreUnnamed(t *testing.T) {
	subject := digest.FromString("subject")
	n := &referrers.Node{Entry: layout.Entry{
		Descriptor: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("referrer"), Size: 10,
			ArtifactType: "application/vnd.dev.sigstore.bundle.v0.3+json",
			Annotations: map[string]string{
				oci.AnnotationContainerdName: "evil.example/x:latest",
				ocispec.AnnotationRefName:    "latest",
				"org.example.kept":           "yes",
			},
		},
		Kind: oci.KindReferrer, Repository: "cgr.dev/chainguard/nginx", Subject: subject,
	}}
	d := attachmentDescriptor(n)
	if _, ok := d.Annotations[oci.AnnotationContainerdName]; ok {
		t.Errorf("containerd name kept: %v", d.Annotations)
	}
	if _, ok := d.Annotations[ocispec.AnnotationRefName]; ok {
		t.Errorf("ref.name kept: %v", d.Annotations)
	}
	if d.Annotations["org.example.kept"] != "yes" || d.Annotations[oci.AnnotationSubject] != subject.String() || d.ArtifactType == "" {
		t.Errorf("descriptor %+v lost what it says about the attachment", d)
	}
	if n.Entry.Descriptor.Annotations[oci.AnnotationContainerdName] == "" {
		t.Error("the graph's entry was modified")
	}
}

// TestPlatformAndAttachments: a platform filter keeps the index and that platform's
// manifest; WithAttachments carries exactly the attachments of what is kept.
func TestPlatformAndAttachments(t *testing.T) {
	b := packed(t)
	o := b.opts()
	o.Platform = "linux/arm64"
	o.WithAttachments = true
	var buf bytes.Buffer
	res, err := Export(context.Background(), &buf, o)
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[digest.Digest]bool{}
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rest, ok := strings.CutPrefix(h.Name, "blobs/sha256/"); ok {
			blobs[digest.NewDigestFromEncoded(digest.SHA256, rest)] = true
		}
	}
	arm, amd := b.img.Children["linux/arm64"], b.img.Children["linux/amd64"]
	if !blobs[b.img.Index.Digest] || !blobs[arm.Digest] || blobs[amd.Digest] {
		t.Errorf("index %v, arm64 %v, amd64 %v in the archive; want true, true, false", blobs[b.img.Index.Digest], blobs[arm.Digest], blobs[amd.Digest])
	}
	for subject, sig := range b.img.Signatures {
		if want := subject != amd.Digest; blobs[sig.Digest] != want {
			t.Errorf(".sig of %s in the archive: %v, want %v", subject, blobs[sig.Digest], want)
		}
	}
	if blobs[b.img.SBOM.Digest] {
		t.Errorf("the amd64 SBOM referrer is in an arm64 archive")
	}
	im := res.Images[0]
	if im.Attachments == 0 || im.AttachmentsLeftOut == 0 || len(im.Platforms) != 1 || im.Platforms[0] != "linux/arm64" {
		t.Errorf("image result %+v", im)
	}
	unnamed := 0
	for _, d := range indexOf(t, buf.Bytes()).Manifests {
		if d.Annotations[oci.AnnotationContainerdName] == "" {
			unnamed++
		}
	}
	if unnamed != im.Attachments {
		t.Errorf("%d unnamed entries, %d attachments carried", unnamed, im.Attachments)
	}
}
