package signing

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"golang.org/x/crypto/scrypt"
)

// scryptHalfMemory derives exactly what x/crypto's scrypt derives.
func TestScryptHalfMemoryMatchesScrypt(t *testing.T) {
	for _, c := range []struct{ n, r, p, keyLen int }{
		{2, 1, 1, 32}, {16, 1, 1, 64}, {1024, 8, 1, 32}, {256, 3, 2, 32}, {4096, 8, 3, 48}, {1 << 16, 8, 1, 32},
	} {
		pw, salt := []byte("correct horse"), []byte("battery staple salt")
		want, err := scrypt.Key(pw, salt, c.n, c.r, c.p, c.keyLen)
		if err != nil {
			t.Fatal(err)
		}
		got, err := scryptHalfMemory(pw, salt, c.n, c.r, c.p, c.keyLen)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("N=%d r=%d p=%d: key %x, scrypt says %x", c.n, c.r, c.p, got, want)
		}
	}
	for _, bad := range [][3]int{{1, 8, 1}, {3, 8, 1}, {16, 0, 1}, {16, 8, 0}} {
		if _, err := scryptHalfMemory([]byte("p"), []byte("s"), bad[0], bad[1], bad[2], 32); err == nil {
			t.Fatalf("N=%d r=%d p=%d accepted", bad[0], bad[1], bad[2])
		}
	}
}

// It holds half of scrypt's table: for cosign's N=65536, r=8, 32 MiB and not 64 MiB.
func TestScryptHalfMemoryAllocatesHalf(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := scryptHalfMemory([]byte("pw"), []byte("0123456789abcdef0123456789abcdef"), 1<<16, 8, 1, 32); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 40<<20 {
		t.Fatalf("allocated %d MiB, want about 32", got>>20)
	}
}

// decryptKeyFile opens what go-securesystemslib's encrypted package writes, with its
// refusals.
func TestDecryptKeyFileMatchesEncrypted(t *testing.T) {
	secret := []byte("a PKCS #8 private key, say")
	pw := []byte("password")
	ct, err := encrypted.Encrypt(secret, pw) // the standard parameters cosign uses
	if err != nil {
		t.Fatal(err)
	}
	want, err := encrypted.Decrypt(ct, pw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decryptKeyFile(ct, pw)
	if err != nil || !bytes.Equal(got, want) || !bytes.Equal(got, secret) {
		t.Fatalf("decryptKeyFile = %q, %v; want %q", got, err, want)
	}
	if _, err := decryptKeyFile(ct, []byte("wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}
	legacy, err := encrypted.EncryptWithCustomKDFParameters(secret, pw, encrypted.Legacy)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decryptKeyFile(legacy, pw); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("legacy parameters: %q, %v", got, err)
	}
	for _, bad := range []string{
		`{"kdf":{"name":"scrypt","params":{"N":16,"r":8,"p":1},"salt":"MDEyMzQ1Njc4OWFiY2RlZg=="},"cipher":{"name":"nacl/secretbox","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"ciphertext":"AA=="}`,
		`{"kdf":{"name":"argon2","params":{"N":32768,"r":8,"p":1},"salt":"MDEyMzQ1Njc4OWFiY2RlZg=="},"cipher":{"name":"nacl/secretbox","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"ciphertext":"AA=="}`,
		`{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"MDEyMzQ1Njc4OWFiY2RlZg=="},"cipher":{"name":"aes","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"ciphertext":"AA=="}`,
		`{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"MDEyMzQ1Njc4OWFiY2RlZg=="},"cipher":{"name":"nacl/secretbox","nonce":"AAAA"},"ciphertext":"AA=="}`,
		`not json`,
	} {
		if _, err := decryptKeyFile([]byte(bad), pw); err == nil {
			t.Fatalf("accepted %s", bad)
		}
		if _, err := encrypted.Decrypt([]byte(bad), pw); err == nil {
			t.Fatalf("encrypted.Decrypt accepts %s: the refusal table is wrong", bad)
		}
	}
	// a salt under 128 bits is refused, not handed to pbkdf2 (which panics in FIPS mode)
	short := `{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"c2FsdA=="},"cipher":{"name":"nacl/secretbox","nonce":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"ciphertext":"AA=="}`
	if _, err := decryptKeyFile([]byte(short), pw); err == nil || !strings.Contains(err.Error(), "salt") {
		t.Fatalf("a 4-byte salt: err = %v, want a salt refusal", err)
	}
}
