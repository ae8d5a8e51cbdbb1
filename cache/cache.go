package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	badger "github.com/dgraph-io/badger/v4"
)

const (
	defaultMaxBytes  = 1 << 30
	defaultBlockSize = 1 << 20
	// maxBlockSize bounds Options.BlockSize (a block is one buffer in
	// memory).
	maxBlockSize = 16 << 20
	// readaheadSlots bounds readahead fetches in flight across all files
	// of a cache.
	readaheadSlots = 16
	// pipelineBytes bounds the bytes of readahead fetches in flight or
	// fetched and not yet stored, across all files of a cache: with
	// demand fetches (one block per waiting reader) and each handle's
	// block buffer, this is the cache's memory (see the package doc).
	pipelineBytes = 32 << 20
	// maxRunBytes bounds one readahead fetch (FileOptions.FetchSize).
	maxRunBytes = 16 << 20
)

// ErrClosed is returned by reads on a closed Cache.
var ErrClosed = errors.New("cache: closed")

// Options configure Open.
type Options struct {
	// Dir holds the index (Badger) and, in Dir/blocks, the block files.
	// "" (tests) keeps the index in memory and the blocks in a temporary
	// folder that Close removes.
	Dir string
	// MaxBytes bounds the disk space the block files take (allocated
	// bytes; see the package doc); least recently used blocks are
	// evicted beyond it. Default 1 GiB.
	MaxBytes int64
	// BlockSize is the cache's unit of fetching and storing. Default
	// 1 MiB, at most 16 MiB. A cache directory keeps the size it was
	// created with: zero adopts it, another non-zero size makes Open
	// fail.
	BlockSize int64
	// Logger receives warnings (store failures) and Badger's log, one
	// level quieter. Nil discards.
	Logger *slog.Logger
	// Trace, when set, receives one line per step of every block fetch
	// (see trace.go); it is flushed at Close. For diagnosing the read
	// pipeline (EVOFS_TRACE in evofs mount); nil traces nothing.
	Trace io.Writer

	// testFault, when set, is asked before each block file write, read
	// and punch or unlink ("put", "get", "delete") and a non-nil result
	// is used as that operation's error. Tests only.
	testFault func(op string) error
	// testFree, when set, replaces the statfs of Dir in the free-space
	// check (space.go). Tests only.
	testFree func() int64
}

// Cache is a persistent, size-bounded cache of blocks of immutable file
// versions. Its methods are safe for concurrent use.
//
// LOCK ORDERING: File.mu, then Cache.mu; Cache.storeMu, then Cache.mu.
// Cache.mu is never held across I/O or while taking another lock.
type Cache struct {
	////////////////////////////////////////////////////////////////////
	// Constant after Open
	////////////////////////////////////////////////////////////////////

	opt      Options
	db       *badger.DB
	log      *slog.Logger
	bs       int64  // block size
	max      int64  // MaxBytes
	blockDir string // the block files' folder
	tmpDir   string // removed by Close: the temporary Dir of Options.Dir ""
	fsBlock  int64  // file-system block size of blockDir

	// ctx is cancelled by Close: it stops fetches and readahead.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the cache starts and every read in
	// progress; Close waits for it before closing Badger.
	wg sync.WaitGroup
	// raSlots holds one token per readahead fetch in flight.
	raSlots chan struct{}
	// pipe holds the bytes of readahead fetches until they are stored.
	pipe *pipeline

	// nextID is the last journal id handed out.
	nextID atomic.Uint64
	// local holds the content files of dirty data (content.go).
	local *localStore

	trace    *tracer // nil unless Options.Trace
	stats    counters
	degraded atomic.Bool // the store is failing; set on a failure, cleared on the next success

	////////////////////////////////////////////////////////////////////
	// Mutable state
	////////////////////////////////////////////////////////////////////

	// storeMu serialises every change of block files and of the index
	// in Badger (writes, punches, unlinks, their index updates), so a
	// punch can never land after a newer write of the same bytes. Never
	// held while fetching.
	storeMu sync.Mutex
	// dirtyGate: writes of dirty data and the journal hold it shared
	// (dirty.go). Nothing takes it exclusively any more; it stays for
	// dirty.go's sake.
	dirtyGate sync.RWMutex

	mu     sync.Mutex
	closed bool // GUARDED_BY(mu)
	// versions has one entry per version with stored blocks (or pinned);
	// lru orders every stored block, most recently used at the front.
	// INVARIANT: used is the sum of the stored blocks' alloc, pinned of
	// those of pinned versions, and used <= max after every store.
	versions map[string]*version // GUARDED_BY(mu): by versionKey
	lru      *list.List          // GUARDED_BY(mu): of *stored
	used     int64               // GUARDED_BY(mu)
	pinned   int64               // GUARDED_BY(mu)
	nstored  int                 // GUARDED_BY(mu): blocks stored
	seq      uint64              // GUARDED_BY(mu): last use sequence number handed out
	// touched are stored blocks used since their index entry was last
	// written: their recency is written out in batches (see store).
	touched map[*stored]struct{} // GUARDED_BY(mu)
	// inflight has one entry per block being fetched. INVARIANT: no
	// block is both in inflight and stored; store moves a block from one
	// to the other in one critical section, so a reader that finds
	// neither (under mu) may start a fetch without duplicating one.
	inflight map[string]*fetch // GUARDED_BY(mu): by blockKey

	// bufs keeps fetch buffers of runCap bytes for reuse: a cold read
	// allocating 16 MiB per fetch kept the heap churning, and under the
	// soft memory limit every new buffer was faulted in and zeroed again
	// (a quarter of the cold read's CPU; see docs/benchmarks.md).
	bufs   sync.Pool // of *[]byte
	runCap int
	// blockBufs keeps buffers of one block (cap bs) for Files' whole-block
	// reads and for verifying blocks.
	blockBufs sync.Pool // of *[]byte
}

