package remote

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"golang.org/x/sync/errgroup"
)

// Azure Blob limits and evofs defaults for transfers.
const (
	// MaxBlocks is the most blocks one block blob may have.
	MaxBlocks = 50_000
	// MaxBlockSize is the largest block Azure accepts (Put Block).
	MaxBlockSize = 4000 << 20
	// maxPutBlobSize is the largest single Put Blob Azure accepts.
	maxPutBlobSize = 5000 << 20

	mib                  = 1 << 20
	defaultBlockSize     = 8 * mib
	defaultSingleShotMax = 8 * mib
	defaultConcurrency   = 4
	defaultMaxRetries    = 6
	retryDelay           = 200 * time.Millisecond
	maxRetryDelay        = 4 * time.Second
	// maxLinkRenewals bounds the renewals of a refused link per request.
	maxLinkRenewals = 3
	// defaultStallTimeout: a download response silent this long is dead.
	defaultStallTimeout = time.Minute
	// copyPollMax caps the wait between polls of an asynchronous copy.
	copyPollMax = 2 * time.Second
)

// ErrCopyUnsupported: the store refused a server-side copy; stream the
// bytes instead.
var ErrCopyUnsupported = errors.New("server-side copy not supported")

// BlobConfig tunes the blob transfers. Zero values mean the defaults.
type BlobConfig struct {
	HTTPClient    *http.Client // nil: a tuned default (keep-alives, many idle conns per host)
	BlockSize     int64        // block of an upload and range of a download; default 8 MiB
	SingleShotMax int64        // uploads up to this size go as one Put Blob; default 8 MiB
	Concurrency   int          // parallel blocks/ranges per transfer; default 4
	MaxRetries    int          // per request, for 408/429/5xx/connection errors; default 6, negative: none
	Observer      Observer     // told of the bytes each request moves; nil: none
	// Health, if not nil, is told of every exchange and of bytes moving
	// (share it with the File API client of the same service).
	Health *Health
}

func (c BlobConfig) withDefaults() BlobConfig {
	if c.HTTPClient == nil {
		c.HTTPClient = defaultBlobHTTPClient()
	}
	if c.BlockSize <= 0 {
		c.BlockSize = defaultBlockSize
	}
	c.BlockSize = min(c.BlockSize, MaxBlockSize)
	if c.SingleShotMax <= 0 {
		c.SingleShotMax = defaultSingleShotMax
	}
	c.SingleShotMax = min(c.SingleShotMax, maxPutBlobSize)
	if c.Concurrency <= 0 {
		c.Concurrency = defaultConcurrency
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = defaultMaxRetries
	}
	c.Observer = observerOrNop(c.Observer)
	return c
}

// defaultBlobHTTPClient keeps connections to the store alive and allows
// many of them per host, for parallel blocks.
func defaultBlobHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
	}}
}

// Blobs moves bytes through pre-signed links. It is safe for concurrent
// use.
type Blobs struct {
	cfg  BlobConfig
	opts blockblob.ClientOptions
	// writeOpts has azcore's retries off: writes retry in write(), with a
	// fresh body each try (azcore rewinds the one body, which the previous
	// try's transport goroutine may still be reading).
	writeOpts blockblob.ClientOptions
	// stallTimeout abandons a download response that sends nothing for
	// this long (a dead connection) and resumes it on a new one.
	stallTimeout time.Duration
}

// NewBlobs returns a Blobs with cfg's defaults filled in.
func NewBlobs(cfg BlobConfig) *Blobs {
	cfg = cfg.withDefaults()
	retries := int32(cfg.MaxRetries)
	if retries < 0 {
		retries = -1 // azcore: no retries
	}
	opts := blockblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: cfg.HTTPClient,
		Retry: policy.RetryOptions{
			MaxRetries:    retries,
			RetryDelay:    retryDelay,
			MaxRetryDelay: maxRetryDelay,
		},
		Telemetry:        policy.TelemetryOptions{ApplicationID: "evofs"},
		PerCallPolicies:  []policy.Policy{countTries{}},
		PerRetryPolicies: []policy.Policy{reportRetries{cfg.Observer}, reportHealth{cfg.Health}},
	}}
	writeOpts := opts
	writeOpts.Retry.MaxRetries = -1
	return &Blobs{cfg: cfg, stallTimeout: defaultStallTimeout, opts: opts, writeOpts: writeOpts}
}

