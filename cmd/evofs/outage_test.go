package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator/emutest"
)

// TestMountWhileServiceDownSaysSoAndExitsNonZero: a mount started while
// the service is away fails with one line saying it cannot reach it, and
// mounts nothing.
func TestMountWhileServiceDownSaysSoAndExitsNonZero(t *testing.T) {
	emu := emutest.Start(t)
	info := emu.Info()
	bin, tokenFile, cacheDir := newEnv(t, info)
	if err := emu.Close(); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stderr := &logBuffer{}
	cmd := exec.CommandContext(ctx, bin, mountArgs(info, tokenFile, cacheDir, mnt)...)
	cmd.Env, cmd.Stderr = userEnv(t.TempDir()), stderr
	start := time.Now()
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("evofs mount with the service down: %v, want a non-zero exit", err)
	}
	t.Logf("exit %d after %s", ee.ExitCode(), time.Since(start).Round(time.Millisecond))
	msg := strings.TrimSpace(stderr.String())
	if !strings.Contains(msg, "cannot reach the File API at "+info.HubURL) || strings.Count(msg, "\n") != 0 {
		t.Fatalf("stderr %q: want one line saying the File API at %s cannot be reached", msg, info.HubURL)
	}
	if mounted(mnt) {
		t.Fatal("something is mounted")
	}
	if names, _ := os.ReadDir(mnt); len(names) != 0 {
		t.Fatalf("the mountpoint holds %d entries", len(names))
	}
}

// TestUnmountWaitsForAStalledService: in sync mode a close while the
// service stalls fails with EIO within seconds and its upload goes on;
// unmounting then waits for the service (up to --unmount-wait) and
// commits it once it answers, instead of giving up after one retry.
func TestUnmountWaitsForAStalledService(t *testing.T) {
	emu := emutest.Start(t)
	info := emu.Info()
	bin, tok, cacheDir := newEnv(t, info)
	r := newRemoteSide(t, info)
	m := startWriteMount(t, bin, info, tok, cacheDir, "--write-back=sync", "--stall-timeout=2s", closeTimeUpload)
	a, b := content(81, 4<<10), content(82, 3<<20+5)
	if werr, cerr := writeFile(filepath.Join(m.Dir, "a.txt"), a); werr != nil || cerr != nil {
		t.Fatalf("write a.txt: %v, close: %v", werr, cerr)
	}

	emu.SetStalled(true)
	stalled := true
	t.Cleanup(func() {
		if stalled {
			emu.SetStalled(false)
		}
	})
	start := time.Now()
	werr, cerr := writeFile(filepath.Join(m.Dir, "b.bin"), b)
	took := time.Since(start)
	if werr != nil || !errors.Is(cerr, syscall.EIO) {
		t.Fatalf("write b.bin while the service stalls: %v, close: %v; want EIO from close", werr, cerr)
	}
	if took > 10*time.Second {
		t.Errorf("close took %s while the service stalled", took.Round(time.Millisecond))
	}
	if st := m.status(); len(st.Pending) != 1 || st.Pending[0].Path != "/b.bin" || st.UnreachableSince == "" {
		t.Fatalf("status while stalled: %+v; want b.bin pending and since when the service is away", st)
	}

	m.Signal(syscall.SIGTERM)
	waitFor(t, 30*time.Second, func() string { return "unmounted" }, func() bool { return !mounted(m.Dir) })
	time.Sleep(3 * time.Second)
	if m.exited() {
		t.Fatalf("evofs exited with an upload pending while the service stalled:\n%s", m.Stderr.String())
	}
	emu.SetStalled(false)
	stalled = false
	m.Exit(time.Minute)
	if log := m.Stderr.String(); !strings.Contains(log, "uploads_left_in_journal=0") {
		t.Errorf("the unmount left uploads in the journal:\n%s", log)
	}
	d := r.checkFile("b.bin", sha(b))
	if len(d.Versions) != 1 {
		t.Errorf("b.bin has %d versions, want 1", len(d.Versions))
	}
	r.checkFile("a.txt", sha(a))
}
