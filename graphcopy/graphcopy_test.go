package graphcopy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/graphcopy"
)

// TestCopySharedBlobOnce: a base layer shared by many images is fetched, checked and
// uploaded once per Copier, whether the images are copied at the same time (children
// of one index, all asking for the layer while its upload is in flight) or one after
// the other; every other blob once too; the stats count each blob once.
func TestCopySharedBlobOnce(t *testing.T) {
	ctx := context.Background()
	const n = 8
	g := newGraph(t)
	base := g.blob(ocispec.MediaTypeImageLayerGzip, "wolfi base layer")
	var children []ocispec.Descriptor
	for i := range n {
		d := g.image(fmt.Sprint("platform ", i), base)
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: fmt.Sprint("arch", i)}
		children = append(children, d)
	}
	idx := g.index(children...)
	var solos []ocispec.Descriptor
	for i := range 3 {
		solos = append(solos, g.image(fmt.Sprint("solo ", i), base))
	}

	dst := newStore()
	// the shared layer's upload is slow: every child asks for it while it is in flight
	dst.beforePush = func(_ context.Context, d ocispec.Descriptor, _ int) error {
		if d.Digest == base.Digest {
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}
	var reports blobCounter
	c := graphcopy.New(dst, graphcopy.Options{Concurrency: n, OnBlob: reports.onBlob})
	nodes, err := c.Copy(ctx, g.src, idx, nil)
	if err != nil {
		t.Fatalf("Copy index: %v", err)
	}
	if len(nodes) != n+1 || nodes[0].Descriptor.Digest != idx.Digest || nodes[0].Parent != nil {
		t.Fatalf("Copy returned %d nodes, want the index first and its %d children", len(nodes), n)
	}
	for i, nd := range nodes[1:] {
		if nd.Position != i || nd.Descriptor.Digest != children[i].Digest || nd.Parent == nil || nd.Parent.Digest != idx.Digest {
			t.Errorf("node %d: position %d, digest %s, want child %d %s", i+1, nd.Position, nd.Descriptor.Digest, i, children[i].Digest)
		}
	}
	for _, s := range solos {
		if _, err := c.Copy(ctx, g.src, s, nil); err != nil {
			t.Fatalf("Copy image %s: %v", s.Digest, err)
		}
	}

	if got := dst.count(dst.pushes, base.Digest); got != 1 {
		t.Errorf("shared layer pushed %d times, want 1", got)
	}
	if got := g.src.count(g.src.fetches, base.Digest); got != 1 {
		t.Errorf("shared layer fetched %d times, want 1", got)
	}
	if got := dst.count(dst.exists, base.Digest); got != 1 {
		t.Errorf("shared layer checked in the target %d times, want 1", got)
	}
	for d := range g.blobs {
		if got := dst.count(dst.pushes, d); got != 1 {
			t.Errorf("blob %s pushed %d times, want 1", d, got)
		}
	}
	st := c.Stats()
	if st.BlobsCopied != int64(len(g.blobs)) || st.BlobsExisted != 0 || st.BlobsMounted != 0 {
		t.Errorf("stats %+v, want %d blobs copied, none existed or mounted", st, len(g.blobs))
	}
	if st.BytesCopied != g.size() {
		t.Errorf("BytesCopied = %d, want %d (each distinct blob once)", st.BytesCopied, g.size())
	}
	if st.Manifests != n+1+3 {
		t.Errorf("Manifests = %d, want %d", st.Manifests, n+1+3)
	}
	if got := reports.reports()[base.Digest]; !slices.Equal(got, []string{"copied"}) {
		t.Errorf("OnBlob for the shared layer: %v, want [copied]", got)
	}

	// a new Copier into the same target finds the layer there: checked once, not pushed
	late := g.image("late", base)
	c2 := graphcopy.New(dst, graphcopy.Options{})
	if _, err := c2.Copy(ctx, g.src, late, nil); err != nil {
		t.Fatal(err)
	}
	if st := c2.Stats(); st.BlobsExisted != 1 || st.BlobsCopied != 2 {
		t.Errorf("second Copier: stats %+v, want 1 blob existed (the shared layer), 2 copied", st)
	}
	if got := dst.count(dst.pushes, base.Digest); got != 1 {
		t.Errorf("shared layer pushed %d times after a second Copier, want 1", got)
	}
}

