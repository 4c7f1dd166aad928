package signing

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/petra-oci/petra-oci/internal/registrytest"
)

// cosignEnv runs the real cosign binary (v2.6.5, scripts/install-tools.sh)
// offline in dir, with its own HOME and COSIGN_PASSWORD.
type cosignEnv struct {
	t   *testing.T
	bin string
	dir string
	pw  string
}

func newCosign(t *testing.T) *cosignEnv {
	t.Helper()
	return &cosignEnv{t: t, bin: registrytest.ToolPath(t, "cosign"), dir: t.TempDir(), pw: "correct horse battery staple"}
}

func (c *cosignEnv) path(name string) string { return filepath.Join(c.dir, name) }

// run runs cosign and returns its combined output and error.
func (c *cosignEnv) run(args ...string) (string, error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "HOME="+c.dir, "COSIGN_PASSWORD="+c.pw, "COSIGN_YES=true", "TUF_ROOT="+c.path(".sigstore"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cosignEnv) mustRun(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// keyPair makes PREFIX.key / PREFIX.pub with cosign generate-key-pair.
func (c *cosignEnv) keyPair(prefix string) (keyPath, pubPath string) {
	c.t.Helper()
	c.mustRun("generate-key-pair", "--output-key-prefix", prefix)
	return c.path(prefix + ".key"), c.path(prefix + ".pub")
}

// emptyRoot makes the empty trusted root cosign verify-blob needs to accept a
// key-signed new-format bundle without a log entry.
func (c *cosignEnv) emptyRoot() string {
	c.t.Helper()
	p := c.path("empty-trusted-root.json")
	c.mustRun("trusted-root", "create", "--out", p)
	return p
}

// verifyBlob runs the real cosign verify-blob on a key-signed bundle.
func (c *cosignEnv) verifyBlob(root, pub, bundle, file string) (string, error) {
	c.t.Helper()
	return c.run("verify-blob", "--new-bundle-format", "--insecure-ignore-tlog", "--trusted-root", root,
		"--key", pub, "--bundle", bundle, file)
}

func (c *cosignEnv) password() func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(c.pw), nil }
}

