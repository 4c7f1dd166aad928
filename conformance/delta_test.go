package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/pack"
	"github.com/petra-oci/petra-oci/receipt"
	"github.com/petra-oci/petra-oci/signing"
	"github.com/petra-oci/petra-oci/unpack"
)

// Exit codes of deltas (cmd/petra-oci/exit.go).
const (
	exitDeltaUnsigned    = 10
	exitDeltaSignature   = 11
	exitDeltaBaseMissing = 16
	exitDeltaInvalid     = 29
)

// TestDelta builds a delta from what the far side really holds, through the CLI, into
// a registry without the referrers API (distribution) and one with it (olareg): pack
// full → unpack --receipt → a new image at the source → pack --since carries exactly
// the blobs the far side lacks → unpack on top (every digest there, cosign still
// verifies the publisher's signatures); the same delta into an empty registry is
// refused before anything is pushed, naming every missing blob; a tampered or
// unsigned receipt is refused by pack; a delta whose expected list was edited (and
// re-signed) fails verify.
func TestDelta(t *testing.T) {
	t.Parallel()
	for _, k := range []registrytest.Kind{registrytest.Distribution, registrytest.Olareg} {
		t.Run("to-"+string(k), func(t *testing.T) {
			t.Parallel()
			deltaCase(t, k)
		})
	}
}

