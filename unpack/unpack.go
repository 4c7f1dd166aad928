// Package unpack pushes a verified bundle into a registry with every digest unchanged,
// and nothing but its verified graph: the images the signed metadata lists, the
// children the bundle carries, and the attachments whose subject chain reaches them in
// their repository (referrers.Graph). It pushes all content by digest first, per
// destination repository: blobs, child manifests, indexes (children before parents),
// then attached manifests, subjects first. Then it records the bundle and the tags it
// is about to set in the replay state, and only then moves tags: the referrers tag
// schema indexes (registries without the referrers API), cosign tags, and the image
// tags last, so no tag ever points at content that is not all there. Blobs the
// registry already has are skipped; blobs pushed to another repository of the same
// registry are mounted instead of uploaded again. With RequireEvidence, the pack-side
// verification summary of every image and child is checked before the first push;
// with AttestSigner, an import record per image and per child is pushed by digest after the content, and the tag it
// moves (the image's .att) is recorded with the others (docs/evidence.md).
package unpack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	orasremote "oras.land/oras-go/v2/registry/remote"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/evidence"
	"github.com/petra-oci/petra-oci/graphcopy"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/receipt"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/replay"
	"github.com/petra-oci/petra-oci/signing"
)

// Options configure Unpack.
type Options struct {
	// Dir is the bundle.
	Dir string
	// To is the destination: host[:port][/prefix].
	To string
	// Client opens destination repositories.
	Client *remote.Client
	// Concurrency bounds blob transfers in flight per repository.
	Concurrency int
	// RepositoryConcurrency bounds the repositories whose content is pushed at once;
	// <= 0 means 2. A blob shared by repositories is uploaded once and mounted into the
	// others (a repository waits for another's upload of it to end). Tags move only
	// once every repository's content is in.
	RepositoryConcurrency int
	// Log receives progress.
	Log *slog.Logger
	// Verify says how the whole bundle is verified before anything is pushed: the
	// signature over its metadata, the series sequence and every file, the graph of
	// what it holds, and the images against the pinned policy. Required unless
	// UnsafeSkipVerify. Verify.Replay, when set, must be a *replay.Store: unpack holds
	// it locked from before verification to the last tag (a second unpack with the same
	// state waits), re-checks it before the first push, and records the bundle and every
	// tag it sets before moving them, refusing to move a tag back to content from an
	// older bundle of any series unless the store allows rollback.
	Verify *bundle.VerifyOptions
	// OnBlob, when set, is told about every blob once it is in the registry (progress).
	OnBlob func(desc ocispec.Descriptor, how graphcopy.How)
	// UnsafeSkipVerify pushes an unverified bundle (with Verify nil; both is an
	// error). Never the default; the command that sets it says so loudly. The graph
	// rules (names, orphans, kinds) still apply. It cannot be combined with
	// RequireEvidence or AttestSigner.
	UnsafeSkipVerify bool
	// RequireEvidence refuses the bundle, before anything is pushed, unless every
	// image, and each of its children, carries a pack-side verification summary that verifies with the key or
	// identity that verified the bundle (Verify.Signature), names the image's digest
	// as its subject, says PASSED and, when a policy is pinned (Verify.Images), names
	// that policy's digest (evidence.CheckSummary). The error wraps
	// evidence.ErrNoEvidence and names every image refused.
	RequireEvidence bool
	// AttestSigner, when set (a key of the disconnected side: file or KMS), signs an
	// import record for every image, and for each of its children, once its content is pushed and before any tag
	// moves: an in-toto statement "verified at import" (evidence.ImportStatement:
	// the bundle id, sequence and metadata digest, the pack-side summary checked, the
	// pinned policy, PASSED, subject the image in its destination repository),
	// attached at the destination in the form the image's signatures there call for
	// (evidence.FormFor): a layer added to its cosign .att, whose tag then moves with
	// the other tags and is recorded in the replay state, or a Sigstore bundle
	// referrer. nil writes none.
	AttestSigner signing.Signer
	// Version of petra-oci, recorded in the import records' verifier id.
	Version string
	// ReceiptSigner, when set (a key of the disconnected side), makes Unpack write a
	// receipt once every tag has moved: what the destination repositories of the
	// bundle now hold, read back from the registry (receipt.Collect), and the bundle's
	// series and sequence, signed with it (Result.Receipt). Not with UnsafeSkipVerify.
	ReceiptSigner signing.Signer
	// AllowSparseIndex pushes an index whose children the bundle does not all carry
	// (a platform filter left some out). Without it such a bundle is refused before
	// anything is pushed (ErrSparseIndex): most registries (distribution and olareg
	// by default) require every child of an index to exist and would refuse the index
	// once the rest is pushed. Set it only for a registry that accepts sparse indexes
	// (distribution with validation.manifests.indexes.platforms: none; olareg and
	// go-containerregistry's registry have no such setting). The index pushed is the
	// original one: its signature stays valid.
	AllowSparseIndex bool
	// Finish, when set, is called with the verified bundle before anything is pushed
	// (its error refuses the bundle, with nothing pushed) and returns what to run
	// once every tag has moved, while the bundle is still held open (unpack
	// --emit-admission writes the admission resources so). Not with UnsafeSkipVerify.
	Finish func(ctx context.Context, v *bundle.Verified) (func(context.Context) error, error)
}