// fetch is one block download that any number of readers wait for.
type fetch struct {
	done chan struct{} // closed once data or err is set
	data []byte        // the block, read-only once done (nil on error)
	err  error
	buf  *runBuf // the buffer data lies in, shared by the blocks of one fetch
}

// runBuf is the buffer of one fetch. Its blocks' waiters copy out of it,
// so it is reused (see Cache.bufs) only once the fetch has stored its
// blocks, which ends new waiters, and every waiter has let go.
type runBuf struct {
	b    []byte
	refs int // GUARDED_BY(Cache.mu): the fetch itself and each waiter
}

// counters back Stats.
type counters struct {
	hits, misses, sharedWaits            atomic.Int64
	fetches, fetchedBytes, fetchErrors   atomic.Int64
	readaheads                           atomic.Int64
	evictions, evictedBytes, storeErrors atomic.Int64
	corrupt                              atomic.Int64
	buffersReused                        atomic.Int64 // fetch buffers taken from bufs
}

// Stats are the cache's counters since Open.
type Stats struct {
	Hits         int64 // block reads served from the store
	Misses       int64 // block reads that waited for a fetch
	SharedWaits  int64 // misses that joined a fetch already in flight
	Fetches      int64 // Fetcher calls (demand and readahead)
	FetchedBytes int64 // bytes the Fetcher returned
	FetchErrors  int64 // failed fetches
	Readaheads   int64 // fetches started by readahead
	Evictions    int64 // blocks evicted
	EvictedBytes int64 // disk bytes evicted (as counted against MaxBytes)
	StoreErrors  int64 // store failures absorbed by reading from the remote
	// Corrupt counts stored blocks that failed verification (checksum
	// mismatch, short or missing file): each was dropped and is fetched
	// again by the read that found it.
	Corrupt int64
}

// Usage is what the cache holds.
type Usage struct {
	Bytes  int64 // disk bytes of the stored blocks, as counted against MaxBytes
	Blocks int
}

