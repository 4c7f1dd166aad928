package audit

import (
	"github.com/petra-oci/petra-oci/layout"
)

// BundleAt returns what the bundle at dir says it is, from its petra/metadata.json
// (read as layout.ReadMetadataBytes does: no symlinks, bounded), without verifying it:
// for the entry of a command that wrote the bundle (pack, sign), or, with Claimed set,
// of one that refused it. Nil when there is no readable metadata.
func BundleAt(dir string, claimed bool) *Bundle {
	b, err := layout.ReadMetadataBytes(dir)
	if err != nil {
		return nil
	}
	out := &Bundle{Dir: dir, MetadataDigest: layout.MetadataDigest(b), Claimed: claimed}
	if m, err := layout.ParseMetadata(b); err == nil {
		out.ID, out.Sequence = m.BundleID, m.Sequence
	}
	return out
}
