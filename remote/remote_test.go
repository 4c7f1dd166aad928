package remote

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/petra-oci/petra-oci/oci"
)

// withBasicAuth guards h with user:pass, answering 401 with a challenge otherwise.
func withBasicAuth(h http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func dockerConfig(t *testing.T, host, user, pass string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	if err := os.WriteFile(p, []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCredentialsFromDockerConfig: a registry that wants basic auth is reached with the
// credentials of a docker config.json, and refused without them.
func TestCredentialsFromDockerConfig(t *testing.T) {
	srv := httptest.NewServer(withBasicAuth(registry.New(), "petra", "s3cret"))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := ParseReference(host + "/chainguard/nginx:latest")
	if err != nil {
		t.Fatal(err)
	}
	tags := func(cfg string) error {
		c, err := NewClient(Options{PlainHTTP: true, DockerConfig: cfg})
		if err != nil {
			t.Fatal(err)
		}
		repo, err := c.Repository(ref)
		if err != nil {
			t.Fatal(err)
		}
		return repo.Tags(context.Background(), "", func([]string) error { return nil })
	}
	if err := tags(dockerConfig(t, host, "petra", "s3cret")); !reached(err) {
		t.Fatalf("with credentials: %v", err)
	}
	if err := tags(dockerConfig(t, host, "petra", "wrong")); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("with wrong credentials: err = %v, want 401", err)
	}
	if err := tags(filepath.Join(t.TempDir(), "none.json")); err == nil {
		t.Fatal("without credentials: no error")
	}
}

// TestTLS: a registry with a private CA is reached with --ca-file, refused without it,
// and reached with insecure TLS only when asked.
func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	ref, _ := ParseReference(host + "/x/y:latest")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ping := func(o Options) error {
		o.DockerConfig = filepath.Join(t.TempDir(), "none.json")
		c, err := NewClient(o)
		if err != nil {
			return err
		}
		repo, err := c.Repository(ref)
		if err != nil {
			return err
		}
		_, err = repo.Resolve(context.Background(), "latest")
		if reached(err) {
			return nil
		}
		return err
	}
	if err := ping(Options{CAFile: ca}); err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
	if err := ping(Options{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: err = %v, want a certificate error", err)
	}
	if err := ping(Options{InsecureSkipTLSVerify: true}); err != nil {
		t.Fatalf("insecure: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o600)
	if _, err := NewClient(Options{CAFile: bad}); !errors.Is(err, oci.ErrInvalid) {
		t.Fatalf("bad CA file: err = %v", err)
	}
}

// reached reports whether a request got an answer from the registry itself: success,
// or "not found" for the empty repository.
func reached(err error) bool {
	if err == nil || errors.Is(err, errdef.ErrNotFound) {
		return true
	}
	var er *errcode.ErrorResponse
	return errors.As(err, &er) && er.StatusCode == http.StatusNotFound
}

func TestParseReferenceNeedsRegistryHost(t *testing.T) {
	for _, bad := range []string{"nginx:latest", "chainguard/nginx:latest", ""} {
		if _, err := ParseReference(bad); !errors.Is(err, oci.ErrInvalid) {
			t.Errorf("ParseReference(%q) err = %v", bad, err)
		}
	}
	for _, good := range []string{"cgr.dev/chainguard/nginx:latest", "localhost:5000/a/b@sha256:" + strings.Repeat("a", 64), "127.0.0.1:5000/x"} {
		if _, err := ParseReference(good); err != nil {
			t.Errorf("ParseReference(%q): %v", good, err)
		}
	}
}