// Open opens (or creates) the cache in o.Dir and loads its index.
func Open(o Options) (*Cache, error) {
	if o.MaxBytes <= 0 {
		o.MaxBytes = defaultMaxBytes
	}
	if o.BlockSize < 0 || o.BlockSize > maxBlockSize {
		return nil, fmt.Errorf("open block cache: block size %d is not in (0, %d]", o.BlockSize, maxBlockSize)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	bs := o.BlockSize
	if bs == 0 {
		bs = defaultBlockSize
	}
	root, tmp := o.Dir, ""
	if root == "" {
		var err error
		if tmp, err = os.MkdirTemp("", "evofs-cache-*"); err != nil {
			return nil, fmt.Errorf("open block cache: make a temporary folder: %w", err)
		}
		root = tmp
	}
	blockDir := filepath.Join(root, blocksDirName)
	if err := os.MkdirAll(blockDir, 0o700); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("open block cache: make %s: %w", blockDir, err)
	}
	db, bs, err := openDB(o, bs)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	c := &Cache{
		opt: o, db: db, log: o.Logger, bs: bs, max: o.MaxBytes,
		blockDir: blockDir, tmpDir: tmp, fsBlock: fsBlockSize(blockDir),
		raSlots:  make(chan struct{}, readaheadSlots),
		pipe:     &pipeline{free: pipelineBytes, wake: make(chan struct{})},
		versions: make(map[string]*version),
		lru:      list.New(),
		touched:  make(map[*stored]struct{}),
		inflight: make(map[string]*fetch),
		trace:    newTracer(o.Trace),
		runCap:   int(max(bs, maxRunBytes/bs*bs)),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.pipe.closed = c.ctx.Done()
	err = c.initJournal()
	if err == nil {
		err = c.openLocal()
	}
	if err == nil {
		err = c.rebuild()
	}
	if err != nil {
		c.cancel()
		db.Close()
		if c.local != nil {
			c.closeLocal()
		}
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("open block cache in %q: %w", o.Dir, err)
	}
	return c, nil
}

// Close stops readahead, cancels fetches in flight, waits for them and for
// reads in progress, writes out the recency of recent hits and closes the
// index. Reads after Close fail with ErrClosed. Files handed out by
// Backing stay readable; their release funcs may still be called.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.trace.flush()
	lerr := c.closeLocal()
	c.storeMu.Lock()
	if err := c.flushTouched(0); err != nil {
		c.log.Warn("block cache: recency of recent hits not saved", "err", err)
	}
	c.storeMu.Unlock()
	err := c.db.Close()
	if c.tmpDir != "" {
		if rerr := os.RemoveAll(c.tmpDir); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("close block cache: %w", err)
	}
	return lerr
}

// BlockSize is the cache's block size.
func (c *Cache) BlockSize() int64 { return c.bs }

// Usage reports the disk bytes and blocks stored.
func (c *Cache) Usage() Usage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Usage{Bytes: c.used, Blocks: c.nstored}
}

// Has reports whether block idx of v is stored.
func (c *Cache) Has(v Version, idx int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ve := c.versions[versionKey(v)]
	return ve != nil && ve.blocks[idx] != nil
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := &c.stats
	return Stats{
		Hits: s.hits.Load(), Misses: s.misses.Load(), SharedWaits: s.sharedWaits.Load(),
		Fetches: s.fetches.Load(), FetchedBytes: s.fetchedBytes.Load(), FetchErrors: s.fetchErrors.Load(),
		Readaheads: s.readaheads.Load(), Evictions: s.evictions.Load(), EvictedBytes: s.evictedBytes.Load(),
		StoreErrors: s.storeErrors.Load(), Corrupt: s.corrupt.Load(),
	}
}

// enter registers a read in progress, so Close waits for it. It fails once
// the cache is closed. Each successful enter needs a c.wg.Done.
func (c *Cache) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// goTracked runs fn in a goroutine Close waits for, unless the cache is
// closed.
func (c *Cache) goTracked(fn func()) bool {
	if !c.enter() {
		return false
	}
	go func() {
		defer c.wg.Done()
		fn()
	}()
	return true
}

// block identifies one block of one open version.
type block struct {
	key  []byte // blockKey: its index key and in-flight map key
	vkey string // versionKey of v
	idx  int64
	len  int64 // bytes in the block
	v    *Version
	src  Fetcher
}

// readBlock copies bytes [off, off+len(dst)) of block b into dst: from the
// store (verified), or by waiting for the block's fetch (starting one if
// none is in flight). ctx bounds only this reader's wait.
//
// LOCKS_EXCLUDED(c.mu, c.storeMu)
func (c *Cache) readBlock(ctx context.Context, b block, dst []byte, off int64) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return ErrClosed
		}
		if s := c.storedLocked(b); s != nil {
			c.touchLocked(s)
			name, crc := s.ver.name, s.crc
			c.mu.Unlock()
			err := c.readBlockFile(name, b.idx, b.len, crc, dst, off)
			if err == nil {
				c.markVerified(s)
				c.stats.hits.Add(1)
				return nil
			}
			c.forget(s, err)
			continue // fetch it
		}
		fl, shared := c.inflight[string(b.key)], true
		if fl == nil {
			c.trace.mark(&b, "fetch demand")
			fl, shared = c.startFetchLocked(ctx, []block{b}, nil, nil)[0], false
		}
		fl.buf.refs++
		c.mu.Unlock()
		c.stats.misses.Add(1)
		if shared {
			c.stats.sharedWaits.Add(1)
		}
		err := c.copyFetched(ctx, b, fl, dst, off)
		c.unref(fl.buf)
		return err
	}
}

