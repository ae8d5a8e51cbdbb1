package fs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// outage is a way for the service to go away and come back.
type outage struct {
	name string
	// start takes the service away, end brings it back on the same
	// address with the same data.
	start, end func(t *testing.T)
}

// outages: a service that stops answering (connections stay open,
// nothing comes back) and one that refuses connections.
func outages(emu *emulator.Server, dataDir, container string) []outage {
	addr := strings.TrimPrefix(emu.URL(), "http://")
	return []outage{
		{"stall",
			func(t *testing.T) { emu.SetStalled(true) },
			func(t *testing.T) { emu.SetStalled(false) }},
		{"refuse",
			func(t *testing.T) {
				if err := emu.Close(); err != nil {
					t.Fatalf("stop the emulator: %v", err)
				}
			},
			func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				back, err := emulator.Start(ctx, emulator.Config{Listen: addr, BlobEndpoint: os.Getenv("EVOFS_AZURITE_URL"),
					Container: container, DataDir: dataDir})
				if err != nil {
					t.Fatalf("restart the emulator on %s: %v", addr, err)
				}
				t.Cleanup(func() { back.Close() })
			}},
	}
}

// TestOutageAnswersWithinSeconds: the service goes away (stalls or
// refuses), in both write-back modes. Browsing past the TTL answers from
// the last listing, cached reads go on, what needs the service fails with
// EIO within seconds (a sync close too: its upload goes on), async writes
// go on, a killed reader dies at once, status tells since when the service
// is away, one line is logged when it goes and one when it is back, and
// everything journaled is committed once, when it answers again.
func TestOutageAnswersWithinSeconds(t *testing.T) {
	for _, kind := range []string{"stall", "refuse"} {
		for _, async := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/async=%v", kind, async), func(t *testing.T) {
				dataDir, container := t.TempDir(), emutest.ContainerName()
				emu := startEmu(t, func(c *emulator.Config) { c.DataDir, c.Container = dataDir, container })
				var o outage
				for _, x := range outages(emu, dataDir, container) {
					if x.name == kind {
						o = x
					}
				}
				testOutage(t, emu, o, async)
			})
		}
	}
}

func testOutage(t *testing.T, emu *emulator.Server, o outage, async bool) {
	m := mountEmu(t, emu, mountConfig{async: async, ttl: 2 * time.Second, stallAfter: 2 * time.Second})
	a, b := randomBytes(71, 2<<20+7), randomBytes(72, 1<<20+3)
	upload(t, m.Client, m.Blobs, "site/a.bin", bytes.NewReader(a), int64(len(a)))
	upload(t, m.Client, m.Blobs, "site/b.bin", bytes.NewReader(b), int64(len(b)))
	pa, pb := filepath.Join(m.Dir, "site/a.bin"), filepath.Join(m.Dir, "site/b.bin")
	if got := sha256File(t, pa); got != sum(a) {
		t.Fatal("a.bin reads other bytes before the outage")
	}

	o.start(t)
	away := true
	t.Cleanup(func() {
		if away {
			o.end(t)
		}
	})
	time.Sleep(2500 * time.Millisecond) // past the TTL

	// within runs op and fails the test if it took longer than limit.
	within := func(what string, limit time.Duration, op func() error) error {
		t.Helper()
		start := time.Now()
		err := op()
		took := time.Since(start)
		t.Logf("%s: %v after %s", what, err, took.Round(time.Millisecond))
		if took > limit {
			t.Errorf("%s took %s while the service was away, want under %s", what, took.Round(time.Millisecond), limit)
		}
		return err
	}
	if err := within("ls", 2*time.Second, func() error {
		ents, err := os.ReadDir(filepath.Join(m.Dir, "site"))
		if err == nil && len(ents) != 2 {
			return errors.New("site lists other than 2 entries")
		}
		return err
	}); err != nil {
		t.Errorf("ls while away: %v", err)
	}
	if err := within("stat", 2*time.Second, func() error { _, err := os.Stat(pb); return err }); err != nil {
		t.Errorf("stat while away: %v", err)
	}
	dropPageCache(t, pa)
	if err := within("cached read", 2*time.Second, func() error {
		if sha256File(t, pa) != sum(a) {
			return errors.New("other bytes")
		}
		return nil
	}); err != nil {
		t.Errorf("cached read while away: %v", err)
	}
	if err := within("uncached read", 6*time.Second, func() error { _, err := os.ReadFile(pb); return err }); !errors.Is(err, syscall.EIO) {
		t.Errorf("uncached read while away: %v, want EIO", err)
	}
	c := randomBytes(73, 1<<20+9)
	err := within("create, write, close", 6*time.Second, func() error {
		return os.WriteFile(filepath.Join(m.Dir, "site/c.bin"), c, 0o644)
	})
	switch {
	case async && err != nil:
		t.Errorf("async write while away: %v", err)
	case !async && !errors.Is(err, syscall.EIO):
		t.Errorf("sync write while away: %v, want EIO from close", err)
	}
	if p := m.FS.Pending(); len(p) != 1 || p[0].Path != "/site/c.bin" {
		t.Errorf("pending while away: %+v, want c.bin", p)
	}

	// A reader killed while it waits on the service dies at once.
	cat := exec.Command("cat", pb)
	if err := cat.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	cat.Process.Kill()
	cat.Wait()
	if took := time.Since(killed); took > time.Second {
		t.Errorf("a reader killed while it waited on the service lived %s more", took.Round(time.Millisecond))
	}

	if st := status(t, m); st.UnreachableSince == "" {
		t.Errorf("status while away says nothing of it: %+v", st)
	}
	if n := strings.Count(m.Logs.String(), "service stopped answering"); n != 1 {
		t.Errorf("want one log line when the service goes away, got %d", n)
	}

	o.end(t)
	away = false
	waitSettled(t, m)
	d, got := remoteFile(t, m, "site/c.bin")
	if sum(got) != sum(c) {
		t.Fatal("c.bin remotely differs once the service is back")
	}
	if v := versionList(t, m, d.FileID); len(v) != 1 {
		t.Errorf("c.bin has %d versions, want 1", len(v))
	}
	if got := sha256File(t, pb); got != sum(b) {
		t.Fatal("b.bin reads other bytes once the service is back")
	}
	poll(t, 30*time.Second, func() string { return "status still says unreachable" },
		func() bool { return status(t, m).UnreachableSince == "" })
	if n := strings.Count(m.Logs.String(), "service answers again"); n != 1 {
		t.Errorf("want one log line when the service is back, got %d", n)
	}
}
