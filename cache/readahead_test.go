package cache

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestSequentialReadPrefetches(t *testing.T) {
	const size = 32 << 20
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			c, _ := openCache(t, kind, "", Options{MaxBytes: 64 << 20}) // default block size
			bs := c.BlockSize()
			nblocks := int64(size) / bs
			src := newSource(size, 5)
			src.latency = time.Millisecond
			v := Version{FileID: "seq", VersionID: "1", Size: size}
			f := c.File(v, src, FileOptions{})
			defer f.Close()

			// Read 128 KiB at a time, as the kernel does, through block 5.
			got := make([]byte, 0, size)
			buf := make([]byte, 128<<10)
			off := int64(0)
			readTo := func(end int64) {
				for off < end {
					n, err := f.ReadAt(t.Context(), buf, off)
					if err != nil {
						t.Fatalf("ReadAt(%d): %v", off, err)
					}
					got = append(got, buf[:n]...)
					off += int64(n)
				}
			}
			readTo(6 * bs)
			// The window opened at one fetch (FetchSize, capped at half
			// of Readahead: 4 blocks) on the second read and doubled to
			// 8 blocks, so it reaches block 13; readahead asks for whole
			// fetches only (1-4, 5-8, 9-12): blocks 6..12 arrive without
			// the reader.
			for i := int64(6); i < 13; i++ {
				waitFor(t, 10*time.Second, fmt.Sprintf("readahead of block %d", i), func() bool { return c.Has(v, i) })
			}
			readTo(size)
			settle(t, c, f)

			if !bytes.Equal(got, src.want(0, size)) {
				t.Fatal("sequential read returned wrong bytes")
			}
			s := c.Stats()
			if s.FetchedBytes != size || src.bytes.Load() != size || src.pastEnd.Load() != 0 {
				t.Errorf("%d bytes fetched (%d past the end) for %d; want each block once", src.bytes.Load(), src.pastEnd.Load(), size)
			}
			if s.Fetches >= nblocks/2 {
				t.Errorf("%d fetches for %d blocks: readahead should fetch several blocks per request", s.Fetches, nblocks)
			}
			if s.Readaheads < nblocks/2 {
				t.Errorf("only %d of %d blocks came from readahead", s.Readaheads, nblocks)
			}
			t.Logf("%d blocks: %d readahead, %d hits, %d misses (%d shared)", nblocks, s.Readaheads, s.Hits, s.Misses, s.SharedWaits)
		})
	}
}

func TestRandomReadsFetchOnlyTouchedBlocks(t *testing.T) {
	const bs = 64 << 10
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			c, _ := openCache(t, kind, "", Options{BlockSize: bs})
			src := newSource(64*bs, 0)
			v := Version{FileID: "rnd", VersionID: "1", Size: 64 * bs}
			f := c.File(v, src, FileOptions{})
			defer f.Close()
			touched := []int64{10, 40, 3, 25, 50, 17, 33, 60, 5, 63}
			for _, b := range touched {
				off := b*bs + 100
				p := make([]byte, 4096)
				if _, err := f.ReadAt(t.Context(), p, off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p, src.want(off, 4096)) {
					t.Fatalf("wrong bytes at %d", off)
				}
			}
			settle(t, c, f)
			got := src.fetchedBlocks(bs)
			if len(got) != len(touched) || c.Stats().Readaheads != 0 || src.calls.Load() != int64(len(touched)) {
				t.Errorf("fetched blocks %v (%d calls, %d readahead); want exactly %v", got, src.calls.Load(), c.Stats().Readaheads, touched)
			}
		})
	}
}

func TestJumpResetsReadahead(t *testing.T) {
	const bs = 64 << 10
	c, _ := openCache(t, "mem", "", Options{BlockSize: bs})
	src := newSource(64*bs, 0)
	v := Version{FileID: "jump", VersionID: "1", Size: 64 * bs}
	f := c.File(v, src, FileOptions{})
	defer f.Close()
	read := func(off int64) {
		t.Helper()
		if _, err := f.ReadAt(t.Context(), make([]byte, 32<<10), off); err != nil {
			t.Fatal(err)
		}
	}
	for off := int64(0); off < 5*bs; off += 32 << 10 {
		read(off) // sequential through block 4: the window is 8
	}
	settle(t, c, f)
	before := src.calls.Load()
	read(40 * bs) // a jump: only block 40
	settle(t, c, f)
	if d := src.calls.Load() - before; d != 1 || c.Has(v, 41) {
		t.Fatalf("a jump fetched %d blocks (block 41 cached %v); want only the one read", d, c.Has(v, 41))
	}
	// Sequential again from there: the window opens at one fetch (4
	// blocks: FetchSize capped at half of Readahead), blocks 41..44.
	before = src.calls.Load()
	read(40*bs + 32<<10)
	settle(t, c, f)
	if !c.Has(v, 41) || !c.Has(v, 44) || c.Has(v, 45) {
		t.Errorf("after re-entering sequential reading: blocks 41, 44, 45 cached %v, %v, %v; want true, true, false", c.Has(v, 41), c.Has(v, 44), c.Has(v, 45))
	}
	if d := src.calls.Load() - before; d != 1 {
		t.Errorf("the window's 4 blocks took %d fetches, want 1", d)
	}
}

