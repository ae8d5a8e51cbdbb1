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
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
)

func TestReadAtBoundaries(t *testing.T) {
	const bs = 64 << 10
	const size = 5*bs + 1234
	cases := []struct {
		name    string
		off     int64
		n       int
		wantN   int
		wantEOF bool
	}{
		{"inside first block", 100, 1000, 1000, false},
		{"whole first block", 0, bs, bs, false},
		{"across one boundary", bs - 10, 20, 20, false},
		{"starting at a boundary", 2 * bs, 300, 300, false},
		{"across three boundaries", bs - 1, 3*bs + 2, 3*bs + 2, false},
		{"whole version", 0, size, size, false},
		{"last partial block", 5*bs + 10, 100, 100, false},
		{"ending exactly at the end", size - 50, 50, 50, false},
		{"passing the end", size - 50, 200, 50, true},
		{"across a boundary and past the end", 4*bs + 7, 2 * bs, size - (4*bs + 7), true},
		{"at the end", size, 10, 0, true},
		{"past the end", size + bs, 10, 0, true},
		{"empty read", 10, 0, 0, false},
	}
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			c, _ := openCache(t, kind, "", Options{BlockSize: bs})
			src := newSource(size, 0)
			v := Version{FileID: "f", VersionID: "v1", Size: size}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					for _, pass := range []string{"cold", "warm"} {
						f := c.File(v, src, FileOptions{})
						p := make([]byte, tc.n)
						n, err := f.ReadAt(t.Context(), p, tc.off)
						f.Close()
						if n != tc.wantN || errors.Is(err, io.EOF) != tc.wantEOF || (err != nil && !errors.Is(err, io.EOF)) {
							t.Fatalf("%s: ReadAt(%d bytes at %d) = %d, %v; want %d, EOF %v", pass, tc.n, tc.off, n, err, tc.wantN, tc.wantEOF)
						}
						if got, want := p[:n], src.want(tc.off, int64(tc.n)); sum(got) != sum(want) {
							t.Fatalf("%s: bytes differ (sha256 %x, want %x)", pass, sum(got), sum(want))
						}
					}
				})
			}
			if got := src.pastEnd.Load(); got != 0 {
				t.Errorf("%d fetches started past the end", got)
			}
			if s := c.Stats(); s.Fetches != 6 || s.FetchedBytes != size {
				t.Errorf("fetched %d blocks, %d bytes; want each of the 6 blocks once (%d bytes)", s.Fetches, s.FetchedBytes, size)
			}
		})
	}
}

func TestRandomReads64MiB(t *testing.T) {
	const size = 64 << 20
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			c, _ := openCache(t, kind, "", Options{MaxBytes: 128 << 20}) // default block size
			src := newSource(size, 3)
			f := c.File(Version{FileID: "big", VersionID: "1", Size: size}, src, FileOptions{})
			defer f.Close()
			r := rand.New(rand.NewPCG(1, 2))
			buf := make([]byte, 512<<10)
			for i := range 1000 {
				off := r.Int64N(size + 1000)
				n := 1 + r.IntN(len(buf))
				got, err := f.ReadAt(t.Context(), buf[:n], off)
				want := src.want(off, int64(n))
				if err != nil && !errors.Is(err, io.EOF) {
					t.Fatalf("read %d: ReadAt(%d, %d): %v", i, n, off, err)
				}
				if (got < n) != errors.Is(err, io.EOF) || got != len(want) || !bytes.Equal(buf[:got], want) {
					t.Fatalf("read %d: ReadAt(%d bytes at %d) = %d, %v; want %d bytes of the source", i, n, off, got, err, len(want))
				}
			}
			if blocks := size / c.BlockSize(); c.Stats().Fetches > blocks || src.pastEnd.Load() != 0 {
				t.Errorf("%d fetches (%d past the end) for a %d-block version that fits the cache", c.Stats().Fetches, src.pastEnd.Load(), blocks)
			}
		})
	}
}

func TestZeroSizeVersion(t *testing.T) {
	c, _ := openCache(t, "mem", "", Options{})
	src := newSource(0, 0)
	f := c.File(Version{FileID: "empty", VersionID: "1"}, src, FileOptions{})
	defer f.Close()
	for _, off := range []int64{0, 1, 1 << 20} {
		if n, err := f.ReadAt(t.Context(), make([]byte, 10), off); n != 0 || err != io.EOF {
			t.Errorf("ReadAt(10 bytes at %d) = %d, %v; want 0, EOF", off, n, err)
		}
	}
	if n, err := f.ReadAt(t.Context(), nil, 0); n != 0 || err != io.EOF {
		t.Errorf("ReadAt(nil, 0) = %d, %v; want 0, EOF", n, err)
	}
	if got := src.calls.Load(); got != 0 {
		t.Errorf("%d fetches for an empty version", got)
	}
}

