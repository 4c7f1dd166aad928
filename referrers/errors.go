package referrers

import "errors"

// Errors of the subject graph of a bundle. Graph building wraps them with the entry
// they are about; callers test with errors.Is.
var (
	// ErrOrphan marks an entry that the graph cannot reach from a packed image of its
	// own repository: an attachment whose subject chain ends nowhere or in another
	// repository, a child entry that is no child of an image, a referrers index of
	// an unknown subject.
	ErrOrphan = errors.New("entry not reachable from a packed image of its repository")
	// ErrKindMismatch marks an entry whose content does not match its kind: a
	// "cosign-sig" that is a runnable image, a referrer without the subject it is
	// listed under, an attachment that carries filesystem layers.
	ErrKindMismatch = errors.New("entry content does not match its kind")
)
