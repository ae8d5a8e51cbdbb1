package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

func mountArgs(info emulator.Info, tokenFile, cacheDir, mnt string) []string {
	return []string{"mount", "--hub", info.HubURL, "--org", info.OrgID, "--workspace", info.WorkspaceID,
		"--token-file", tokenFile, "--cache-dir", cacheDir, mnt}
}

func TestMountRefusesBadInputWithOneClearMessage(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t)
	info := emu.Info()
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	os.WriteFile(good, []byte(info.Token+"\n"), 0o600)
	os.WriteFile(bad, []byte("forged\n"), 0o600)
	expired := filepath.Join(dir, "expired")
	os.WriteFile(expired, []byte(emu.IssueToken(emulator.RoleEditor, -time.Minute)+"\n"), 0o600)
	full := filepath.Join(dir, "full")
	os.MkdirAll(full, 0o755)
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	cache := filepath.Join(dir, "cache")

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing mountpoint", mountArgs(info, good, cache, filepath.Join(dir, "nope")), "does not exist"},
		{"non-empty mountpoint", mountArgs(info, good, cache, full), "is not empty"},
		{"forged token", mountArgs(info, bad, cache, empty), "refused the token in " + bad + " (auth/invalid-token)"},
		{"expired token", mountArgs(info, expired, cache, empty), "refused the token in " + expired + " (auth/invalid-token)"},
		{"missing token file", mountArgs(info, filepath.Join(dir, "none"), cache, empty), "read token file"},
		{"bad umask", append([]string{"mount", "--umask", "9x"}, mountArgs(info, good, cache, empty)[1:]...), "--umask"},
		{"missing workspace", []string{"mount", empty}, "--workspace is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stderr := &logBuffer{}
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			cmd.Stderr = stderr
			err := cmd.Run()
			if err == nil {
				t.Fatal("exit 0, want a failure")
			}
			msg := strings.TrimSpace(stderr.String())
			if !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 0 || strings.Contains(msg, "goroutine") {
				t.Fatalf("stderr %q: want one line saying %q", msg, tc.want)
			}
			if strings.Contains(msg, info.Token) {
				t.Fatal("the token reached the message")
			}
		})
	}
}

func TestMountServesAndUnmountsOnSIGTERM(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, func(c *emulator.Config) { c.Seed = "../../testdata/workspace" })
	info := emu.Info()
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte(info.Token), 0o600)
	mnt := filepath.Join(dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	stderr := &logBuffer{}
	cmd := exec.Command(bin, append(mountArgs(info, tok, filepath.Join(dir, "cache"), mnt), "--log-level", "debug")...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	})
	deadline := time.Now().Add(30 * time.Second)
	for !mounted(mnt) {
		if time.Now().After(deadline) {
			t.Fatalf("not mounted after 30 s:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "README.txt"))
	want, _ := os.ReadFile("../../testdata/workspace/README.txt")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("README.txt through the mount: %q, %v", got, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("evofs did not exit 30 s after SIGTERM:\n%s", stderr.String())
	}
	if mounted(mnt) {
		t.Fatal("still mounted after SIGTERM")
	}
}
