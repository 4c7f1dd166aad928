package conformance

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
)

func fetchAll(ctx context.Context, repo *remote.Repository, d ocispec.Descriptor) ([]byte, error) {
	return content.FetchAll(ctx, repo, d)
}