// BlockID names the block at byte offset off: the base64 of the offset as a
// 32-digit zero-padded decimal (the vendor SDK's convention), so that every
// id has the same length and a resumed upload finds its blocks again.
func BlockID(off int64) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "%032d", off))
}

// PlanBlocks returns the block size and block count for an upload of size
// bytes. blockSize (default 8 MiB when <= 0) grows, to a multiple of 1 MiB,
// so that no upload needs more than MaxBlocks blocks; it never exceeds
// MaxBlockSize, so n > MaxBlocks only for blobs larger than Azure allows.
func PlanBlocks(size, blockSize int64) (bs int64, n int) {
	if blockSize <= 0 {
		blockSize = defaultBlockSize
	}
	bs = min(blockSize, MaxBlockSize)
	if size <= 0 {
		return bs, 0
	}
	if ceilDiv(size, bs) > MaxBlocks {
		bs = min(ceilDiv(ceilDiv(size, MaxBlocks), mib)*mib, MaxBlockSize)
	}
	return bs, int(ceilDiv(size, bs))
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// withLink runs do with a client for l's current link. When the store
// refuses the link (ErrLinkExpired) it renews the link and runs do again,
// at most maxLinkRenewals times. Errors come back as *BlobError (or the
// context's error), named op and free of the link's query string.
func (b *Blobs) withLink(ctx context.Context, l *Link, op string, do func(*blockblob.Client) error) error {
	return b.withLinkOpts(ctx, l, op, &b.opts, do)
}

// write is withLink for a request with a body: retried here, up to
// MaxRetries times with backoff, do building a fresh body for each try.
// call names the request for the Observer ("put_block").
func (b *Blobs) write(ctx context.Context, l *Link, call, op string, do func(*blockblob.Client) error) error {
	for try := 0; ; try++ {
		err := b.withLinkOpts(ctx, l, op, &b.writeOpts, do)
		if err == nil || try >= b.cfg.MaxRetries || !retryableBlobErr(ctx, err) {
			return err
		}
		wait := min(retryDelay<<try, maxRetryDelay)
		wait = wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1))
		if err := sleepCtx(ctx, wait); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		b.cfg.Observer.Retry(call)
	}
}

// retryableBlobErr: a transport failure or a status the store uses for
// transient trouble.
func retryableBlobErr(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var be *BlobError
	if !errors.As(err, &be) {
		return false
	}
	switch be.Status {
	case 0, http.StatusRequestTimeout:
		return true
	}
	return retryableStatus(be.Status)
}

func (b *Blobs) withLinkOpts(ctx context.Context, l *Link, op string, opts *blockblob.ClientOptions, do func(*blockblob.Client) error) error {
	for renewals := 0; ; renewals++ {
		u, err := l.URL(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		c, err := blockblob.NewClientWithNoCredential(u, opts)
		if err != nil {
			return &BlobError{Op: op, Err: redactErr(err)}
		}
		err = blobErr(op, do(c))
		if err == nil || !errors.Is(err, ErrLinkExpired) || renewals == maxLinkRenewals || ctx.Err() != nil {
			return err
		}
		if _, rerr := l.Renew(ctx, u); rerr != nil {
			return fmt.Errorf("%s: link refused and %w", op, rerr)
		}
	}
}

// ReadAt reads len(p) bytes of the blob at off with one ranged GET (more if
// the connection drops midway: the bytes already read are kept). Like
// io.ReaderAt, it returns n < len(p) only with an error, io.EOF when the
// blob ends first.
func (b *Blobs) ReadAt(ctx context.Context, l *Link, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, &BlobError{Op: "read " + l.String(), Err: fmt.Errorf("negative offset %d", off)}
	}
	if len(p) == 0 {
		return 0, nil
	}
	return b.readRange(ctx, l, p, off, nil)
}