func TestVersionIsolation(t *testing.T) {
	const bs = 64 << 10
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			c, _ := openCache(t, kind, "", Options{BlockSize: bs})
			v1 := Version{FileID: "same", VersionID: "v1", Size: 3 * bs}
			v2 := Version{FileID: "same", VersionID: "v2", Size: 2*bs + 5}
			s1, s2 := newSource(v1.Size, 1), newSource(v2.Size, 2)
			got1 := readAll(t, c.File(v1, s1, FileOptions{}), v1.Size, 10000)
			if c.Has(v2, 0) {
				t.Fatal("reading v1 cached a block of v2")
			}
			got2 := readAll(t, c.File(v2, s2, FileOptions{}), v2.Size, 10000)
			if !bytes.Equal(got1, s1.want(0, v1.Size)) || !bytes.Equal(got2, s2.want(0, v2.Size)) {
				t.Fatal("a version read bytes that are not its own")
			}
			if bytes.Equal(got1[:100], got2[:100]) {
				t.Fatal("test is broken: the two versions have the same bytes")
			}
			if s2.bytes.Load() != v2.Size {
				t.Errorf("v2 fetched %d bytes, want all %d (none served from v1)", s2.bytes.Load(), v2.Size)
			}
			// Warm reads still keep them apart.
			quiesce(t, c)
			calls := s1.calls.Load()
			again := readAll(t, c.File(v1, s1, FileOptions{}), v1.Size, 7777)
			if !bytes.Equal(again, got1) || s1.calls.Load() != calls {
				t.Errorf("warm read of v1: equal %v, %d more fetches (want none)", bytes.Equal(again, got1), s1.calls.Load()-calls)
			}
		})
	}
}

func TestKeysOfDifferentVersionsDiffer(t *testing.T) {
	vs := []Version{
		{FileID: "a\x00b", VersionID: "c"},
		{FileID: "a", VersionID: "b\x00c"},
		{FileID: "a\x01", VersionID: "\x02b"},
		{FileID: "a", VersionID: "\x01\x02b"},
		{FileID: "ab", VersionID: ""},
		{FileID: "", VersionID: "ab"},
	}
	seen, names := map[string]Version{}, map[string]Version{}
	for _, v := range vs {
		k := versionKey(v)
		if w, ok := seen[k]; ok {
			t.Errorf("%+v and %+v share the version key %q", v, w, k)
		}
		seen[k] = v
		name := fileName(k)
		if w, ok := names[name]; ok {
			t.Errorf("%+v and %+v share the block file %s", v, w, name)
		}
		names[name] = v
		if len(name) != 64 || strings.Trim(name, "0123456789abcdef") != "" {
			t.Errorf("block file name %q of %+v is not 64 hex digits", name, v)
		}
	}
}

func TestConcurrentReadersShareOneFetch(t *testing.T) {
	const bs = 64 << 10
	c, _ := openCache(t, "mem", "", Options{BlockSize: bs})
	src := newSource(4*bs, 0)
	src.gate = make(chan struct{})
	v := Version{FileID: "f", VersionID: "1", Size: 4 * bs}
	const readers = 8
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for i := range readers {
		wg.Go(func() {
			f := c.File(v, src, FileOptions{Readahead: -1})
			defer f.Close()
			off := int64(bs + i*1000)
			p := make([]byte, 5000)
			if _, err := f.ReadAt(t.Context(), p, off); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(p, src.want(off, 5000)) {
				errs <- errors.New("wrong bytes")
			}
		})
	}
	waitFor(t, 5*time.Second, "all readers to wait for the block", func() bool { return c.Stats().Misses == readers })
	close(src.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if s := c.Stats(); src.calls.Load() != 1 || s.SharedWaits != readers-1 {
		t.Errorf("%d fetches, %d shared waits; want 1 and %d", src.calls.Load(), s.SharedWaits, readers-1)
	}
	waitFor(t, 5*time.Second, "the block to be stored", func() bool { return c.Has(v, 1) })
}

func TestCancelledReaderLeavesFetchRunning(t *testing.T) {
	const bs = 64 << 10
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			c, _ := openCache(t, kind, "", Options{BlockSize: bs})
			src := newSource(2*bs, 0)
			src.gate = make(chan struct{})
			src.started = make(chan int64, 10)
			v := Version{FileID: "f", VersionID: "1", Size: 2 * bs}

			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() {
				_, err := c.File(v, src, FileOptions{}).ReadAt(ctx, make([]byte, 100), 0)
				done <- err
			}()
			<-src.started
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled reader got %v, want context.Canceled", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("cancelled reader still waiting after 2s")
			}

			// The fetch is still running (its context is not the reader's):
			// a second reader joins it and gets the block.
			second := make(chan error, 1)
			p := make([]byte, bs)
			go func() {
				_, err := c.File(v, src, FileOptions{}).ReadAt(t.Context(), p, 0)
				second <- err
			}()
			waitFor(t, 5*time.Second, "the second reader to join the fetch", func() bool { return c.Stats().SharedWaits == 1 })
			close(src.gate)
			if err := <-second; err != nil {
				t.Fatalf("second reader: %v", err)
			}
			if !bytes.Equal(p, src.want(0, bs)) {
				t.Fatal("second reader got wrong bytes")
			}
			if n := src.calls.Load(); n != 1 {
				t.Errorf("%d fetches, want 1", n)
			}
			waitFor(t, 5*time.Second, "the block to be stored", func() bool { return c.Has(v, 0) })
		})
	}
}

