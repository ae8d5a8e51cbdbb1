package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// period of the test pattern: byte(i*7 + i>>8) repeats every 64 KiB.
const period = 1 << 16

// source is a fake Fetcher over a deterministic byte pattern. It counts
// calls and bytes, and can add latency, hold fetches at a gate and fail.
type source struct {
	size    int64
	table   []byte        // one period of this source's pattern
	latency time.Duration // added to each fetch
	gate    chan struct{} // if set, each fetch waits for it to be closed (or its ctx)
	started chan int64    // if set, receives each fetch's offset as it starts

	calls     atomic.Int64
	bytes     atomic.Int64
	pastEnd   atomic.Int64 // fetches starting at or after size
	active    atomic.Int64 // fetches running now
	maxActive atomic.Int64 // most fetches ever running at once

	mu      sync.Mutex
	fail    error   // GUARDED_BY(mu): returned by every fetch while set
	offsets []int64 // GUARDED_BY(mu)
}

// newSource returns a source of size bytes; seed changes every byte, so
// two versions of one file differ.
func newSource(size int64, seed byte) *source {
	t := make([]byte, period)
	for i := range t {
		t[i] = pattern(int64(i)) + seed
	}
	return &source{size: size, table: t}
}

func pattern(i int64) byte { return byte(i*7 + i>>8) }

// fill writes the pattern of [off, off+len(p)) into p.
func (s *source) fill(p []byte, off int64) {
	for len(p) > 0 {
		n := copy(p, s.table[off%period:])
		p, off = p[n:], off+int64(n)
	}
}

// want returns the expected bytes of [off, min(off+n, size)).
func (s *source) want(off, n int64) []byte {
	end := min(off+n, s.size)
	if off >= end {
		return nil
	}
	b := make([]byte, end-off)
	s.fill(b, off)
	return b
}

func (s *source) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *source) FetchAt(ctx context.Context, p []byte, off int64) (int, error) {
	s.calls.Add(1)
	s.mu.Lock()
	s.offsets = append(s.offsets, off)
	s.mu.Unlock()
	a := s.active.Add(1)
	defer s.active.Add(-1)
	for m := s.maxActive.Load(); a > m && !s.maxActive.CompareAndSwap(m, a); m = s.maxActive.Load() {
	}
	if s.started != nil {
		s.started <- off
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if s.latency > 0 {
		t := time.NewTimer(s.latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	s.mu.Lock()
	err := s.fail
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if off >= s.size {
		s.pastEnd.Add(1)
		return 0, io.EOF
	}
	n := min(int64(len(p)), s.size-off)
	s.fill(p[:n], off)
	s.bytes.Add(n)
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// count returns how many log lines contain s.
func (b *syncBuffer) count(s string) int {
	n := 0
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// stores are the two ways every store-dependent test runs.
var stores = []string{"mem", "disk"}

// openCache opens a cache in memory ("mem") or in dir ("disk"; a fresh
// temporary one if dir is empty), closing it at the end of the test.
func openCache(t testing.TB, kind, dir string, o Options) (*Cache, *syncBuffer) {
	t.Helper()
	if kind == "disk" && dir == "" {
		dir = t.TempDir()
	}
	if kind == "disk" {
		o.Dir = dir
	}
	logs := &syncBuffer{}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	c, err := Open(o)
	if err != nil {
		t.Fatalf("Open(%+v): %v", o, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("cache log:\n%s", logs.String())
		}
	})
	return c, logs
}

// readAll reads the whole version in chunk-sized sequential reads.
func readAll(t testing.TB, f *File, size int64, chunk int) []byte {
	t.Helper()
	out := make([]byte, 0, size)
	buf := make([]byte, chunk)
	for off := int64(0); ; {
		n, err := f.ReadAt(context.Background(), buf, off)
		out = append(out, buf[:n]...)
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("ReadAt(%d): %v", off, err)
		}
	}
}

// fetchedBlocks returns the distinct block indexes src was asked for.
func (s *source) fetchedBlocks(bs int64) map[int64]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[int64]bool{}
	for _, off := range s.offsets {
		m[off/bs] = true
	}
	return m
}

// quiesce waits until c has no fetch in flight (every fetched block is
// stored and its evictions done).
func quiesce(t testing.TB, c *Cache) {
	t.Helper()
	waitFor(t, time.Minute, "fetches to finish", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.inflight) == 0
	})
}

// settle waits until c has no fetch in flight and f no readahead worker.
func settle(t testing.TB, c *Cache, f *File) {
	t.Helper()
	waitFor(t, time.Minute, "fetches and readahead to finish", func() bool {
		f.mu.Lock()
		running := f.raRunning
		f.mu.Unlock()
		c.mu.Lock()
		n := len(c.inflight)
		c.mu.Unlock()
		return !running && n == 0
	})
}

// sum is a short sha256 for failure messages.
func sum(b []byte) [sha256.Size]byte { return sha256.Sum256(b) }

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
