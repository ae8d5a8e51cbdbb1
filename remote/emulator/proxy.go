package emulator

import (
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
)

// The blob proxy forwards /{account}/... to Azurite unchanged (method,
// headers, query, body, Range; streamed), so the SAS a link carries is
// checked by Azurite itself (expiry, permissions, blob scope). On the way it
// counts each request, adds BlobLatency, injects faults at BlobFaultRate,
// paces request and response bodies at BlobBandwidth (shaping.go),
// tracks staged block ids, and settles a version right after a successful
// Put Blob, Put Block List or Copy, before the client sees the answer.

func newBlobProxy(s *Server) *httputil.ReverseProxy {
	target := &url.URL{Scheme: s.blobs.endpoint.Scheme, Host: s.blobs.endpoint.Host}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target) // keeps the incoming path and query
			pr.Out.Header.Del("X-Forwarded-For")
		},
		Transport:      s.blobs.transport,
		ModifyResponse: s.afterBlobResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.log.Warn("blob proxy: backend failed", "method", r.Method, "path", r.URL.Path, "err", err)
			writeStorageError(w, http.StatusBadGateway, "BadGateway", "blob storage is unreachable")
		},
	}
}

// blobOp names the kind of a blob request.
func blobOp(r *http.Request) string {
	comp := r.URL.Query().Get("comp")
	switch r.Method {
	case http.MethodGet:
		if comp == "" {
			return BlobOpGet
		}
	case http.MethodHead:
		return BlobOpHead
	case http.MethodPut:
		switch {
		case comp == "block":
			return BlobOpPutBlock
		case comp == "blocklist":
			return BlobOpPutBlockList
		case comp == "" && r.Header.Get("x-ms-copy-source") != "":
			return BlobOpCopy
		case comp == "" && r.Header.Get("x-ms-blob-type") != "":
			return BlobOpPutBlob
		}
	}
	return BlobOpOther
}

// blobName extracts the blob name from a proxied path, or "" if the path is
// not in the emulator's container.
func (s *Server) blobName(r *http.Request) string {
	prefix := s.blobs.endpoint.Path + "/" + s.blobs.container + "/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		return ""
	}
	return strings.TrimPrefix(r.URL.Path, prefix)
}

// countingReader counts a request body's bytes. The proxy's transport can
// still be reading the body when the handler returns (the store answered
// before the body was all sent), so the count is atomic.
type countingReader struct {
	io.ReadCloser
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (s *Server) handleBlob(w http.ResponseWriter, r *http.Request) {
	op := blobOp(r)
	sw := &statusWriter{ResponseWriter: w}
	var body *countingReader
	if r.Body != nil && r.Body != http.NoBody {
		body = &countingReader{ReadCloser: r.Body}
		r.Body = body
	}
	counted := false
	defer func() {
		if counted {
			return
		}
		n := sw.bytes
		if r.Method != http.MethodGet {
			n = 0
			if body != nil {
				n = body.n.Load()
			}
		}
		s.stats.blob(op, sw.code(), n)
	}()
	k := s.knobs()
	if !waitStall(r, k) {
		s.stats.blob(op, StatusDroppedByFault, 0)
		counted = true
		return
	}
	sleepCtx(r.Context(), k.blobLatency)
	if roll(k.blobFault) {
		s.stats.update(func(st *Stats) { st.Faults.Blob++ })
		blobFault(sw, func() { s.stats.blob(op, StatusDroppedByFault, 0); counted = true })
		return
	}
	s.log.Debug("blob", "op", op, "path", r.URL.Path) // never the query: it holds the signature
	var out http.ResponseWriter = sw
	if k.blobBandwidth > 0 {
		if body != nil {
			r.Body = &shapedBody{ReadCloser: body, ctx: r.Context(), lim: s.shaper}
		}
		out = &shapedWriter{ResponseWriter: sw, ctx: r.Context(), lim: s.shaper}
	}
	s.proxy.ServeHTTP(out, r)
}

// afterBlobResponse runs before a successful answer is passed on: it tracks
// staged blocks and settles versions whose blob was just committed.
func (s *Server) afterBlobResponse(resp *http.Response) error {
	r := resp.Request
	if resp.StatusCode/100 != 2 {
		return nil
	}
	blob := s.blobName(r)
	if blob == "" {
		return nil
	}
	switch op := blobOp(r); op {
	case BlobOpPutBlock:
		id := r.URL.Query().Get("blockid")
		s.stagedMu.Lock()
		set := s.staged[blob]
		if set == nil {
			set = map[string]struct{}{}
			s.staged[blob] = set
		}
		_, again := set[id]
		set[id] = struct{}{}
		s.stagedMu.Unlock()
		if again {
			s.stats.update(func(st *Stats) { st.BlocksRestaged++ })
		}
	case BlobOpPutBlob, BlobOpPutBlockList, BlobOpCopy:
		s.stagedMu.Lock()
		delete(s.staged, blob)
		s.stagedMu.Unlock()
		var err error
		if st, ok := putBlobState(resp); ok {
			err = s.settleAnswered(r.Context(), blob, st)
		} else {
			err = s.settleBlob(r.Context(), blob)
		}
		if err != nil {
			// The commit went through; the version settles on the next
			// list or get instead.
			s.log.Warn("settle after commit", "blob", blob, "err", err)
		}
	}
	return nil
}

// putBlobState is the state a successful Put Blob answer tells of its blob:
// committed, with the request's length, the answer's ETag and time. ok is
// false for other operations (a block list's answer has no length; a copy
// may still be running) and for an answer without those headers.
func putBlobState(resp *http.Response) (blobState, bool) {
	r := resp.Request
	if blobOp(r) != BlobOpPutBlob || r.ContentLength < 0 {
		return blobState{}, false
	}
	etag := resp.Header.Get("ETag")
	mod, err := http.ParseTime(resp.Header.Get("Last-Modified"))
	if etag == "" || err != nil {
		return blobState{}, false
	}
	return blobState{committed: true, size: r.ContentLength, etag: etag, modified: mod.UTC()}, true
}
