package spdx

import (
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/internal/report/artifact"
)

// ReferrerManifest returns the OCI referrer manifest that attaches the SPDX document
// sbom to subject (an image manifest): artifactType and layer media type
// application/spdx+json, config the OCI empty descriptor, annotations recording
// info (origin, generator, package count, platform). Push the result into the bundle
// with its Push method and list its Descriptor in index.json as a referrer of subject.
func ReferrerManifest(sbom []byte, subject ocispec.Descriptor, info Info, created time.Time) (*artifact.Manifest, error) {
	return artifact.Build(ArtifactType, MediaType, sbom, subject, info.Annotations(), created)
}