// ReadAtProgress is ReadAt that reports its progress: it calls progress(n)
// each time the first n bytes of p are in place and final (n only grows,
// and a resumed response continues where the broken one stopped). A
// caller can hand out the leading part of p before the whole range has
// arrived. progress runs on the reading goroutine and must be quick.
func (b *Blobs) ReadAtProgress(ctx context.Context, l *Link, p []byte, off int64, progress func(n int)) (int, error) {
	if off < 0 {
		return 0, &BlobError{Op: "read " + l.String(), Err: fmt.Errorf("negative offset %d", off)}
	}
	if len(p) == 0 {
		return 0, nil
	}
	return b.readRange(ctx, l, p, off, progress)
}

// readRange fills p from the blob at off, resuming after a dropped body
// where it broke off. It returns io.EOF if the blob ends before p is full.
// progress, if not nil, is told how many leading bytes of p are filled.
func (b *Blobs) readRange(ctx context.Context, l *Link, p []byte, off int64, progress func(int)) (int, error) {
	done, failures := 0, 0
	for done < len(p) {
		var got func(int)
		if progress != nil {
			base := done
			got = func(n int) { progress(base + n) }
		}
		n, eof, err := b.getRange(ctx, l, p[done:], off+int64(done), got)
		done += n
		switch {
		case eof:
			return done, io.EOF
		case err == nil:
			continue
		case ctx.Err() != nil:
			return done, fmt.Errorf("read %s: %w", l.String(), ctx.Err())
		case !isBodyError(err) || failures >= max(b.cfg.MaxRetries, 0):
			return done, err
		}
		if n > 0 {
			failures = 0
		}
		failures++
		if err := sleepCtx(ctx, min(retryDelay<<(failures-1), maxRetryDelay)); err != nil {
			return done, fmt.Errorf("read %s: %w", l.String(), err)
		}
		b.cfg.Observer.Retry("get")
	}
	return done, nil
}

// bodyError is a response body that broke off: worth resuming.
type bodyError struct{ err error }

func (e bodyError) Error() string { return "response body: " + e.err.Error() }
func (e bodyError) Unwrap() error { return e.err }

func isBodyError(err error) bool {
	var be bodyError
	return errors.As(err, &be)
}

// getRange makes one ranged GET for len(p) bytes at off and reads its body
// into p. eof reports that the blob ends before off+len(p) (all of it that
// exists was read); a body that breaks off returns a bodyError. progress,
// if not nil, is told the bytes of p read so far as they arrive.
func (b *Blobs) getRange(ctx context.Context, l *Link, p []byte, off int64, progress func(int)) (n int, eof bool, err error) {
	op := fmt.Sprintf("get %s bytes %d-%d", l.String(), off, off+int64(len(p))-1)
	err = b.withLink(ctx, l, op, func(c *blockblob.Client) error {
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wd := newWatchdog(b.stallTimeout, cancel)
		wd.h = b.cfg.Health
		defer wd.stop()
		start := time.Now()
		resp, err := c.DownloadStream(rctx, &blob.DownloadStreamOptions{
			Range: blob.HTTPRange{Offset: off, Count: int64(len(p))},
		})
		if err != nil {
			return wd.explain(err)
		}
		defer resp.Body.Close()
		if resp.ContentRange == nil && off != 0 {
			return fmt.Errorf("store ignored the range (no Content-Range)")
		}
		want := int64(len(p))
		if resp.ContentLength != nil && *resp.ContentLength >= 0 {
			want = min(want, *resp.ContentLength)
		}
		n, err = readFull(wd.reader(resp.Body), p[:want], progress)
		b.cfg.Observer.BlobTransfer("get", false, int64(n), time.Since(start))
		if err != nil {
			return bodyError{wd.explain(redactErr(err))}
		}
		eof = want < int64(len(p))
		return nil
	})
	var be *BlobError
	if errors.As(err, &be) && be.Status == http.StatusRequestedRangeNotSatisfiable {
		return n, true, nil
	}
	return n, eof, err
}

