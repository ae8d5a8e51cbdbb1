package remote

import "time"

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
}

type nopObserver struct{}

func (nopObserver) APICall(string, int, time.Duration)              {}
func (nopObserver) BlobTransfer(string, bool, int64, time.Duration) {}

func observerOrNop(o Observer) Observer {
	if o == nil {
		return nopObserver{}
	}
	return o
}
