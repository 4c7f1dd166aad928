package referrers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/oci"
)

// File is one file an artifact carries, as one layer.
type File struct {
	// Title names the file (org.opencontainers.image.title on its layer), so that
	// `oras pull` writes it under that name; oras skips a layer without one. It is a
	// plain file name: no directory, not "." or "..". Required unless the artifact's
	// options say UntitledFiles.
	Title string
	// MediaType is the layer's media type; required.
	MediaType string
	// Data is the file's content.
	Data []byte
}

// ArtifactOptions configure NewArtifact. The zero value writes an artifact with no
// manifest annotations, no creation time, and a title on every file.
type ArtifactOptions struct {
	// Annotations are the manifest's annotations (copied).
	Annotations map[string]string
	// Created, when not zero, is recorded as org.opencontainers.image.created (UTC,
	// RFC 3339), so a re-run with the same time yields the same digest.
	Created time.Time
	// UntitledFiles writes the layers without titles: only for the form a publisher's
	// tool writes and a verifier reads as it is (cosign's Sigstore bundle referrer,
	// whose one layer carries no title; see docs/evidence.md).
	UntitledFiles bool
}

// Blob is one blob of an artifact with its content.
type Blob struct {
	Descriptor ocispec.Descriptor
	Data       []byte
}

// Artifact is an OCI 1.1 artifact manifest attached to a subject, with every blob it
// needs, ready to be stored.
type Artifact struct {
	// Manifest is the manifest's bytes.
	Manifest []byte
	// Descriptor describes Manifest as a referrers listing shows it (artifactType and
	// the manifest's annotations set).
	Descriptor ocispec.Descriptor
	// Subject is the subject, media type, digest and size only.
	Subject ocispec.Descriptor
	// Config is the OCI empty config blob; Layers are the files, in order.
	Config Blob
	Layers []Blob
}

// NewArtifact returns the artifact manifest that attaches files to subject: the OCI
// empty descriptor as config, one layer per file, subject, artifactType, as oras and
// cosign write referrers. Only the subject's media type, digest and size are kept.
// It is the one writer of petra-oci's attachments (generated SBOMs, scan reports,
// Sigstore bundle evidence).
func NewArtifact(subject ocispec.Descriptor, artifactType string, opts ArtifactOptions, files ...File) (*Artifact, error) {
	if artifactType == "" {
		return nil, fmt.Errorf("%w: artifact without a type", oci.ErrInvalid)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: artifact %s without a file", oci.ErrInvalid, artifactType)
	}
	if err := oci.ValidateDescriptor(subject); err != nil {
		return nil, fmt.Errorf("artifact subject: %w", err)
	}
	if !oci.IsManifest(subject.MediaType) {
		return nil, fmt.Errorf("%w: artifact subject %s has media type %q", oci.ErrInvalid, subject.Digest, subject.MediaType)
	}
	ann := maps.Clone(opts.Annotations)
	if !opts.Created.IsZero() {
		if ann == nil {
			ann = map[string]string{}
		}
		ann[ocispec.AnnotationCreated] = opts.Created.UTC().Format(time.RFC3339)
	}
	if len(ann) == 0 {
		ann = nil
	}
	a := &Artifact{
		Subject: ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Config:  Blob{Descriptor: EmptyConfig(), Data: ocispec.DescriptorEmptyJSON.Data},
	}
	layers := make([]ocispec.Descriptor, 0, len(files))
	titles := map[string]bool{}
	for i, f := range files {
		if f.MediaType == "" {
			return nil, fmt.Errorf("%w: artifact %s: file %d without a media type", oci.ErrInvalid, artifactType, i)
		}
		d := oci.DescriptorFor(f.MediaType, f.Data)
		if !opts.UntitledFiles {
			if err := checkTitle(f.Title); err != nil {
				return nil, fmt.Errorf("artifact %s: file %d: %w", artifactType, i, err)
			}
			if titles[f.Title] {
				return nil, fmt.Errorf("%w: artifact %s: two files titled %q", oci.ErrInvalid, artifactType, f.Title)
			}
			titles[f.Title] = true
			d.Annotations = map[string]string{ocispec.AnnotationTitle: f.Title}
		}
		layers = append(layers, d)
		a.Layers = append(a.Layers, Blob{Descriptor: d, Data: f.Data})
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       a.Config.Descriptor,
		Layers:       layers,
		Subject:      &a.Subject,
		Annotations:  ann,
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding artifact manifest: %w", err)
	}
	a.Manifest = b
	a.Descriptor = oci.DescriptorFor(ocispec.MediaTypeImageManifest, b)
	a.Descriptor.ArtifactType = artifactType
	a.Descriptor.Annotations = ann
	return a, nil
}

// checkTitle refuses a title oras would not write as a plain file of its output
// directory.
func checkTitle(t string) error {
	if t == "" || t == "." || t == ".." || path.Base(t) != t || strings.ContainsAny(t, "/\\\x00") {
		return fmt.Errorf("%w: file title %q is not a plain file name", oci.ErrInvalid, t)
	}
	return nil
}

// EmptyConfig is the OCI empty descriptor ("{}") without its inline data, as oras and
// cosign write it.
func EmptyConfig() ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType: ocispec.DescriptorEmptyJSON.MediaType,
		Digest:    ocispec.DescriptorEmptyJSON.Digest,
		Size:      ocispec.DescriptorEmptyJSON.Size,
	}
}

// Pusher stores a blob given whole (layout.Layout, the targets evidence writes to).
type Pusher interface {
	PushBytes(ctx context.Context, mediaType string, b []byte) (ocispec.Descriptor, error)
}

// Push stores the layers, the config and then the manifest in t, and returns the
// manifest's descriptor (Descriptor). It lists nothing: recording the attachment
// (index.json, a referrers index) is the caller's job, with Attachment.
func (a *Artifact) Push(ctx context.Context, t Pusher) (ocispec.Descriptor, error) {
	for _, l := range a.Layers {
		if _, err := t.PushBytes(ctx, l.Descriptor.MediaType, l.Data); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("storing artifact layer %s: %w", l.Descriptor.Digest, err)
		}
	}
	if _, err := t.PushBytes(ctx, a.Config.Descriptor.MediaType, a.Config.Data); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("storing the empty config: %w", err)
	}
	if _, err := t.PushBytes(ctx, ocispec.MediaTypeImageManifest, a.Manifest); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("storing artifact manifest: %w", err)
	}
	return a.Descriptor, nil
}

// Attachment returns the artifact as the OCI referrer of its subject.
func (a *Artifact) Attachment() Attachment {
	return Attachment{Subject: a.Subject.Digest, Descriptor: a.Descriptor, Kind: oci.KindReferrer}
}