// TestCosignVerifiesOurBundle: a key made by cosign, loaded by LoadSigner,
// signs with SignBlob; VerifyBlob and the real cosign verify-blob accept the
// bundle and refuse every tampered variant.
func TestCosignVerifiesOurBundle(t *testing.T) {
	ctx := context.Background()
	c := newCosign(t)
	keyPath, pubPath := c.keyPair("petra")
	_, otherPub := c.keyPair("other")
	root := c.emptyRoot()
	content := []byte(`{"format":"petra-metadata/v1","files":{}}` + "\n")
	file := writeFile(t, c.path("metadata.json"), content)

	s, err := LoadSigner(ctx, keyPath, c.password())
	if err != nil {
		t.Fatal(err)
	}
	b, err := SignBlob(ctx, s, bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	bundlePath := writeFile(t, c.path("metadata.sigstore.json"), b)
	pub := readFile(t, pubPath)

	// (a) our verifier, (b) real cosign.
	res, err := VerifyBlob(ctx, b, bytes.NewReader(content), VerifyOptions{PublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != ModeKey || res.KeyID != s.KeyID() {
		t.Fatalf("result %+v", res)
	}
	if pem, err := s.PublicKeyPEM(); err != nil || !bytes.Equal(pem, pub) {
		t.Fatalf("PublicKeyPEM differs from cosign's %s (err %v):\n%s", pubPath, err, pem)
	}
	if out, err := c.verifyBlob(root, pubPath, bundlePath, file); err != nil {
		t.Fatalf("cosign verify-blob refused our bundle: %v\n%s", err, out)
	}

	// (c) tampered file, tampered signature, another key: both verifiers refuse.
	tamperedFile := writeFile(t, c.path("tampered.json"), flipByte(content))
	tamperedSig := editJSON(t, b, func(m map[string]any) { flipB64(t, m["messageSignature"].(map[string]any), "signature") })
	tamperedSigPath := writeFile(t, c.path("tampered-sig.sigstore.json"), tamperedSig)
	for _, tc := range []struct {
		name               string
		bundle, bundlePath string
		file               string
		pub                string
	}{
		{"flipped-byte-in-file", string(b), bundlePath, tamperedFile, pubPath},
		{"flipped-byte-in-signature", string(tamperedSig), tamperedSigPath, file, pubPath},
		{"another-key", string(b), bundlePath, file, otherPub},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyBlob(ctx, []byte(tc.bundle), bytes.NewReader(readFile(t, tc.file)), VerifyOptions{PublicKey: readFile(t, tc.pub)})
			wantErr(t, err, ErrBadSignature)
			if out, err := c.verifyBlob(root, tc.pub, tc.bundlePath, tc.file); err == nil {
				t.Fatalf("cosign verify-blob accepted it:\n%s", out)
			}
		})
	}

	t.Run("wrong-password", func(t *testing.T) {
		_, err := LoadSigner(ctx, keyPath, func() ([]byte, error) { return []byte("wrong"), nil })
		wantErr(t, err, ErrKeyDecrypt)
	})
	t.Run("in-background", func(t *testing.T) {
		p, err := LoadSignerInBackground(ctx, keyPath, c.password())
		if err != nil {
			t.Fatal(err)
		}
		if p.KeyID() != s.KeyID() || p.String() != keyPath {
			t.Fatalf("key id %q, name %q: want %q, %q", p.KeyID(), p.String(), s.KeyID(), keyPath)
		}
		b, err := SignBlob(ctx, p, bytes.NewReader(content))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyBlob(ctx, b, bytes.NewReader(content), VerifyOptions{PublicKey: pub}); err != nil {
			t.Fatalf("a pending signer's signature does not verify: %v", err)
		}
		// a wrong password: the load returns, the decryption error comes from every
		// method that can return one, and signing fails instead of panicking
		p, err = LoadSignerInBackground(ctx, keyPath, func() ([]byte, error) { return []byte("wrong"), nil })
		if err != nil {
			t.Fatalf("the password is checked in the background, got %v at once", err)
		}
		_, err = p.Wait()
		wantErr(t, err, ErrKeyDecrypt)
		_, err = p.PublicKeyPEM()
		wantErr(t, err, ErrKeyDecrypt)
		_, err = SignBlob(ctx, p, bytes.NewReader(content))
		wantErr(t, err, ErrKeyDecrypt)
		if p.PublicKey() != nil || p.KeyID() != "" {
			t.Error("a key that did not decrypt has a public key")
		}
		// what fails before the decryption fails at once
		_, err = LoadSignerInBackground(ctx, c.path("missing.key"), c.password())
		wantErr(t, err, ErrKeyRef)
		_, err = LoadSignerInBackground(ctx, keyPath, func() ([]byte, error) { return nil, errors.New("no terminal") })
		if err == nil {
			t.Error("a password that could not be read was not reported at once")
		}
	})
	t.Run("old-cosign-pem-type", func(t *testing.T) {
		old := strings.ReplaceAll(string(readFile(t, keyPath)), pemTypeSigstoreKey, pemTypeCosignKey)
		if !strings.Contains(old, "BEGIN "+pemTypeCosignKey) {
			t.Fatalf("cosign's key file is not a %q PEM block", pemTypeSigstoreKey)
		}
		s2, err := LoadSigner(ctx, writeFile(t, c.path("old.key"), []byte(old)), c.password())
		if err != nil {
			t.Fatal(err)
		}
		if s2.KeyID() != s.KeyID() {
			t.Fatal("same key, another key id")
		}
	})
	t.Run("password-from-env", func(t *testing.T) {
		t.Setenv("COSIGN_PASSWORD", c.pw)
		s2, err := LoadSigner(ctx, keyPath, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s2.KeyID() != s.KeyID() {
			t.Fatal("same key file, another key id")
		}
		t.Setenv("COSIGN_PASSWORD", "wrong")
		_, err = LoadSigner(ctx, keyPath, nil)
		wantErr(t, err, ErrKeyDecrypt)
	})
}

// TestWeVerifyCosignBundle: the real cosign sign-blob --new-bundle-format with
// a key and no log upload; VerifyBlob accepts it and refuses tampered copies.
func TestWeVerifyCosignBundle(t *testing.T) {
	ctx := context.Background()
	c := newCosign(t)
	keyPath, pubPath := c.keyPair("cosign")
	_, otherPub := c.keyPair("other")
	content := []byte("a CDS officer's report\n")
	file := writeFile(t, c.path("report.txt"), content)
	bundlePath := c.path("report.sigstore.json")
	c.mustRun("sign-blob", "--key", keyPath, "--bundle", bundlePath, "--new-bundle-format", "--tlog-upload=false", "--yes", file)
	b := readFile(t, bundlePath)
	pub := readFile(t, pubPath)

	s, err := LoadSigner(ctx, keyPath, c.password())
	if err != nil {
		t.Fatal(err)
	}
	res, err := VerifyBlob(ctx, b, bytes.NewReader(content), VerifyOptions{PublicKey: pub})
	if err != nil {
		t.Fatalf("cosign's bundle refused: %v\n%s", err, b)
	}
	if res.Mode != ModeKey || res.KeyID != s.KeyID() {
		t.Fatalf("result %+v, want key id %s", res, s.KeyID())
	}
	if !strings.Contains(string(b), s.KeyID()) {
		t.Errorf("cosign's hint differs from KeyID %s: %s", s.KeyID(), b)
	}

	for _, tc := range []struct {
		name    string
		bundle  []byte
		content []byte
		opts    VerifyOptions
		want    error
	}{
		{"flipped-byte-in-file", b, flipByte(content), VerifyOptions{PublicKey: pub}, ErrBadSignature},
		{"flipped-byte-in-signature", editJSON(t, b, func(m map[string]any) {
			flipB64(t, m["messageSignature"].(map[string]any), "signature")
		}), content, VerifyOptions{PublicKey: pub}, ErrBadSignature},
		{"another-key", b, content, VerifyOptions{PublicKey: readFile(t, otherPub)}, ErrBadSignature},
		{"keyless-asked", b, content, VerifyOptions{TrustedRoot: readFile(t, publicGood(t, pgRoot)),
			CertificateIdentity: "x@example.com", CertificateOIDCIssuer: githubOAuth}, ErrWrongKeyType},
		{"truncated", b[:len(b)/2], content, VerifyOptions{PublicKey: pub}, ErrMalformedBundle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyBlob(ctx, tc.bundle, bytes.NewReader(tc.content), tc.opts)
			wantErr(t, err, tc.want)
		})
	}
}