// TestCopyRetryAfterFailedTransfer pins what graphcopy does when a blob transfer
// fails (the first push to the target, or the first fetch from the source): Copy
// fails, naming the blob and wrapping the cause, after one attempt (graphcopy does
// not retry by itself) and without writing the manifest that names the blob; the
// next Copy on the same Copier tries that blob again (a failure is not remembered)
// and transfers nothing that already succeeded.
func TestCopyRetryAfterFailedTransfer(t *testing.T) {
	errFlaky := errors.New("connection reset by peer")
	for _, side := range []string{"push", "fetch"} {
		t.Run(side, func(t *testing.T) {
			ctx := context.Background()
			g := newGraph(t)
			flaky := g.blob(ocispec.MediaTypeImageLayerGzip, "flaky layer")
			img := g.image("retry", flaky)
			dst := newStore()
			failFirst := func(_ context.Context, d ocispec.Descriptor, attempt int) error {
				if d.Digest == flaky.Digest && attempt == 1 {
					return errFlaky
				}
				return nil
			}
			attempts := func() int { return dst.count(dst.pushes, flaky.Digest) }
			want := "writing blob " + flaky.Digest.String()
			if side == "fetch" {
				g.src.beforeFetch = failFirst
				attempts = func() int { return g.src.count(g.src.fetches, flaky.Digest) }
				want = "fetching blob " + flaky.Digest.String()
			} else {
				dst.beforePush = failFirst
			}
			c := graphcopy.New(dst, graphcopy.Options{})

			_, err := c.Copy(ctx, g.src, img, nil)
			if !errors.Is(err, errFlaky) {
				t.Fatalf("first Copy: err = %v, want it to wrap %q", err, errFlaky)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("first Copy: error %q does not say %q", err, want)
			}
			if got := attempts(); got != 1 {
				t.Errorf("first Copy: %d attempts at the flaky blob, want 1 (graphcopy does not retry within a call)", got)
			}
			if dst.has(img.Digest) || c.Stats().Manifests != 0 {
				t.Errorf("the manifest was written although its layer failed")
			}

			if _, err := c.Copy(ctx, g.src, img, nil); err != nil {
				t.Fatalf("second Copy on the same Copier: %v (the failed transfer must be tried again)", err)
			}
			if got := attempts(); got != 2 {
				t.Errorf("after the second Copy: %d attempts at the flaky blob, want 2", got)
			}
			if !dst.has(img.Digest) || !dst.has(flaky.Digest) {
				t.Errorf("after the second Copy the target lacks the manifest or the layer")
			}
			for d := range g.blobs {
				if d != flaky.Digest && dst.count(dst.pushes, d) != 1 {
					t.Errorf("blob %s pushed %d times, want 1", d, dst.count(dst.pushes, d))
				}
			}
			if st := c.Stats(); st.BlobsCopied != int64(len(g.blobs)) || st.BlobsExisted != 0 || st.Manifests != 1 {
				t.Errorf("stats %+v, want %d blobs copied, none existed, 1 manifest", st, len(g.blobs))
			}
		})
	}
}

// mountStore is a target that can mount: mount decides what a cross-repository mount
// does (the registry's answer); every request is recorded.
type mountStore struct {
	*store
	mount func(ctx context.Context, s *mountStore, desc ocispec.Descriptor, from string, getContent func() (io.ReadCloser, error)) error

	mu       sync.Mutex
	requests []string // "<digest> from <repo>"
}

func (m *mountStore) Mount(ctx context.Context, desc ocispec.Descriptor, from string, getContent func() (io.ReadCloser, error)) error {
	m.mu.Lock()
	m.requests = append(m.requests, desc.Digest.String()+" from "+from)
	m.mu.Unlock()
	return m.mount(ctx, m, desc, from, getContent)
}

func (m *mountStore) mounts() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.requests)
}

