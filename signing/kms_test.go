package signing

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLoadSignerUnknownScheme(t *testing.T) {
	// A scheme sigstore's kms.Get would hand to an external
	// "sigstore-kms-<scheme>" plugin: put such a plugin on $PATH and check it
	// is never run.
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	plugin := "#!/bin/sh\ntouch " + marker + "\nexit 1\n"
	writeFile(t, filepath.Join(dir, "sigstore-kms-evil"), []byte(plugin))
	if err := os.Chmod(filepath.Join(dir, "sigstore-kms-evil"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))

	for _, ref := range []string{"evil://key", "k8s://ns/secret", "pkcs11:token=x", "gitlab://project", "file:///etc/key"} {
		_, err := LoadSigner(context.Background(), ref, nil)
		if ref == "pkcs11:token=x" {
			// no "://": taken as a file name, which does not exist
			wantErr(t, err, ErrKeyRef)
			continue
		}
		wantErr(t, err, ErrKeyRef)
		if !strings.Contains(err.Error(), "unknown key scheme") {
			t.Errorf("%s: error does not name the cause: %v", ref, err)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("an external KMS plugin was executed")
	}
	if got := KMSSchemes(); !slices.Contains(got, "hashivault") {
		t.Fatalf("KMSSchemes() = %v, want hashivault among them", got)
	}
}

// TestLoadSignerVaultUnreachable points hashivault:// at a loopback port nobody
// listens on: LoadSigner must fail fast with the connection error.
func TestLoadSignerVaultUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // the port is now closed
	t.Setenv("VAULT_ADDR", "http://"+addr)
	t.Setenv("VAULT_TOKEN", "test-token")
	t.Setenv("VAULT_MAX_RETRIES", "0")
	t.Setenv("VAULT_CLIENT_TIMEOUT", "5s")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = LoadSigner(ctx, "hashivault://petra-bundle", nil)
	wantErr(t, err, ErrKeyRef)
	if !errors.Is(err, syscall.ECONNREFUSED) && !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want a connection-refused error, got %v", err)
	}
	if !strings.Contains(err.Error(), "hashivault://petra-bundle") {
		t.Errorf("error does not name the key: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v to fail", d)
	}

	// Without VAULT_ADDR the provider refuses before any connection.
	t.Setenv("VAULT_ADDR", "")
	_, err = LoadSigner(ctx, "hashivault://petra-bundle", nil)
	wantErr(t, err, ErrKeyRef)
}

func TestLoadSignerKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	pw := func() ([]byte, error) { return []byte("pw"), nil }

	_, err := LoadSigner(ctx, filepath.Join(dir, "missing.key"), pw)
	wantErr(t, err, ErrKeyRef)
	_, err = LoadSigner(ctx, "", pw)
	wantErr(t, err, ErrKeyRef)

	plain := writeFile(t, filepath.Join(dir, "plain.key"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	_, err = LoadSigner(ctx, plain, pw)
	wantErr(t, err, ErrKeyRef)
	if !strings.Contains(err.Error(), `"PRIVATE KEY"`) {
		t.Errorf("error does not name the PEM type: %v", err)
	}

	notPEM := writeFile(t, filepath.Join(dir, "x.key"), []byte("hello"))
	_, err = LoadSigner(ctx, notPEM, pw)
	wantErr(t, err, ErrKeyRef)

	garbage := writeFile(t, filepath.Join(dir, "g.key"), []byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"))
	_, err = LoadSigner(ctx, garbage, pw)
	wantErr(t, err, ErrKeyDecrypt)

	// No password function and no COSIGN_PASSWORD: refused, not an empty password.
	t.Setenv("COSIGN_PASSWORD", "")
	os.Unsetenv("COSIGN_PASSWORD")
	_, err = LoadSigner(ctx, garbage, nil)
	if err == nil || !strings.Contains(err.Error(), "COSIGN_PASSWORD") {
		t.Fatalf("want a missing-COSIGN_PASSWORD error, got %v", err)
	}
}
