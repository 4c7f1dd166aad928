package layout

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// Entry is one index.json entry of a petra-oci bundle, with the annotations petra-oci
// writes decoded.
type Entry struct {
	Descriptor ocispec.Descriptor
	Kind       oci.Kind
	// Repository is the source repository with its registry host.
	Repository string
	// Tag is the image tag (images), the cosign tag (cosign kinds) or the referrers
	// tag schema tag (referrers-index); empty for untagged images and referrers.
	Tag string
	// Subject is the digest an attachment or referrers index belongs to.
	Subject digest.Digest
}

// ImageEntry returns the index.json entry of a root image packed from repository
// (host/path) under tag (may be empty).
func ImageEntry(desc ocispec.Descriptor, repository, tag string) Entry {
	return Entry{Descriptor: desc, Kind: oci.KindImage, Repository: repository, Tag: tag}
}

// ChildEntry returns the untagged index.json entry of a child manifest (with its
// platform, as its index lists it) of an image packed from repository.
func ChildEntry(desc ocispec.Descriptor, repository string) Entry {
	return Entry{Descriptor: desc, Kind: oci.KindChild, Repository: repository}
}

// AttachmentEntry returns the entry of a manifest attached to subject. tag is the cosign
// tag for cosign kinds.
func AttachmentEntry(desc ocispec.Descriptor, kind oci.Kind, repository, tag string, subject digest.Digest) Entry {
	return Entry{Descriptor: desc, Kind: kind, Repository: repository, Tag: tag, Subject: subject}
}

// Name returns the full source name of an image entry: host/path:tag, or host/path@digest.
func (e Entry) Name() string {
	if e.Tag != "" && e.Kind.IsImage() {
		return e.Repository + ":" + e.Tag
	}
	return e.Repository + "@" + e.Descriptor.Digest.String()
}

// IndexDescriptor renders the entry as an index.json descriptor. Images are named
// (org.opencontainers.image.ref.name = host/path:tag, and io.containerd.image.name)
// so that skopeo, oras and containerd can address them; cosign tags and referrers
// indexes are named by their tag, as regctl and cosign look them up.
func (e Entry) IndexDescriptor() ocispec.Descriptor {
	d := e.Descriptor
	ann := make(map[string]string, len(d.Annotations)+5)
	for k, v := range d.Annotations {
		ann[k] = v
	}
	ann[oci.AnnotationKind] = string(e.Kind)
	ann[oci.AnnotationRepository] = e.Repository
	switch {
	case e.Kind.IsImage():
		if e.Tag != "" {
			ann[oci.AnnotationTag] = e.Tag
			ann[ocispec.AnnotationRefName] = e.Name()
		}
		ann[oci.AnnotationContainerdName] = e.Name()
	case e.Kind.IsReferrer():
		ann[oci.AnnotationSubject] = e.Subject.String()
	case !e.Kind.HasSubject():
		// a child, untagged: addressed by its digest only
	default: // tag-scheme and derived: named by their tag
		ann[oci.AnnotationSubject] = e.Subject.String()
		ann[ocispec.AnnotationRefName] = e.Tag
	}
	d.Annotations = ann
	return d
}

// ParseEntry decodes an index.json descriptor written by petra-oci and checks that its
// annotations are complete and consistent.
func ParseEntry(d ocispec.Descriptor) (Entry, error) {
	ann := d.Annotations
	e := Entry{Descriptor: d, Kind: oci.Kind(ann[oci.AnnotationKind]), Repository: ann[oci.AnnotationRepository]}
	bad := func(format string, a ...any) (Entry, error) {
		return Entry{}, fmt.Errorf("%w: index.json entry %s: %s", oci.ErrInvalid, d.Digest, fmt.Sprintf(format, a...))
	}
	if !strings.Contains(e.Repository, "/") || strings.ContainsAny(e.Repository, " \t\n@") {
		return bad("repository %q", e.Repository)
	}
	switch {
	case !e.Kind.Known():
		return bad("unknown kind %q", e.Kind)
	case e.Kind.IsImage():
		e.Tag = ann[oci.AnnotationTag]
	case e.Kind.HasSubject():
		s, err := digest.Parse(ann[oci.AnnotationSubject])
		if err != nil {
			return bad("subject %q: %v", ann[oci.AnnotationSubject], err)
		}
		e.Subject = s
		if !e.Kind.IsReferrer() {
			e.Tag = ann[ocispec.AnnotationRefName]
			want := oci.ReferrersTag(s)
			if suf, ok := e.Kind.TagSuffix(); ok {
				want = oci.CosignTag(s, suf)
			}
			if e.Tag != want {
				return bad("%s tag %q, want %q", e.Kind, e.Tag, want)
			}
		}
	default:
		// a child: no tag, no subject
	}
	e.Descriptor.Annotations = ownAnnotations(d.Annotations, e.Kind)
	return e, nil
}

// ownAnnotations returns the annotations of the manifest itself: ann without the keys
// IndexDescriptor adds.
func ownAnnotations(ann map[string]string, kind oci.Kind) map[string]string {
	out := map[string]string{}
	for k, v := range ann {
		switch k {
		case oci.AnnotationKind, oci.AnnotationRepository, oci.AnnotationTag, oci.AnnotationSubject:
			continue
		case ocispec.AnnotationRefName, oci.AnnotationContainerdName:
			if !kind.IsReferrer() {
				continue
			}
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// ParseEntries decodes every entry of idx.
func ParseEntries(idx ocispec.Index) ([]Entry, error) {
	out := make([]Entry, 0, len(idx.Manifests))
	for _, d := range idx.Manifests {
		e, err := ParseEntry(d)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// key identifies an entry for merging: a re-pack replaces an entry with the same key.
func (e Entry) key() string {
	switch {
	case e.Kind.IsImage():
		if e.Tag != "" {
			return "image " + e.Repository + ":" + e.Tag
		}
	case e.Kind.IsReferrer():
		return "referrer " + e.Repository + " " + e.Subject.String() + " " + e.Descriptor.Digest.String()
	case !e.Kind.HasSubject():
		return string(e.Kind) + " " + e.Repository + " " + e.Descriptor.Digest.String()
	default: // tagged by subject: a re-pack replaces it
		return string(e.Kind) + " " + e.Repository + " " + e.Tag
	}
	return "image " + e.Repository + "@" + e.Descriptor.Digest.String()
}

// Merge returns old with every entry of add added, replacing an old entry with the same
// key (a moved tag, a new cosign signature manifest). Referrers indexes are dropped:
// they are derived with ReferrersIndexEntries from the merged referrers.
func Merge(old, add []Entry) []Entry {
	pos := map[string]int{}
	var out []Entry
	for _, list := range [][]Entry{old, add} {
		for _, e := range list {
			if e.Kind.IsDerived() {
				continue
			}
			k := e.key()
			if i, ok := pos[k]; ok {
				out[i] = e
				continue
			}
			pos[k] = len(out)
			out = append(out, e)
		}
	}
	return out
}

// OpenEntries opens the layout at dir and decodes its index.json entries: what a reader
// of a petra-oci bundle (inspect, the reviewer report) starts from. It verifies nothing
// beyond the shape; a bundle from elsewhere is verified by the bundle verifier first.
func OpenEntries(dir string) (*Layout, []Entry, error) {
	l, err := Open(dir)
	if err != nil {
		return nil, nil, err
	}
	idx, err := l.ReadIndex()
	if err != nil {
		return nil, nil, err
	}
	entries, err := ParseEntries(idx)
	if err != nil {
		return nil, nil, err
	}
	return l, entries, nil
}