func TestReadaheadBounds(t *testing.T) {
	const bs = 64 << 10
	t.Run("per file", func(t *testing.T) {
		c, _ := openCache(t, "mem", "", Options{BlockSize: bs})
		src := newSource(64*bs, 0)
		src.latency = 20 * time.Millisecond
		f := c.File(Version{FileID: "par", VersionID: "1", Size: 64 * bs}, src, FileOptions{Readahead: 16, Parallelism: 2})
		defer f.Close()
		for off := int64(0); off < 64*bs; off += bs / 2 {
			if _, err := f.ReadAt(t.Context(), make([]byte, bs/2), off); err != nil {
				t.Fatal(err)
			}
		}
		settle(t, c, f)
		// Two readahead fetches, plus the reader's own.
		if m := src.maxActive.Load(); m > 3 {
			t.Errorf("%d fetches ran at once with Parallelism 2", m)
		}
	})
	t.Run("across files", func(t *testing.T) {
		c, _ := openCache(t, "mem", "", Options{BlockSize: bs})
		const files = 4
		src := newSource(64*bs, 0)
		src.latency = 20 * time.Millisecond
		var wg sync.WaitGroup
		for i := range files {
			f := c.File(Version{FileID: "g", VersionID: fmt.Sprint(i), Size: 64 * bs}, src, FileOptions{Readahead: 16, Parallelism: 16})
			defer f.Close()
			wg.Go(func() {
				for off := int64(0); off < 64*bs; off += bs {
					if _, err := f.ReadAt(t.Context(), make([]byte, bs), off); err != nil {
						t.Error(err)
						return
					}
				}
				settle(t, c, f)
			})
		}
		wg.Wait()
		if m := src.maxActive.Load(); m > readaheadSlots+files {
			t.Errorf("%d fetches ran at once; want at most %d readahead + %d readers", m, readaheadSlots, files)
		}
	})
}

func TestSpanningReadFetchesInParallel(t *testing.T) {
	const bs = 64 << 10
	c, _ := openCache(t, "mem", "", Options{BlockSize: bs})
	src := newSource(8*bs, 0)
	src.gate = make(chan struct{})
	src.started = make(chan int64, 16)
	f := c.File(Version{FileID: "span", VersionID: "1", Size: 8 * bs}, src, FileOptions{Readahead: -1, Parallelism: 4})
	p := make([]byte, 4*bs)
	done := make(chan error, 1)
	go func() {
		_, err := f.ReadAt(t.Context(), p, bs)
		done <- err
	}()
	// All four fetches start before any finishes.
	for i := range 4 {
		select {
		case <-src.started:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of 4 block fetches started while none could finish", i)
		}
	}
	close(src.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, src.want(bs, 4*bs)) {
		t.Fatal("wrong bytes")
	}
}

func TestCloseStopsReadahead(t *testing.T) {
	const bs = 64 << 10
	c, _ := openCache(t, "mem", "", Options{BlockSize: bs})
	src := newSource(64*bs, 0)
	src.latency = 30 * time.Millisecond
	v := Version{FileID: "close", VersionID: "1", Size: 64 * bs}
	f := c.File(v, src, FileOptions{Readahead: 8, Parallelism: 1})
	for off := int64(0); off < 5*bs; off += bs {
		if _, err := f.ReadAt(t.Context(), make([]byte, bs), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	atClose := src.calls.Load()
	settle(t, c, f)
	// At most one fetch may have been past its last check when Close came.
	if after := src.calls.Load(); after > atClose+1 {
		t.Errorf("%d fetches started after Close (had %d)", after-atClose, atClose)
	}
	if src.calls.Load() >= 13 {
		t.Errorf("all %d blocks of the window were fetched despite Close", src.calls.Load())
	}
	// Fetches that had started finished and were stored.
	for b := range src.fetchedBlocks(bs) {
		if !c.Has(v, b) {
			t.Errorf("block %d was fetched but not stored", b)
		}
	}
	// The file still reads, without readahead.
	before := src.calls.Load()
	if _, err := f.ReadAt(context.Background(), make([]byte, bs), 30*bs); err != nil {
		t.Fatal(err)
	}
	if d := src.calls.Load() - before; d != 1 {
		t.Errorf("read after Close made %d fetches, want 1", d)
	}
}