// link mounts as a registry that holds the blob in the other repository: the blob
// appears without a byte sent.
func link(src *store) func(context.Context, *mountStore, ocispec.Descriptor, string, func() (io.ReadCloser, error)) error {
	return func(_ context.Context, m *mountStore, d ocispec.Descriptor, _ string, _ func() (io.ReadCloser, error)) error {
		src.mu.Lock()
		b := src.content[d.Digest]
		src.mu.Unlock()
		m.store.mu.Lock()
		m.store.content[d.Digest] = b
		m.store.mu.Unlock()
		return nil
	}
}

// TestCopyMountFallback: with MountFrom, every blob the target lacks is first asked
// for by cross-repository mount. A mount the target refuses falls back to fetching
// from the source and pushing; an accepted mount moves no byte (no fetch, no push);
// a registry that declines but takes the upload within the mount call (HTTP 202)
// gets the bytes from the source and is counted as a mount; several repositories are
// tried in order.
func TestCopyMountFallback(t *testing.T) {
	errRefused := errors.New("mount refused: denied")
	cases := []struct {
		name  string
		from  []string
		mount func(*store) func(context.Context, *mountStore, ocispec.Descriptor, string, func() (io.ReadCloser, error)) error
		// per blob: mount requests, source fetches, target pushes; how it is reported
		mounts, fetches, pushes int
		how                     string
	}{
		{"refused", []string{"chainguard/base"}, func(*store) func(context.Context, *mountStore, ocispec.Descriptor, string, func() (io.ReadCloser, error)) error {
			return func(context.Context, *mountStore, ocispec.Descriptor, string, func() (io.ReadCloser, error)) error {
				return errRefused
			}
		}, 1, 1, 1, "copied"},
		{"accepted", []string{"chainguard/base"}, link, 1, 0, 0, "mounted"},
		{"declined, uploaded in the call", []string{"chainguard/base"}, func(*store) func(context.Context, *mountStore, ocispec.Descriptor, string, func() (io.ReadCloser, error)) error {
			return func(ctx context.Context, m *mountStore, d ocispec.Descriptor, _ string, getContent func() (io.ReadCloser, error)) error {
				rc, err := getContent()
				if err != nil {
					return err
				}
				defer rc.Close()
				return m.store.Push(ctx, d, rc)
			}
		}, 1, 1, 1, "mounted"},
		{"first refused, second accepted", []string{"chainguard/other", "chainguard/base"}, func(src *store) func(context.Context, *mountStore, ocispec.Descriptor, string, func() (io.ReadCloser, error)) error {
			return func(ctx context.Context, m *mountStore, d ocispec.Descriptor, from string, gc func() (io.ReadCloser, error)) error {
				if from != "chainguard/base" {
					return errRefused
				}
				return link(src)(ctx, m, d, from, gc)
			}
		}, 2, 0, 0, "mounted"},
		{"no MountFrom", nil, func(*store) func(context.Context, *mountStore, ocispec.Descriptor, string, func() (io.ReadCloser, error)) error {
			return func(context.Context, *mountStore, ocispec.Descriptor, string, func() (io.ReadCloser, error)) error {
				return errors.New("Mount called without MountFrom")
			}
		}, 0, 1, 1, "copied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			g := newGraph(t)
			img := g.image("mount me")
			dst := &mountStore{store: newStore(), mount: tc.mount(g.src)}
			var reports blobCounter
			opts := graphcopy.Options{OnBlob: reports.onBlob}
			if tc.from != nil {
				opts.MountFrom = func(ocispec.Descriptor) []string { return tc.from }
			}
			c := graphcopy.New(dst, opts)
			if _, err := c.Copy(ctx, g.src, img, nil); err != nil {
				t.Fatalf("Copy: %v", err)
			}
			if !dst.has(img.Digest) {
				t.Fatal("manifest not in the target")
			}
			if got, want := len(dst.mounts()), tc.mounts*len(g.blobs); got != want {
				t.Errorf("%d mount requests %v, want %d", got, dst.mounts(), want)
			}
			for d := range g.blobs {
				if !dst.has(d) {
					t.Errorf("blob %s not in the target", d)
				}
				if got := g.src.count(g.src.fetches, d); got != tc.fetches {
					t.Errorf("blob %s fetched from the source %d times, want %d", d, got, tc.fetches)
				}
				if got := dst.count(dst.pushes, d); got != tc.pushes {
					t.Errorf("blob %s pushed %d times, want %d", d, got, tc.pushes)
				}
				if got := reports.reports()[d]; !slices.Equal(got, []string{tc.how}) {
					t.Errorf("blob %s reported %v, want [%s]", d, got, tc.how)
				}
			}
			st := c.Stats()
			nb := int64(len(g.blobs))
			switch tc.how {
			case "copied":
				if st.BlobsCopied != nb || st.BlobsMounted != 0 || st.BytesCopied != g.size() {
					t.Errorf("stats %+v, want %d copied (%d bytes), none mounted", st, nb, g.size())
				}
			case "mounted":
				if st.BlobsMounted != nb || st.BlobsCopied != 0 || st.BytesCopied != 0 {
					t.Errorf("stats %+v, want %d mounted, none copied, 0 bytes", st, nb)
				}
			}
			if tc.pushes == 0 {
				manifest := img.Size
				if got := dst.store.bytesIn; got != manifest {
					t.Errorf("%d bytes pushed to the target, want only the manifest's %d", got, manifest)
				}
			}
		})
	}
}