func deltaCase(t *testing.T, k registrytest.Kind) {
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t) // the packer's
	far := newBundleKeys(t)  // the far side's, signing receipts
	work := t.TempDir()
	p := func(name string) string { return filepath.Join(work, name) }

	src := registrytest.Start(t, registrytest.Olareg)
	old := fixture.Chainguard(ctx, t, src.Host, interopRepo, "1.27", fixture.Options{Seed: 301, LayerBytes: 256 << 10})
	full, _ := packCLI(t, e, keys, old.Repo+":1.27")

	dst := registrytest.Start(t, k)
	to := dst.Host + "/mirror"
	state := p("series.json")
	e.petra(unpackArgs(keys, to, full, "--state", state, "--receipt", p("receipt.json"), "--receipt-key", far.priv)...)
	farPub := readAll(t, far.pub)
	rs, err := receipt.ReadVerified(ctx, p("receipt.json"), signing.VerifyOptions{PublicKey: farPub})
	if err != nil {
		t.Fatalf("the receipt unpack wrote does not verify with the far side's key: %v", err)
	}
	rrepo := rs.Receipt.Repository(interopRepo)
	if rrepo == nil || rs.Receipt.Registry != to || rs.Receipt.Bundle == nil || rs.Receipt.Bundle.Sequence != 1 {
		t.Fatalf("receipt: %+v", rs.Receipt)
	}
	held := map[digest.Digest]bool{}
	for _, b := range rrepo.Blobs {
		held[b.Digest] = true
	}
	// `petra-oci receipt` reads the same from the registry, with or without the bundle
	for _, extra := range [][]string{{"--repository", interopRepo}, {"--bundle", full, "--bundle-key", keys.pub}} {
		out := filepath.Join(t.TempDir(), "r.json")
		var rr struct {
			Digest  string           `json:"digest"`
			Receipt *receipt.Receipt `json:"receipt"`
		}
		decodeJSON(t, e.petra(append([]string{"receipt", "--registry", to, "--key", far.priv, "-o", out, "--plain-http", "--output", "json"}, extra...)...), &rr)
		again, err := receipt.ReadVerified(ctx, out, signing.VerifyOptions{PublicKey: farPub})
		if err != nil || again.Digest().String() != rr.Digest {
			t.Fatalf("receipt %v: %v (digest %s, reported %s)", extra, err, again.Digest(), rr.Digest)
		}
		got := again.Receipt.Repository(interopRepo)
		if got == nil || !slices.Equal(got.Manifests, rrepo.Manifests) || !slices.Equal(got.Blobs, rrepo.Blobs) {
			t.Errorf("receipt %v lists %+v, unpack --receipt %+v", extra, got, rrepo)
		}
		if withBundle := extra[0] == "--bundle"; withBundle != (again.Receipt.Bundle != nil) ||
			(withBundle && *again.Receipt.Bundle != *rs.Receipt.Bundle) {
			t.Errorf("receipt %v names bundle %+v, want %v (%+v)", extra, again.Receipt.Bundle, withBundle, rs.Receipt.Bundle)
		}
	}
	oldFull := walkLayout(t, full)
	for d := range oldFull.content {
		if !held[d] {
			t.Errorf("receipt does not list %s, a config or layer of the unpacked image", d)
		}
	}

	// the source moves on: a new image beside the old one (its layers all new; the old
	// image's all shared)
	upd := fixture.Chainguard(ctx, t, src.Host, interopRepo, "1.28", fixture.Options{Seed: 302, LayerBytes: 256 << 10})
	refs := []string{"--image", upd.Repo + ":1.28"}
	full2, _ := packCLI(t, e, keys, old.Repo+":1.27", refs...)
	delta, dres := packCLI(t, e, keys, old.Repo+":1.27", append(refs, "--since", p("receipt.json"), "--receipt-key", far.pub)...)
	if dres.Delta == nil || dres.Delta.Receipt != rs.Digest() {
		t.Fatalf("pack --since result delta = %+v, want receipt %s", dres.Delta, rs.Digest())
	}

	// exactly the blobs the far side lacks: the full bundle's, minus the configs and
	// layers of image manifests that the receipt lists for the repository
	f2, d := walkLayout(t, full2), walkLayout(t, delta)
	wantExpected := map[digest.Digest]bool{}
	for dg := range f2.content {
		if held[dg] {
			wantExpected[dg] = true
		}
	}
	if len(wantExpected) == 0 || len(wantExpected) == len(f2.content) {
		t.Fatalf("the fixture shares %d of %d content blobs with the far side: want some, not all", len(wantExpected), len(f2.content))
	}
	for dg := range f2.files {
		_, carried := d.files[dg]
		if carried == wantExpected[dg] {
			t.Errorf("blob %s: carried in the delta %v, held by the far side %v", dg, carried, wantExpected[dg])
		}
	}
	for dg := range d.files {
		if _, ok := f2.files[dg]; !ok {
			t.Errorf("the delta carries %s, which the full bundle does not", dg)
		}
	}
	m := readMetadata(t, delta)
	if m.Delta == nil || m.Delta.Receipt != rs.Digest() || m.Delta.BundleID != rs.Receipt.Bundle.BundleID || m.Delta.Sequence != 1 ||
		m.Base != rs.Receipt.Bundle.Metadata.String() || m.BundleID != rs.Receipt.Bundle.BundleID || m.Sequence != 2 {
		t.Fatalf("delta metadata: base %s, series %s/%d, delta %+v; receipt %+v", m.Base, m.BundleID, m.Sequence, m.Delta, rs.Receipt.Bundle)
	}
	gotExpected := map[digest.Digest]bool{}
	for _, x := range m.Delta.Expected {
		if x.Repository != old.Repo {
			t.Errorf("expected %s in repository %s, want %s", x.Digest, x.Repository, old.Repo)
		}
		gotExpected[x.Digest] = true
	}
	if !sameSet(gotExpected, wantExpected) {
		t.Errorf("metadata expects %d blobs, want the %d the far side holds: %v vs %v", len(gotExpected), len(wantExpected), keysOf(gotExpected), keysOf(wantExpected))
	}
	vr := e.petra("verify", "--key", keys.pub, "--state", filepath.Join(t.TempDir(), "s.json"), delta)
	if !strings.Contains(vr.stdout, "DELTA against receipt "+rs.Digest().String()) {
		t.Errorf("verify does not say the bundle is a delta:\n%s", vr)
	}
	t.Logf("delta/full size ratio (%s): %d / %d bytes = %.3f (%d of %d blobs carried)", k, d.bytes, f2.bytes, float64(d.bytes)/float64(f2.bytes), len(d.files), len(f2.files))

	// the same delta into an empty registry: refused before anything is pushed, every
	// missing blob named
	t.Run("base absent", func(t *testing.T) {
		empty := registrytest.Start(t, k)
		r := runPetra(t, e, unpackArgs(keys, empty.Host+"/mirror", delta, "--state", filepath.Join(t.TempDir(), "s.json"))...)
		assertExit(t, "unpack of a delta into an empty registry", r, exitDeltaBaseMissing)
		for dg := range wantExpected {
			if !strings.Contains(r.stderr, empty.Host+"/mirror/"+interopRepo+"@"+dg.String()) {
				t.Errorf("stderr does not name missing blob %s:\n%s", dg, r.stderr)
			}
		}
		if n := strings.Count(r.stderr, "@sha256:"); n != len(wantExpected) {
			t.Errorf("stderr names %d blobs, want exactly the %d missing:\n%s", n, len(wantExpected), r.stderr)
		}
		assertNothingPushed(t, empty)
	})

	// a tampered, unsigned or foreign-signed receipt: pack refuses it
	t.Run("receipt refused", func(t *testing.T) {
		dir := t.TempDir()
		b := readAll(t, p("receipt.json"))
		tampered := filepath.Join(dir, "tampered.json")
		writeFile(t, tampered, bytes.Replace(b, []byte(`"chainguard/nginx"`), []byte(`"chainguard/nginy"`), 1))
		writeFile(t, receipt.SignaturePath(tampered), readAll(t, receipt.SignaturePath(p("receipt.json"))))
		unsigned := writeFile(t, filepath.Join(dir, "unsigned.json"), b)
		args := func(rcpt, key string) []string {
			return []string{"pack", "--image", old.Repo + ":1.27", "-o", filepath.Join(t.TempDir(), "b"), "--plain-http", "--key", keys.priv,
				"--sbom=false", "--since", rcpt, "--receipt-key", key}
		}
		assertExit(t, "pack --since a tampered receipt", runPetra(t, e, args(tampered, far.pub)...), exitDeltaSignature)
		assertExit(t, "pack --since an unsigned receipt", runPetra(t, e, args(unsigned, far.pub)...), exitDeltaUnsigned)
		assertExit(t, "pack --since a receipt of another key", runPetra(t, e, args(p("receipt.json"), keys.pub)...), exitDeltaSignature)
	})

	// a delta whose expected list was edited and re-signed with the bundle key: verify
	// refuses it, naming the blob
	t.Run("edited expected list", func(t *testing.T) {
		drop := m.Delta.Expected[0]
		cases := map[string]func(*layout.Metadata){
			"entry removed": func(m *layout.Metadata) { m.Delta.Expected = m.Delta.Expected[1:] },
			"entry added": func(m *layout.Metadata) {
				m.Delta.Expected = append(m.Delta.Expected, layout.ExpectedBlob{Repository: "zz.example/x", Digest: digest.FromString("nothing"), Size: 7})
			},
		}
		for name, edit := range cases {
			t.Run(name, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "delta")
				copyTree(t, delta, dir)
				mm := readMetadata(t, dir)
				edit(mm)
				b, err := layout.EncodeMetadata(mm)
				must(t, err)
				writeFile(t, filepath.Join(dir, layout.MetadataPath), b)
				resignDelta(t, keys, dir, b)
				r := runPetra(t, e, "verify", "--key", keys.pub, "--state", filepath.Join(t.TempDir(), "s.json"), dir)
				assertExit(t, "verify of a delta with an edited expected list", r, exitDeltaInvalid, drop.Digest.String(), digest.FromString("nothing").String())
			})
		}
	})

	// on top of the base: accepted, every digest there, the publisher's signatures verify
	var ures unpack.Result
	decodeJSON(t, e.petra(unpackArgs(keys, to, delta, "--state", state, "--output", "json")...), &ures)
	if ures.Expected != len(wantExpected) {
		t.Errorf("unpack of the delta found %d expected blobs, want %d", ures.Expected, len(wantExpected))
	}
	repo := dst.Repository(t, "mirror/"+interopRepo)
	for dg, desc := range f2.files {
		var ok bool
		var err error
		if f2.manifests[dg] {
			ok, err = repo.Manifests().Exists(ctx, desc)
		} else {
			ok, err = repo.Blobs().Exists(ctx, desc)
		}
		if err != nil || !ok {
			t.Errorf("after the delta, %s (%s) is not at the destination: %v", dg, desc.MediaType, err)
		}
	}
	at := dst.Host + "/mirror/" + interopRepo + "@"
	oldPub := writeFile(t, p("old.pub"), old.PublicKeyPEM)
	updPub := writeFile(t, p("upd.pub"), upd.PublicKeyPEM)
	runCosign(t, e,
		cosignCase{"verify", oldPub, at + old.Index.Digest.String(), nil, true, cosignBundleMarker},
		cosignCase{"verify", updPub, at + upd.Index.Digest.String(), nil, true, cosignBundleMarker},
		cosignCase{"verify", updPub, at + upd.Children["linux/arm64"].Digest.String(), nil, true, cosignLegacyMarker},
		cosignCase{"verify", oldPub, at + upd.Index.Digest.String(), nil, false, ""},
	)
}

