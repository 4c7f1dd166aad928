package conformance

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/petra-oci/petra-oci/internal/archive"
	"github.com/petra-oci/petra-oci/internal/fixture"
	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/layout"
)

// signBlob signs artifact keyless as `cosign sign-blob --bundle` does: a Fulcio-style
// leaf for identity and issuer (with its SCT), a hashedrekord entry of the test's Rekor
// log with its signed entry timestamp, as a Sigstore bundle (v0.1: a SET, no inclusion
// proof).
func (ks *keylessSigstore) signBlob(t *testing.T, identity, issuer string, artifact []byte) []byte {
	t.Helper()
	cert, key := ks.leaf(t, identity, issuer)
	h := sha256.Sum256(artifact)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	must(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	body, err := json.Marshal(map[string]any{"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": map[string]any{
		"data":      map[string]any{"hash": map[string]any{"algorithm": "sha256", "value": hex.EncodeToString(h[:])}},
		"signature": map[string]any{"content": base64.StdEncoding.EncodeToString(sig), "publicKey": map[string]any{"content": base64.StdEncoding.EncodeToString(certPEM)}},
	}})
	must(t, err)
	ks.logIndex++
	logID := logKeyID(t, ks.rekorKey)
	integrated := time.Now().Unix()
	entry := map[string]any{"body": base64.StdEncoding.EncodeToString(body), "integratedTime": integrated,
		"logIndex": ks.logIndex, "logID": hex.EncodeToString(logID)}
	canonical, err := json.Marshal(entry) // sorted keys, integers: RFC 8785 canonical
	must(t, err)
	eh := sha256.Sum256(canonical)
	set, err := ecdsa.SignASN1(rand.Reader, ks.rekorKey, eh[:])
	must(t, err)
	pb := &protobundle.Bundle{
		MediaType: "application/vnd.dev.sigstore.bundle+json;version=0.1",
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: &protocommon.X509CertificateChain{
				Certificates: []*protocommon.X509Certificate{{RawBytes: cert.Raw}}}},
			TlogEntries: []*protorekor.TransparencyLogEntry{{
				LogIndex: ks.logIndex, LogId: &protocommon.LogId{KeyId: logID},
				KindVersion:    &protorekor.KindVersion{Kind: "hashedrekord", Version: "0.0.1"},
				IntegratedTime: integrated, InclusionPromise: &protorekor.InclusionPromise{SignedEntryTimestamp: set},
				CanonicalizedBody: body,
			}},
		},
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: h[:]},
			Signature:     sig,
		}},
	}
	out, err := protojson.Marshal(pb)
	must(t, err)
	return out
}

// TestTransferKeylessChunkIndex: a bundle and its chunk index signed keyless (the
// test's own Fulcio, CT log and Rekor, offline) import with the identity flags and the
// trusted root, and are refused, with nothing imported, for another identity or
// issuer.
func TestTransferKeylessChunkIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	keys := newBundleKeys(t)
	ks := newKeylessSigstore(t)
	src := registrytest.Start(t, registrytest.Olareg)
	img := fixture.Chainguard(ctx, t, src.Host, interopRepo, interopTag, fixture.Options{Seed: 63})
	work := t.TempDir()
	root := writeFile(t, filepath.Join(work, "trusted_root.json"), ks.trustedRoot)

	// the bundle's metadata signed keyless instead of with the key
	dir, _ := packCLI(t, e, keys, img.Repo+":"+img.Tag)
	meta := readAll(t, filepath.Join(dir, filepath.FromSlash(layout.MetadataPath)))
	writeFile(t, filepath.Join(dir, filepath.FromSlash(layout.SignaturePath)), ks.signBlob(t, keylessIdentity, keylessIssuer, meta))
	keyless := []string{"--certificate-identity", keylessIdentity, "--certificate-oidc-issuer", keylessIssuer, "--trusted-root", root}
	e.petra(append(append([]string{"verify"}, keyless...), dir)...)

	// its archive cut into chunks with a chunk index signed keyless by the same identity
	tarPath := filepath.Join(work, "bundle.tar")
	e.petra("export", "-o", tarPath, dir)
	tarB := readAll(t, tarPath)
	m, err := layout.ParseMetadata(meta)
	must(t, err)
	chunks := filepath.Join(work, "chunks")
	must(t, os.Mkdir(chunks, 0o755))
	const chunkSize = 64 << 10
	whole := sha256.Sum256(tarB)
	ix := &archive.Index{MediaType: archive.IndexMediaType, BundleID: m.BundleID, Sequence: m.Sequence,
		MetadataDigest: layout.MetadataDigest(meta).String(), ChunkSize: chunkSize,
		Archive: archive.ArchiveInfo{Size: int64(len(tarB)), SHA256: hex.EncodeToString(whole[:]), Compression: archive.CompressionNone, TarSize: int64(len(tarB))}}
	for off := 0; off < len(tarB); off += chunkSize {
		b := tarB[off:min(off+chunkSize, len(tarB))]
		sum := sha256.Sum256(b)
		c := archive.Chunk{Name: fmt.Sprintf("data-%05d", len(ix.Chunks)), Role: archive.RoleData, Offset: int64(off), Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])}
		writeFile(t, filepath.Join(chunks, c.Name), b)
		ix.Chunks = append(ix.Chunks, c)
	}
	if len(ix.Chunks) < 2 {
		t.Fatalf("test bug: %d bytes make %d chunks", len(tarB), len(ix.Chunks))
	}
	ixB, err := archive.EncodeIndex(ix)
	must(t, err)
	writeFile(t, filepath.Join(chunks, archive.IndexFile), ixB)
	writeFile(t, filepath.Join(chunks, archive.IndexSignatureFile), ks.signBlob(t, keylessIdentity, keylessIssuer, ixB))

	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"other identity", []string{"--certificate-identity", "mallory@petra.example", "--certificate-oidc-issuer", keylessIssuer, "--trusted-root", root}},
		{"other issuer", []string{"--certificate-identity", keylessIdentity, "--certificate-oidc-issuer", "https://other.example", "--trusted-root", root}},
		{"the bundle key", []string{"--key", keys.pub}},
	} {
		out := filepath.Join(work, "refused")
		r := e.run(petraBin, append(append([]string{"import", "-o", out}, tc.flags...), chunks)...)
		assertExit(t, "import of a keyless chunk index, "+tc.name, r, exitSignatureCode, archive.IndexSignatureFile)
		if _, err := os.Lstat(out); !os.IsNotExist(err) {
			t.Errorf("%s: a refused import left %s: %v", tc.name, out, err)
		}
	}
	out := filepath.Join(work, "imported")
	r := e.petra(append(append([]string{"import", "-o", out, "--output", "json"}, keyless...), chunks)...)
	var res archive.ImportResult
	decodeJSON(t, r, &res)
	if res.BundleID != m.BundleID || res.Verify == nil || res.Verify.Signature == nil || res.Verify.Signature.Identity != keylessIdentity {
		t.Fatalf("import result %+v", res)
	}
	e.petra(append(append([]string{"verify"}, keyless...), out)...)
}
