package conformance

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// graphCase is a bundle tampered with by the holder of the bundle key, and what unpack
// must answer.
type graphCase struct {
	name string
	// policy: unpack with the pinned policy (requireChildSignatures, key authority)
	// the bundle was packed with; else with no image policy at all.
	policy bool
	exit   int
	// tamper edits the bundle, forges its metadata and returns what the refusal must
	// name (any one of them).
	tamper func(t *testing.T, b *hostileBundle) []string
}

// TestHostileGraph: every entry of index.json is routed by annotations the packer
// wrote, and the packer may be hostile. Unpack pushes only what the signed graph
// rules allow, and refuses the whole bundle, before pushing anything, otherwise:
// names outside the distribution grammar (28), entries not reachable from a packed
// image of their own repository (26), content that does not match its kind (27),
// images in index.json and the signed image list that differ (25), and an index
// child that fails requireChildSignatures whether or not it has a child entry (30).
func TestHostileGraph(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newHostileKeys(t)
	src := registrytest.Start(t, registrytest.Olareg)
	imgKey, imgPub, _ := fixture.KeyPair(t)
	nginx := fixture.Chainguard(ctx, t, src.Host, "chainguard/nginx", "1.27", fixture.Options{Seed: 41, Key: imgKey})
	python := fixture.Chainguard(ctx, t, src.Host, "chainguard/python", "3.13", fixture.Options{Seed: 42, Key: imgKey})
	imageKey := writeFile(t, filepath.Join(t.TempDir(), "image.pub"), imgPub)
	pol := writeFile(t, filepath.Join(t.TempDir(), "policy.yaml"), []byte(`apiVersion: petra-oci.dev/v1alpha1
kind: Policy
sources: ["`+src.Host+`/chainguard/**"]
images:
  - glob: "`+src.Host+`/chainguard/**"
    authorities:
      - key:
          path: `+imageKey+`
    requireChildSignatures: true
`))
	plain, _ := packCLI(t, e, keys.bundleKeys, nginx.Repo+":"+nginx.Tag, "--image", python.Repo+":"+python.Tag)
	withPolicy, _ := packCLI(t, e, keys.bundleKeys, nginx.Repo+":"+nginx.Tag, "--image", python.Repo+":"+python.Tag, "--policy", pol)

	N, P := nginx.Repo, python.Repo // source repositories, with host
	nI := nginx.Index.Digest
	nAmd, nArm := nginx.Children["linux/amd64"], nginx.Children["linux/arm64"]
	nBundle := nginx.Referrers[nI][0] // the Sigstore bundle referrer on nginx's index
	ghost := digest.FromString("a subject that is in no bundle")
	ghostSubject := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: ghost, Size: 512}
	// routeRepo routes every index.json entry of repository from to to.
	routeRepo := func(b *hostileBundle, from, to string) {
		if n := b.rewrite(func(e *layout.Entry) bool {
			if e.Repository == from {
				e.Repository = to
			}
			return true
		}); n == 0 {
			t.Fatalf("test bug: no entry of %s", from)
		}
	}
	// moveRepo routes every entry and signed image of repository from to to.
	moveRepo := func(b *hostileBundle, from, to string) {
		routeRepo(b, from, to)
		b.forge(func(m *layout.Metadata) {
			for i, im := range m.Images {
				if im.Repository == from {
					m.Images[i].Repository = to
					m.Images[i].Source = to + strings.TrimPrefix(im.Source, from)
				}
			}
		})
	}
	// retag sets the tag of nginx's image entry and of its signed image list entry.
	retag := func(b *hostileBundle, tag string) {
		if n := b.rewrite(func(e *layout.Entry) bool {
			if e.Kind == oci.KindImage && e.Repository == N {
				e.Tag = tag
			}
			return true
		}); n != 1 {
			t.Fatalf("test bug: %d image entries of %s retagged", n, N)
		}
		b.forge(func(m *layout.Metadata) {
			for i, im := range m.Images {
				if im.Repository == N {
					m.Images[i].Tag = tag
					m.Images[i].Source = N + ":" + tag
				}
			}
		})
	}

	cases := []graphCase{
		// controls: the forger itself breaks nothing
		{"control: re-signed untouched", false, 0, func(t *testing.T, b *hostileBundle) []string {
			b.forge(nil)
			return nil
		}},
		{"control: re-signed untouched, with the policy", true, 0, func(t *testing.T, b *hostileBundle) []string {
			b.forge(nil)
			return nil
		}},

		// names (28)
		{"routing escape: repository host/../../esc under --to host/pfx/team", false, exitInvalidName, func(t *testing.T, b *hostileBundle) []string {
			bad := src.Host + "/../../esc"
			moveRepo(b, N, bad)
			return []string{bad, "../../esc"}
		}},
		{"repository with uppercase letters", false, exitInvalidName, func(t *testing.T, b *hostileBundle) []string {
			bad := src.Host + "/Chainguard/NGINX"
			moveRepo(b, N, bad)
			return []string{"Chainguard/NGINX"}
		}},
		{"repository with an empty path component", false, exitInvalidName, func(t *testing.T, b *hostileBundle) []string {
			bad := src.Host + "/chainguard//nginx"
			moveRepo(b, N, bad)
			return []string{"chainguard//nginx"}
		}},
		{"tag ..x", false, exitInvalidName, func(t *testing.T, b *hostileBundle) []string {
			retag(b, "..x")
			return []string{"..x"}
		}},
		{"tag of 200 characters", false, exitInvalidName, func(t *testing.T, b *hostileBundle) []string {
			tag := strings.Repeat("a", 200)
			retag(b, tag)
			return []string{tag[:40]}
		}},
		{"tag with a slash", false, exitInvalidName, func(t *testing.T, b *hostileBundle) []string {
			retag(b, "1.27/../../latest")
			return []string{"1.27/../../latest"}
		}},

		// orphans (26)
		{"orphan referrer: unsigned runnable image in a repository the policy does not allow", true, exitOrphan, func(t *testing.T, b *hostileBundle) []string {
			miner := b.runnable("miner", ghostSubject)
			b.add(layout.AttachmentEntry(miner, oci.KindReferrer, src.Host+"/evil/miner", "", ghost))
			b.forge(nil)
			return []string{miner.Digest.String(), "evil/miner"}
		}},
		{"referrer moved to another packed repository", false, exitOrphan, func(t *testing.T, b *hostileBundle) []string {
			if n := b.rewrite(func(e *layout.Entry) bool {
				if e.Kind == oci.KindReferrer && e.Descriptor.Digest == nBundle.Digest {
					e.Repository = P
				}
				return true
			}); n != 1 {
				t.Fatalf("test bug: moved %d entries", n)
			}
			b.forge(nil)
			return []string{nBundle.Digest.String()}
		}},
		{"cosign-att listed in python whose subject is nginx's index", false, exitOrphan, func(t *testing.T, b *hostileBundle) []string {
			att := b.entry("nginx's index .att", func(e layout.Entry) bool {
				return e.Kind == oci.KindCosignAtt && e.Subject == nI && e.Repository == N
			})
			b.add(layout.AttachmentEntry(att.Descriptor, oci.KindCosignAtt, P, oci.CosignTag(nI, ".att"), nI))
			b.forge(nil)
			return []string{att.Descriptor.Digest.String(), nI.String()}
		}},
		{"child entry that is no child of any image", false, exitOrphan, func(t *testing.T, b *hostileBundle) []string {
			stray := b.runnable("stray-child", nil)
			stray.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
			b.add(layout.ChildEntry(stray, N))
			b.forge(nil)
			return []string{stray.Digest.String()}
		}},
		{"child entry in python for a child of nginx", false, exitOrphan, func(t *testing.T, b *hostileBundle) []string {
			b.add(layout.ChildEntry(nAmd, P))
			b.forge(nil)
			return []string{nAmd.Digest.String()}
		}},
		{"cosign-sig subject loop A -> B -> A", false, exitOrphan, func(t *testing.T, b *hostileBundle) []string {
			sigA := b.artifact("", oci.MediaTypeCosignSimpleSigning, fixture.SimpleSigningPayload(N, ghost), nil)
			sigB := b.artifact("", oci.MediaTypeCosignSimpleSigning, fixture.SimpleSigningPayload(N, nI), nil)
			b.add(
				layout.AttachmentEntry(sigA, oci.KindCosignSig, N, oci.CosignTag(sigB.Digest, ".sig"), sigB.Digest),
				layout.AttachmentEntry(sigB, oci.KindCosignSig, N, oci.CosignTag(sigA.Digest, ".sig"), sigA.Digest),
			)
			b.forge(nil)
			return []string{sigA.Digest.String(), sigB.Digest.String()}
		}},
		{"referrers index of a subject that is in no bundle", false, exitOrphan, func(t *testing.T, b *hostileBundle) []string {
			ri := b.unsignedIndex()
			b.add(layout.AttachmentEntry(ri, oci.KindReferrersIndex, N, oci.ReferrersTag(ghost), ghost))
			b.forge(nil)
			return []string{ri.Digest.String(), ghost.String()}
		}},

		// kinds (27)
		{"cosign-sig that is a runnable image", false, exitKindMismatch, func(t *testing.T, b *hostileBundle) []string {
			miner := b.runnable("sig-miner", nil)
			if n := b.rewrite(func(e *layout.Entry) bool {
				if e.Kind == oci.KindCosignSig && e.Subject == nI && e.Repository == N {
					e.Descriptor = miner
				}
				return true
			}); n != 1 {
				t.Fatalf("test bug: replaced %d .sig entries", n)
			}
			b.forge(nil)
			return []string{miner.Digest.String()}
		}},
		{"cosign-sbom that is a runnable image", false, exitKindMismatch, func(t *testing.T, b *hostileBundle) []string {
			miner := b.runnable("sbom-miner", nil)
			b.add(layout.AttachmentEntry(miner, oci.KindCosignSBOM, N, oci.CosignTag(nAmd.Digest, ".sbom"), nAmd.Digest))
			b.forge(nil)
			return []string{miner.Digest.String()}
		}},
		{"referrer listed under a subject its manifest does not name", false, exitKindMismatch, func(t *testing.T, b *hostileBundle) []string {
			if n := b.rewrite(func(e *layout.Entry) bool {
				if e.Kind == oci.KindReferrer && e.Descriptor.Digest == nginx.SBOM.Digest {
					e.Subject = nArm.Digest
				}
				return true
			}); n != 1 {
				t.Fatalf("test bug: moved %d SBOM entries", n)
			}
			b.forge(nil)
			return []string{nginx.SBOM.Digest.String()}
		}},
		{"referrer of the signed index that is a runnable image", false, exitKindMismatch, func(t *testing.T, b *hostileBundle) []string {
			// its subject is right; what it carries is a filesystem (referrers.ErrKindMismatch:
			// "an attachment that carries filesystem layers")
			miner := b.runnable("referrer-miner", &ocispec.Descriptor{MediaType: nginx.Index.MediaType, Digest: nI, Size: nginx.Index.Size})
			b.add(layout.AttachmentEntry(miner, oci.KindReferrer, N, "", nI))
			b.forge(nil)
			return []string{miner.Digest.String()}
		}},
		{"entry listed twice: a child manifest also as a referrer of its index", false, exitKindMismatch, func(t *testing.T, b *hostileBundle) []string {
			d := nAmd
			d.Platform = nil
			b.add(layout.AttachmentEntry(d, oci.KindReferrer, N, "", nI))
			b.forge(nil)
			return []string{nAmd.Digest.String()}
		}},

		// the signed image list and index.json (25)
		{"image in index.json, not in the signed image list", false, exitNotCoveredCode, func(t *testing.T, b *hostileBundle) []string {
			child := b.runnable("sneaky", nil)
			child.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
			idx := b.unsignedIndex(child)
			b.add(layout.ImageEntry(idx, N, "sneaky"))
			b.forge(nil)
			return []string{idx.Digest.String(), N + ":sneaky"}
		}},
		{"signed image list names an image index.json lacks", false, exitNotCoveredCode, func(t *testing.T, b *hostileBundle) []string {
			listed := b.runnable("listed-only", nil)
			b.forge(func(m *layout.Metadata) {
				m.Images = append(m.Images, layout.MetadataImage{Source: N + ":listed-only", Repository: N, Tag: "listed-only",
					Digest: listed.Digest, MediaType: listed.MediaType})
			})
			return []string{listed.Digest.String(), N + ":listed-only"}
		}},

		{"index.json routes the image to a repository the signed list does not name", false, exitNotCoveredCode, func(t *testing.T, b *hostileBundle) []string {
			routeRepo(b, N, src.Host+"/chainguard/nginx-evil")
			b.forge(nil)
			return []string{"chainguard/nginx-evil", nI.String()}
		}},
		{"index.json retags the image (the signed list says 1.27)", false, exitNotCoveredCode, func(t *testing.T, b *hostileBundle) []string {
			if n := b.rewrite(func(e *layout.Entry) bool {
				if e.Kind == oci.KindImage && e.Repository == N {
					e.Tag = "latest"
				}
				return true
			}); n != 1 {
				t.Fatalf("test bug: %d image entries retagged", n)
			}
			b.forge(nil)
			return []string{N + ":latest", nI.String()}
		}},

		// the policy (30)
		{"index child unsigned and without a child entry (requireChildSignatures)", true, exitImagePolicy, func(t *testing.T, b *hostileBundle) []string {
			if n := b.rewrite(func(e *layout.Entry) bool {
				return !(e.Repository == N && (e.Descriptor.Digest == nArm.Digest || e.Subject == nArm.Digest))
			}); n < 2 {
				t.Fatalf("test bug: dropped %d entries (the child and its .sig)", n)
			}
			b.forge(nil)
			return []string{nArm.Digest.String()}
		}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := plain
			if tc.policy {
				base = withPolicy
			}
			b := copyBundle(t, base, keys.signer)
			names := tc.tamper(t, b)
			for _, k := range hostileKinds {
				t.Run(string(k), func(t *testing.T) {
					dst := registrytest.Start(t, k)
					extra := []string{"--state", filepath.Join(t.TempDir(), "series.json")}
					if tc.policy {
						extra = append(extra, "--policy", pol)
					}
					r := runPetra(t, e, unpackArgs(keys.bundleKeys, dst.Host+"/pfx/team", b.dir, extra...)...)
					if tc.exit == 0 {
						assertExit(t, "unpack", r, 0)
						for _, img := range []*fixture.Image{nginx, python} {
							repo := "pfx/team/" + strings.SplitN(img.Repo, "/", 2)[1]
							if got := resolveAt(t, dst, repo, img.Tag); got != img.Index.Digest {
								t.Errorf("%s:%s at the destination is %q, want %s", repo, img.Tag, got, img.Index.Digest)
							}
						}
						return
					}
					assertExit(t, "unpack", r, tc.exit, names...)
					assertNothingPushed(t, dst)
				})
			}
		})
	}
}
