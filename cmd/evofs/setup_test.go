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

	evofs "github.com/evofs/evofs/fs"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// KillLeavingMount kills the mount with SIGKILL and waits for the process,
// leaving the dead mount in place as a crash does (the kernel answers
// ENOTCONN at the mountpoint).
func (p *mountProc) KillLeavingMount() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(30 * time.Second)
}

// mountSource is the source mountinfo shows for the mount at dir ("" if
// dir is no mount point).
func mountSource(dir string) string {
	mounts, _ := evofs.Mounts()
	for _, m := range mounts {
		if m.MountPoint == dir {
			return m.Source
		}
	}
	return ""
}

// runMountCmd runs `evofs mount` that is expected to fail, and returns its
// stderr.
func runMountCmd(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stderr := &logBuffer{}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = stderr
	if err := cmd.Run(); err == nil {
		mnt := args[len(args)-1]
		syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Fatalf("evofs %s: exit 0, want a failure", strings.Join(args, " "))
	}
	return strings.TrimSpace(stderr.String())
}

// oneLine fails unless msg is one line containing each of want.
func oneLine(t *testing.T, msg string, want ...string) {
	t.Helper()
	t.Logf("message: %s", msg)
	if strings.Contains(msg, "\n") {
		t.Errorf("%q: want one line", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%q: want it to say %q", msg, w)
		}
	}
}

// A kill -9 leaves a dead mount (ENOTCONN); the next evofs mount on that
// folder detaches it, says so in one log line, and mounts: systemd's
// Restart=on-failure works.
func TestMountAfterKill9CleansTheDeadMount(t *testing.T) {
	emu := emutest.Start(t, seeded("Pit design"))
	info := emu.Info()
	bin, tok, cache := newEnv(t, info)
	p := startWriteMount(t, bin, info, tok, cache)
	if err := sameAsSeed(p.Dir, "README.txt"); err != nil {
		t.Fatal(err)
	}
	p.KillLeavingMount()
	if _, err := os.Stat(p.Dir); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat of the dead mount: %v, want ENOTCONN", err)
	}
	// Not startMount: the dead mount is in mountinfo already.
	stderr := &logBuffer{}
	cmd := exec.Command(bin, mountArgs(info, tok, cache, p.Dir)...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
		syscall.Unmount(p.Dir, syscall.MNT_DETACH)
	})
	waitFor(t, 30*time.Second, func() string { return "the remount:\n" + stderr.String() }, func() bool {
		select {
		case err := <-done:
			t.Fatalf("the remount exited: %v\n%s", err, stderr.String())
		default:
		}
		return strings.Contains(stderr.String(), "msg=mounted")
	})
	if err := sameAsSeed(p.Dir, "README.txt"); err != nil {
		t.Fatalf("after the remount: %v\n%s", err, stderr.String())
	}
	if n := strings.Count(stderr.String(), "detached the mount an evofs that stopped had left"); n != 1 {
		t.Errorf("%d log lines about the dead mount, want 1:\n%s", n, stderr.String())
	}
}

// A second mount on a folder that is mounted already, and a second mount
// of the workspace with the same cache folder, each fail with one line
// that names the problem and the way out.
func TestMountTwiceSaysWhy(t *testing.T) {
	emu := emutest.Start(t, seeded("Pit design"))
	info := emu.Info()
	bin, tok, cache := newEnv(t, info)
	p := startWriteMount(t, bin, info, tok, cache)

	msg := runMountCmd(t, bin, mountArgs(info, tok, filepath.Join(t.TempDir(), "other-cache"), p.Dir)...)
	oneLine(t, msg, p.Dir+" is already an evofs mount", "fusermount -u "+p.Dir)

	other := filepath.Join(t.TempDir(), "mnt2")
	os.MkdirAll(other, 0o755)
	msg = runMountCmd(t, bin, mountArgs(info, tok, cache, other)...)
	oneLine(t, msg, "another evofs uses the cache folder "+cache, "--cache-dir")
	if mounted(other) {
		t.Fatal("the second mount stayed mounted")
	}
}

// df and /proc/mounts show the workspace's name as the mount's source.
func TestMountSourceIsTheWorkspaceName(t *testing.T) {
	const name = "Pit design 2024"
	emu := emutest.Start(t, seeded(name))
	info := emu.Info()
	bin, tok, cache := newEnv(t, info)
	mnt := filepath.Join(t.TempDir(), "mnt")
	startMount(t, bin, os.Environ(), mnt, "mount", "--hub", info.HubURL, "--org", info.OrgID, "--workspace", name,
		"--token-file", tok, "--cache-dir", cache)
	p := struct{ Dir string }{mnt}
	if got := mountSource(p.Dir); got != name {
		t.Fatalf("mountinfo shows %q as the source of %s, want %q", got, p.Dir, name)
	}
	out, err := exec.Command("df", "--output=source", p.Dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), name) {
		t.Errorf("df --output=source: %v\n%s", err, out)
	}
}

// The mount lists the workspace once at start-up, and that listing is the
// first snapshot: 12,001 files cost 3 list calls of 5,000, and no separate
// probe.
func TestMountStartupListingIsTheFirstSnapshot(t *testing.T) {
	const n = 12001
	emu := emutest.Start(t, func(c *emulator.Config) { c.Synthetic = n })
	info := emu.Info()
	bin, tok, cache := newEnv(t, info)
	p := startWriteMount(t, bin, info, tok, cache, "--listing-ttl", "5m")
	out, err := exec.Command("find", p.Dir, "-type", "f").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(out), "\n"); got != n {
		t.Fatalf("find found %d files, want %d", got, n)
	}
	if got := emu.Stats().APICalls(emulator.OpListFiles); got != 3 {
		t.Fatalf("start-up and find cost %d list calls, want 3 (the pages of one listing)", got)
	}
}
