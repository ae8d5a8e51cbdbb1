package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
)

const (
	defaultReadahead   = 8
	defaultParallelism = 4
	// defaultFetchSize is what one readahead request asks for. Fewer,
	// larger requests cost the store less per byte: real Azure has a
	// per-request latency, and Azurite hashes every range of 4 MiB or
	// less (see docs/benchmarks.md).
	defaultFetchSize = 16 << 20
)

var errNegativeOffset = errors.New("negative offset")

// Fetcher reads bytes of one immutable file version from the remote (a
// ranged GET). It must fill p completely unless the range passes the end
// of the version, in which case it returns the bytes up to the end and may
// return io.EOF with them.
type Fetcher interface {
	FetchAt(ctx context.Context, p []byte, off int64) (int, error)
}

// A ProgressFetcher is a Fetcher that also tells how far a fetch has got:
// FetchAtProgress is FetchAt calling progress(n) whenever the first n
// bytes of p are in place and final (n only grows). Readahead fetches
// several blocks with one request; through a ProgressFetcher each block
// reaches its readers as soon as its bytes are in, not when the last
// block's are.
type ProgressFetcher interface {
	Fetcher
	FetchAtProgress(ctx context.Context, p []byte, off int64, progress func(n int)) (int, error)
}

// Version is one immutable file version, the unit the cache keys blocks
// by: fileID + versionID + block index, never a path. Size is the
// version's length in bytes.
type Version struct {
	FileID, VersionID string
	Size              int64
}

// FileOptions tune one File.
type FileOptions struct {
	// Readahead is the most blocks prefetched ahead of a sequential
	// reader. The window starts at one block, doubles while the reader
	// stays sequential and resets on a jump. Zero means 8; negative
	// disables readahead.
	Readahead int
	// Parallelism bounds this file's concurrent readahead fetches, and
	// the blocks one ReadAt fetches at once. Zero or negative means 4.
	Parallelism int
	// FetchSize is the most bytes one readahead fetch asks for: that many
	// consecutive blocks (at least one, at most half of Readahead, at most
	// 16 MiB) come with one ranged request. Zero or negative means 16 MiB.
	FetchSize int64
}

// File reads one version through the cache. It is cheap to create (one
// per open handle) and safe for concurrent use.
type File struct {
	////////////////////////////////////////////////////////////////////
	// Constant
	////////////////////////////////////////////////////////////////////

	c       *Cache
	v       Version
	src     Fetcher
	vkey    string // versionKey(v)
	nblocks int64
	maxRA   int
	par     int
	run     int64         // blocks per readahead fetch
	slots   chan struct{} // one token per readahead fetch of this file in flight
	closing chan struct{} // closed by Close

	////////////////////////////////////////////////////////////////////
	// Mutable state
	////////////////////////////////////////////////////////////////////

	mu      sync.Mutex
	closed  bool  // GUARDED_BY(mu)
	lastEnd int64 // GUARDED_BY(mu): end offset of the previous read; -1 before the first
	window  int   // GUARDED_BY(mu): readahead window in blocks, 0 while random
	streak  int64 // GUARDED_BY(mu): bytes read sequentially since the last jump
	// Blocks [raNext, raEnd) are wanted ahead and not yet handed to the
	// readahead worker. raGen changes on every jump, so the worker drops
	// blocks it took before it.
	raNext, raEnd int64  // GUARDED_BY(mu)
	raGen         uint64 // GUARDED_BY(mu)
	raRunning     bool   // GUARDED_BY(mu): the readahead worker is running

	// The last blocks read whole: the kernel reads a block in several
	// pieces (up to 1 MiB, several at once while it reads ahead), and one
	// store read (one checksum) per block instead of per piece is most of
	// a warm read's CPU. A piece of a block being read waits for that
	// read rather than starting its own.
	loadMu sync.Mutex
	loaded []*loadedBlock // GUARDED_BY(loadMu): at most maxLoaded
}

// maxLoaded is how many whole blocks a File keeps for the pieces of them
// still to be read: the kernel's concurrent reads straddle at most two.
const maxLoaded = 2

// loadedBlock is a block read whole for the pieces of it the kernel asks
// for.
type loadedBlock struct {
	idx  int64
	done chan struct{} // closed once buf or err is set
	buf  []byte        // GUARDED_BY(File.loadMu) until done closes; read-only after
	err  error         // likewise
	refs int           // GUARDED_BY(File.loadMu): File.loaded's own and each reader's
}