// copyFetched waits for fl, the fetch of block b, and copies bytes [off,
// off+len(dst)) of the block into dst.
func (c *Cache) copyFetched(ctx context.Context, b block, fl *fetch, dst []byte, off int64) error {
	c.trace.mark(&b, "wait")
	select {
	case <-fl.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.trace.mark(&b, "woke")
	if fl.err != nil {
		return fl.err
	}
	if int64(len(fl.data)) != b.len {
		// Two Files of one version disagree on its size.
		return fmt.Errorf("block %d of %s@%s: fetched %d bytes for a reader expecting %d (inconsistent version size)",
			b.idx, b.v.FileID, b.v.VersionID, len(fl.data), b.len)
	}
	copy(dst, fl.data[off:])
	return nil
}

// newBuf returns a fetch buffer of n bytes, a reused one if it can.
func (c *Cache) newBuf(n int) []byte {
	if n > c.runCap {
		return make([]byte, n)
	}
	if p, ok := c.bufs.Get().(*[]byte); ok {
		c.stats.buffersReused.Add(1)
		return (*p)[:n]
	}
	return make([]byte, n, c.runCap)
}

// unref lets go of one reference to a fetch buffer; the last one puts it
// back for reuse.
//
// LOCKS_EXCLUDED(c.mu)
// blockBuf returns a buffer of n <= bs bytes (not zeroed) for a
// whole-block read; putBlockBuf takes it back once nobody reads it.
func (c *Cache) blockBuf(n int) []byte {
	if p, ok := c.blockBufs.Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, c.bs)
}

func (c *Cache) putBlockBuf(b []byte) {
	if int64(cap(b)) == c.bs {
		b = b[:cap(b)]
		c.blockBufs.Put(&b)
	}
}

func (c *Cache) unref(rb *runBuf) {
	c.mu.Lock()
	rb.refs--
	last := rb.refs == 0
	c.mu.Unlock()
	if last && cap(rb.b) == c.runCap {
		b := rb.b[:0]
		rb.b = nil
		c.bufs.Put(&b)
	}
}

// prefetchRun starts one fetch of the leading blocks of run (consecutive
// blocks of one version) that are neither stored nor in flight: it skips
// those at its start and stops at the first one after them. It reports
// whether it started a fetch; if so, release runs once the fetch has
// ended (its bytes are in or it failed), and settled once its blocks are
// stored.
//
// LOCKS_EXCLUDED(c.mu, c.storeMu)
func (c *Cache) prefetchRun(run []block, release, settled func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	missing := func(b block) bool {
		return c.storedLocked(b) == nil && c.inflight[string(b.key)] == nil
	}
	for len(run) > 0 && !missing(run[0]) {
		run = run[1:]
	}
	n := 0
	for n < len(run) && missing(run[n]) {
		n++
	}
	if n == 0 {
		return false
	}
	run = run[:n]
	c.stats.readaheads.Add(int64(n))
	for i := range run {
		c.trace.mark(&run[i], "fetch readahead")
	}
	c.startFetchLocked(c.ctx, run, release, settled)
	return true
}

// startFetchLocked registers one fetch of run (consecutive blocks of one
// version, at least one) and starts it on a context that keeps ctx's
// values but not its cancellation; Close cancels it. release, if not nil,
// runs once the fetch has ended, before its blocks are stored; settled,
// if not nil, once they are.
//
// LOCKS_REQUIRED(c.mu); c must not be closed.
func (c *Cache) startFetchLocked(ctx context.Context, run []block, release, settled func()) []*fetch {
	fls := make([]*fetch, len(run))
	rb := &runBuf{refs: 1} // the fetch's own, until its blocks are stored
	for i, b := range run {
		fls[i] = &fetch{done: make(chan struct{}), buf: rb}
		c.inflight[string(b.key)] = fls[i]
	}
	c.wg.Add(1)
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if c.trace != nil {
		first := run[0]
		fctx = context.WithValue(fctx, traceKey{}, traceMark(func(step string) { c.trace.mark(&first, step) }))
	}
	stop := context.AfterFunc(c.ctx, cancel)
	go func() {
		defer c.wg.Done()
		defer cancel()
		defer stop()
		c.runFetch(fctx, fls, run, release)
		if settled != nil {
			settled()
		}
	}()
	return fls
}

