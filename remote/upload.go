package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/petra-oci/petra-oci/oci"
)

// Chunked upload defaults: what the zero UploadOptions mean.
const (
	DefaultChunkThreshold = 8 << 20
	DefaultChunkSize      = 8 << 20
)

// UploadOptions say which blob uploads use the OCI distribution chunked protocol
// (POST, then PATCH with Content-Range per chunk, then PUT ?digest=), so that an
// upload broken off is resumed where the registry's upload session stands instead of
// restarted from byte 0. The zero value is safe: blobs of DefaultChunkThreshold bytes
// or more go in chunks of DefaultChunkSize.
type UploadOptions struct {
	// ChunkThreshold is the smallest blob uploaded in chunks; smaller ones go in one
	// request. 0 means DefaultChunkThreshold; negative uploads every blob in one
	// request (no resume).
	ChunkThreshold int64
	// ChunkSize is the most bytes one PATCH carries (raised to the registry's
	// OCI-Chunk-Min-Length). Each chunk is streamed from the source, never held in
	// memory. 0 means DefaultChunkSize; negative is invalid.
	ChunkSize int64
}

func (o UploadOptions) withDefaults() (UploadOptions, error) {
	if o.ChunkSize < 0 {
		return o, fmt.Errorf("%w: chunk size %d", oci.ErrInvalid, o.ChunkSize)
	}
	if o.ChunkThreshold == 0 {
		o.ChunkThreshold = DefaultChunkThreshold
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	return o, nil
}

// Repository is a registry repository whose large blob uploads resume
// (Client.Resumable): everything else is the oras-go repository's.
type Repository struct {
	*remote.Repository
	c *Client
}

// Resumable returns repo with resumable uploads of the blobs UploadOptions selects,
// through the client's authenticated, retrying HTTP client.
func (c *Client) Resumable(repo *remote.Repository) *Repository {
	return &Repository{Repository: repo, c: c}
}

// Open reads content from offset on (a source opened again for each try).
type Open = func(ctx context.Context, offset int64) (io.ReadCloser, error)

// ResumableUpload returns the upload of desc, for every try of one transfer to
// continue (graphcopy.Resumer), or nil when desc is uploaded in one request (too small,
// or chunked uploads turned off). Each call of the function returned continues the
// same upload session: it asks the registry how much of it it holds (GET on the
// session's Location, its Range header), reads the source from there (open) and sends
// the rest in chunks, then PUT ?digest= (the registry verifies the whole content). A
// session the registry lost is started again from byte 0; a registry that refuses
// chunks gets the blob in one request. Every try that moves the session forward
// resets the operation's retry bounds (Retrier.Do), so a long upload over a flaky
// link is bounded per stall, not per blob.
func (r *Repository) ResumableUpload(desc ocispec.Descriptor) func(ctx context.Context, open func(ctx context.Context, offset int64) (io.ReadCloser, error)) error {
	o := r.c.upload
	if o.ChunkThreshold < 0 || desc.Size < o.ChunkThreshold || oci.IsManifest(desc.MediaType) {
		return nil
	}
	u := &upload{repo: r, desc: desc, chunk: o.ChunkSize}
	return u.push
}

// UploadStats count what resumable uploads did (for tests and reports).
type UploadStats struct {
	// Sessions started, Resumed tries that continued a session at a non-zero offset,
	// Restarted sessions the registry lost, Monolithic fallbacks.
	Sessions, Resumed, Restarted, Monolithic int64
	// BytesSent is the blob bytes sent in PATCH bodies (and monolithic fallbacks).
	BytesSent int64
}

type uploadCounters struct {
	sessions, resumed, restarted, monolithic, bytes atomic.Int64
}

// UploadStats returns the counts of this client's resumable uploads so far.
func (c *Client) UploadStats() UploadStats {
	return UploadStats{Sessions: c.uploads.sessions.Load(), Resumed: c.uploads.resumed.Load(),
		Restarted: c.uploads.restarted.Load(), Monolithic: c.uploads.monolithic.Load(), BytesSent: c.uploads.bytes.Load()}
}

type upload struct {
	repo       *Repository
	desc       ocispec.Descriptor
	chunk      int64
	location   *url.URL // the session, once started
	monolithic bool     // the registry refused a chunk: one request from now on
}

// errSession marks a session that must be asked again or started again: a transient
// failure of the upload (retried by the operation).
var errSession = errors.New("upload session out of step")

func (u *upload) push(ctx context.Context, open func(ctx context.Context, offset int64) (io.ReadCloser, error)) error {
	c := u.repo.c
	ctx = auth.AppendRepositoryScope(ctx, u.repo.Reference, auth.ActionPull, auth.ActionPush)
	if u.monolithic {
		return u.pushWhole(ctx, open)
	}
	var offset int64
	if u.location != nil {
		off, loc, err := u.status(ctx)
		var er *errcode.ErrorResponse
		switch {
		case isUploadUnknown(err):
			c.uploads.restarted.Add(1)
			u.location = nil
		case errors.As(err, &er) && !transientStatus(er.StatusCode):
			// a registry that cannot say where a session stands (go-containerregistry's
			// answers 400): the whole blob in one request from now on
			u.monolithic = true
			c.uploads.monolithic.Add(1)
			return u.pushWhole(ctx, open)
		case err != nil:
			return fmt.Errorf("asking for the upload session of %s: %w", u.desc.Digest, err)
		default:
			u.location, offset = loc, off
			if off > 0 {
				c.uploads.resumed.Add(1)
			}
		}
	}
	if u.location == nil {
		if err := u.start(ctx); err != nil {
			return err
		}
	}
	rc, err := open(ctx, offset)
	if err != nil {
		return err
	}
	defer rc.Close()
	for offset < u.desc.Size {
		n := min(u.chunk, u.desc.Size-offset)
		loc, err := u.patch(ctx, io.LimitReader(rc, n), offset, n)
		if err != nil {
			var er *errcode.ErrorResponse
			switch {
			case isUploadUnknown(err):
				c.uploads.restarted.Add(1)
				u.location = nil // started again on the next try
				return fmt.Errorf("%w: uploading %s: %w", errSession, u.desc.Digest, err)
			case errors.Is(err, errSession):
				return err // asked again on the next try
			case errors.As(err, &er) && !transientStatus(er.StatusCode) && offset == 0:
				// a registry that does not take chunks: the whole blob in one request
				u.monolithic = true
				c.uploads.monolithic.Add(1)
				rc.Close()
				return u.pushWhole(ctx, open)
			case errors.As(err, &er) && !transientStatus(er.StatusCode):
				// a session the registry no longer takes chunks into (olareg: a
				// stale state, 400): started again on the next try
				c.uploads.restarted.Add(1)
				u.location = nil
				return fmt.Errorf("%w: uploading %s bytes %d-%d: %w", errSession, u.desc.Digest, offset, offset+n-1, err)
			}
			return fmt.Errorf("uploading %s bytes %d-%d: %w", u.desc.Digest, offset, offset+n-1, err)
		}
		u.location = loc
		offset += n
		c.uploads.bytes.Add(n)
		progress(ctx)
	}
	// the source must end here and hash to the digest (the verified reader says so at EOF)
	if k, err := io.Copy(io.Discard, rc); err != nil || k != 0 {
		return fmt.Errorf("reading %s: %w", u.desc.Digest, errors.Join(err, fmt.Errorf("%w: trailing data", oci.ErrSizeMismatch)))
	}
	return u.finish(ctx)
}

func (u *upload) baseURL() *url.URL {
	scheme := "https"
	if u.repo.PlainHTTP {
		scheme = "http"
	}
	return &url.URL{Scheme: scheme, Host: u.repo.Reference.Host(), Path: "/v2/" + u.repo.Reference.Repository + "/blobs/uploads/"}
}

func (u *upload) do(req *http.Request, want int) (*http.Response, error) {
	resp, err := u.repo.c.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		defer resp.Body.Close()
		return nil, parseError(resp)
	}
	return resp, nil
}