// File returns a reader of version v whose missing blocks come from src.
// A negative v.Size counts as zero.
func (c *Cache) File(v Version, src Fetcher, o FileOptions) *File {
	v.Size = max(v.Size, 0)
	if o.Readahead == 0 {
		o.Readahead = defaultReadahead
	}
	if o.Parallelism <= 0 {
		o.Parallelism = defaultParallelism
	}
	if o.FetchSize <= 0 {
		o.FetchSize = defaultFetchSize
	}
	return &File{
		c: c, v: v, src: src, vkey: versionKey(v),
		nblocks: (v.Size + c.bs - 1) / c.bs,
		maxRA:   o.Readahead, par: o.Parallelism,
		// Half the window at most, so that two fetches overlap.
		run:     max(1, min(o.FetchSize/c.bs, int64(o.Readahead/2), maxRunBytes/c.bs)),
		slots:   make(chan struct{}, o.Parallelism),
		closing: make(chan struct{}),
		lastEnd: -1,
	}
}

// ReadAt reads len(p) bytes at off, with io.ReaderAt semantics: it returns
// io.EOF with the bytes up to the end when the range passes it, and 0,
// io.EOF at or after the end. On an error, n counts the bytes of the
// leading blocks that were read. ctx bounds this call's waiting only: a
// cancelled read returns ctx.Err() promptly, and fetches it started go on.
func (f *File) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s@%s at %d: %w", f.v.FileID, f.v.VersionID, off, errNegativeOffset)
	}
	if off >= f.v.Size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !f.c.enter() {
		return 0, ErrClosed
	}
	defer f.c.wg.Done()
	end := min(off+int64(len(p)), f.v.Size)
	last := (end - 1) / f.c.bs
	f.observe(off, end, last)
	n, err := f.read(ctx, p[:end-off], off, off/f.c.bs, last)
	if err == nil && end-off < int64(len(p)) {
		err = io.EOF
	}
	return n, err
}

// Close stops this file's readahead: blocks not yet started are not
// fetched; fetches already started finish and are stored. Reads still
// work after Close, without readahead.
func (f *File) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.closing)
	}
	f.loadMu.Lock()
	old := f.loaded
	f.loaded = nil
	f.loadMu.Unlock()
	for _, lb := range old {
		f.release(lb)
	}
}

