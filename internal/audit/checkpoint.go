package audit

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/petra-oci/petra-oci/signing"
)

// statementHeader is the first line of a checkpoint statement.
const statementHeader = "petra-oci audit checkpoint v1"

// Statement returns the exact bytes a checkpoint entry's signature covers:
//
//	petra-oci audit checkpoint v1
//	size <lines before the checkpoint>
//	head <sha256:hex of the line before it>
//	time <RFC 3339 UTC time of the checkpoint>
//	operator <operator>
//	host <host>
//	tool <tool>
//
// every line ending in "\n". Operator, host and tool hold no control characters, so
// the statement is unambiguous. Check one with cosign:
//
//	cosign verify-blob --key KEY.pub --bundle CP.sigstore.json --new-bundle-format \
//	  --insecure-ignore-tlog --trusted-root EMPTY-ROOT STATEMENT-FILE
func (e *Entry) Statement() []byte {
	var b bytes.Buffer
	b.WriteString(statementHeader + "\n")
	size, head := e.Seq-1, e.Prev
	if e.Checkpoint != nil {
		size, head = e.Checkpoint.Size, e.Checkpoint.Head
	}
	b.WriteString("size " + strconv.FormatUint(size, 10) + "\n")
	b.WriteString("head " + head.String() + "\n")
	b.WriteString("time " + e.Time.UTC().Format(time.RFC3339Nano) + "\n")
	b.WriteString("operator " + e.Operator + "\n")
	b.WriteString("host " + e.Host + "\n")
	b.WriteString("tool " + e.Tool + "\n")
	return b.Bytes()
}

// sign fills e.Checkpoint with a signature by s over e's statement.
func sign(ctx context.Context, e *Entry, s signing.Signer) error {
	e.Checkpoint = &Checkpoint{Size: e.Seq - 1, Head: e.Prev, KeyID: s.KeyID()}
	sig, err := signing.SignBlob(ctx, s, bytes.NewReader(e.Statement()))
	if err != nil {
		return fmt.Errorf("signing the checkpoint at entry %d with %s: %w", e.Seq, s, err)
	}
	e.Checkpoint.Signature = sig
	return nil
}

// verifyCheckpoint returns the key id of the first of keys that verifies e's signature.
func verifyCheckpoint(ctx context.Context, e *Entry, keys [][]byte) (string, error) {
	var last error
	for _, k := range keys {
		res, err := signing.VerifyBlob(ctx, e.Checkpoint.Signature, bytes.NewReader(e.Statement()), signing.VerifyOptions{PublicKey: k})
		if err == nil {
			return res.KeyID, nil
		}
		last = err
	}
	return "", last
}