// start opens a new upload session (POST).
func (u *upload) start(ctx context.Context) error {
	base := u.baseURL()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String(), nil)
	if err != nil {
		return err
	}
	resp, err := u.do(req, http.StatusAccepted)
	if err != nil {
		return fmt.Errorf("starting the upload of %s: %w", u.desc.Digest, err)
	}
	resp.Body.Close()
	loc, err := location(resp, base)
	if err != nil {
		return fmt.Errorf("starting the upload of %s: %w", u.desc.Digest, err)
	}
	if m, err := strconv.ParseInt(resp.Header.Get("OCI-Chunk-Min-Length"), 10, 64); err == nil && m > u.chunk {
		u.chunk = m
	}
	u.location = loc
	u.repo.c.uploads.sessions.Add(1)
	return nil
}

// status asks how much of the session the registry holds (GET, Range: 0-<last byte>).
func (u *upload) status(ctx context.Context) (int64, *url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.location.String(), nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := u.do(req, http.StatusNoContent)
	if err != nil {
		return 0, nil, err
	}
	resp.Body.Close()
	off, err := rangeEnd(resp.Header.Get("Range"))
	if err != nil {
		return 0, nil, err
	}
	loc, err := location(resp, u.location)
	if err != nil {
		loc = u.location
	}
	return off, loc, nil
}

