package remote

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Observer is told of every exchange with the service, for metrics. Its
// methods are called from many goroutines at once and must be quick. The
// names it is given are fixed words, never paths, ids or links.
type Observer interface {
	// APICall reports one HTTP exchange of a File API, discovery or
	// workspace call (each retry is one): the call ("list_files",
	// "get_file", ... as the emulator names them), the status (0 when no
	// answer came) and how long the exchange took.
	APICall(call string, status int, d time.Duration)
	// BlobTransfer reports bytes moved on a pre-signed link by one
	// request: op "get", "put_blob" or "put_block"; up for uploads; n the
	// bytes of the body (for a get that broke off, the part that came).
	BlobTransfer(op string, up bool, n int64, d time.Duration)
	// Retry reports that a request is about to be sent again after a
	// transient failure (a 5xx, 408, 429, a dropped connection, a blob
	// response that broke off): call names it as APICall does for the API
	// and, for blob requests, "get", "put_blob", "put_block",
	// "put_block_list", "get_block_list", "copy", ... A token refresh
	// after a 401 and a renewal of an expired link are not retries.
	Retry(call string)
}

type nopObserver struct{}

func (nopObserver) APICall(string, int, time.Duration)              {}
func (nopObserver) BlobTransfer(string, bool, int64, time.Duration) {}
func (nopObserver) Retry(string)                                    {}

func observerOrNop(o Observer) Observer {
	if o == nil {
		return nopObserver{}
	}
	return o
}

// azcore retries the blob requests without a body (reads, block lists,
// copies) itself. These two policies tell the Observer of those retries:
// the first, once per operation, gives the operation a count of its tries;
// the second, run for every try, counts it and reports each after the
// first.
type tryCountKey struct{}

type countTries struct{}

func (countTries) Do(req *policy.Request) (*http.Response, error) {
	ctx := context.WithValue(req.Raw().Context(), tryCountKey{}, new(int))
	return req.WithContext(ctx).Next()
}

type reportRetries struct{ obs Observer }

func (p reportRetries) Do(req *policy.Request) (*http.Response, error) {
	if n, ok := req.Raw().Context().Value(tryCountKey{}).(*int); ok {
		// Tries of one operation run one after another: no lock needed.
		if *n++; *n > 1 {
			p.obs.Retry(blobCall(req.Raw()))
		}
	}
	return req.Next()
}

// reportHealth tells a Health of every blob exchange: answered (but with a 5xx,
// which is the service failing) or not.
type reportHealth struct{ h *Health }

func (p reportHealth) Do(req *policy.Request) (*http.Response, error) {
	id := p.h.begin()
	resp, err := req.Next()
	switch {
	case err != nil && req.Raw().Context().Err() != nil:
		p.h.end(id, false, "")
	case err != nil:
		p.h.end(id, false, "blob store: "+redactErr(err).Error())
	case resp.StatusCode >= 500:
		p.h.end(id, false, "blob store: HTTP "+strconv.Itoa(resp.StatusCode))
	default:
		p.h.end(id, true, "")
	}
	return resp, err
}

// blobCall names a blob request for the Observer.
func blobCall(r *http.Request) string {
	comp := r.URL.Query().Get("comp")
	switch r.Method {
	case http.MethodGet:
		switch comp {
		case "":
			return "get"
		case "blocklist":
			return "get_block_list"
		}
	case http.MethodHead:
		return "get_properties"
	case http.MethodPut:
		switch {
		case comp == "block":
			return "put_block"
		case comp == "blocklist":
			return "put_block_list"
		case comp == "copy":
			return "abort_copy"
		case r.Header.Get("x-ms-copy-source") != "":
			return "copy"
		case r.Header.Get("x-ms-blob-type") != "":
			return "put_blob"
		}
	}
	return "blob_other"
}