// ErrSparseIndex: the bundle carries an index without some of its children (a
// platform filter left them out), and Options.AllowSparseIndex is not set. Nothing
// was pushed. The error is a *SparseIndexError naming each index and its left-out
// children.
var ErrSparseIndex = errors.New("index whose children the bundle does not all carry")

// SparseIndex is an index of the bundle with children left out.
type SparseIndex struct {
	// Repository is the source repository; Index the index's digest.
	Repository string
	Index      digest.Digest
	// Missing are the children the bundle does not carry, as the index lists them.
	Missing []ocispec.Descriptor
}

// SparseIndexError lists every index of the bundle with children left out.
type SparseIndexError struct{ Indexes []SparseIndex }

func (e *SparseIndexError) Error() string {
	var b strings.Builder
	for i, x := range e.Indexes {
		if i > 0 {
			b.WriteString("; ")
		}
		var names []string
		for _, m := range x.Missing {
			n := m.Digest.String()
			if m.Platform != nil {
				n += " (" + platformString(m.Platform) + ")"
			}
			names = append(names, n)
		}
		fmt.Fprintf(&b, "index %s@%s lacks %d of its children in the bundle: %s", x.Repository, x.Index, len(x.Missing), strings.Join(names, ", "))
	}
	return fmt.Sprintf("%v: %s (nothing was pushed; a platform filter left them out, and a registry that requires every child of an index, as distribution and olareg do by default, would refuse the index once the rest is pushed: pack without --platform, or give --allow-sparse-index for a registry that accepts sparse indexes)", ErrSparseIndex, b.String())
}

func (e *SparseIndexError) Unwrap() error { return ErrSparseIndex }