var errBoom = errors.New("boom")

func TestFetchErrorsReachEveryWaiterAndAreNotCached(t *testing.T) {
	const bs = 64 << 10
	c, _ := openCache(t, "mem", "", Options{BlockSize: bs})
	src := newSource(3*bs, 0)
	src.gate = make(chan struct{})
	src.setFail(errBoom)
	v := Version{FileID: "f", VersionID: "1", Size: 3 * bs}

	const readers = 4
	errs := make(chan error, readers)
	for range readers {
		go func() {
			_, err := c.File(v, src, FileOptions{Readahead: -1}).ReadAt(t.Context(), make([]byte, 10), bs)
			errs <- err
		}()
	}
	waitFor(t, 5*time.Second, "all readers to wait", func() bool { return c.Stats().Misses == readers })
	close(src.gate)
	for range readers {
		if err := <-errs; !errors.Is(err, errBoom) {
			t.Errorf("reader got %v, want %v", err, errBoom)
		}
	}
	if n := src.calls.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	if c.Has(v, 1) || c.Stats().FetchErrors != 1 {
		t.Errorf("after a failed fetch: Has %v, FetchErrors %d", c.Has(v, 1), c.Stats().FetchErrors)
	}

	// The error is not cached: the next read fetches again and succeeds.
	src.setFail(nil)
	p := make([]byte, 10)
	if _, err := c.File(v, src, FileOptions{Readahead: -1}).ReadAt(t.Context(), p, bs); err != nil {
		t.Fatalf("read after the failure cleared: %v", err)
	}
	if !bytes.Equal(p, src.want(bs, 10)) || src.calls.Load() != 2 {
		t.Errorf("retry: right bytes %v, %d fetches (want 2)", bytes.Equal(p, src.want(bs, 10)), src.calls.Load())
	}

	// A read spanning blocks reports the error, and n counts only bytes
	// of leading blocks it read (block 1's, or none if the failure of
	// block 2 came first).
	src.setFail(errBoom)
	q := make([]byte, bs)
	n, err := c.File(v, src, FileOptions{Readahead: -1}).ReadAt(t.Context(), q, bs+10)
	if !errors.Is(err, errBoom) || (n != 0 && n != bs-10) || !bytes.Equal(q[:n], src.want(bs+10, int64(n))) {
		t.Errorf("spanning read with block 2 failing = %d, %v; want 0 or %d bytes of block 1, %v", n, err, bs-10, errBoom)
	}
}

func TestShortRemoteIsAnError(t *testing.T) {
	const bs = 64 << 10
	c, _ := openCache(t, "mem", "", Options{BlockSize: bs})
	src := newSource(bs+100, 0) // the remote has less than the version claims
	v := Version{FileID: "f", VersionID: "1", Size: 2 * bs}
	f := c.File(v, src, FileOptions{Readahead: -1})
	if _, err := f.ReadAt(t.Context(), make([]byte, 10), bs); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read of a truncated remote: %v, want io.ErrUnexpectedEOF", err)
	}
	if c.Has(v, 1) {
		t.Error("a short block was cached")
	}
}