// TestCopyConcurrencyBound (after oras-go's TestCopyGraph_WithConcurrencyLimit):
// never more than Options.Concurrency blob transfers are in flight, and with enough
// work that many are (each push waits, up to a bound, for the others to arrive, so
// the limit is reached whenever it is allowed). The zero value allows 4.
func TestCopyConcurrencyBound(t *testing.T) {
	for _, limit := range []int{1, 2, 3, 5, 0} {
		t.Run(fmt.Sprint("concurrency ", limit), func(t *testing.T) {
			want := limit
			if want <= 0 {
				want = 4
			}
			g := newGraph(t)
			var children []ocispec.Descriptor
			for i := range 6 {
				children = append(children, g.image(fmt.Sprint("c", i)))
			}
			idx := g.index(children...)
			dst := newStore()
			dst.beforePush = func(_ context.Context, d ocispec.Descriptor, _ int) error {
				if _, ok := g.blobs[d.Digest]; !ok {
					return nil
				}
				deadline := time.Now().Add(300 * time.Millisecond)
				for dst.inflightNow() < want && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(10 * time.Millisecond) // overlap: a transfer over the limit would show
				return nil
			}
			if _, err := graphcopy.New(dst, graphcopy.Options{Concurrency: limit}).Copy(context.Background(), g.src, idx, nil); err != nil {
				t.Fatal(err)
			}
			dst.mu.Lock()
			got := dst.maxInflight
			dst.mu.Unlock()
			if got != want {
				t.Errorf("at most %d blob pushes in flight at once, want exactly %d (%d blobs to copy)", got, want, len(g.blobs))
			}
			for d := range g.blobs {
				if !dst.has(d) {
					t.Errorf("blob %s not copied", d)
				}
			}
		})
	}
}

