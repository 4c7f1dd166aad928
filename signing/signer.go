package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// PEM block types of cosign's encrypted private keys: cosign generate-key-pair
// writes the first, cosign before v1.x wrote the second. Both hold
// scrypt + secretbox ciphertext (go-securesystemslib's "encrypted" format) of a
// PKCS #8 private key.
const (
	pemTypeSigstoreKey = "ENCRYPTED SIGSTORE PRIVATE KEY"
	pemTypeCosignKey   = "ENCRYPTED COSIGN PRIVATE KEY"
)

// maxKeyFileSize bounds the read of a key file: a cosign key is well under 1 KiB.
const maxKeyFileSize = 64 << 10

// Signer is a signing key that SignBlob can use: a decrypted cosign key file or
// a KMS key. Only this package makes Signers (LoadSigner, NewSigner), so every
// Signer has a public key of an accepted type and signs digests of the hash its
// algorithm calls for.
type Signer interface {
	// PublicKey returns the public half of the key.
	PublicKey() crypto.PublicKey
	// PublicKeyPEM returns the public key as PEM ("PUBLIC KEY", PKIX), the
	// format of cosign.pub.
	PublicKeyPEM() ([]byte, error)
	// KeyID returns base64(SHA-256(PKIX public key)), the hint cosign writes
	// into the verificationMaterial.publicKey of a bundle.
	KeyID() string

	// hash is the digest algorithm the key signs (SHA-256 for P-256 and RSA,
	// SHA-384 for P-384, SHA-512 for P-521).
	hash() crypto.Hash
	// signDigest signs a digest computed with hash().
	signDigest(ctx context.Context, digest []byte) ([]byte, error)
	// String names the key for error messages (a path or a KMS reference).
	String() string
}

// keySigner implements Signer over a sigstore SignerVerifier (a local key or a
// KMS client).
type keySigner struct {
	sv     signature.SignerVerifier
	pub    crypto.PublicKey
	hashFn crypto.Hash
	keyID  string
	name   string
}

func (s *keySigner) PublicKey() crypto.PublicKey { return s.pub }
func (s *keySigner) KeyID() string               { return s.keyID }
func (s *keySigner) hash() crypto.Hash           { return s.hashFn }
func (s *keySigner) String() string              { return s.name }

func (s *keySigner) PublicKeyPEM() ([]byte, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(s.pub)
	if err != nil {
		return nil, fmt.Errorf("signing: encoding the public key of %s: %w", s.name, err)
	}
	return b, nil
}

func (s *keySigner) signDigest(ctx context.Context, digest []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sig, err := s.sv.SignMessage(bytes.NewReader(nil),
		options.WithContext(ctx), options.WithDigest(digest), options.WithCryptoSignerOpts(s.hashFn))
	if err != nil {
		return nil, fmt.Errorf("signing: signing with %s: %w", s.name, err)
	}
	return sig, nil
}

// NewSigner wraps an in-memory private key (ECDSA P-256/P-384/P-521 or RSA
// 2048/3072/4096, PKCS #1 v1.5) as a Signer. Ed25519 keys are refused with
// ErrWrongKeyType: cosign and the Sigstore bundle spec disagree on how an
// Ed25519 key signs a blob (pure Ed25519 vs Ed25519ph).
func NewSigner(key crypto.Signer) (Signer, error) {
	return newLocalSigner(key, "in-memory key")
}

func newLocalSigner(key crypto.PrivateKey, name string) (Signer, error) {
	var pub crypto.PublicKey
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		pub = k.Public()
	case *rsa.PrivateKey:
		pub = k.Public()
	case ed25519.PrivateKey:
		return nil, fmt.Errorf("signing: %s: %w: Ed25519 keys cannot sign blobs here (use ECDSA P-256)", name, ErrWrongKeyType)
	default:
		return nil, fmt.Errorf("signing: %s: %w: unsupported private key type %T", name, ErrWrongKeyType, key)
	}
	hashFn, err := keyHash(pub, name)
	if err != nil {
		return nil, err
	}
	sv, err := signature.LoadSignerVerifier(key, hashFn)
	if err != nil {
		return nil, fmt.Errorf("signing: %s: %w: %w", name, ErrWrongKeyType, err)
	}
	return newKeySigner(sv, pub, hashFn, name)
}

