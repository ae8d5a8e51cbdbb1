package cache

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// progressSource is a ProgressFetcher over a source: it fills a fetch one
// chunk at a time, reporting each, and waits at hold (if set) after the
// first chunk.
type progressSource struct {
	*source
	chunk int
	hold  chan struct{}
	lens  []int // GUARDED_BY(source.mu): of each fetch, as source.offsets
}

func (p *progressSource) FetchAtProgress(ctx context.Context, b []byte, off int64, progress func(int)) (int, error) {
	p.calls.Add(1)
	p.mu.Lock()
	p.offsets = append(p.offsets, off)
	p.lens = append(p.lens, len(b))
	p.mu.Unlock()
	for n := 0; n < len(b); {
		k := min(p.chunk, len(b)-n)
		p.fill(b[n:n+k], off+int64(n))
		n += k
		progress(n)
		if p.hold != nil && n < len(b) {
			select {
			case <-p.hold:
			case <-ctx.Done():
				return n, ctx.Err()
			}
		}
	}
	p.bytes.Add(int64(len(b)))
	return len(b), nil
}

// A multi-block readahead fetch hands its first block to a reader before
// the rest of the fetch has arrived, and stores every block in the end.
func TestReadaheadHandsOutBlocksAsTheyArrive(t *testing.T) {
	const bs = 64 << 10
	c, _ := openCache(t, "disk", "", Options{BlockSize: bs})
	src := &progressSource{source: newSource(32*bs, 3), chunk: bs, hold: make(chan struct{})}
	v := Version{FileID: "prog", VersionID: "1", Size: 32 * bs}
	f := c.File(v, src, FileOptions{Readahead: 8, Parallelism: 1, FetchSize: 4 * bs})
	defer f.Close()
	buf := make([]byte, bs/2)
	// A block's worth of sequential reading opens the window: one fetch
	// of blocks 1..4, held after block 1.
	for off := int64(0); off < bs; off += bs / 2 {
		if _, err := f.ReadAt(t.Context(), buf, off); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.ReadAt(t.Context(), buf, bs)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("block 1 did not reach its reader while the rest of its fetch was held")
	}
	if !bytes.Equal(buf, src.want(bs, bs/2)) {
		t.Fatal("wrong bytes in block 1")
	}
	close(src.hold)
	settle(t, c, f)
	for i := int64(1); i <= 4; i++ {
		if !c.Has(v, i) {
			t.Errorf("block %d of the fetch was not stored", i)
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	for i, off := range src.offsets {
		switch {
		case off == bs && src.lens[i] != 4*bs:
			t.Errorf("the fetch at block 1 asked for %d bytes, want 4 blocks", src.lens[i])
		case off > bs && off < 5*bs:
			t.Errorf("block %d was fetched on its own: blocks 1-4 should have come with one fetch", off/bs)
		}
	}
}

// sizedSource records the bytes its fetches in flight hold at most.
type sizedSource struct {
	*source
	inFlight, maxInFlight atomic.Int64
}

func (s *sizedSource) FetchAt(ctx context.Context, p []byte, off int64) (int, error) {
	n := s.inFlight.Add(int64(len(p)))
	for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
	}
	defer s.inFlight.Add(-int64(len(p)))
	return s.source.FetchAt(ctx, p, off)
}

// Readahead of many files at once never holds more than the pipeline's
// bytes (plus one demand block per reader), however many slots it has.
func TestReadaheadMemoryIsBounded(t *testing.T) {
	const bs = 1 << 20
	const files = 8
	c, _ := openCache(t, "disk", "", Options{BlockSize: bs, MaxBytes: 1 << 30})
	src := &sizedSource{source: newSource(48*bs, 0)}
	src.latency = 30 * time.Millisecond
	var wg sync.WaitGroup
	for i := range files {
		f := c.File(Version{FileID: "mem", VersionID: fmt.Sprint(i), Size: 48 * bs}, src,
			FileOptions{Readahead: 32, Parallelism: 8, FetchSize: 16 * bs})
		defer f.Close()
		wg.Go(func() {
			buf := make([]byte, 128<<10)
			for off := int64(0); off < 48*bs; off += int64(len(buf)) {
				if _, err := f.ReadAt(t.Context(), buf, off); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	quiesce(t, c)
	limit := int64(pipelineBytes + files*bs)
	if m := src.maxInFlight.Load(); m > limit {
		t.Errorf("fetches held %d MiB at once; want at most %d MiB", m>>20, limit>>20)
	}
	if src.maxInFlight.Load() <= 16*bs {
		t.Errorf("fetches held at most %d MiB at once: readahead did not run in parallel", src.maxInFlight.Load()>>20)
	}
	c.pipe.mu.Lock()
	free := c.pipe.free
	c.pipe.mu.Unlock()
	if free != pipelineBytes {
		t.Errorf("pipeline has %d bytes free after every fetch was stored, want %d", free, pipelineBytes)
	}
}

// Close returns while readahead waits for pipeline room and fetches are
// held; fetches that had finished are stored first.
func TestCloseWhileReadaheadWaits(t *testing.T) {
	const bs = 1 << 20
	c, err := Open(Options{Dir: t.TempDir(), BlockSize: bs, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource(256*bs, 0)
	src.gate = make(chan struct{})
	var files []*File
	for i := range 8 {
		v := Version{FileID: "wait", VersionID: fmt.Sprint(i), Size: 256 * bs}
		f := c.File(v, src, FileOptions{Readahead: 64, Parallelism: 8, FetchSize: 16 * bs})
		files = append(files, f)
		// Make the window open without waiting for any fetch: mark the
		// reader as sequential through block 1 directly.
		f.observe(0, bs, 0)
		f.observe(bs, 2*bs, 1)
	}
	waitFor(t, 5*time.Second, "the pipeline to fill", func() bool {
		c.pipe.mu.Lock()
		defer c.pipe.mu.Unlock()
		return c.pipe.free < 16*bs
	})
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung while readahead waited for the pipeline")
	}
	for _, f := range files {
		f.Close()
	}
	if _, err := files[0].ReadAt(t.Context(), make([]byte, 10), 0); err != ErrClosed {
		t.Errorf("read after Close: %v, want ErrClosed", err)
	}
}