// read fills p (which ends at or before the version's end) with blocks
// first..last, fetching missing ones in parallel.
func (f *File) read(ctx context.Context, p []byte, off, first, last int64) (int, error) {
	bs := f.c.bs
	end := off + int64(len(p))
	// part is the piece of p in block i and its offset inside the block.
	part := func(i int64) ([]byte, int64) {
		start := i * bs
		lo, hi := max(off, start), min(end, start+bs)
		return p[lo-off : hi-off], lo - start
	}
	if first == last {
		dst, in := part(first)
		if err := f.readOne(ctx, f.block(first), dst, in); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	ok := make([]bool, last-first+1)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(f.par)
	for i := first; i <= last; i++ {
		dst, in := part(i)
		g.Go(func() error {
			// Through readOne: a read straddling two blocks takes a
			// piece of each, and the kernel's next reads the rest.
			if err := f.readOne(gctx, f.block(i), dst, in); err != nil {
				return err
			}
			ok[i-first] = true
			return nil
		})
	}
	err := g.Wait()
	if err == nil {
		return len(p), nil
	}
	n := 0
	for i := first; i <= last && ok[i-first]; i++ {
		dst, _ := part(i)
		n += len(dst)
	}
	if ctx.Err() != nil {
		err = ctx.Err() // the reader's interruption, not errgroup's cancel of its siblings
	}
	return n, err
}

// readOne copies part of one block into dst through f's block buffer: a
// piece of the buffered block costs no store read; a piece of another
// block reads that whole block once into the buffer. The buffer is f's
// own (taken out while it is filled), never a fetch's, so fetch buffers
// can be reused.
func (f *File) readOne(ctx context.Context, b block, dst []byte, off int64) error {
	f.loadMu.Lock()
	var lb *loadedBlock
	for _, l := range f.loaded {
		if l.idx == b.idx {
			lb = l
			break
		}
	}
	switch {
	case lb != nil:
		lb.refs++
		f.loadMu.Unlock()
	case int64(len(dst)) == b.len:
		f.loadMu.Unlock()
		return f.c.readBlock(ctx, b, dst, off) // the whole block: no need to keep it
	default:
		lb = &loadedBlock{idx: b.idx, done: make(chan struct{}), refs: 2}
		var dropped *loadedBlock
		if len(f.loaded) == maxLoaded {
			// Let go of the block farthest from this one: behind a
			// forward reader, ahead of a backward one.
			far := 0
			for i, l := range f.loaded {
				if absDiff(l.idx, b.idx) > absDiff(f.loaded[far].idx, b.idx) {
					far = i
				}
			}
			dropped = f.loaded[far]
			f.loaded = slices.Delete(f.loaded, far, far+1)
		}
		f.loaded = append(f.loaded, lb)
		f.loadMu.Unlock()
		if dropped != nil {
			f.release(dropped)
		}
		f.load(ctx, lb, b)
	}
	defer f.release(lb)
	select {
	case <-lb.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := lb.err; err != nil {
		if ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			// The reader who loaded the block was interrupted, not
			// this one: read the piece alone.
			return f.c.readBlock(ctx, b, dst, off)
		}
		return err
	}
	copy(dst, lb.buf[off:])
	return nil
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// load reads block b whole into lb. A failed load leaves f.loaded, so that
// the next read tries again.
func (f *File) load(ctx context.Context, lb *loadedBlock, b block) {
	buf := f.c.blockBuf(int(b.len))
	err := f.c.readBlock(ctx, b, buf, 0)
	f.loadMu.Lock()
	if err != nil {
		lb.err = err
		if i := slices.Index(f.loaded, lb); i >= 0 {
			f.loaded = slices.Delete(f.loaded, i, i+1)
			lb.refs--
		}
	} else {
		lb.buf = buf
	}
	f.loadMu.Unlock()
	if err != nil {
		f.c.putBlockBuf(buf)
	}
	close(lb.done)
}

// release drops one reference to lb; the last returns its buffer.
func (f *File) release(lb *loadedBlock) {
	f.loadMu.Lock()
	lb.refs--
	var buf []byte
	if lb.refs == 0 {
		buf, lb.buf = lb.buf, nil
	}
	f.loadMu.Unlock()
	if buf != nil {
		f.c.putBlockBuf(buf)
	}
}

// block describes block idx of f's version.
func (f *File) block(idx int64) block {
	return block{
		key: blockKey(f.vkey, idx), vkey: f.vkey, idx: idx,
		len: min(f.c.bs, f.v.Size-idx*f.c.bs),
		v:   &f.v, src: f.src,
	}
}

// observe classifies a read of [off, end) ending in block last, adapts
// the readahead window and hands new blocks to the readahead worker.
//
// A read that starts within a block of where the previous one ended is
// sequential (the kernel's concurrent readahead requests arrive slightly
// out of order); any other read closes the window. Once a block's worth
// of bytes has been read sequentially, the window opens at one fetch
// (FetchSize), and each sequential read that enters a new block doubles
// it, up to Readahead blocks. So a reader of a header, or of scattered
// ranges smaller than a block, costs only the blocks it reads.
//
// LOCKS_EXCLUDED(f.mu)
func (f *File) observe(off, end, last int64) {
	if f.maxRA <= 0 || f.nblocks <= 1 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := f.lastEnd
	f.lastEnd = end
	if prev < 0 {
		f.streak = end - off
	}
	if f.closed || prev < 0 {
		return
	}
	bs := f.c.bs
	if off < prev-bs || off > prev+bs {
		f.window, f.streak = 0, end-off
		f.raGen++
		f.raNext, f.raEnd = last+1, last+1
		return
	}
	f.streak += end - off
	switch {
	case f.window == 0 && f.streak >= bs:
		f.window = int(f.run)
	case f.window > 0 && last > (prev-1)/bs: // entered a new block
		f.window = min(2*f.window, f.maxRA)
	}
	if f.window == 0 {
		return
	}
	f.raNext = max(f.raNext, last+1)
	f.raEnd = max(f.raEnd, min(last+1+int64(f.window), f.nblocks))
	if !f.raRunning {
		f.startNowLocked()
	}
	if f.raNext < f.raEnd && !f.raRunning {
		f.raRunning = f.c.goTracked(f.readahead)
	}
}

// readahead starts fetches of the wanted blocks in order, up to f.run
// blocks per fetch, each once it has a slot of this file, one of the
// cache and room in the cache's fetch pipeline, until none are left or
// the file is closed.
//
// LOCKS_EXCLUDED(f.mu)
func (f *File) readahead() {
	for {
		f.mu.Lock()
		if f.closed || f.raNext >= f.raEnd {
			f.raRunning = false
			f.mu.Unlock()
			return
		}
		first, next, gen, wait := f.takeRunLocked()
		if wait {
			f.raRunning = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		if first == next {
			continue
		}

		run, bytes := f.blocks(first, next)
		release, settled, ok := f.acquire(bytes)
		if !ok {
			f.mu.Lock()
			f.raRunning = false
			f.mu.Unlock()
			return
		}
		f.mu.Lock()
		stale := f.closed || gen != f.raGen
		f.mu.Unlock()
		if stale {
			release()
			settled()
			continue
		}
		for i := range run {
			f.c.trace.mark(&run[i], "slot")
		}
		if !f.c.prefetchRun(run, release, settled) {
			release()
			settled()
		}
	}
}

// takeRunLocked takes the next run of missing wanted blocks, [first,
// next), skipping blocks stored or in flight. wait: the run would be short
// only because the window has not moved far enough yet; the reader's next
// read will move it, so that every fetch but the last asks for a whole
// run.
//
// LOCKS_REQUIRED(f.mu)
func (f *File) takeRunLocked() (first, next int64, gen uint64, wait bool) {
	for f.raNext < f.raEnd && f.c.present(f.block(f.raNext)) {
		f.raNext++
	}
	first, gen = f.raNext, f.raGen
	next = first
	for next < f.raEnd && next-first < f.run && !f.c.present(f.block(next)) {
		next++
	}
	if next == f.raEnd && next-first < f.run && f.raEnd < f.nblocks {
		return first, first, gen, true
	}
	f.raNext = next
	return first, next, gen, false
}

// blocks describes blocks [first, next) and counts their bytes.
func (f *File) blocks(first, next int64) ([]block, int64) {
	run := make([]block, 0, next-first)
	var bytes int64
	for i := first; i < next; i++ {
		run = append(run, f.block(i))
		f.c.trace.mark(&run[len(run)-1], "want")
		bytes += run[len(run)-1].len
	}
	return run, bytes
}

// startNowLocked starts the next run at once if its slots and pipeline
// room are free, so that the reader's next read finds it in flight
// instead of racing the readahead worker with a fetch of its own. Else
// the worker will.
//
// LOCKS_REQUIRED(f.mu)
func (f *File) startNowLocked() {
	first, next, _, wait := f.takeRunLocked()
	if wait || first == next {
		return
	}
	run, bytes := f.blocks(first, next)
	c := f.c
	select {
	case f.slots <- struct{}{}:
	default:
		f.raNext = first
		return
	}
	select {
	case c.raSlots <- struct{}{}:
	default:
		<-f.slots
		f.raNext = first
		return
	}
	if !c.pipe.tryAcquire(bytes) {
		<-c.raSlots
		<-f.slots
		f.raNext = first
		return
	}
	release, settled := func() { <-c.raSlots; <-f.slots }, func() { c.pipe.release(bytes) }
	if !c.prefetchRun(run, release, settled) {
		release()
		settled()
	}
}

// acquire takes a readahead slot of f, one of the cache and n bytes of the
// cache's pipeline, waiting until f or the cache is closed. release gives
// back the slots (when the fetch ends), settled the bytes (when its blocks
// are stored).
func (f *File) acquire(n int64) (release, settled func(), ok bool) {
	c := f.c
	select {
	case f.slots <- struct{}{}:
	case <-f.closing:
		return nil, nil, false
	case <-c.ctx.Done():
		return nil, nil, false
	}
	select {
	case c.raSlots <- struct{}{}:
	case <-f.closing:
		<-f.slots
		return nil, nil, false
	case <-c.ctx.Done():
		<-f.slots
		return nil, nil, false
	}
	if !c.pipe.acquire(n, f.closing) {
		<-c.raSlots
		<-f.slots
		return nil, nil, false
	}
	return func() { <-c.raSlots; <-f.slots }, func() { c.pipe.release(n) }, true
}

// present reports whether b is stored or being fetched.
func (c *Cache) present(b block) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.storedLocked(b) != nil || c.inflight[string(b.key)] != nil
}