func newKeySigner(sv signature.SignerVerifier, pub crypto.PublicKey, hashFn crypto.Hash, name string) (*keySigner, error) {
	id, err := keyID(pub)
	if err != nil {
		return nil, fmt.Errorf("signing: %s: %w: %w", name, ErrWrongKeyType, err)
	}
	return &keySigner{sv: sv, pub: pub, hashFn: hashFn, keyID: id, name: name}, nil
}

// keyHash returns the digest a public key signs with (sigstore's default
// algorithm for the key, the one cosign uses), refusing key types and sizes
// that are not accepted.
func keyHash(pub crypto.PublicKey, name string) (crypto.Hash, error) {
	if _, ok := pub.(ed25519.PublicKey); ok {
		return 0, fmt.Errorf("signing: %s: %w: Ed25519 keys cannot sign blobs here (use ECDSA P-256)", name, ErrWrongKeyType)
	}
	if err := cryptoutils.ValidatePubKey(pub); err != nil {
		return 0, fmt.Errorf("signing: %s: %w: %w", name, ErrWrongKeyType, err)
	}
	ad, err := signature.GetDefaultAlgorithmDetails(pub)
	if err != nil {
		return 0, fmt.Errorf("signing: %s: %w: %w", name, ErrWrongKeyType, err)
	}
	return ad.GetHashType(), nil
}

// keyID is base64(SHA-256(PKIX DER)), cosign's public-key hint.
func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// PasswordFromEnv returns a password function reading COSIGN_PASSWORD, cosign's
// variable. An unset variable is an error (an empty one is an empty password).
func PasswordFromEnv() ([]byte, error) {
	pw, ok := os.LookupEnv("COSIGN_PASSWORD")
	if !ok {
		return nil, errors.New("COSIGN_PASSWORD is not set")
	}
	return []byte(pw), nil
}

// LoadSigner opens a signing key.
//
// keyRef is either a cosign private key file (PEM "ENCRYPTED SIGSTORE PRIVATE
// KEY" or the older "ENCRYPTED COSIGN PRIVATE KEY") or a KMS reference:
// hashivault://KEY, awskms://..., gcpkms://..., azurekms://... (the providers
// linked into this binary; see KMSSchemes). Any other scheme is refused, so no
// external KMS plugin is ever executed.
//
// password is asked only for key files; nil means PasswordFromEnv
// (COSIGN_PASSWORD). A KMS key is reached at once to read its public key, so an
// unreachable KMS fails here, not at the first signature.
func LoadSigner(ctx context.Context, keyRef string, password func() ([]byte, error)) (Signer, error) {
	if keyRef == "" {
		return nil, fmt.Errorf("signing: %w: empty key reference", ErrKeyRef)
	}
	if scheme, ok := kmsScheme(keyRef); ok {
		return loadKMSSigner(ctx, keyRef, scheme)
	}
	if password == nil {
		password = PasswordFromEnv
	}
	return loadKeyFile(keyRef, password)
}

