package unpack_test

import (
	"context"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/unpack"
)

// orderBundle is a hand-built bundle whose graph has every ordering constraint unpack
// must keep: an index with two platform children and a nested index (whose child is
// a third platform image), attachments three deep mixing kinds (a referrer on a child,
// a Sigstore bundle referrer and a cosign signature on that referrer, a cosign
// signature on the index), and a second repository (an image with a referrer).
// index.json lists cosign artifacts before referrers (layout.SortEntries), so the
// signature on the referrer comes before the referrer it is attached to.
type orderBundle struct {
	t   *testing.T
	dir string
	l   *layout.Layout
	// manifests by name, and what each names: children (blobs and index children)
	// and its subject
	m        map[string]ocispec.Descriptor
	children map[digest.Digest][]digest.Digest
	subject  map[digest.Digest]digest.Digest
	// referrers are the OCI referrers (manifests with a subject field)
	referrers map[digest.Digest]bool
	entries   []layout.Entry
}

const (
	nginx  = "cgr.dev/chainguard/nginx"
	static = "cgr.dev/chainguard/static"
)

func (b *orderBundle) blob(mediaType, s string) ocispec.Descriptor {
	b.t.Helper()
	d, err := b.l.PushBytes(context.Background(), mediaType, []byte(s))
	if err != nil {
		b.t.Fatal(err)
	}
	return d
}

func (b *orderBundle) push(name, mediaType string, v any, children []ocispec.Descriptor, subject *ocispec.Descriptor) ocispec.Descriptor {
	b.t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		b.t.Fatal(err)
	}
	d, err := b.l.PushBytes(context.Background(), mediaType, raw)
	if err != nil {
		b.t.Fatal(err)
	}
	b.m[name] = d
	for _, c := range children {
		b.children[d.Digest] = append(b.children[d.Digest], c.Digest)
	}
	if subject != nil {
		b.subject[d.Digest] = subject.Digest
		b.referrers[d.Digest] = true
	}
	return d
}