// TestCopyCancel: a cancelled context ends a Copy with context.Canceled and writes no
// manifest, even when the target does not notice the cancellation: a transfer waiting
// for a slot gives up at once (it never reaches the target), and a Copy waiting for
// another Copy's transfer of the same blob returns while that transfer is still stuck.
func TestCopyCancel(t *testing.T) {
	t.Run("before the copy", func(t *testing.T) {
		g := newGraph(t)
		img := g.image("never")
		dst := newStore()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := graphcopy.New(dst, graphcopy.Options{}).Copy(ctx, g.src, img, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if n := dst.total(dst.pushes); n != 0 {
			t.Errorf("%d pushes to the target", n)
		}
	})

	t.Run("waiting for a transfer slot", func(t *testing.T) {
		g := newGraph(t)
		img := g.image("slot")
		dst := newStore()
		started, release := make(chan digest.Digest, 1), make(chan struct{})
		var once sync.Once
		dst.beforePush = func(_ context.Context, d ocispec.Descriptor, _ int) error {
			if _, ok := g.blobs[d.Digest]; ok {
				once.Do(func() { started <- d.Digest; <-release }) // stuck, deaf to ctx
			}
			return nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := graphcopy.New(dst, graphcopy.Options{Concurrency: 1}).Copy(ctx, g.src, img, nil)
			done <- err
		}()
		first := <-started
		cancel()
		time.Sleep(300 * time.Millisecond) // the waiting transfer sees the cancellation
		close(release)
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Copy did not return after its context was cancelled and the stuck push released")
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		for d := range g.blobs {
			if d != first {
				if n := dst.count(dst.exists, d); n != 0 {
					t.Errorf("blob %s, waiting for a slot when the context was cancelled, was checked in the target %d times, want 0", d, n)
				}
			}
		}
		if dst.has(img.Digest) {
			t.Error("manifest written by a cancelled copy")
		}
	})

	t.Run("waiting for another copy's transfer", func(t *testing.T) {
		g := newGraph(t)
		shared := g.blob(ocispec.MediaTypeImageLayerGzip, "shared, stuck")
		img1, img2 := g.image("one", shared), g.image("two", shared)
		dst := newStore()
		started, release := make(chan struct{}), make(chan struct{})
		dst.beforePush = func(_ context.Context, d ocispec.Descriptor, _ int) error {
			if d.Digest == shared.Digest {
				close(started)
				<-release // stuck, deaf to ctx
			}
			return nil
		}
		defer func() {
			select {
			case <-release:
			default:
				close(release)
			}
		}()
		c := graphcopy.New(dst, graphcopy.Options{})
		done1 := make(chan error, 1)
		go func() {
			_, err := c.Copy(context.Background(), g.src, img1, nil)
			done1 <- err
		}()
		<-started
		ctx2, cancel2 := context.WithCancel(context.Background())
		done2 := make(chan error, 1)
		go func() {
			_, err := c.Copy(ctx2, g.src, img2, nil)
			done2 <- err
		}()
		// img2's own blobs are copied; its shared layer waits for img1's transfer
		for deadline := time.Now().Add(10 * time.Second); dst.total(dst.pushes) < 5; {
			if time.Now().After(deadline) {
				t.Fatalf("img2's own blobs were not pushed (%d pushes)", dst.total(dst.pushes))
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		cancel2()
		select {
		case err := <-done2:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled Copy: err = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a cancelled Copy waiting for another copy's transfer did not return while that transfer was stuck")
		}
		if dst.has(img2.Digest) {
			t.Error("manifest of the cancelled copy written")
		}
		close(release)
		if err := <-done1; err != nil {
			t.Fatalf("the other Copy: %v", err)
		}
		if n := dst.count(dst.pushes, shared.Digest); n != 1 {
			t.Errorf("shared layer pushed %d times, want 1", n)
		}
	})
}

// TestCopyChildrenBeforeParents: a manifest is pushed only after everything it names
// is in the target — an image manifest after its config and layers, an index after
// its children, a nested index too — so no manifest in the target ever points at
// content that is not there. Copy returns the manifests root first, then depth first
// in index order, however the concurrent copies finish. Manifests are walked even when the target holds them:
// a child manifest that an interrupted copy left in the target without its layer
// gets the layer, and is not pushed again.
func TestCopyChildrenBeforeParents(t *testing.T) {
	ctx := context.Background()
	g := newGraph(t)
	names := map[digest.Digest][]digest.Digest{} // manifest -> what it names
	img := func(seed string) ocispec.Descriptor {
		d := g.image(seed)
		b := g.src.content[d.Digest]
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		names[d.Digest] = append(names[d.Digest], m.Config.Digest)
		for _, l := range m.Layers {
			names[d.Digest] = append(names[d.Digest], l.Digest)
		}
		return d
	}
	idx := func(children ...ocispec.Descriptor) ocispec.Descriptor {
		d := g.index(children...)
		for _, c := range children {
			names[d.Digest] = append(names[d.Digest], c.Digest)
		}
		return d
	}
	inner := img("inner")
	nested := idx(inner)
	img0, img1 := img("zero"), img("one")
	root := idx(img0, nested, img1)

	dst := newStore()
	// an interrupted copy left img0's manifest in the target, without its layers
	dst.put(img0.MediaType, g.src.content[img0.Digest])
	nodes, err := graphcopy.New(dst, graphcopy.Options{Concurrency: 4}).Copy(ctx, g.src, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	// the manifests, root first, then depth first in index order
	want := []digest.Digest{root.Digest, img0.Digest, nested.Digest, inner.Digest, img1.Digest}
	var got []digest.Digest
	for _, n := range nodes {
		got = append(got, n.Descriptor.Digest)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Copy returned %v, want %v (root, img0, nested, its child inner, img1)", got, want)
	}
	pos := map[digest.Digest]int{}
	dst.mu.Lock()
	for i, d := range dst.stored {
		if _, dup := pos[d]; dup {
			t.Errorf("%s pushed twice", d)
		}
		pos[d] = i
	}
	dst.mu.Unlock()
	for m, cs := range names {
		pm, pushed := pos[m]
		if !pushed && m != img0.Digest {
			t.Errorf("manifest %s not pushed", m)
			continue
		}
		for _, c := range cs {
			pc, ok := pos[c]
			if !ok {
				if c == img0.Digest {
					continue // already there
				}
				t.Errorf("%s, named by %s, not pushed", c, m)
			} else if pushed && pc > pm {
				t.Errorf("manifest %s pushed before %s, which it names", m, c)
			}
		}
	}
	if _, ok := pos[img0.Digest]; ok {
		t.Errorf("img0's manifest, already in the target, pushed again")
	}
	for _, c := range names[img0.Digest] {
		if !dst.has(c) {
			t.Errorf("img0's blob %s missing after the copy (the manifest in the target was not walked)", c)
		}
	}
}

// TestCopyWaiterOutlivesOtherCopy: a Copy waiting for another Copy's transfer of the
// same blob does not inherit that transfer's failure. The first copy's context is
// cancelled while its upload of the shared layer is in flight; the second copy, whose
// context is fine, transfers the layer itself and completes.
func TestCopyWaiterOutlivesOtherCopy(t *testing.T) {
	for _, cause := range []string{"cancelled", "failed"} {
		t.Run(cause, func(t *testing.T) {
			g := newGraph(t)
			shared := g.blob(ocispec.MediaTypeImageLayerGzip, "shared layer")
			img1, img2 := g.image("one", shared), g.image("two", shared)
			dst := newStore()
			started := make(chan struct{})
			errBroken := errors.New("the first copy's source broke")
			dst.beforePush = func(ctx context.Context, d ocispec.Descriptor, attempt int) error {
				if d.Digest == shared.Digest && attempt == 1 {
					close(started)
					if cause == "failed" {
						time.Sleep(200 * time.Millisecond) // the second copy is waiting by now
						return errBroken
					}
					<-ctx.Done() // held until the first copy is cancelled
					return ctx.Err()
				}
				return nil
			}
			c := graphcopy.New(dst, graphcopy.Options{})
			ctx1, cancel1 := context.WithCancel(context.Background())
			defer cancel1()
			done1 := make(chan error, 1)
			go func() {
				_, err := c.Copy(ctx1, g.src, img1, nil)
				done1 <- err
			}()
			<-started
			done2 := make(chan error, 1)
			go func() {
				_, err := c.Copy(context.Background(), g.src, img2, nil)
				done2 <- err
			}()
			// img2's own blobs are copied; its shared layer waits for img1's transfer
			for deadline := time.Now().Add(10 * time.Second); dst.total(dst.pushes) < 5; {
				if time.Now().After(deadline) {
					t.Fatalf("img2's own blobs were not pushed (%d pushes)", dst.total(dst.pushes))
				}
				time.Sleep(time.Millisecond)
			}
			if cause == "cancelled" {
				time.Sleep(50 * time.Millisecond)
				cancel1()
			}
			want := error(context.Canceled)
			if cause == "failed" {
				want = errBroken
			}
			if err := <-done1; !errors.Is(err, want) {
				t.Fatalf("first Copy: err = %v, want %v", err, want)
			}
			select {
			case err := <-done2:
				if err != nil {
					t.Fatalf("second Copy, its context fine, failed with the first copy's failure: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("second Copy did not return")
			}
			if !dst.has(shared.Digest) || !dst.has(img2.Digest) {
				t.Error("second Copy returned without the shared layer and its manifest in the target")
			}
			if n := dst.count(dst.pushes, shared.Digest); n != 2 {
				t.Errorf("shared layer pushed %d times, want 2 (the first copy's failed try, the second copy's own)", n)
			}
		})
	}
}
