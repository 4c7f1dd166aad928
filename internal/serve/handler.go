package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/petra-oci/petra-oci/layout"
	"github.com/petra-oci/petra-oci/oci"
)

// OCI distribution-spec error codes served.
const (
	codeUnsupported    = "UNSUPPORTED"
	codeNameUnknown    = "NAME_UNKNOWN"
	codeManifestUnknwn = "MANIFEST_UNKNOWN"
	codeBlobUnknown    = "BLOB_UNKNOWN"
	codeDigestInvalid  = "DIGEST_INVALID"
	codeRangeInvalid   = "RANGE_INVALID"
	codePaginationNum  = "PAGINATION_NUMBER_INVALID"
	codeUnknown        = "UNKNOWN"
	codeUnavailable    = "UNAVAILABLE"
)

// maxPage bounds n on the catalog and tag lists (and is the page size without n).
const maxPage = 1000

// Handler returns the distribution API handler. It is what Start serves; tests may
// serve it themselves.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// recorder records the status and body bytes of a response for the access log.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// request is one request being answered.
type request struct {
	s       *Server
	w       *recorder
	r       *http.Request
	vw      *view
	aborted string // why the response was cut, for the access log
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	q := &request{s: s, w: rec, r: r}
	s.requests.Add(1)
	defer func() {
		s.bytesSent.Add(rec.bytes)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		attrs := []any{"method", r.Method, "path", r.URL.RequestURI(), "status", status, "bytes", rec.bytes,
			"duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr, "agent", r.UserAgent()}
		if q.aborted != "" {
			attrs = append(attrs, "aborted", q.aborted)
		}
		s.log.Info("request", attrs...)
	}()
	rec.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	path := r.URL.Path
	if path != "/v2" && !strings.HasPrefix(path, "/v2/") {
		q.fail(http.StatusNotFound, codeNameUnknown, "not a distribution API path")
		return
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(path, "/v2"), "/")
	if r.Method != http.MethodGet && r.Method != http.MethodHead || strings.Contains("/"+rest, "/blobs/uploads") {
		rec.Header().Set("Allow", "GET, HEAD")
		q.fail(http.StatusMethodNotAllowed, codeUnsupported, "this registry is read-only: it serves a verified bundle")
		return
	}
	if q.vw = s.acquire(); q.vw == nil {
		q.fail(http.StatusServiceUnavailable, codeUnavailable, "shutting down")
		return
	}
	defer q.vw.release()
	switch {
	case rest == "":
		rec.Header().Set("Content-Type", "application/json")
		rec.Header().Set("Content-Length", "2")
		rec.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = rec.Write([]byte("{}"))
		}
		return
	case rest == "_catalog":
		q.catalog()
		return
	case strings.HasSuffix(rest, "/tags/list"):
		if rp := q.repo(strings.TrimSuffix(rest, "/tags/list")); rp != nil {
			q.tags(rp)
		}
		return
	}
	i := strings.LastIndexByte(rest, '/')
	j := -1
	if i > 0 {
		j = strings.LastIndexByte(rest[:i], '/')
	}
	if i < 0 || j < 0 {
		q.fail(http.StatusNotFound, codeNameUnknown, "unknown path")
		return
	}
	name, kind, ref := rest[:j], rest[j+1:i], rest[i+1:]
	switch kind {
	case "manifests":
		if rp := q.repo(name); rp != nil {
			q.manifest(rp, ref)
		}
	case "blobs":
		if rp := q.repo(name); rp != nil {
			q.blob(rp, ref)
		}
	case "referrers":
		if rp := q.repo(name); rp != nil {
			q.referrers(rp, ref)
		}
	default:
		q.fail(http.StatusNotFound, codeNameUnknown, "unknown path")
	}
}

// errorBody is the distribution-spec error response.
type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (q *request) fail(status int, code, msg string) {
	b, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: code, Message: msg}}})
	h := q.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	q.w.WriteHeader(status)
	if q.r.Method != http.MethodHead {
		_, _ = q.w.Write(b)
	}
}

// refused answers for content that no longer matches what was verified (nothing sent
// yet): logged, counted, 500.
func (q *request) refused(what string, err error) {
	q.s.tampered.Add(1)
	q.aborted = "content changed after verification"
	q.s.log.Error("refusing content that changed on disk after verification", "what", what, "path", q.r.URL.Path, "error", err)
	q.fail(http.StatusInternalServerError, codeUnknown, what+" no longer matches the verified bundle: not served")
}