// readFull is io.ReadFull that reports the bytes read so far to progress
// (if not nil) after every read that brings some.
func readFull(r io.Reader, p []byte, progress func(int)) (int, error) {
	if progress == nil {
		return io.ReadFull(r, p)
	}
	n := 0
	for n < len(p) {
		k, err := r.Read(p[n:])
		if k > 0 {
			n += k
			progress(n)
		}
		if err != nil && n < len(p) {
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF // as io.ReadFull
			}
			return n, err
		}
	}
	return n, nil
}

// watchdog cancels a request that stalls: no byte of its response for
// a while. A stalled response is resumed like one that broke off.
type watchdog struct {
	h       *Health // told of bytes arriving
	d       time.Duration
	t       *time.Timer
	tripped atomic.Bool
}

func newWatchdog(d time.Duration, cancel context.CancelFunc) *watchdog {
	w := &watchdog{d: d}
	w.t = time.AfterFunc(d, func() {
		w.tripped.Store(true)
		cancel()
	})
	return w
}

func (w *watchdog) stop() { w.t.Stop() }

// explain turns the error of a request the watchdog cancelled into a
// bodyError (worth resuming); other errors pass unchanged.
func (w *watchdog) explain(err error) error {
	if err != nil && w.tripped.Load() {
		return bodyError{fmt.Errorf("no data for %v, connection abandoned", w.d)}
	}
	return err
}

// reader re-arms the watchdog whenever r yields bytes.
func (w *watchdog) reader(r io.Reader) io.Reader { return progressReader{r, w} }

type progressReader struct {
	r io.Reader
	w *watchdog
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.w.t.Reset(p.w.d)
		p.w.h.progress()
	}
	return n, err
}

