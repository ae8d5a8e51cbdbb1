package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// readBlocks reads one byte of each listed block through a File without
// readahead, checking it.
func readBlocks(t *testing.T, c *Cache, v Version, src *source, blocks ...int64) {
	t.Helper()
	f := c.File(v, src, FileOptions{Readahead: -1})
	defer f.Close()
	for _, b := range blocks {
		off := b*c.BlockSize() + 1
		p := make([]byte, 1)
		if _, err := f.ReadAt(t.Context(), p, off); err != nil {
			t.Fatalf("read block %d: %v", b, err)
		}
		if p[0] != src.want(off, 1)[0] {
			t.Fatalf("block %d: wrong byte", b)
		}
		quiesce(t, c)
	}
}

// cached lists which of blocks 0..n-1 of v are stored.
func cached(c *Cache, v Version, n int64) []int64 {
	var out []int64
	for i := range n {
		if c.Has(v, i) {
			out = append(out, i)
		}
	}
	return out
}

func TestEvictionIsLeastRecentlyUsed(t *testing.T) {
	const bs = 64 << 10
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			c, _ := openCache(t, kind, "", Options{BlockSize: bs, MaxBytes: 4 * bs})
			v := Version{FileID: "lru", VersionID: "1", Size: 10 * bs}
			src := newSource(v.Size, 0)
			check := func(want ...int64) {
				t.Helper()
				if got := cached(c, v, 10); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("cached blocks %v, want %v", got, want)
				}
				if u := c.Usage(); u.Bytes > 4*bs || u.Bytes != int64(len(want))*bs || u.Blocks != len(want) {
					t.Fatalf("usage %+v with MaxBytes %d and %d blocks", u, 4*bs, len(want))
				}
			}
			readBlocks(t, c, v, src, 0, 1, 2, 3)
			check(0, 1, 2, 3)
			readBlocks(t, c, v, src, 0) // a hit makes block 0 the most recent
			readBlocks(t, c, v, src, 4) // evicts 1, the least recent
			check(0, 2, 3, 4)
			readBlocks(t, c, v, src, 5, 6) // evicts 2, 3
			check(0, 4, 5, 6)
			readBlocks(t, c, v, src, 4, 7, 8) // 4 touched; evicts 0, then 5
			check(4, 6, 7, 8)
			if s := c.Stats(); s.Evictions != 5 || s.EvictedBytes != 5*bs || s.Hits != 2 {
				t.Errorf("stats %+v; want 5 evictions of %d bytes, 2 hits", s, 5*bs)
			}
		})
	}
}

func TestEvictionUnderConcurrentReaders(t *testing.T) {
	const bs = 64 << 10
	const maxBytes = 10 * bs
	c, _ := openCache(t, "disk", "", Options{BlockSize: bs, MaxBytes: maxBytes})
	var wg sync.WaitGroup
	var over atomic.Int64
	for fi := range 4 {
		v := Version{FileID: fmt.Sprint("file", fi), VersionID: "v", Size: 24*bs + int64(fi)*999}
		src := newSource(v.Size, byte(fi))
		for r := range 4 {
			wg.Go(func() {
				f := c.File(v, src, FileOptions{Readahead: 4})
				defer f.Close()
				rng := rand.New(rand.NewPCG(uint64(fi), uint64(r)))
				p := make([]byte, 100<<10)
				for range 60 {
					off := rng.Int64N(v.Size)
					if rng.IntN(3) == 0 { // some sequential runs
						off = 0
					}
					n, err := f.ReadAt(t.Context(), p, off)
					if err != nil && !errors.Is(err, io.EOF) {
						t.Error(err)
						return
					}
					if !bytes.Equal(p[:n], src.want(off, int64(len(p)))) {
						t.Errorf("file %d: wrong bytes at %d", fi, off)
						return
					}
					if u := c.Usage(); u.Bytes > maxBytes {
						over.Store(u.Bytes)
					}
				}
			})
		}
	}
	wg.Wait()
	if o := over.Load(); o != 0 {
		t.Errorf("usage reached %d bytes, MaxBytes is %d", o, maxBytes)
	}
	if s := c.Stats(); s.Evictions == 0 {
		t.Error("no evictions: the test does not exercise them")
	}
}

func TestReopenServesFromDisk(t *testing.T) {
	const bs = 64 << 10
	dir := t.TempDir()
	v := Version{FileID: "persist", VersionID: "7", Size: 40*bs + 12345}
	src := newSource(v.Size, 9)

	c1, _ := openCache(t, "disk", dir, Options{BlockSize: bs})
	f := c1.File(v, src, FileOptions{})
	first := readAll(t, f, v.Size, 100000)
	settle(t, c1, f)
	f.Close()
	usage := c1.Usage()
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}

	offline := newSource(v.Size, 9)
	offline.setFail(errors.New("the remote must not be asked"))
	c2, _ := openCache(t, "disk", dir, Options{}) // adopts the stored block size
	if c2.BlockSize() != bs {
		t.Fatalf("reopened block size %d, want the stored %d", c2.BlockSize(), bs)
	}
	if u := c2.Usage(); u.Blocks != usage.Blocks || u.Bytes > usage.Bytes+64 || u.Bytes < usage.Bytes-64 {
		t.Errorf("usage after reopen %+v, before %+v", u, usage)
	}
	second := readAll(t, c2.File(v, offline, FileOptions{}), v.Size, 77777)
	if sum(second) != sum(first) || !bytes.Equal(first, src.want(0, v.Size)) {
		t.Fatal("reopened cache returned different bytes")
	}
	if n := offline.calls.Load(); n != 0 {
		t.Errorf("%d fetches after reopen, want 0", n)
	}
	if u := c2.Usage(); u != usage {
		t.Errorf("usage after reading everything %+v, want %+v (sizes exact after hits)", u, usage)
	}
}