func TestNegativeOffset(t *testing.T) {
	c, _ := openCache(t, "mem", "", Options{})
	f := c.File(Version{FileID: "f", VersionID: "1", Size: 10}, newSource(10, 0), FileOptions{})
	if _, err := f.ReadAt(t.Context(), make([]byte, 1), -1); !errors.Is(err, errNegativeOffset) {
		t.Errorf("ReadAt at -1: %v", err)
	}
}

// TestFetchBuffersAreReusedOnlyOnceFree: readers of several versions, in a
// cache too small to keep them, fetch again and again while others still
// copy out of earlier fetches. Fetch buffers are reused, and never while a
// reader may still copy out of one: every byte is right, and the race
// detector sees no write into a buffer a reader is still copying from.
func TestFetchBuffersAreReusedOnlyOnceFree(t *testing.T) {
	const bs = 64 << 10
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			c, _ := openCache(t, kind, "", Options{BlockSize: bs, MaxBytes: 4 * bs})
			type ver struct {
				v   Version
				src *source
			}
			var vers []ver
			for i := range 3 {
				size := int64(12*bs + 1000*i)
				vers = append(vers, ver{Version{FileID: "reuse", VersionID: string(rune('a' + i)), Size: size}, newSource(size, byte(i))})
			}
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for g := range 8 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(g), 7))
					for range 40 {
						vr := vers[rng.IntN(len(vers))]
						f := c.File(vr.v, vr.src, FileOptions{FetchSize: 4 * bs})
						off := rng.Int64N(vr.v.Size)
						for range 1 + rng.IntN(6) { // a sequential burst: readahead runs
							n := min(int64(1+rng.IntN(2*bs)), vr.v.Size-off)
							if n <= 0 {
								break
							}
							p := make([]byte, n)
							if _, err := f.ReadAt(t.Context(), p, off); err != nil && err != io.EOF {
								errs <- err
								f.Close()
								return
							}
							if !bytes.Equal(p, vr.src.want(off, n)) {
								errs <- fmt.Errorf("%s: wrong bytes at %d+%d", vr.v.VersionID, off, n)
								f.Close()
								return
							}
							off += n
						}
						f.Close()
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if c.stats.buffersReused.Load() == 0 {
				t.Errorf("no fetch buffer reused in %d fetches", c.Stats().Fetches)
			}
		})
	}
}

// TestPiecesOfABlockCostOneStoreRead: the kernel reads a cached file in
// pieces of 128 KiB, sometimes several at once, and its pieces need not
// line up with blocks; each block is still read from the store once,
// whether its pieces come one after another, straddle two blocks, or
// arrive together.
func TestPiecesOfABlockCostOneStoreRead(t *testing.T) {
	const bs, size, piece = 512 << 10, 16 << 20, 128 << 10
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			c, _ := openCache(t, kind, "", Options{BlockSize: bs, MaxBytes: 64 << 20})
			src := newSource(size, 3)
			v := Version{FileID: "f", VersionID: "1", Size: size}
			warm := c.File(v, src, FileOptions{Readahead: -1})
			if _, err := warm.ReadAt(t.Context(), make([]byte, size), 0); err != nil {
				t.Fatal(err)
			}
			quiesce(t, c)
			for _, tc := range []struct {
				name  string
				skew  int64 // where the first piece starts
				batch int   // pieces read at once, then waited for
			}{
				{"aligned, one at a time", 0, 1},
				{"straddling, one at a time", piece / 2, 1},
				{"a block's pieces at once", 0, bs / piece},
				{"straddling, a block's worth at once", piece / 2, bs / piece},
			} {
				h0 := c.Stats().Hits
				f := c.File(v, src, FileOptions{Readahead: -1})
				for first := tc.skew; first < size; first += int64(tc.batch) * piece {
					var g errgroup.Group
					for off := first; off < min(first+int64(tc.batch)*piece, size); off += piece {
						g.Go(func() error {
							p := make([]byte, piece)
							n, err := f.ReadAt(t.Context(), p, off)
							if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == size) {
								return fmt.Errorf("read at %d: %w", off, err)
							}
							if !bytes.Equal(p[:n], src.want(off, int64(n))) {
								return fmt.Errorf("wrong bytes at %d", off)
							}
							return nil
						})
					}
					if err := g.Wait(); err != nil {
						t.Fatalf("%s: %v", tc.name, err)
					}
				}
				f.Close()
				if got := c.Stats().Hits - h0; got != size/bs {
					t.Errorf("%s: %d store reads for %d blocks", tc.name, got, size/bs)
				}
			}
		})
	}
}
