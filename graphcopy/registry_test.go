package graphcopy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/graphcopy"
	"github.com/petra-oci/petra-oci/internal/registrytest"
)

// TestCopyMountRegistry copies an image into a real registry's repository with
// MountFrom naming another repository of that registry, through a proxy that records
// every request. Distribution, holding the blobs in the other repository, answers the
// mount with 201: no blob byte is uploaded and the source is not read again.
// Distribution without them, and the in-process registry (which never mounts),
// answer 202: oras-go uploads the blob from the source within the same call, and
// graphcopy counts it as a mount asked for (Mounted, see its doc). Either way the
// blobs end up in the repository, byte for byte.
func TestCopyMountRegistry(t *testing.T) {
	const from, to = "chainguard/base", "chainguard/nginx"
	cases := []struct {
		name    string
		kind    registrytest.Kind
		seed    bool // the blobs are pushed to from first
		mounted bool // the registry mounts them (201)
	}{
		{"distribution accepts", registrytest.Distribution, true, true},
		{"distribution declines a blob it does not hold", registrytest.Distribution, false, false},
		{"in-process registry declines", registrytest.InProcess, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r := registrytest.Start(t, tc.kind)
			p := registrytest.StartHookProxy(t, r, registrytest.HookOptions{})
			repo := func(name string) *remote.Repository {
				rr, err := remote.NewRepository(p.Host + "/" + name)
				if err != nil {
					t.Fatal(err)
				}
				rr.PlainHTTP = true
				return rr
			}
			g := newGraph(t)
			img := g.image("mounted across repositories")
			if tc.seed {
				if _, err := graphcopy.New(repo(from), graphcopy.Options{}).Copy(ctx, g.src, img, nil); err != nil {
					t.Fatalf("seeding %s: %v", from, err)
				}
			}
			fetchesBefore := g.src.total(g.src.fetches)
			before := len(p.Requests())

			var reports blobCounter
			dst := repo(to)
			c := graphcopy.New(dst, graphcopy.Options{
				MountFrom: func(ocispec.Descriptor) []string { return []string{from} },
				OnBlob:    reports.onBlob,
			})
			if _, err := c.Copy(ctx, g.src, img, nil); err != nil {
				t.Fatalf("Copy into %s: %v", to, err)
			}
			reqs := p.Requests()[before:]
			var mounts, uploads []string
			for _, rq := range reqs {
				method, uri, _ := strings.Cut(rq, " ")
				if !strings.HasPrefix(uri, "/v2/"+to+"/blobs/uploads/") {
					continue
				}
				switch {
				case method == http.MethodPost && strings.Contains(uri, "mount=") && strings.Contains(uri, "from="+from):
					mounts = append(mounts, rq)
				case method == http.MethodPut || method == http.MethodPatch:
					uploads = append(uploads, rq)
				}
			}
			if len(mounts) != len(g.blobs) {
				t.Errorf("%d mount requests, want one per blob (%d):\n%s", len(mounts), len(g.blobs), strings.Join(reqs, "\n"))
			}
			st := c.Stats()
			if st.BlobsMounted != int64(len(g.blobs)) || st.BlobsCopied != 0 || st.BytesCopied != 0 {
				t.Errorf("stats %+v, want %d mounted, none copied", st, len(g.blobs))
			}
			srcReads := g.src.total(g.src.fetches) - fetchesBefore
			if tc.mounted {
				if len(uploads) != 0 {
					t.Errorf("blob bytes uploaded although the registry mounted them:\n%s", strings.Join(uploads, "\n"))
				}
				if srcReads != 1 { // the manifest only
					t.Errorf("%d reads of the source, want 1 (the manifest; no blob)", srcReads)
				}
			} else {
				if len(uploads) != len(g.blobs) {
					t.Errorf("%d uploads after declined mounts, want %d:\n%s", len(uploads), len(g.blobs), strings.Join(reqs, "\n"))
				}
				if srcReads != 1+len(g.blobs) {
					t.Errorf("%d reads of the source, want %d (manifest and each blob once)", srcReads, 1+len(g.blobs))
				}
			}
			for d, desc := range g.blobs {
				b, err := content.FetchAll(ctx, dst, desc)
				if err != nil {
					t.Errorf("blob %s not in %s: %v", d, to, err)
					continue
				}
				if want := g.src.content[d]; string(b) != string(want) {
					t.Errorf("blob %s differs in %s", d, to)
				}
			}
			if ok, err := dst.Exists(ctx, img); err != nil || !ok {
				t.Errorf("manifest not in %s (%v)", to, err)
			}
		})
	}
}