// runFetch downloads run with one Fetcher call, hands each block to its
// waiters as soon as its bytes are in (a ProgressFetcher tells; others
// only at the end), calls release, and stores the blocks. A failure goes
// to the waiters of every block not yet handed out.
//
// LOCKS_EXCLUDED(c.mu, c.storeMu)
func (c *Cache) runFetch(ctx context.Context, fls []*fetch, run []block, release func()) {
	// ends[i] is the end of block i in buf.
	ends := make([]int, len(run))
	total := 0
	for i, b := range run {
		total += int(b.len)
		ends[i] = total
	}
	buf := c.newBuf(total)
	fls[0].buf.b = buf
	off := run[0].idx * c.bs
	handed := 0 // blocks handed out
	handOut := func(n int) {
		for handed < len(run) && ends[handed] <= n {
			lo, hi := ends[handed]-int(run[handed].len), ends[handed]
			fls[handed].data = buf[lo:hi:hi]
			c.trace.mark(&run[handed], "fetched")
			close(fls[handed].done) // waiters go on while the block is stored
			handed++
		}
	}
	c.stats.fetches.Add(1)
	var n int
	var err error
	if pf, ok := run[0].src.(ProgressFetcher); ok {
		n, err = pf.FetchAtProgress(ctx, buf, off, handOut)
	} else {
		n, err = run[0].src.FetchAt(ctx, buf, off)
	}
	c.stats.fetchedBytes.Add(int64(n))
	switch {
	case err == nil && n < total:
		err = io.ErrUnexpectedEOF // the Fetcher broke its contract
	case errors.Is(err, io.EOF) && n == total:
		err = nil // the run ends the version
	case errors.Is(err, io.EOF):
		err = io.ErrUnexpectedEOF // the remote object is shorter than the version's size
	}
	if err != nil {
		n = min(n, total)
	}
	handOut(n) // the blocks read whole, even before an error
	if err != nil {
		c.stats.fetchErrors.Add(1)
		c.mu.Lock()
		for i := handed; i < len(run); i++ {
			delete(c.inflight, string(run[i].key))
		}
		c.mu.Unlock()
		for i := handed; i < len(run); i++ {
			b := run[i]
			lo := int64(ends[i]) - b.len
			fls[i].err = fmt.Errorf("fetch block %d (bytes %d-%d) of %s@%s: got %d bytes: %w",
				b.idx, off+lo, off+lo+b.len, b.v.FileID, b.v.VersionID, max(0, int64(n)-lo), err)
			close(fls[i].done)
		}
	}
	if release != nil {
		release()
	}
	for i := range handed {
		c.store(run[i], fls[i].data)
		c.trace.mark(&run[i], "stored")
	}
	// Every block is out of the in-flight map now: no new waiter can
	// take the buffer, and it goes back once the last one has copied.
	c.unref(fls[0].buf)
}

// pipeline is a byte budget: readahead takes a fetch's bytes before
// starting it and gives them back once its blocks are stored, so fetches
// wait, rather than memory grow, while the store lags.
type pipeline struct {
	closed <-chan struct{} // the cache's: acquire gives up

	mu   sync.Mutex
	free int64         // GUARDED_BY(mu)
	wake chan struct{} // GUARDED_BY(mu): closed (and replaced) by each release
}

// acquire takes n bytes (at most the budget), waiting until abort or the
// cache is closed.
func (p *pipeline) acquire(n int64, abort <-chan struct{}) bool {
	for {
		p.mu.Lock()
		if p.free >= n {
			p.free -= n
			p.mu.Unlock()
			return true
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-abort:
			return false
		case <-p.closed:
			return false
		}
	}
}

// tryAcquire takes n bytes if they are free now.
func (p *pipeline) tryAcquire(n int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.free < n {
		return false
	}
	p.free -= n
	return true
}

func (p *pipeline) release(n int64) {
	p.mu.Lock()
	p.free += n
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
}

// storeFailed counts a store failure and logs the first of an outage.
func (c *Cache) storeFailed(what string, err error) {
	c.stats.storeErrors.Add(1)
	if c.degraded.CompareAndSwap(false, true) {
		// First line only: some Badger errors carry a hex dump of the value.
		msg, _, _ := strings.Cut(err.Error(), "\n")
		c.log.Warn("block cache failing; reading from the remote without it", "op", what, "err", msg)
	}
}

// storeRecovered ends an outage logged by storeFailed.
func (c *Cache) storeRecovered() {
	if c.degraded.Load() && c.degraded.CompareAndSwap(true, false) {
		c.log.Info("block cache working again")
	}
}