func platformString(p *ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// sparseIndexes lists the indexes of g's images (nested ones too) whose children the
// bundle does not all carry.
func sparseIndexes(g *referrers.Graph) []SparseIndex {
	var out []SparseIndex
	seen := map[string]bool{}
	for _, r := range g.Repositories() {
		for _, img := range r.Images {
			for _, node := range img.Tree() {
				d := node.Entry.Descriptor.Digest
				if seen[r.Name+"@"+d.String()] {
					continue
				}
				seen[r.Name+"@"+d.String()] = true
				missing := node.LeftOut()
				if len(missing) > 0 {
					out = append(out, SparseIndex{Repository: r.Name, Index: d, Missing: missing})
				}
			}
		}
	}
	return out
}

// Mapping says where one image went.
type Mapping struct {
	Source      string        `json:"source"`
	Destination string        `json:"destination"`
	Digest      digest.Digest `json:"digest"`
	Attachments int           `json:"attachments"`
}

// Repository says how one destination repository was written.
type Repository struct {
	Name string `json:"name"`
	// ReferrersAPI is true when the registry serves the referrers API; false means
	// the referrers tag schema index was maintained instead.
	ReferrersAPI bool `json:"referrersAPI"`
}

// Evidence is the pack-side verification summary checked for one image.
type Evidence struct {
	// Image is the source image, host/path@digest.
	Image string `json:"image"`
	// Summary is the summary that verified (nil when none did).
	Summary *evidence.Summary `json:"summary,omitempty"`
	// Refusal says why no summary verified (only without RequireEvidence, which
	// refuses the bundle instead).
	Refusal string `json:"refusal,omitempty"`
}

// ImportRecord is an import record unpack attached at the destination.
type ImportRecord struct {
	// Image is the image at the destination, host/path@digest.
	Image string        `json:"image"`
	Form  evidence.Form `json:"form"`
	// Manifest holds the record: the image's new cosign .att, moved to Tag, or a
	// Sigstore bundle referrer of the image.
	Manifest digest.Digest `json:"manifest"`
	Tag      string        `json:"tag,omitempty"`
	// Statement is the digest of the signed statement; Summary that of the pack-side
	// summary's statement it names, if any.
	Statement digest.Digest `json:"statement"`
	Summary   digest.Digest `json:"summary,omitempty"`
}

// Result is what Unpack did.
type Result struct {
	// Verification is what was proved before the first push (nil when skipped).
	Verification *bundle.Report `json:"verification,omitempty"`
	// Evidence is the pack-side summary checked per image (RequireEvidence or
	// AttestSigner).
	Evidence      []Evidence      `json:"evidence,omitempty"`
	Images        []Mapping       `json:"images"`
	Repositories  []Repository    `json:"repositories"`
	ImportRecords []ImportRecord  `json:"importRecords,omitempty"`
	Stats         graphcopy.Stats `json:"stats"`
	// Expected counts, for a delta, the blobs it relies on that were found at the
	// destination before the first push.
	Expected int `json:"expected,omitempty"`
	// Receipt is the signed receipt written with ReceiptSigner (its file form is the
	// caller's: receipt.Signed.WriteFiles).
	Receipt *receipt.Signed `json:"-"`
	// ReceiptDigest is the digest of Receipt's bytes.
	ReceiptDigest digest.Digest `json:"receiptDigest,omitempty"`
}

// ErrMissingAtDestination marks a delta bundle whose expected blobs (layout.Delta) are
// not all at the destination: nothing was pushed. The error lists every one missing.
var ErrMissingAtDestination = errors.New("delta: expected blobs are missing at the destination")

// Destination returns the destination repository for a source repository: the
// destination prefix joined with the source path without its registry host. Both are
// checked against the distribution-spec grammar first, so the result is always
// strictly under the prefix (oci.ErrInvalidName otherwise).
func Destination(to, sourceRepository string) (registry.Reference, error) {
	host, prefix, err := splitTo(to)
	if err != nil {
		return registry.Reference{}, err
	}
	if err := oci.ValidateRepository(sourceRepository); err != nil {
		return registry.Reference{}, fmt.Errorf("source repository: %w", err)
	}
	_, srcPath, _ := strings.Cut(sourceRepository, "/")
	repo := srcPath
	if prefix != "" {
		repo = prefix + "/" + srcPath
		if path.Clean(repo) != repo || !strings.HasPrefix(repo, prefix+"/") {
			return registry.Reference{}, fmt.Errorf("%w: %s would leave %s", oci.ErrInvalidName, sourceRepository, to)
		}
	}
	if err := oci.ValidateRepository(host + "/" + repo); err != nil {
		return registry.Reference{}, fmt.Errorf("destination of %s: %w", sourceRepository, err)
	}
	ref := registry.Reference{Registry: host, Repository: repo}
	if err := ref.Validate(); err != nil {
		return registry.Reference{}, fmt.Errorf("%w: destination %s/%s: %v", oci.ErrInvalidName, host, ref.Repository, err)
	}
	return ref, nil
}

// splitTo splits --to into its host and its prefix (may be empty), both checked.
func splitTo(to string) (host, prefix string, err error) {
	to = strings.TrimSuffix(to, "/")
	host, prefix, _ = strings.Cut(to, "/")
	if host == "" {
		return "", "", fmt.Errorf("%w: destination %q has no registry host", oci.ErrInvalidName, to)
	}
	if prefix != "" {
		if err := oci.ValidateRepositoryPath(prefix); err != nil {
			return "", "", fmt.Errorf("destination prefix of %q: %w", to, err)
		}
	}
	if err := oci.ValidateRepository(host + "/x"); err != nil {
		return "", "", fmt.Errorf("%w: destination host %q", oci.ErrInvalidName, host)
	}
	return host, prefix, nil
}

// Unpack pushes the bundle at opts.Dir to opts.To: only what the verified graph holds
// (bundle.Verified), and nothing before all of it verified.
func Unpack(ctx context.Context, opts Options) (*Result, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil {
		return nil, errors.New("unpack: no registry client")
	}
	if opts.To == "" {
		return nil, fmt.Errorf("%w: no destination", oci.ErrInvalid)
	}
	if _, _, err := splitTo(opts.To); err != nil {
		return nil, err
	}
	res := &Result{}
	var (
		store   referrers.Store
		g       *referrers.Graph
		held    *replay.Held
		current replay.Bundle
		after   func(context.Context) error
		delta   *layout.Delta
	)
	switch {
	case opts.UnsafeSkipVerify:
		if opts.Verify != nil {
			return nil, fmt.Errorf("%w: UnsafeSkipVerify with verification options: give one or the other", oci.ErrInvalid)
		}
		if opts.RequireEvidence || opts.AttestSigner != nil || opts.Finish != nil || opts.ReceiptSigner != nil {
			return nil, fmt.Errorf("%w: UnsafeSkipVerify verifies nothing: it cannot require evidence, sign a record of a verified import nor finish on a verified bundle", oci.ErrInvalid)
		}
		opts.Log.Warn("UNSAFE: pushing a bundle whose signature and files were NOT verified", "dir", opts.Dir)
		l, entries, err := layout.OpenEntries(opts.Dir)
		if err != nil {
			return nil, err
		}
		if g, err = referrers.Build(ctx, l, entries, referrers.BuildOptions{}); err != nil {
			return nil, fmt.Errorf("graph of %s (nothing was pushed): %w", opts.Dir, err)
		}
		store = l
	case opts.Verify == nil:
		return nil, fmt.Errorf("%w: unpack needs the bundle's key or identity to verify it", oci.ErrInvalid)
	default:
		vopts := *opts.Verify
		if vopts.Replay != nil {
			st, ok := vopts.Replay.(*replay.Store)
			if !ok {
				return nil, fmt.Errorf("%w: unpack holds its replay state locked for the whole run: Verify.Replay must be a *replay.Store", oci.ErrInvalid)
			}
			var err error
			if held, err = st.Lock(ctx); err != nil {
				return nil, fmt.Errorf("locking the replay state %s (nothing was pushed): %w", st.Path(), err)
			}
			defer held.Unlock()
			vopts.Replay = held
		}
		// nothing of the bundle, not even oci-layout, is read before its signature verifies
		v, err := bundle.Open(ctx, opts.Dir, vopts)
		if v != nil {
			defer v.Close()
			res.Verification = v.Report
		}
		if err != nil {
			return res, fmt.Errorf("verifying bundle %s (nothing was pushed): %w", opts.Dir, err)
		}
		rep := v.Report
		opts.Log.Info("bundle verified", "bundleID", rep.BundleID, "sequence", rep.Sequence,
			"files", rep.Files.Files, "bytes", rep.Files.Bytes)
		store, g = v.Store, v.Graph
		if opts.Finish != nil {
			var err error
			if after, err = opts.Finish(ctx, v); err != nil {
				return res, fmt.Errorf("bundle %s (nothing was pushed): %w", opts.Dir, err)
			}
		}
		current = replay.Bundle{ID: rep.BundleID, Sequence: rep.Sequence, Created: rep.Metadata.Created, Metadata: rep.MetadataDigest}
		delta = rep.Metadata.Delta
	}
	// the pack-side summaries, checked before anything is pushed
	var summaries map[imageKey]*evidence.Summary
	if opts.RequireEvidence || opts.AttestSigner != nil {
		var err error
		summaries, res.Evidence, err = checkEvidence(ctx, opts, store, g)
		if err != nil {
			return res, fmt.Errorf("bundle %s (nothing was pushed): %w", opts.Dir, err)
		}
	}

	// an index the registry would refuse halfway, refused before anything is pushed
	if !opts.AllowSparseIndex {
		if sparse := sparseIndexes(g); len(sparse) > 0 {
			return res, &SparseIndexError{Indexes: sparse}
		}
	}

	// the plan: every repository's destination and every tag that will move
	type repoPlan struct {
		r   *referrers.Repo
		ref registry.Reference
	}
	var plans []repoPlan
	var moves []replay.TagMove
	for _, r := range g.Repositories() {
		ref, err := Destination(opts.To, r.Name)
		if err != nil {
			return res, fmt.Errorf("%s (nothing was pushed): %w", r.Name, err)
		}
		plans = append(plans, repoPlan{r: r, ref: ref})
		dest := ref.Registry + "/" + ref.Repository
		for _, n := range r.Attachments {
			if n.Entry.Tag != "" {
				moves = append(moves, replay.TagMove{Ref: dest + ":" + n.Entry.Tag, Digest: n.Entry.Descriptor.Digest})
			}
		}
		for _, img := range r.Images {
			if img.Entry.Tag != "" {
				moves = append(moves, replay.TagMove{Ref: dest + ":" + img.Entry.Tag, Digest: img.Entry.Descriptor.Digest})
			}
		}
	}
	if held != nil {
		// re-checked under the lock held since before verification, before the first push
		if err := held.Check(current.ID, current.Sequence); err != nil {
			return res, fmt.Errorf("bundle %s (nothing was pushed): %w", opts.Dir, err)
		}
		if err := held.CheckTags(current, moves); err != nil {
			return res, fmt.Errorf("bundle %s (nothing was pushed): %w", opts.Dir, err)
		}
	}

	// a delta: every blob it relies on must be at the destination before anything is pushed
	if delta != nil {
		n, err := checkExpected(ctx, opts, delta)
		if err != nil {
			return res, fmt.Errorf("bundle %s (nothing was pushed): %w", opts.Dir, err)
		}
		res.Expected = n
		opts.Log.Info("delta: every expected blob is at the destination", "expected", n, "receipt", delta.Receipt)
	}

	// 1. content, by digest, into every repository, RepositoryConcurrency at once
	mounts := &mountIndex{where: map[digest.Digest][]string{}, claims: map[digest.Digest]*mountClaim{}}
	pushed := make([]*pushedRepo, len(plans))
	errs := make([]error, len(plans))
	limit := opts.RepositoryConcurrency
	if limit <= 0 {
		limit = 2
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(limit)
	for i, p := range plans {
		if ectx.Err() != nil {
			break // a repository failed: the rest are not started
		}
		eg.Go(func() error {
			repo, err := opts.Client.Repository(p.ref)
			if err != nil {
				errs[i] = err
				return err
			}
			name := repo.Reference.Repository
			pr, err := pushContent(ectx, opts, store, repo, mounts, p.r)
			mounts.release(name)
			pushed[i] = pr
			if err != nil {
				errs[i] = fmt.Errorf("unpacking %s to %s/%s (no tag was moved): %w", p.r.Name, p.ref.Registry, p.ref.Repository, err)
			}
			return errs[i]
		})
	}
	_ = eg.Wait()
	for i, p := range plans {
		if pr := pushed[i]; pr != nil {
			addStats(&res.Stats, pr.stats)
			res.Repositories = append(res.Repositories, Repository{Name: p.ref.Registry + "/" + p.ref.Repository, ReferrersAPI: pr.api})
		}
	}
	if err := firstCause(ctx, errs); err != nil {
		return res, err
	}
	// 1b. the import records, by digest; a record in an .att moves that tag
	extraTags := make([]map[string]taggedManifest, len(plans))
	if opts.AttestSigner != nil {
		at := time.Now().UTC()
		tm := &tagMoves{list: moves}
		for i, p := range plans {
			recs, tags, err := writeRecords(ctx, opts, store, pushed[i], p.r, summaries, current, at)
			res.ImportRecords = append(res.ImportRecords, recs...)
			if err != nil {
				return res, fmt.Errorf("import records in %s/%s (no tag was moved): %w", p.ref.Registry, p.ref.Repository, err)
			}
			extraTags[i] = tags
			dest := p.ref.Registry + "/" + p.ref.Repository
			for _, tag := range slices.Sorted(maps.Keys(tags)) {
				tm.set(replay.TagMove{Ref: dest + ":" + tag, Digest: tags[tag].desc.Digest})
			}
		}
		moves = tm.list
	}
	// 2. the bundle and the tags it sets are recorded before any tag moves
	if held != nil {
		if err := held.Record(current, moves); err != nil {
			return res, fmt.Errorf("recording bundle %s sequence %d and its tags (no tag was moved): %w", current.ID, current.Sequence, err)
		}
	}
	// 3. tags: the referrers tag schema indexes (registries without the referrers
	// API), cosign tags, then the image tags last
	for i, p := range plans {
		mapped, err := pushTags(ctx, opts, store, pushed[i], p.r, extraTags[i])
		res.Images = append(res.Images, mapped...)
		if err != nil {
			return res, fmt.Errorf("tagging in %s/%s: %w", p.ref.Registry, p.ref.Repository, err)
		}
	}
	if opts.ReceiptSigner != nil {
		if err := writeReceipt(ctx, opts, res, plans2names(opts.To, g), current); err != nil {
			return res, fmt.Errorf("after unpacking %s (everything was pushed and tagged): %w", opts.Dir, err)
		}
	}
	if after != nil {
		if err := after(ctx); err != nil {
			return res, fmt.Errorf("after unpacking %s (everything was pushed and tagged): %w", opts.Dir, err)
		}
	}
	return res, nil
}

func addStats(a *graphcopy.Stats, b graphcopy.Stats) {
	a.BlobsCopied += b.BlobsCopied
	a.BlobsExisted += b.BlobsExisted
	a.BlobsMounted += b.BlobsMounted
	a.Manifests += b.Manifests
	a.BytesCopied += b.BytesCopied
}

// firstCause returns the error that stopped the repositories pushed in parallel, in
// plan order: not one a repository saw only because the others were cancelled
// (while ctx itself still runs); nil when none failed.
func firstCause(ctx context.Context, errs []error) error {
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if ctx.Err() != nil || !errors.Is(err, context.Canceled) {
			return err
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// mountIndex knows which destination repositories hold which blobs, and which
// repository is uploading a blob right now (its claim), so that repositories pushed
// in parallel upload a shared blob once and mount it into the others. A blob shared
// by every image (a base layer) is in every repository: add and from are O(1) in the
// number of repositories, not a scan of them.
type mountIndex struct {
	mu     sync.Mutex
	where  map[digest.Digest][]string // the first few repositories holding each blob
	has    map[mountKey]bool
	claims map[digest.Digest]*mountClaim
}

type mountKey struct {
	d    digest.Digest
	repo string
}

type mountClaim struct {
	repo string
	done chan struct{}
}

// maxMountSources is how many repositories a mount is tried from.
const maxMountSources = 2

// add records that repo holds d, ending repo's claim on d.
func (m *mountIndex) add(d digest.Digest, repo string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.claims[d]; c != nil && c.repo == repo {
		close(c.done)
		delete(m.claims, d)
	}
	k := mountKey{d, repo}
	if m.has[k] {
		return
	}
	if m.has == nil {
		m.has = map[mountKey]bool{}
	}
	m.has[k] = true
	// from asks for at most maxMountSources other than the asking one: keep one more
	if len(m.where[d]) <= maxMountSources {
		m.where[d] = append(m.where[d], repo)
	}
}

// release ends every claim of repo (its content push is over, whether or not each
// claimed upload succeeded): a repository waiting for one looks again, and uploads
// the blob itself when no repository holds it.
func (m *mountIndex) release(repo string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d, c := range m.claims {
		if c.repo == repo {
			close(c.done)
			delete(m.claims, d)
		}
	}
}

// from returns up to maxMountSources repositories other than repo that hold d. When
// none does and another repository is uploading d, it waits for that upload to end
// (or ctx) and looks again; when none does and none uploads it, repo claims the
// upload and from returns nothing. The claimant itself never waits, so waits cannot
// form a cycle.
func (m *mountIndex) from(ctx context.Context, d digest.Digest, repo string) []string {
	m.mu.Lock()
	for {
		var out []string
		for _, r := range m.where[d] {
			if r != repo {
				out = append(out, r)
				if len(out) == maxMountSources {
					break
				}
			}
		}
		if len(out) > 0 {
			m.mu.Unlock()
			return out
		}
		c := m.claims[d]
		if c == nil {
			m.claims[d] = &mountClaim{repo: repo, done: make(chan struct{})}
			m.mu.Unlock()
			return nil
		}
		if c.repo == repo {
			m.mu.Unlock()
			return nil
		}
		m.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil
		}
		m.mu.Lock()
	}
}

type pushedRepo struct {
	repo  *orasremote.Repository
	api   bool
	stats graphcopy.Stats
	// referrers pushed besides the bundle's (import records), per subject, in the
	// order added: listed in the referrers tag schema indexes with the bundle's
	extraSubjects []digest.Digest
	extra         map[digest.Digest][]ocispec.Descriptor
}

func (pr *pushedRepo) addReferrer(subject digest.Digest, d ocispec.Descriptor) {
	if pr.extra == nil {
		pr.extra = map[digest.Digest][]ocispec.Descriptor{}
	}
	if _, ok := pr.extra[subject]; !ok {
		pr.extraSubjects = append(pr.extraSubjects, subject)
	}
	pr.extra[subject] = append(pr.extra[subject], d)
}

// pushContent pushes one repository's graph by digest: each image's blobs, child
// manifests and index (children before parents), then its attachments, subjects
// first. Index children are pushed when the verified bundle holds them (a platform
// filter leaves some out). No tag moves here.
func pushContent(ctx context.Context, opts Options, store referrers.Store, repo *orasremote.Repository, mounts *mountIndex, r *referrers.Repo) (*pushedRepo, error) {
	name := repo.Reference.Repository
	copyOpts := graphcopy.Options{
		Concurrency: opts.Concurrency,
		MountFrom:   func(d ocispec.Descriptor) []string { return mounts.from(ctx, d.Digest, name) },
		// each blob is opened again from the bundle and its upload restarted on a
		// transient failure; each manifest pushed again
		Retry: opts.Client.Retry,
		OnBlob: func(d ocispec.Descriptor, how graphcopy.How) {
			mounts.add(d.Digest, name)
			if opts.OnBlob != nil {
				opts.OnBlob(d, how)
			}
		},
	}
	// blobs over the chunk threshold go in chunks, and a broken upload resumes
	copier := graphcopy.New(opts.Client.Resumable(repo), copyOpts)
	pr := &pushedRepo{repo: repo}
	present := func(child ocispec.Descriptor) bool {
		ok, err := store.Exists(ctx, child)
		return err == nil && ok
	}
	dest := repo.Reference.Registry + "/" + name
	done := map[digest.Digest]bool{}
	for _, img := range r.Images {
		if done[img.Root.Entry.Descriptor.Digest] {
			continue
		}
		done[img.Root.Entry.Descriptor.Digest] = true
		opts.Log.Info("pushing image", "source", img.Entry.Name(), "to", dest)
		if _, err := copier.Copy(ctx, store, img.Root.Descriptor(), present); err != nil {
			pr.stats = copier.Stats()
			if n := img.LeftOut(); n > 0 {
				err = fmt.Errorf("%w (the bundle leaves out %d children of index %s, by a platform filter, and --allow-sparse-index pushed it: a registry that requires every child of an index to exist refuses it; distribution accepts it with validation.manifests.indexes.platforms: none)", err, n, img.Root.Entry.Descriptor.Digest)
			}
			return pr, err
		}
	}
	err := opts.Client.Retry(ctx, "probing the referrers API of "+dest, func(ctx context.Context) (err error) {
		pr.api, err = referrers.Probe(ctx, repo)
		return err
	})
	if err != nil {
		pr.stats = copier.Stats()
		return pr, err
	}
	// Without the referrers API, oras-go would rewrite a subject's tag schema index on
	// every referrer pushed (quadratic in the referrers of one subject). Attachments
	// are pushed through a repository that leaves the index alone, and each subject's
	// index is then written once, merged with what the registry already lists.
	attCopier := copier
	if !pr.api {
		arepo, err := opts.Client.Repository(repo.Reference)
		if err != nil {
			return pr, err
		}
		if err := arepo.SetReferrersCapability(true); err != nil {
			return pr, err
		}
		attCopier = graphcopy.New(opts.Client.Resumable(arepo), copyOpts)
	}
	for _, n := range r.Attachments {
		e := n.Entry
		if _, err := attCopier.Copy(ctx, store, n.Descriptor(), present); err != nil {
			pr.stats = sumStats(copier, attCopier)
			return pr, fmt.Errorf("%s %s of %s: %w", e.Kind, e.Descriptor.Digest, e.Subject, err)
		}
	}
	pr.stats = sumStats(copier, attCopier)
	return pr, nil
}

func sumStats(a, b *graphcopy.Copier) graphcopy.Stats {
	s := a.Stats()
	if b != a {
		addStats(&s, b.Stats())
	}
	return s
}

// writeReferrersIndexes writes, for every subject of r with referrers, its referrers
// tag schema index (tag sha256-<hex>): the referrers the registry already lists there,
// the bundle's and the import records' (pr.extra), once. A replaced index is left
// untagged (never deleted).
func writeReferrersIndexes(ctx context.Context, client *remote.Client, pr *pushedRepo, r *referrers.Repo) error {
	bySubject := map[digest.Digest][]ocispec.Descriptor{}
	var order []digest.Digest
	for _, n := range r.Attachments {
		if !n.Entry.Kind.IsReferrer() {
			continue
		}
		s := n.Entry.Subject
		if _, ok := bySubject[s]; !ok {
			order = append(order, s)
		}
		bySubject[s] = append(bySubject[s], referrers.Descriptor(n.Descriptor(), n.Manifest))
	}
	for _, s := range pr.extraSubjects {
		if _, ok := bySubject[s]; !ok {
			order = append(order, s)
		}
		bySubject[s] = append(bySubject[s], pr.extra[s]...)
	}
	for _, s := range order {
		if err := mergeReferrersIndex(ctx, client, pr.repo, s, bySubject[s]); err != nil {
			return err
		}
	}
	return nil
}

// mergeReferrersIndex adds list to the referrers tag schema index of subject (tag
// sha256-<hex>), keeping what the registry already lists there; it writes nothing
// when every referrer is listed already. A transient failure reads and merges again
// (client.Retry).
func mergeReferrersIndex(ctx context.Context, client *remote.Client, repo *orasremote.Repository, subject digest.Digest, list []ocispec.Descriptor) error {
	tag := oci.ReferrersTag(subject)
	return client.Retry(ctx, "writing the referrers index "+tag, func(ctx context.Context) error {
		return mergeReferrersIndexOnce(ctx, repo, tag, list)
	})
}

func mergeReferrersIndexOnce(ctx context.Context, repo *orasremote.Repository, tag string, list []ocispec.Descriptor) error {
	old, err := existingReferrers(ctx, repo, tag)
	if err != nil {
		return fmt.Errorf("reading the referrers index %s: %w", tag, err)
	}
	have := map[digest.Digest]bool{}
	merged := slices.Clone(old)
	for _, d := range old {
		have[d.Digest] = true
	}
	added := false
	for _, d := range list {
		if !have[d.Digest] {
			have[d.Digest] = true
			merged = append(merged, d)
			added = true
		}
	}
	if !added {
		return nil
	}
	b, err := referrers.Index(merged)
	if err != nil {
		return err
	}
	desc := oci.DescriptorFor(ocispec.MediaTypeImageIndex, b)
	if err := repo.PushReference(ctx, desc, bytes.NewReader(b), tag); err != nil {
		return fmt.Errorf("writing the referrers index %s: %w", tag, err)
	}
	return nil
}

// existingReferrers reads the referrers tag schema index at tag, if any (bounded,
// verified).
func existingReferrers(ctx context.Context, repo *orasremote.Repository, tag string) ([]ocispec.Descriptor, error) {
	desc, err := repo.Resolve(ctx, tag)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if desc.MediaType != ocispec.MediaTypeImageIndex {
		return nil, fmt.Errorf("%w: %s is a %s, not an index", oci.ErrInvalid, tag, desc.MediaType)
	}
	rc, err := repo.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	b, err := oci.ReadAllVerified(rc, desc, oci.MaxManifestBytes)
	if err != nil {
		return nil, err
	}
	m, err := oci.ParseManifest(desc, b)
	if err != nil {
		return nil, err
	}
	return m.Manifests, nil
}

// pushTags moves one repository's tags: on a registry without the referrers API the
// referrers tag schema indexes (tag sha256-<hex>, merged with what the registry lists
// there: they are tags too, so they move only once all content is pushed and the
// bundle recorded), the cosign tags, subjects first, then the image tags, so no image
// tag points at content whose signatures are not all there. A tag of extra (an .att
// holding an import record) is set to that manifest instead of the bundle's, or added
// with the cosign tags when the bundle has none.
func pushTags(ctx context.Context, opts Options, store referrers.Store, pr *pushedRepo, r *referrers.Repo, extra map[string]taggedManifest) ([]Mapping, error) {
	repo := pr.repo
	dest := repo.Reference.Registry + "/" + repo.Reference.Repository
	if !pr.api {
		if err := writeReferrersIndexes(ctx, opts.Client, pr, r); err != nil {
			return nil, err
		}
	}
	done := map[string]bool{}
	for _, n := range r.Attachments {
		t := n.Entry.Tag
		if t == "" {
			continue
		}
		if tm, ok := extra[t]; ok {
			done[t] = true
			if err := pushTag(ctx, opts.Client, repo, tm.desc, tm.b, t); err != nil {
				return nil, err
			}
			continue
		}
		if err := tag(ctx, opts.Client, store, repo, n.Descriptor(), t); err != nil {
			return nil, err
		}
	}
	for _, t := range slices.Sorted(maps.Keys(extra)) {
		if done[t] {
			continue
		}
		tm := extra[t]
		if err := pushTag(ctx, opts.Client, repo, tm.desc, tm.b, t); err != nil {
			return nil, err
		}
	}
	var maps []Mapping
	for _, img := range r.Images {
		e := img.Entry
		m := Mapping{Source: e.Name(), Digest: e.Descriptor.Digest, Destination: dest + "@" + e.Descriptor.Digest.String()}
		if e.Tag != "" {
			if err := tag(ctx, opts.Client, store, repo, img.Root.Descriptor(), e.Tag); err != nil {
				return maps, err
			}
			m.Destination = dest + ":" + e.Tag
		}
		m.Attachments = len(referrers.AttachmentsOf(img.Tree()))
		maps = append(maps, m)
		opts.Log.Info("pushed", "source", m.Source, "destination", m.Destination, "digest", m.Digest)
	}
	return maps, nil
}

func tag(ctx context.Context, client *remote.Client, store referrers.Store, repo *orasremote.Repository, desc ocispec.Descriptor, t string) error {
	rc, err := store.Fetch(ctx, desc)
	if err != nil {
		return err
	}
	b, err := oci.ReadAllVerified(rc, desc, oci.MaxManifestBytes)
	if err != nil {
		return err
	}
	return pushTag(ctx, client, repo, desc, b, t)
}

// pushTag moves tag t to desc (content b, already in the registry by digest), again
// on a transient failure: moving a tag to the same manifest twice is harmless.
func pushTag(ctx context.Context, client *remote.Client, repo *orasremote.Repository, desc ocispec.Descriptor, b []byte, t string) error {
	err := client.Retry(ctx, "tagging "+desc.Digest.String()+" as "+t, func(ctx context.Context) error {
		return repo.PushReference(ctx, desc, bytes.NewReader(b), t)
	})
	if err != nil {
		return fmt.Errorf("tagging %s as %s: %w", desc.Digest, t, err)
	}
	return nil
}