func (b *orderBundle) image(name string, platform *ocispec.Platform) ocispec.Descriptor {
	cfg := b.blob(ocispec.MediaTypeImageConfig, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"name":"`+name+`"}`)
	layer := b.blob(ocispec.MediaTypeImageLayerGzip, "layer of "+name)
	d := b.push(name, ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}},
		[]ocispec.Descriptor{cfg, layer}, nil)
	d.Platform = platform
	return d
}

func (b *orderBundle) index(name string, children ...ocispec.Descriptor) ocispec.Descriptor {
	return b.push(name, ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex, Manifests: children}, children, nil)
}

func (b *orderBundle) referrer(name, artifactType string, subject ocispec.Descriptor) ocispec.Descriptor {
	layer := b.blob(artifactType, "content of "+name)
	cfg := ocispec.DescriptorEmptyJSON
	cfg.Data = nil
	return b.push(name, ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Config: cfg,
		Layers: []ocispec.Descriptor{layer}, Subject: &subject}, []ocispec.Descriptor{cfg, layer}, &subject)
}

// cosignSig is a cosign tag-scheme signature of subject (no subject field: the tag
// names it).
func (b *orderBundle) cosignSig(name string, subject ocispec.Descriptor) ocispec.Descriptor {
	cfg := b.blob(ocispec.MediaTypeImageConfig, `{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"sig":"`+name+`"}`)
	layer := b.blob(oci.MediaTypeCosignSimpleSigning, `{"critical":{"image":{"docker-manifest-digest":"`+subject.Digest.String()+`"}}}`)
	d := b.push(name, ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}},
		[]ocispec.Descriptor{cfg, layer}, nil)
	b.subject[d.Digest] = subject.Digest
	return d
}

func newOrderBundle(t *testing.T) *orderBundle {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	l, err := layout.Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := &orderBundle{t: t, dir: dir, l: l, m: map[string]ocispec.Descriptor{},
		children: map[digest.Digest][]digest.Digest{}, subject: map[digest.Digest]digest.Digest{},
		referrers: map[digest.Digest]bool{}}
	b.blob(ocispec.DescriptorEmptyJSON.MediaType, "{}")

	amd := b.image("amd64", &ocispec.Platform{OS: "linux", Architecture: "amd64"})
	arm := b.image("arm64", &ocispec.Platform{OS: "linux", Architecture: "arm64"})
	s390 := b.image("s390x", &ocispec.Platform{OS: "linux", Architecture: "s390x"})
	nested := b.index("nested index", s390)
	idx := b.index("index", amd, arm, nested)
	sbom := b.referrer("sbom of amd64", oci.MediaTypeSPDXJSON, amd)
	bundleOnSBOM := b.referrer("bundle on the sbom", oci.MediaTypeSigstoreBundle03, sbom)
	sigOnSBOM := b.cosignSig("sig of the sbom", sbom)
	sigOnIndex := b.cosignSig("sig of the index", idx)
	img := b.image("static", nil)
	ref := b.referrer("sbom of static", oci.MediaTypeSPDXJSON, img)

	b.entries = []layout.Entry{
		layout.AttachmentEntry(bundleOnSBOM, oci.KindReferrer, nginx, "", sbom.Digest),
		layout.AttachmentEntry(sigOnSBOM, oci.KindCosignSig, nginx, oci.CosignTag(sbom.Digest, ".sig"), sbom.Digest),
		layout.AttachmentEntry(sbom, oci.KindReferrer, nginx, "", amd.Digest),
		layout.AttachmentEntry(sigOnIndex, oci.KindCosignSig, nginx, oci.CosignTag(idx.Digest, ".sig"), idx.Digest),
		layout.AttachmentEntry(ref, oci.KindReferrer, static, "", img.Digest),
		layout.ImageEntry(idx, nginx, "1.27"),
		layout.ImageEntry(img, static, "latest"),
	}
	var descs []ocispec.Descriptor
	for _, e := range b.entries {
		descs = append(descs, e.IndexDescriptor())
	}
	if err := l.WriteIndex(layout.NewIndex(descs)); err != nil {
		t.Fatal(err)
	}
	return b
}

// request is one write the registry received, decoded.
type request struct {
	pos    int
	repo   string
	ref    string        // manifest PUT: tag or digest
	digest digest.Digest // manifest PUT by digest, finished blob upload, or mount request
	blob   bool
}

// writes decodes the manifest PUTs, finished blob uploads (PUT …/blobs/uploads/…?digest=)
// and cross-repository mount requests (POST …/blobs/uploads/?mount=) of a request log.
func writes(t *testing.T, log []string) []request {
	var out []request
	for i, r := range log {
		method, uri, _ := strings.Cut(r, " ")
		if (method != "PUT" && method != "POST") || !strings.HasPrefix(uri, "/v2/") {
			continue
		}
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatalf("request %q: %v", r, err)
		}
		p := strings.TrimPrefix(u.Path, "/v2/")
		if repo, ref, ok := strings.Cut(p, "/manifests/"); ok && method == "PUT" {
			rq := request{pos: i, repo: repo, ref: ref}
			if d, err := digest.Parse(ref); err == nil {
				rq.digest = d
			}
			out = append(out, rq)
			continue
		}
		if repo, _, ok := strings.Cut(p, "/blobs/uploads/"); ok {
			q := u.Query().Get("digest")
			if method == "POST" {
				q = u.Query().Get("mount")
				if q == "" {
					continue // an upload session starts
				}
			}
			d, err := digest.Parse(q)
			if err != nil {
				t.Fatalf("blob write %q without a digest", r)
			}
			out = append(out, request{pos: i, repo: repo, digest: d, blob: true})
		}
	}
	return out
}

// TestUnpackOrder unpacks a bundle into a registry behind a proxy that logs every
// request, and checks the order of what was written: in each repository every blob
// before the manifest naming it, every index child before its index (nested too),
// every subject before what is attached to it, and no tag before all content of
// every repository is in (the referrers tag schema indexes unpack maintains on a
// registry without the referrers API are tags too: after all content, after the
// referrers they list, before the image tag of their repository); per repository, the
// image tag after every cosign tag.
func TestUnpackOrder(t *testing.T) {
	for _, k := range []registrytest.Kind{registrytest.InProcess, registrytest.Distribution} {
		t.Run(string(k), func(t *testing.T) {
			t.Parallel()
			b := newOrderBundle(t)
			r := registrytest.Start(t, k)
			p := registrytest.StartHookProxy(t, r, registrytest.HookOptions{})
			client, err := remote.NewClient(remote.Options{PlainHTTP: true})
			if err != nil {
				t.Fatal(err)
			}
			res, err := unpack.Unpack(context.Background(), unpack.Options{Dir: b.dir, To: p.Host + "/mirror", Client: client, UnsafeSkipVerify: true})
			if err != nil {
				t.Fatalf("unpack: %v", err)
			}
			if len(res.Images) != 2 {
				t.Fatalf("unpack mapped %d images, want 2", len(res.Images))
			}
			log := p.Requests()
			ws := writes(t, log)
			dump := func() string { return strings.Join(log, "\n") }
			nameOf := map[digest.Digest]string{}
			for name, d := range b.m {
				nameOf[d.Digest] = name
			}
			repoOf := map[digest.Digest]string{}
			for _, e := range b.entries {
				repoOf[e.Descriptor.Digest] = "mirror/" + strings.TrimPrefix(e.Repository, "cgr.dev/")
			}

			// where each digest was first written, per repository and anywhere
			type key struct {
				repo string
				d    digest.Digest
			}
			first := map[key]int{}
			anywhere := map[digest.Digest]int{}
			lastContent := -1
			for _, w := range ws {
				if w.digest == "" {
					continue
				}
				if _, ok := first[key{w.repo, w.digest}]; !ok {
					first[key{w.repo, w.digest}] = w.pos
				}
				if _, ok := anywhere[w.digest]; !ok {
					anywhere[w.digest] = w.pos
				}
				lastContent = max(lastContent, w.pos)
			}
			// a manifest's repository: its entry's, or (children) its index's
			var walk func(d digest.Digest, repo string)
			walk = func(d digest.Digest, repo string) {
				if _, ok := repoOf[d]; !ok {
					repoOf[d] = repo
				}
				for _, c := range b.children[d] {
					if _, ok := nameOf[c]; ok {
						walk(c, repo)
					}
				}
			}
			for _, e := range b.entries {
				walk(e.Descriptor.Digest, repoOf[e.Descriptor.Digest])
			}
			at := func(d digest.Digest, repo string) (int, bool) {
				if pos, ok := first[key{repo, d}]; ok {
					return pos, true
				}
				// a blob the registry holds anyway (the in-process registry shares blobs across repositories)
				pos, ok := anywhere[d]
				return pos, ok && k == registrytest.InProcess
			}
			for name, d := range b.m {
				if _, ok := first[key{repoOf[d.Digest], d.Digest}]; !ok {
					t.Fatalf("%s (%s) was never pushed to %s by digest:\n%s", name, d.Digest, repoOf[d.Digest], dump())
				}
			}
			for parent, cs := range b.children {
				repo := repoOf[parent]
				pp := first[key{repo, parent}]
				for _, c := range cs {
					pc, ok := at(c, repo)
					if !ok {
						t.Errorf("%s names %s, which was never written to %s", nameOf[parent], c, repo)
					} else if pc > pp {
						t.Errorf("%s (%s) was pushed to %s before %s %s, which it names", nameOf[parent], parent, repo, nameOf[c], c)
					}
				}
			}
			for att, subj := range b.subject {
				repo := repoOf[att]
				if first[key{repo, subj}] > first[key{repo, att}] {
					t.Errorf("%s was pushed before its subject %s", nameOf[att], nameOf[subj])
				}
			}

			// tags
			imageTag := map[string]int{}
			cosignTags := map[string][]int{}
			referrersTags := map[string][]int{}
			for _, w := range ws {
				if w.blob || w.digest != "" {
					continue
				}
				switch {
				case strings.HasSuffix(w.ref, ".sig") || strings.HasSuffix(w.ref, ".att"):
					cosignTags[w.repo] = append(cosignTags[w.repo], w.pos)
				case strings.HasPrefix(w.ref, "sha256-"):
					// a referrers tag schema index: after the referrers it lists
					d, err := digest.Parse("sha256:" + strings.TrimPrefix(w.ref, "sha256-"))
					if err != nil {
						t.Fatalf("tag %q", w.ref)
					}
					if k != registrytest.Distribution {
						t.Errorf("referrers tag schema index %s written on a registry with the referrers API", w.ref)
					}
					n := 0
					for ref := range b.referrers {
						if b.subject[ref] == d {
							n++
							if first[key{w.repo, ref}] > w.pos {
								t.Errorf("referrers index %s written before its referrer %s", w.ref, nameOf[ref])
							}
						}
					}
					if n == 0 {
						t.Errorf("referrers index %s for a subject without referrers", w.ref)
					}
					referrersTags[w.repo] = append(referrersTags[w.repo], w.pos)
				default:
					imageTag[w.repo+":"+w.ref] = w.pos
				}
				if w.pos < lastContent {
					t.Errorf("tag %s:%s moved before all content was pushed (request %d, last content %d):\n%s", w.repo, w.ref, w.pos, lastContent, dump())
				}
			}
			wantTags := map[string]string{"mirror/chainguard/nginx:1.27": "mirror/chainguard/nginx", "mirror/chainguard/static:latest": "mirror/chainguard/static"}
			for tag, repo := range wantTags {
				pos, ok := imageTag[tag]
				if !ok {
					t.Errorf("image tag %s never pushed:\n%s", tag, dump())
					continue
				}
				for _, c := range cosignTags[repo] {
					if c > pos {
						t.Errorf("a cosign tag of %s moved after its image tag %s", repo, tag)
					}
				}
				for _, c := range referrersTags[repo] {
					if c > pos {
						t.Errorf("a referrers tag schema index of %s moved after its image tag %s", repo, tag)
					}
				}
			}
			if got := len(cosignTags["mirror/chainguard/nginx"]); got != 2 {
				t.Errorf("%d cosign tags pushed in nginx, want 2", got)
			}
			if k == registrytest.Distribution && len(referrersTags["mirror/chainguard/nginx"]) != 2 {
				t.Errorf("referrers tag schema indexes written in nginx at %v, want 2 (the sbom's and the amd64 image's)", referrersTags["mirror/chainguard/nginx"])
			}
			if len(imageTag) != len(wantTags) {
				t.Errorf("image tags pushed: %v, want %v", imageTag, wantTags)
			}
			if testing.Verbose() {
				for _, w := range ws {
					t.Logf("%3d %s %s %s %s", w.pos, w.repo, w.ref, w.digest, nameOf[w.digest])
				}
			}
		})
	}
}