// tampered reports whether err says a pinned file no longer matches its verification.
func tampered(err error) bool {
	for _, e := range []error{layout.ErrFileChanged, layout.ErrFileMissing, layout.ErrUnsafeFile, oci.ErrDigestMismatch, oci.ErrSizeMismatch} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (q *request) repo(name string) *repo {
	rp := q.vw.repos[name]
	if rp == nil {
		q.fail(http.StatusNotFound, codeNameUnknown, fmt.Sprintf("repository %q is not served", name))
	}
	return rp
}

// page applies n and last to a sorted list; it returns the page and whether more
// follow, or ok false after answering 400.
func (q *request) page(all []string) (out []string, n int, more, ok bool) {
	v := q.r.URL.Query()
	n = maxPage
	if s := v.Get("n"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil || k < 0 {
			q.fail(http.StatusBadRequest, codePaginationNum, fmt.Sprintf("n=%q is not a non-negative number", s))
			return nil, 0, false, false
		}
		n = min(k, maxPage)
	}
	startAt := 0
	if last := v.Get("last"); last != "" {
		startAt, _ = slices.BinarySearch(all, last)
		if startAt < len(all) && all[startAt] == last {
			startAt++
		}
	}
	rest := all[startAt:]
	if len(rest) > n {
		return rest[:n], n, true, true
	}
	return rest, n, false, true
}

// nextLink sets the Link header to the page after out.
func (q *request) nextLink(out []string, n int) {
	if len(out) == 0 {
		return
	}
	u := url.URL{Path: q.r.URL.Path, RawQuery: url.Values{"n": {strconv.Itoa(n)}, "last": {out[len(out)-1]}}.Encode()}
	q.w.Header().Set("Link", fmt.Sprintf("<%s>; rel=\"next\"", u.String()))
}

func (q *request) json(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		q.fail(http.StatusInternalServerError, codeUnknown, err.Error())
		return
	}
	h := q.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	q.w.WriteHeader(http.StatusOK)
	if q.r.Method != http.MethodHead {
		_, _ = q.w.Write(b)
	}
}

func (q *request) catalog() {
	out, n, more, ok := q.page(q.vw.names)
	if !ok {
		return
	}
	if more {
		q.nextLink(out, n)
	}
	q.json(struct {
		Repositories []string `json:"repositories"`
	}{Repositories: nonNil(out)})
}

func (q *request) tags(rp *repo) {
	out, n, more, ok := q.page(rp.tagList)
	if !ok {
		return
	}
	if more {
		q.nextLink(out, n)
	}
	q.json(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{Name: rp.name, Tags: nonNil(out)})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// lookupManifest resolves a tag or digest in rp.
func (q *request) lookupManifest(rp *repo, ref string) (ocispec.Descriptor, bool) {
	if strings.Contains(ref, ":") {
		d, err := digest.Parse(ref)
		if err != nil {
			q.fail(http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("%q is not a valid digest", ref))
			return ocispec.Descriptor{}, false
		}
		desc, ok := rp.manifests[d]
		if !ok {
			q.fail(http.StatusNotFound, codeManifestUnknwn, fmt.Sprintf("manifest %s is not in %s", d, rp.name))
		}
		return desc, ok
	}
	desc, ok := rp.tags[ref]
	if !ok {
		q.fail(http.StatusNotFound, codeManifestUnknwn, fmt.Sprintf("tag %q is not in %s", ref, rp.name))
	}
	return desc, ok
}

// manifest answers a manifest by tag or digest: read whole through the pinned store
// (bounded, verified) before the first byte is sent, for HEAD too.
func (q *request) manifest(rp *repo, ref string) {
	desc, ok := q.lookupManifest(rp, ref)
	if !ok {
		return
	}
	b, ok := q.readManifest(rp, desc)
	if !ok {
		return
	}
	h := q.w.Header()
	h.Set("Content-Type", desc.MediaType)
	h.Set("Content-Length", strconv.FormatInt(desc.Size, 10))
	h.Set("Docker-Content-Digest", desc.Digest.String())
	h.Set("ETag", `"`+desc.Digest.String()+`"`)
	q.w.WriteHeader(http.StatusOK)
	if q.r.Method != http.MethodHead {
		_, _ = q.w.Write(b)
	}
}

func (q *request) readManifest(rp *repo, desc ocispec.Descriptor) ([]byte, bool) {
	if b, ok := rp.generated[desc.Digest]; ok {
		return b, true
	}
	rc, err := q.vw.store.Fetch(q.r.Context(), desc)
	if err == nil {
		var b []byte
		if b, err = oci.ReadAllVerified(rc, desc, oci.MaxManifestBytes); err == nil {
			return b, true
		}
	}
	switch {
	case q.r.Context().Err() != nil:
		q.aborted = "client gone"
	case tampered(err):
		q.refused("manifest "+desc.Digest.String(), err)
	default:
		q.s.log.Error("reading a manifest", "digest", desc.Digest, "error", err)
		q.fail(http.StatusInternalServerError, codeUnknown, "reading manifest "+desc.Digest.String()+" failed")
	}
	return nil, false
}

func (q *request) referrers(rp *repo, ref string) {
	d, err := digest.Parse(ref)
	if err != nil {
		q.fail(http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("%q is not a valid digest", ref))
		return
	}
	list := rp.referrers[d]
	if at := q.r.URL.Query().Get("artifactType"); at != "" {
		var filtered []ocispec.Descriptor
		for _, r := range list {
			if r.ArtifactType == at {
				filtered = append(filtered, r)
			}
		}
		list = filtered
		q.w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	if list == nil {
		list = []ocispec.Descriptor{}
	}
	b, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: list})
	if err != nil {
		q.fail(http.StatusInternalServerError, codeUnknown, err.Error())
		return
	}
	h := q.w.Header()
	h.Set("Content-Type", ocispec.MediaTypeImageIndex)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	q.w.WriteHeader(http.StatusOK)
	if q.r.Method != http.MethodHead {
		_, _ = q.w.Write(b)
	}
}