// kmsScheme returns the scheme of a KMS reference (SCHEME://...); a path is none.
func kmsScheme(keyRef string) (string, bool) {
	scheme, _, ok := strings.Cut(keyRef, "://")
	return scheme, ok && !strings.ContainsAny(scheme, `/\`)
}

func loadKeyFile(path string, password func() ([]byte, error)) (Signer, error) {
	ciphertext, pw, err := readKeyFile(path, password)
	if err != nil {
		return nil, err
	}
	return decryptKey(path, ciphertext, pw)
}

// readKeyFile reads a cosign key file and asks for its password: everything of loading
// it but the decryption.
func readKeyFile(path string, password func() ([]byte, error)) (ciphertext, pw []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %w: %w", ErrKeyRef, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("signing: %w: reading %s: %w", ErrKeyRef, path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, nil, fmt.Errorf("signing: %w: %s is larger than %d bytes, not a cosign key", ErrKeyRef, path, maxKeyFileSize)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, fmt.Errorf("signing: %w: %s holds no PEM block", ErrKeyRef, path)
	}
	if block.Type != pemTypeSigstoreKey && block.Type != pemTypeCosignKey {
		return nil, nil, fmt.Errorf("signing: %w: %s is a %q PEM block, want a cosign key (%q)", ErrKeyRef, path, block.Type, pemTypeSigstoreKey)
	}
	pw, err = password()
	if err != nil {
		return nil, nil, fmt.Errorf("signing: password for %s: %w", path, err)
	}
	return block.Bytes, pw, nil
}

// decryptKey decrypts the body of a cosign key file with pw (cleared after) into a
// Signer.
func decryptKey(path string, ciphertext, pw []byte) (Signer, error) {
	der, err := decryptKeyFile(ciphertext, pw)
	clear(pw)
	// scrypt's table (32 MiB for cosign's N=65536, r=8) is garbage now: return it to
	// the system, so the command does not hold it (nor a heap goal grown from it) while
	// it moves blobs
	debug.FreeOSMemory()
	if err != nil {
		return nil, fmt.Errorf("signing: %s: %w: %w", path, ErrKeyDecrypt, err)
	}
	defer clear(der)
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing: %s: %w: PKCS #8: %w", path, ErrKeyRef, err)
	}
	return newLocalSigner(key, path)
}

// PendingSigner is a Signer whose key file is still being decrypted
// (LoadSignerInBackground). Every method waits for the decryption. When it failed (a
// wrong password), PublicKeyPEM and signing return the error, PublicKey returns nil and
// KeyID "": call Wait or PublicKeyPEM before relying on those two.
type PendingSigner struct {
	name string
	done chan struct{}
	s    Signer
	err  error
}

// LoadSignerInBackground is LoadSigner for a caller that needs the key only after some
// other work: it reads a key file and asks for its password at once, as LoadSigner
// does (a wrong path, a file that is no cosign key or a missing password fail here),
// and decrypts the key on another goroutine (cosign's scrypt KDF, N = 65536, r = 8:
// about 0.25 s of CPU and 32 MiB), so the caller's work runs beside it. A KMS key is
// loaded before it returns, as LoadSigner loads it.
func LoadSignerInBackground(ctx context.Context, keyRef string, password func() ([]byte, error)) (*PendingSigner, error) {
	p := &PendingSigner{name: keyRef, done: make(chan struct{})}
	if _, kms := kmsScheme(keyRef); keyRef == "" || kms {
		s, err := LoadSigner(ctx, keyRef, password)
		if err != nil {
			return nil, err
		}
		p.s = s
		close(p.done)
		return p, nil
	}
	if password == nil {
		password = PasswordFromEnv
	}
	ciphertext, pw, err := readKeyFile(keyRef, password)
	if err != nil {
		return nil, err
	}
	go func() {
		defer close(p.done)
		p.s, p.err = decryptKey(keyRef, ciphertext, pw)
	}()
	return p, nil
}

// Wait waits for the key and returns it, or why it could not be decrypted.
func (p *PendingSigner) Wait() (Signer, error) {
	<-p.done
	return p.s, p.err
}

func (p *PendingSigner) PublicKey() crypto.PublicKey {
	if s, err := p.Wait(); err == nil {
		return s.PublicKey()
	}
	return nil
}

func (p *PendingSigner) PublicKeyPEM() ([]byte, error) {
	s, err := p.Wait()
	if err != nil {
		return nil, err
	}
	return s.PublicKeyPEM()
}

func (p *PendingSigner) KeyID() string {
	if s, err := p.Wait(); err == nil {
		return s.KeyID()
	}
	return ""
}

func (p *PendingSigner) hash() crypto.Hash {
	if s, err := p.Wait(); err == nil {
		return s.hash()
	}
	return crypto.SHA256 // signDigest returns the error
}

func (p *PendingSigner) signDigest(ctx context.Context, digest []byte) ([]byte, error) {
	s, err := p.Wait()
	if err != nil {
		return nil, err
	}
	return s.signDigest(ctx, digest)
}

func (p *PendingSigner) String() string {
	if s, err := p.Wait(); err == nil {
		return s.String()
	}
	return p.name
}
