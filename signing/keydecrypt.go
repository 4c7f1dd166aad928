package signing

import (
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/secretbox"
)

// decryptKeyFile opens the encrypted body of a cosign / sigstore private key PEM
// block exactly as github.com/secure-systems-lab/go-securesystemslib/encrypted.Decrypt
// does (scrypt KDF with one of its three accepted parameter sets, NaCl secretbox), but
// derives the key with scryptHalfMemory: 32 MiB instead of 64 MiB for the N=65536,
// r=8 that cosign writes. The result is the same; signer_test checks it against
// encrypted.Decrypt.
func decryptKeyFile(ciphertext, passphrase []byte) ([]byte, error) {
	var data struct {
		KDF struct {
			Name   string `json:"name"`
			Params struct {
				N int `json:"N"`
				R int `json:"r"`
				P int `json:"p"`
			} `json:"params"`
			Salt []byte `json:"salt"`
		} `json:"kdf"`
		Cipher struct {
			Name  string `json:"name"`
			Nonce []byte `json:"nonce"`
		} `json:"cipher"`
		Ciphertext []byte `json:"ciphertext"`
	}
	if err := json.Unmarshal(ciphertext, &data); err != nil {
		return nil, err
	}
	if data.KDF.Name != "scrypt" {
		return nil, fmt.Errorf("encrypted: unknown kdf name %q", data.KDF.Name)
	}
	if data.Cipher.Name != "nacl/secretbox" {
		return nil, fmt.Errorf("encrypted: unknown cipher name %q", data.Cipher.Name)
	}
	// go-securesystemslib's legacy, standard and OWASP parameters, nothing else
	p := data.KDF.Params
	switch {
	case p.N == 1<<15 && p.R == 8 && p.P == 1, p.N == 1<<16 && p.R == 8 && p.P == 1, p.N == 1<<17 && p.R == 8 && p.P == 1:
	default:
		return nil, errors.New("unsupported scrypt parameters")
	}
	// go-securesystemslib writes 32-byte salts; a shorter one is refused here rather
	// than panicking in crypto/pbkdf2 under GODEBUG=fips140=only (salts under 128 bits)
	if len(data.KDF.Salt) < 16 {
		return nil, fmt.Errorf("encrypted: scrypt salt of %d bytes, want at least 16", len(data.KDF.Salt))
	}
	var key [32]byte
	k, err := scryptHalfMemory(passphrase, data.KDF.Salt, p.N, p.R, p.P, len(key))
	if err != nil {
		return nil, err
	}
	copy(key[:], k)
	clear(k)
	defer clear(key[:])
	var nonce [24]byte
	if len(data.Cipher.Nonce) != len(nonce) {
		return nil, errors.New("encrypted: incorrect nonce size")
	}
	copy(nonce[:], data.Cipher.Nonce)
	out, ok := secretbox.Open(nil, data.Ciphertext, &nonce, &key)
	if !ok {
		return nil, errors.New("encrypted: decryption failed")
	}
	return out, nil
}
