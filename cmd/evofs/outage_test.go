package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
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