// layoutBlobs is what a bundle directory carries.
type layoutBlobs struct {
	files     map[digest.Digest]ocispec.Descriptor // every blob file, with its media type when known
	manifests map[digest.Digest]bool               // the manifests unpack pushes
	content   map[digest.Digest]bool               // configs and layers of image and child manifests
	bytes     int64                                // the size of every blob file
}

// walkLayout reads a bundle's blobs and index.json (unverified: the test wrote it).
func walkLayout(t *testing.T, dir string) layoutBlobs {
	t.Helper()
	out := layoutBlobs{files: map[digest.Digest]ocispec.Descriptor{}, manifests: map[digest.Digest]bool{}, content: map[digest.Digest]bool{}}
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	must(t, err)
	for _, f := range ents {
		fi, err := f.Info()
		must(t, err)
		dg := digest.NewDigestFromEncoded(digest.SHA256, f.Name())
		out.files[dg] = ocispec.Descriptor{Digest: dg, Size: fi.Size()}
		out.bytes += fi.Size()
	}
	var idx ocispec.Index
	must(t, json.Unmarshal(readAll(t, filepath.Join(dir, "index.json")), &idx))
	var walk func(d ocispec.Descriptor, content bool)
	walk = func(d ocispec.Descriptor, content bool) {
		if out.manifests[d.Digest] {
			return
		}
		b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", d.Digest.Encoded()))
		if err != nil {
			return // a child left out
		}
		out.manifests[d.Digest] = true
		out.files[d.Digest] = ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size}
		man, err := oci.ParseManifest(d, b)
		must(t, err)
		if oci.IsIndex(d.MediaType) {
			for _, c := range man.Manifests {
				walk(c, content)
			}
			return
		}
		for _, c := range man.Children() {
			if content {
				out.content[c.Digest] = true
			}
			if f, ok := out.files[c.Digest]; ok && f.MediaType == "" {
				f.MediaType = c.MediaType
				out.files[c.Digest] = f
			}
		}
	}
	for _, d := range idx.Manifests {
		kind := oci.Kind(d.Annotations[oci.AnnotationKind])
		if kind == oci.KindReferrersIndex {
			delete(out.files, d.Digest) // derived for layout readers, never pushed
			continue
		}
		walk(d, kind == oci.KindImage || kind == oci.KindChild)
	}
	return out
}

func readMetadata(t *testing.T, dir string) *layout.Metadata {
	t.Helper()
	m, err := layout.ParseMetadata(readAll(t, filepath.Join(dir, layout.MetadataPath)))
	must(t, err)
	return m
}

// resignDelta signs metadata bytes b of dir with the bundle key, as a packer holding the
// key could (petra-oci sign refuses to sign a delta that does not match its metadata).
func resignDelta(t *testing.T, keys bundleKeys, dir string, b []byte) {
	t.Helper()
	s, err := signing.LoadSigner(context.Background(), keys.priv, func() ([]byte, error) { return []byte{}, nil })
	must(t, err)
	sig, err := signing.SignBlob(context.Background(), s, bytes.NewReader(b))
	must(t, err)
	writeFile(t, filepath.Join(dir, layout.SignaturePath), sig)
}

func sameSet(a, b map[digest.Digest]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func keysOf(m map[digest.Digest]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k.String())
	}
	sort.Strings(out)
	return out
}

var _ = pack.Result{}
