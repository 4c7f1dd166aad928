// Package tufroot fetches Sigstore's public-good trusted root through TUF, for the
// connected side only (pack, when no trusted_root.json is given). The disconnected side
// never calls it: there, trust material is only what was pinned locally.
package tufroot

import (
	"fmt"

	"github.com/sigstore/sigstore-go/pkg/tuf"
)

// Fetch returns trusted_root.json from Sigstore's TUF repository, verified by the TUF
// client against the root embedded in sigstore-go and cached in its default location.
func Fetch() ([]byte, error) {
	c, err := tuf.New(tuf.DefaultOptions())
	if err != nil {
		return nil, fmt.Errorf("starting the Sigstore TUF client: %w", err)
	}
	b, err := c.GetTarget("trusted_root.json")
	if err != nil {
		return nil, fmt.Errorf("fetching trusted_root.json through TUF: %w", err)
	}
	return b, nil
}