func TestReopenKeepsWriteOrderForEviction(t *testing.T) {
	const bs = 64 << 10
	dir := t.TempDir()
	v := Version{FileID: "order", VersionID: "1", Size: 10 * bs}
	src := newSource(v.Size, 0)
	c1, _ := openCache(t, "disk", dir, Options{BlockSize: bs, MaxBytes: 4 * bs})
	readBlocks(t, c1, v, src, 3, 1, 2, 0)
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	c2, _ := openCache(t, "disk", dir, Options{MaxBytes: 4 * bs})
	readBlocks(t, c2, v, src, 1) // touched after reopen
	readBlocks(t, c2, v, src, 5, 6)
	// 3 and 2 were written first and not touched since the reopen.
	if got := cached(c2, v, 10); fmt.Sprint(got) != "[0 1 5 6]" {
		t.Errorf("cached after reopen and two misses: %v, want [0 1 5 6]", got)
	}
}

func TestReopenWithSmallerMaxBytesEvicts(t *testing.T) {
	const bs = 64 << 10
	dir := t.TempDir()
	v := Version{FileID: "shrink", VersionID: "1", Size: 8 * bs}
	src := newSource(v.Size, 0)
	c1, _ := openCache(t, "disk", dir, Options{BlockSize: bs})
	readBlocks(t, c1, v, src, 0, 1, 2, 3, 4, 5, 6, 7)
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	c2, _ := openCache(t, "disk", dir, Options{MaxBytes: 3 * bs})
	if got := cached(c2, v, 8); fmt.Sprint(got) != "[5 6 7]" {
		t.Errorf("after reopening with room for 3 blocks: %v, want the 3 newest [5 6 7]", got)
	}
}

func TestReopenWithAnotherBlockSizeFails(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(Options{Dir: dir, BlockSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = Open(Options{Dir: dir, BlockSize: 128 << 10})
	if err == nil || !strings.Contains(err.Error(), "block size 65536") {
		t.Fatalf("reopen with another block size: %v", err)
	}
	for _, bad := range []Options{{BlockSize: -1}, {BlockSize: 32 << 20, Dir: dir}} {
		if c, err := Open(bad); err == nil {
			c.Close()
			t.Errorf("Open(%+v) succeeded", bad)
		}
	}
}

func TestStoreFailureFailsSoft(t *testing.T) {
	const bs = 64 << 10
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			var broken atomic.Bool
			c, logs := openCache(t, kind, "", Options{BlockSize: bs, testFault: func(op string) error {
				if broken.Load() {
					return fmt.Errorf("%s: %w", op, syscall.ENOSPC)
				}
				return nil
			}})
			v := Version{FileID: "soft", VersionID: "1", Size: 6 * bs}
			src := newSource(v.Size, 0)
			readBlocks(t, c, v, src, 0, 1) // cached while the store works

			broken.Store(true)
			got := readAll(t, c.File(v, src, FileOptions{}), v.Size, 50000)
			if !bytes.Equal(got, src.want(0, v.Size)) {
				t.Fatal("wrong bytes while the store fails")
			}
			readAll(t, c.File(v, src, FileOptions{}), v.Size, 50000) // again: still no cache
			s := c.Stats()
			if s.StoreErrors == 0 || s.Hits != 0 {
				t.Errorf("stats while failing %+v: want store errors and no hits", s)
			}
			if n := logs.count("block cache failing"); n != 1 {
				t.Errorf("%d warnings logged for one outage, want 1:\n%s", n, logs)
			}

			broken.Store(false)
			readBlocks(t, c, v, src, 3)
			waitFor(t, 5*time.Second, "the store to recover", func() bool { return c.Has(v, 3) })
			// The block is indexed just before the recovery is logged.
			waitFor(t, 5*time.Second, "the recovery to be logged", func() bool {
				return strings.Contains(logs.String(), "block cache working again")
			})
		})
	}
}

func TestCloseCancelsFetchesAndFailsReads(t *testing.T) {
	const bs = 64 << 10
	c, err := Open(Options{BlockSize: bs})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource(4*bs, 0)
	src.gate = make(chan struct{}) // never opened
	src.started = make(chan int64, 4)
	v := Version{FileID: "c", VersionID: "1", Size: 4 * bs}
	f := c.File(v, src, FileOptions{})
	done := make(chan error, 1)
	go func() {
		_, err := f.ReadAt(context.Background(), make([]byte, 10), 0)
		done <- err
	}()
	<-src.started
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on a fetch in flight")
	}
	if err := <-done; err == nil {
		t.Error("a read whose fetch Close cancelled succeeded")
	}
	if _, err := f.ReadAt(context.Background(), make([]byte, 10), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("read after Close: %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBlockLargerThanCacheIsNotStored(t *testing.T) {
	const bs = 64 << 10
	c, _ := openCache(t, "mem", "", Options{BlockSize: bs, MaxBytes: bs / 2})
	v := Version{FileID: "big", VersionID: "1", Size: 2 * bs}
	src := newSource(v.Size, 0)
	got := readAll(t, c.File(v, src, FileOptions{}), v.Size, 1000)
	if !bytes.Equal(got, src.want(0, v.Size)) {
		t.Fatal("wrong bytes")
	}
	if u := c.Usage(); u.Bytes != 0 {
		t.Errorf("usage %+v with MaxBytes below one block", u)
	}
}
