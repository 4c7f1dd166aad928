// Package remote opens registry repositories the way the container ecosystem does:
// credentials from docker's config.json and credential helpers, plain HTTP only when
// asked, a custom CA bundle, and insecure TLS only when asked. It is a thin layer over
// oras-go's remote, auth and credentials packages.
package remote

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/petra-oci/petra-oci/oci"
)

// Options configure registry access. The zero value uses HTTPS with the system roots and
// docker's credentials.
type Options struct {
	// PlainHTTP talks HTTP instead of HTTPS to every registry (loopback test registries).
	PlainHTTP bool
	// CAFile is a PEM bundle trusted in addition to the system roots.
	CAFile string
	// InsecureSkipTLSVerify disables certificate verification. Unsafe; only when asked.
	InsecureSkipTLSVerify bool
	// DockerConfig is the path of a docker config.json; empty means docker's default
	// lookup ($DOCKER_CONFIG, ~/.docker/config.json).
	DockerConfig string
	// UserAgent is sent with every request.
	UserAgent string
	// Retry bounds the retries of failed operations (RetryOptions; the zero value
	// is safe).
	Retry RetryOptions
	// Log, when set, gets one line per retry.
	Log *slog.Logger
	// Upload says which blob uploads are chunked and resumed (Client.Resumable);
	// the zero value is safe.
	Upload UploadOptions
}

// Client opens repositories with one shared, authenticated HTTP client.
type Client struct {
	opts    Options
	client  *auth.Client
	retry   *Retrier
	upload  UploadOptions
	uploads uploadCounters
}

// NewClient builds a Client from opts.
func NewClient(opts Options) (*Client, error) {
	retrier, err := NewRetrier(opts.Retry, opts.Log)
	if err != nil {
		return nil, err
	}
	upload, err := opts.Upload.withDefaults()
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// keep a connection per transfer in flight (pack and unpack run several blob
	// transfers per registry at once; net/http's default keeps 2 idle per host, so the
	// rest were closed and dialled again, with a TLS handshake each time)
	transport.MaxIdleConnsPerHost = 32
	if opts.CAFile != "" || opts.InsecureSkipTLSVerify {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: opts.InsecureSkipTLSVerify} //nolint:gosec // only when asked
		if opts.CAFile != "" {
			pem, err := os.ReadFile(opts.CAFile)
			if err != nil {
				return nil, fmt.Errorf("reading CA file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: CA file %s holds no PEM certificate", oci.ErrInvalid, opts.CAFile)
			}
			cfg.RootCAs = pool
		}
		transport.TLSClientConfig = cfg
	}
	var store credentials.Store
	storeOpts := credentials.StoreOptions{}
	if opts.DockerConfig != "" {
		store, err = credentials.NewStore(opts.DockerConfig, storeOpts)
	} else {
		store, err = credentials.NewStoreFromDocker(storeOpts)
	}
	if err != nil {
		return nil, fmt.Errorf("loading registry credentials: %w", err)
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = "petra-oci"
	}
	c := &auth.Client{
		// requests that can be sent again are retried here, bounded as operations are;
		// the rest (a streamed blob upload) by the operation (Client.Retry)
		Client:     &http.Client{Transport: retryTransport{base: hintTransport{base: transport}, r: retrier}},
		Cache:      auth.NewCache(),
		Credential: credentials.Credential(store),
		Header:     http.Header{"User-Agent": []string{ua}},
	}
	return &Client{opts: opts, client: c, retry: retrier, upload: upload}, nil
}

// Retry runs op, one registry operation, with the client's retry bounds
// (Retrier.Do): op must be whole, so that running it again restarts it (open the
// content again, start the upload again). A client built without NewClient runs op
// once.
func (c *Client) Retry(ctx context.Context, what string, op func(context.Context) error) error {
	if c == nil || c.retry == nil {
		return op(ctx)
	}
	return c.retry.Do(ctx, what, op)
}

// RetryingFetcher returns f with its fetches retried and its broken reads resumed
// (Retrier.RetryingFetcher), for readers that take a plain fetcher (image
// verification). A client built without NewClient returns f.
func (c *Client) RetryingFetcher(f Fetcher) Fetcher {
	if c == nil || c.retry == nil {
		return f
	}
	return c.retry.RetryingFetcher(f)
}

// Repository opens host/repository (a reference without tag or digest is fine).
func (c *Client) Repository(ref registry.Reference) (*remote.Repository, error) {
	repo, err := remote.NewRepository(ref.Registry + "/" + ref.Repository)
	if err != nil {
		return nil, fmt.Errorf("opening repository %s/%s: %w", ref.Registry, ref.Repository, err)
	}
	repo.Client = c.client
	repo.PlainHTTP = c.opts.PlainHTTP
	// Registries without the referrers API: oras-go keeps the referrers tag schema
	// index up to date; never delete the superseded index, so registries that refuse
	// deletes still work and nothing is lost.
	repo.SkipReferrersGC = true
	return repo, nil
}

// ParseReference parses a fully qualified image reference (host/repository[:tag][@digest]).
// References without a registry host are refused: petra-oci never guesses a registry.
func ParseReference(s string) (registry.Reference, error) {
	ref, err := registry.ParseReference(s)
	if err != nil {
		return registry.Reference{}, fmt.Errorf("%w: reference %q: %v", oci.ErrInvalid, s, err)
	}
	if !strings.ContainsAny(ref.Registry, ".:") && ref.Registry != "localhost" {
		return registry.Reference{}, fmt.Errorf("%w: reference %q has no registry host (write e.g. cgr.dev/%s)", oci.ErrInvalid, s, s)
	}
	return ref, nil
}
