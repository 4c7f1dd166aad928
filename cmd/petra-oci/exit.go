package main

import (
	"errors"

	"github.com/urfave/cli/v2"

	"github.com/petra-oci/petra-oci/bundle"
	"github.com/petra-oci/petra-oci/evidence"
	"github.com/petra-oci/petra-oci/imageverify"
	"github.com/petra-oci/petra-oci/internal/archive"
	"github.com/petra-oci/petra-oci/internal/audit"
	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/internal/serve"
	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
	"github.com/petra-oci/petra-oci/policy"
	"github.com/petra-oci/petra-oci/receipt"
	"github.com/petra-oci/petra-oci/referrers"
	"github.com/petra-oci/petra-oci/remote"
	"github.com/petra-oci/petra-oci/replay"
	"github.com/petra-oci/petra-oci/signing"
	"github.com/petra-oci/petra-oci/unpack"
)

// Exit codes. Verification failures each have their own, so scripts at the air gap
// can tell them apart; docs/bundle-format.md lists them.
const (
	exitFailure     = 1
	exitUsage       = 2
	exitUnsigned    = 10
	exitSignature   = 11
	exitMetadata    = 12
	exitReplay      = 13
	exitReplayState = 14
	exitRollback    = 15 // a tag would move back to content from an older bundle
	exitBaseMissing = 16 // unpack of a delta: blobs it expects are not at the destination (nothing pushed)
	exitFileChanged = 20
	exitFileMissing = 21
	exitFileExtra   = 22
	exitUnsafeFile  = 23
	exitBlobDigest  = 24
	exitNotCovered  = 25
	exitOrphan      = 26  // an entry the graph does not reach from an image of its repository
	exitKind        = 27  // an entry whose content does not match its kind
	exitName        = 28  // a repository or tag outside the grammar, or a destination outside --to
	exitDelta       = 29  // a delta bundle inconsistent with its metadata's expected blobs
	exitImage       = 30  // an image fails the policy (signatures, attestations)
	exitTrust       = 31  // the bundle carries trust material other than the pinned one
	exitSource      = 32  // a source outside the policy's allow-list
	exitPolicy      = 33  // the policy file is invalid, or no rule matches
	exitNoEvidence  = 34  // --require-evidence: an image without a valid pack-side verification summary
	exitSparseIndex = 35  // unpack: an index whose children the bundle does not all carry (without --allow-sparse-index)
	exitVulns       = 40  // vulnerabilities over the thresholds
	exitAudit       = 50  // an audit log does not verify (audit verify, audit continue)
	exitAuditWrite  = 51  // the audit log cannot be appended to (the command may have done its work)
	exitChunk       = 60  // import: a chunk missing or corrupted beyond what parity rebuilds
	exitStaleChunk  = 61  // import: a chunk file the signed chunk index does not list
	exitUnsafeEntry = 62  // import: a path traversal, link, device, duplicate or malformed header
	exitUnlisted    = 63  // import: an entry or size beyond the signed metadata (decompression bomb)
	exitNotExport   = 64  // import: not a petra-oci export, or a chunk index that breaks the format
	exitExists      = 65  // export/import: the output already exists
	exitInterrupted = 130 // stopped by SIGINT or SIGTERM
)

// exitGaveUp: a registry operation kept failing with transient errors until its
// retry bounds ran out (remote.ErrGaveUp).
const exitGaveUp = 70

var exitCodes = []struct {
	err  error
	code int
}{
	// first: the refusal names why each summary failed, whatever it wraps
	{evidence.ErrNoEvidence, exitNoEvidence},
	{signing.ErrInvalidOptions, exitUsage},
	{audit.ErrVerify, exitAudit},
	{audit.ErrWrite, exitAuditWrite},
	{audit.ErrInvalidEntry, exitAuditWrite},
	{serve.ErrPlainHTTP, exitUsage},
	{serve.ErrOptions, exitUsage},
	{archive.ErrIndexUnsigned, exitUnsigned},
	{archive.ErrIndexSignature, exitSignature},
	{archive.ErrChunk, exitChunk},
	{archive.ErrStaleChunk, exitStaleChunk},
	{archive.ErrUnsafeEntry, exitUnsafeEntry},
	{archive.ErrUnlisted, exitUnlisted},
	{archive.ErrNotExport, exitNotExport},
	{archive.ErrIndexInvalid, exitNotExport},
	{archive.ErrExists, exitExists},
	{receipt.ErrUnsigned, exitUnsigned},
	{receipt.ErrSignature, exitSignature},
	{receipt.ErrInvalid, exitMetadata},
	{unpack.ErrMissingAtDestination, exitBaseMissing},
	{layout.ErrDelta, exitDelta},
	{bundle.ErrUnsigned, exitUnsigned},
	{bundle.ErrSignature, exitSignature},
	{layout.ErrMetadataInvalid, exitMetadata},
	{replay.ErrReplay, exitReplay},
	{replay.ErrState, exitReplayState},
	{replay.ErrRollback, exitRollback},
	{oci.ErrInvalidName, exitName},
	{unpack.ErrSparseIndex, exitSparseIndex},
	{referrers.ErrOrphan, exitOrphan},
	{referrers.ErrKindMismatch, exitKind},
	{layout.ErrUnsafeFile, exitUnsafeFile},
	{layout.ErrBlobDigest, exitBlobDigest},
	{layout.ErrNotCovered, exitNotCovered},
	{layout.ErrFileMissing, exitFileMissing},
	{layout.ErrFileExtra, exitFileExtra},
	{layout.ErrFileChanged, exitFileChanged},
	{scanreport.ErrThreshold, exitVulns},
	{bundle.ErrTrustMismatch, exitTrust},
	{policy.ErrSourceNotAllowed, exitSource},
	{policy.ErrInvalidPolicy, exitPolicy},
	{policy.ErrNoRule, exitPolicy},
	// a registry operation that gave up, before the policy refusals: whatever it was
	// part of (a signature read, say) is undecided, not refused; running again may
	// succeed
	{remote.ErrGaveUp, exitGaveUp},
	{imageverify.ErrNoValidSignature, exitImage},
	{imageverify.ErrIdentity, exitImage},
	{imageverify.ErrDigestMismatch, exitImage},
	{imageverify.ErrMissingAttestation, exitImage},
	{imageverify.ErrAttestationCheck, exitImage},
	{imageverify.ErrChildUnsigned, exitImage},
	{imageverify.ErrCertificateRequired, exitImage},
	{imageverify.ErrNoTrustedTime, exitImage},
	{imageverify.ErrTlog, exitImage},
	{imageverify.ErrMalformed, exitImage},
}

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	for _, e := range exitCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return exitFailure
}
