package fs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
	"golang.org/x/sys/unix"
)

// dropPageCache makes the kernel forget the pages it holds of path, so
// that the next read reaches evofs (and its block cache) again.
func dropPageCache(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatalf("fadvise %s: %v", path, err)
	}
}

// TestOutageCachedReadsGoOnUncachedFailAsyncWritesWait stops the service
// mid-mount: a file read before goes on reading from the block cache, a
// file never read fails with EIO and one log line naming it, a file
// written meanwhile (async write-back) is journaled at close and uploaded
// once the service is back on the same address.
func TestOutageCachedReadsGoOnUncachedFailAsyncWritesWait(t *testing.T) {
	dataDir, container := t.TempDir(), emutest.ContainerName()
	emu := startEmu(t, func(c *emulator.Config) { c.DataDir, c.Container = dataDir, container })
	m := mountEmu(t, emu, mountConfig{async: true})
	a, b := randomBytes(61, 3<<20+11), randomBytes(62, 1<<20+5)
	upload(t, m.Client, m.Blobs, "site/a.bin", bytes.NewReader(a), int64(len(a)))
	upload(t, m.Client, m.Blobs, "site/b.bin", bytes.NewReader(b), int64(len(b)))
	pa, pb := filepath.Join(m.Dir, "site/a.bin"), filepath.Join(m.Dir, "site/b.bin")
	if got := sha256File(t, pa); got != sum(a) {
		t.Fatal("a.bin reads other bytes before the outage")
	}
	if _, err := os.Stat(pb); err != nil { // listed, never read
		t.Fatal(err)
	}

	addr := strings.TrimPrefix(emu.URL(), "http://")
	if err := emu.Close(); err != nil {
		t.Fatalf("stop the emulator: %v", err)
	}

	// Cached: the block cache answers, not the kernel's page cache.
	dropPageCache(t, pa)
	if got := sha256File(t, pa); got != sum(a) {
		t.Fatal("a.bin (cached) reads other bytes while the service is away")
	}

	// Uncached: EIO after the retries, one log line naming the path.
	start := time.Now()
	_, err := os.ReadFile(pb)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read of uncached b.bin while the service is away: %v, want EIO", err)
	}
	t.Logf("uncached read failed after %s", time.Since(start).Round(time.Millisecond))
	var lines []string
	for _, l := range strings.Split(m.Logs.String(), "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, "site/b.bin") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "path=/site/b.bin") || !strings.Contains(lines[0], "errno=") {
		t.Fatalf("want one error line naming /site/b.bin, got %d:\n%s", len(lines), strings.Join(lines, "\n"))
	}

	// Async write while away: close succeeds (journaled), the upload waits.
	c := randomBytes(63, 2<<20+3)
	if err := os.WriteFile(filepath.Join(m.Dir, "site/c.bin"), c, 0o644); err != nil {
		t.Fatalf("async write while the service is away: %v", err)
	}
	pendingC := func() (bool, int) {
		for _, p := range m.FS.Pending() {
			if p.Path == "/site/c.bin" {
				return true, p.Failures
			}
		}
		return false, 0
	}
	poll(t, time.Minute, func() string { return "c.bin's upload never failed while the service was away" },
		func() bool { ok, n := pendingC(); return ok && n >= 1 })

	// The service comes back on the same address with the same data.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	back, err := emulator.Start(ctx, emulator.Config{Listen: addr, BlobEndpoint: os.Getenv("EVOFS_AZURITE_URL"),
		Container: container, DataDir: dataDir})
	if err != nil {
		t.Fatalf("restart the emulator on %s: %v", addr, err)
	}
	t.Cleanup(func() { back.Close() })
	poll(t, 90*time.Second, func() string { return "c.bin still pending after the service came back" },
		func() bool { ok, _ := pendingC(); return !ok })
	if _, got := remoteFile(t, m, "site/c.bin"); sum(got) != sum(c) {
		t.Fatalf("c.bin remotely: %d bytes, want %d, sha differs", len(got), len(c))
	}
	if got := sha256File(t, pb); got != sum(b) {
		t.Fatal("b.bin reads other bytes once the service is back")
	}
	if got := sha256File(t, filepath.Join(m.Dir, "site/c.bin")); got != sum(c) {
		t.Fatal("c.bin reads other bytes through the mount")
	}
}