// Download writes the blob's first size bytes to w with parallel ranged
// GETs of BlockSize, Concurrency at a time (one buffer of BlockSize each).
// A blob shorter than size is an error wrapping io.ErrUnexpectedEOF.
func (b *Blobs) Download(ctx context.Context, l *Link, w io.WriterAt, size int64) error {
	if size <= 0 {
		return nil
	}
	bs := b.cfg.BlockSize
	n := ceilDiv(size, bs)
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range min(int64(b.cfg.Concurrency), n) {
		g.Go(func() error {
			buf := make([]byte, min(bs, size))
			for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
				if err := b.downloadRange(gctx, l, w, buf, i*bs, min(bs, size-i*bs)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("download %s: %w", l.String(), ctx.Err())
		}
		return err
	}
	return nil
}

// downloadRange copies the n bytes at off from the blob to w through buf.
func (b *Blobs) downloadRange(ctx context.Context, l *Link, w io.WriterAt, buf []byte, off, n int64) error {
	got, err := b.readRange(ctx, l, buf[:n], off, nil)
	if err == io.EOF {
		return fmt.Errorf("download %s: blob ends at %d, before %d: %w",
			l.String(), off+int64(got), off+n, io.ErrUnexpectedEOF)
	}
	if err != nil {
		return err
	}
	if _, err := w.WriteAt(buf[:n], off); err != nil {
		return fmt.Errorf("download %s: write at %d: %w", l.String(), off, err)
	}
	return nil
}

// UploadOptions connect a multi-block upload to the caller's journal of
// staged blocks (a single-shot upload has no blocks and ignores them).
type UploadOptions struct {
	// Staged reports that the block at off was staged by an earlier,
	// interrupted upload of the same content (same size and BlockSize):
	// it is not sent again. Nil: send every block.
	Staged func(off int64) bool
	// OnStaged is called once the block of n bytes at off is staged, to
	// journal it. Calls are serialized, from the upload's goroutines.
	// Nil: no journal.
	OnStaged func(off int64, n int64)
}

// Upload writes src[0:size) as the blob's content: one Put Blob when size
// <= SingleShotMax, else Put Block for every block not yet staged
// (Concurrency at a time; see PlanBlocks) and one Put Block List in offset
// order. Each request's body is a section of src, rewound on retry: at most
// Concurrency blocks are in flight and src is never read whole into memory.
//
// When the upload skips blocks that opt.Staged reports and the link may
// read the uncommitted block list, the blocks the store no longer has (or
// has with another size) are staged again before the commit.
func (b *Blobs) Upload(ctx context.Context, l *Link, src io.ReaderAt, size int64, opt UploadOptions) error {
	if size < 0 {
		return &BlobError{Op: "upload " + l.String(), Err: fmt.Errorf("negative size %d", size)}
	}
	if size <= b.cfg.SingleShotMax {
		return b.write(ctx, l, "put_blob", "put blob "+l.String(), func(c *blockblob.Client) error {
			start := time.Now()
			_, err := c.Upload(ctx, b.section(src, 0, size), nil)
			if err == nil {
				b.cfg.Observer.BlobTransfer("put_blob", true, size, time.Since(start))
			}
			return err
		})
	}
	bs, n := PlanBlocks(size, b.cfg.BlockSize)
	if n > MaxBlocks {
		return &BlobError{Op: "upload " + l.String(), Err: fmt.Errorf("%d bytes need %d blocks of %d bytes, more than %d", size, n, bs, MaxBlocks)}
	}
	u := &upload{b: b, l: l, src: src, size: size, bs: bs, onStaged: opt.OnStaged}
	var send, skipped []int64
	ids := make([]string, n)
	for i := range int64(n) {
		off := i * bs
		ids[i] = BlockID(off)
		if opt.Staged != nil && opt.Staged(off) {
			skipped = append(skipped, off)
		} else {
			send = append(send, off)
		}
	}
	if err := u.stage(ctx, send); err != nil {
		return err
	}
	if len(skipped) > 0 {
		if err := u.stage(ctx, u.missing(ctx, skipped)); err != nil {
			return err
		}
	}
	return b.write(ctx, l, "put_block_list", "put block list "+l.String(), func(c *blockblob.Client) error {
		_, err := c.CommitBlockList(ctx, ids, nil)
		return err
	})
}

// section is the body of a request: n bytes of src at off, seekable so
// that a retry rewinds it.
// The transport reading it is the store taking bytes: Health hears of it.
func (b *Blobs) section(src io.ReaderAt, off, n int64) io.ReadSeekCloser {
	return streaming.NopCloser(&sentReader{io.NewSectionReader(src, off, n), b.cfg.Health})
}

type sentReader struct {
	*io.SectionReader
	h *Health
}

func (r *sentReader) Read(p []byte) (int, error) {
	n, err := r.SectionReader.Read(p)
	if n > 0 {
		r.h.progress()
	}
	return n, err
}

// upload is one multi-block upload in progress.
type upload struct {
	b        *Blobs
	l        *Link
	src      io.ReaderAt
	size, bs int64
	onStaged func(off, n int64)
	mu       sync.Mutex // serializes onStaged
}

// blockLen is the length of the block at off.
func (u *upload) blockLen(off int64) int64 { return min(u.bs, u.size-off) }

// stage sends the blocks at offs, Concurrency at a time, in offset order.
func (u *upload) stage(ctx context.Context, offs []int64) error {
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range min(u.b.cfg.Concurrency, len(offs)) {
		g.Go(func() error {
			for i := next.Add(1) - 1; i < int64(len(offs)); i = next.Add(1) - 1 {
				if err := u.stageBlock(gctx, offs[i]); err != nil {
					return err
				}
			}
			return nil
		})
	}
	err := g.Wait()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("upload %s: %w", u.l.String(), ctx.Err())
	}
	return err
}

// StageBlock sends src (n bytes) as the uncommitted block of a later
// Upload of the same link that starts at byte off (named BlockID(off)), so a
// writer can send blocks ahead of its close; Upload skips blocks its
// UploadOptions.Staged reports. The block size must be the one PlanBlocks
// gives that Upload.
func (b *Blobs) StageBlock(ctx context.Context, l *Link, off int64, src io.ReaderAt, n int64) error {
	op := fmt.Sprintf("put block %s at %d", l.String(), off)
	return b.write(ctx, l, "put_block", op, func(c *blockblob.Client) error {
		start := time.Now()
		_, err := c.StageBlock(ctx, BlockID(off), b.section(src, 0, n), nil)
		if err == nil {
			b.cfg.Observer.BlobTransfer("put_block", true, n, time.Since(start))
		}
		return err
	})
}

// BlockSize is the block size of an upload of size bytes (see PlanBlocks).
func (b *Blobs) BlockSize(size int64) int64 {
	bs, _ := PlanBlocks(size, b.cfg.BlockSize)
	return bs
}

// SingleShotMax is the largest upload sent as one Put Blob (no blocks).
func (b *Blobs) SingleShotMax() int64 { return b.cfg.SingleShotMax }

// stageBlock sends the block at off with Put Block and journals it.
func (u *upload) stageBlock(ctx context.Context, off int64) error {
	n := u.blockLen(off)
	op := fmt.Sprintf("put block %s at %d", u.l.String(), off)
	err := u.b.write(ctx, u.l, "put_block", op, func(c *blockblob.Client) error {
		start := time.Now()
		_, err := c.StageBlock(ctx, BlockID(off), u.b.section(u.src, off, n), nil)
		if err == nil {
			u.b.cfg.Observer.BlobTransfer("put_block", true, n, time.Since(start))
		}
		return err
	})
	if err != nil {
		return err
	}
	if u.onStaged != nil {
		u.mu.Lock()
		u.onStaged(off, n)
		u.mu.Unlock()
	}
	return nil
}

// missing returns the offsets among skipped whose blocks the store does not
// hold as uncommitted blocks of the right size. If the list cannot be read
// (a link without read permission), it trusts the journal: none missing.
func (u *upload) missing(ctx context.Context, skipped []int64) []int64 {
	have := make(map[string]int64)
	err := u.b.withLink(ctx, u.l, "get block list "+u.l.String(), func(c *blockblob.Client) error {
		resp, err := c.GetBlockList(ctx, blockblob.BlockListTypeUncommitted, nil)
		if err != nil {
			return err
		}
		for _, blk := range resp.UncommittedBlocks {
			if blk != nil && blk.Name != nil && blk.Size != nil {
				have[*blk.Name] = *blk.Size
			}
		}
		return nil
	})
	if err != nil {
		return nil
	}
	var out []int64
	for _, off := range skipped {
		if size, ok := have[BlockID(off)]; !ok || size != u.blockLen(off) {
			out = append(out, off)
		}
	}
	return out
}

// Copy makes the blob at dst a copy of the blob at src (a read link) on the
// store's side: a synchronous Copy Blob From URL, or, if the store refuses
// that, Copy Blob (asynchronous) polled until done. If the store refuses
// both, the error matches ErrCopyUnsupported and the caller should stream
// the bytes instead (Download + Upload).
func (b *Blobs) Copy(ctx context.Context, dst, src *Link) error {
	op := fmt.Sprintf("copy %s to %s", src.String(), dst.String())
	err := b.withLinks(ctx, dst, src, "sync "+op, func(c *blockblob.Client, srcURL string) error {
		_, err := c.CopyFromURL(ctx, srcURL, nil)
		return err
	})
	if err == nil || !copyRefused(err) {
		return err
	}
	err = b.withLinks(ctx, dst, src, "async "+op, func(c *blockblob.Client, srcURL string) error {
		resp, err := c.StartCopyFromURL(ctx, srcURL, nil)
		if err != nil {
			return err
		}
		if resp.CopyStatus != nil && *resp.CopyStatus == blob.CopyStatusTypeSuccess {
			return nil
		}
		return b.waitCopy(ctx, c, deref(resp.CopyID))
	})
	if err != nil && copyRefused(err) {
		return fmt.Errorf("%w: %w", ErrCopyUnsupported, err)
	}
	return err
}

// withLinks is withLink for a request that names a second link, the copy
// source: a refused source link is renewed like a refused destination.
func (b *Blobs) withLinks(ctx context.Context, dst, src *Link, op string, do func(*blockblob.Client, string) error) error {
	for renewals := 0; ; renewals++ {
		srcURL, err := src.URL(ctx)
		if err != nil {
			return fmt.Errorf("%s: source: %w", op, err)
		}
		err = b.withLink(ctx, dst, op, func(c *blockblob.Client) error { return do(c, srcURL) })
		if err == nil || !sourceRefused(err) || renewals == maxLinkRenewals || ctx.Err() != nil {
			return err
		}
		if _, rerr := src.Renew(ctx, srcURL); rerr != nil {
			return fmt.Errorf("%s: source link refused and %w", op, rerr)
		}
	}
}

// waitCopy polls the destination until the copy id has finished.
func (b *Blobs) waitCopy(ctx context.Context, c *blockblob.Client, id string) error {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, copyPollMax) {
		if err := sleepCtx(ctx, wait); err != nil {
			if id != "" {
				abortCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				_, _ = c.AbortCopyFromURL(abortCtx, id, nil)
				cancel()
			}
			return err
		}
		props, err := c.GetProperties(ctx, nil)
		if err != nil {
			return err
		}
		if id != "" && props.CopyID != nil && *props.CopyID != id {
			return errors.New("another copy replaced this one")
		}
		if props.CopyStatus == nil {
			return nil
		}
		switch *props.CopyStatus {
		case blob.CopyStatusTypeSuccess:
			return nil
		case blob.CopyStatusTypePending:
			continue
		default:
			return fmt.Errorf("copy %s: %s", *props.CopyStatus, deref(props.CopyStatusDescription))
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// copyRefused reports a copy the store will not do (as opposed to a failure
// worth reporting as is): not implemented, not allowed, or a source it
// cannot read by itself.
func copyRefused(err error) bool {
	var be *BlobError
	if !errors.As(err, &be) {
		return false
	}
	switch be.Status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusConflict,
		http.StatusRequestEntityTooLarge, http.StatusNotImplemented:
		return true
	}
	return be.Code == "CannotVerifyCopySource" || be.Code == "FeatureNotSupported"
}

// sourceRefused reports a copy whose source link the store refused as
// expired or invalid.
func sourceRefused(err error) bool {
	var be *BlobError
	if !errors.As(err, &be) || be.Code != "CannotVerifyCopySource" {
		return false
	}
	if be.Status == http.StatusUnauthorized || be.Status == http.StatusForbidden {
		return true
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.RawResponse != nil {
		switch re.RawResponse.Header.Get("x-ms-copy-source-error-code") {
		case "AuthenticationFailed", "AuthorizationFailure":
			return true
		}
	}
	return false
}

// blobErr turns an error of the SDK into a *BlobError named op (or the
// context's error), printed without any link's query string.
func blobErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var be *BlobError
	if errors.As(err, &be) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, redactErr(err))
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return &BlobError{Op: op, Status: re.StatusCode, Code: re.ErrorCode, Err: responseError{re}}
	}
	return &BlobError{Op: op, Err: redactErr(err)}
}

// responseError prints a store's error response briefly: the first line of
// its message, never the request's URL nor the whole body (an
// authentication error's details may quote the signature).
type responseError struct{ re *azcore.ResponseError }

var storeMessage = regexp.MustCompile(`<Message>([^<\r\n]*)`)

func (e responseError) Error() string {
	msg := fmt.Sprintf("status %d", e.re.StatusCode)
	if e.re.RawResponse != nil {
		if body, err := runtime.Payload(e.re.RawResponse); err == nil {
			if m := storeMessage.FindSubmatch(body); m != nil {
				msg = strings.TrimSpace(string(m[1]))
			}
		}
	}
	return Redact(msg)
}

func (e responseError) Unwrap() error { return e.re }

// urlQuery matches a URL's query string (and fragment).