// rangeEnd parses a Range "0-<last>" into the offset after it. "0-0" is read as
// nothing held (distribution answers it for an empty session: a session holding one
// byte is then refused at the next chunk, 416, and asked again), as is "0--1"
// (olareg's answer for an empty session).
func rangeEnd(v string) (int64, error) {
	v = strings.TrimPrefix(v, "bytes=")
	a, b, ok := strings.Cut(v, "-")
	if b == "-1" {
		return 0, nil
	}
	if !ok || a != "0" {
		return 0, fmt.Errorf("%w: upload session Range %q", errSession, v)
	}
	last, err := strconv.ParseInt(b, 10, 64)
	if err != nil || last < 0 {
		return 0, fmt.Errorf("%w: upload session Range %q", errSession, v)
	}
	if last == 0 {
		return 0, nil
	}
	return last + 1, nil
}

// patch sends one chunk, bytes [offset, offset+n).
func (u *upload) patch(ctx context.Context, body io.Reader, offset, n int64) (*url.URL, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u.location.String(), io.NopCloser(body))
	if err != nil {
		return nil, err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", offset, offset+n-1))
	resp, err := u.do(req, http.StatusAccepted)
	if err != nil {
		var er *errcode.ErrorResponse
		if errors.As(err, &er) && er.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return nil, fmt.Errorf("%w: %v", errSession, err)
		}
		return nil, err
	}
	resp.Body.Close()
	if end, err := rangeEnd(resp.Header.Get("Range")); err == nil && end != offset+n && resp.Header.Get("Range") != "" {
		return nil, fmt.Errorf("%w: the registry holds %d bytes of %s after a chunk up to %d", errSession, end, u.desc.Digest, offset+n)
	}
	loc, err := location(resp, u.location)
	if err != nil {
		return u.location, nil
	}
	return loc, nil
}

// finish closes the session with the digest (PUT ?digest=): the registry verifies it.
func (u *upload) finish(ctx context.Context) error {
	loc := *u.location
	q := loc.Query()
	q.Set("digest", u.desc.Digest.String())
	loc.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), nil)
	if err != nil {
		return err
	}
	resp, err := u.do(req, http.StatusCreated)
	var er *errcode.ErrorResponse
	if isUploadUnknown(err) || errors.As(err, &er) && er.StatusCode >= 400 && er.StatusCode < 500 && er.StatusCode != http.StatusUnauthorized && er.StatusCode != http.StatusForbidden {
		// a try whose answer was lost may have finished it (checked first on the next
		// try); otherwise the upload starts again, the whole content sent in a new
		// session (a registry that refuses the digest of verified content every time
		// ends the operation by its bounds)
		u.location = nil
		u.repo.c.uploads.restarted.Add(1)
		return fmt.Errorf("%w: finishing the upload of %s: %w", errSession, u.desc.Digest, err)
	}
	if err != nil {
		return fmt.Errorf("finishing the upload of %s: %w", u.desc.Digest, err)
	}
	resp.Body.Close()
	return nil
}

// pushWhole uploads the blob in one request (oras-go's monolithic upload).
func (u *upload) pushWhole(ctx context.Context, open func(ctx context.Context, offset int64) (io.ReadCloser, error)) error {
	rc, err := open(ctx, 0)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := u.repo.Repository.Push(ctx, u.desc, rc); err != nil {
		return err
	}
	u.repo.c.uploads.bytes.Add(u.desc.Size)
	return nil
}

func location(resp *http.Response, base *url.URL) (*url.URL, error) {
	v := resp.Header.Get("Location")
	if v == "" {
		return nil, fmt.Errorf("%w: the registry answered no upload Location", errSession)
	}
	loc, err := base.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("%w: upload Location %q: %v", errSession, v, err)
	}
	return loc, nil
}

// isUploadUnknown reports a session the registry no longer knows: 404, or
// BLOB_UPLOAD_UNKNOWN with any status (olareg answers 400).
func isUploadUnknown(err error) bool {
	var er *errcode.ErrorResponse
	return errors.As(err, &er) && (er.StatusCode == http.StatusNotFound || hasCode(er.Errors, errcode.ErrorCodeBlobUploadUnknown))
}

// parseError turns an error response into an *errcode.ErrorResponse, as oras-go does.
func parseError(resp *http.Response) error {
	er := &errcode.ErrorResponse{Method: resp.Request.Method, URL: resp.Request.URL, StatusCode: resp.StatusCode}
	var body struct {
		Errors errcode.Errors `json:"errors"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	if err := json.Unmarshal(b, &body); err == nil {
		er.Errors = body.Errors
	}
	return er
}
