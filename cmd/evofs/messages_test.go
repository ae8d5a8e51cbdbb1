package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator/emutest"
)

// evofsRun runs evofs to its end: stdout, stderr (trimmed) and whether it
// exited 0.
func evofsRun(t *testing.T, bin string, env []string, args ...string) (stdout, stderr string, ok bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &out, &errb
	err := cmd.Run()
	return out.String(), strings.TrimSpace(errb.String()), err == nil
}

// Each mistake a user makes at set-up fails with one line that names the
// problem and the fix.
func TestSetupMessagesNameTheProblemAndTheFix(t *testing.T) {
	bin := buildEvofs(t)
	emu := emutest.Start(t, seeded("Pit design"))
	info := emu.Info()
	home := t.TempDir()
	env := userEnv(home)
	tok := writeToken(t, home, info.Token)
	mnt := filepath.Join(home, "mnt")
	os.MkdirAll(mnt, 0o755)
	byName := func(ws string, extra ...string) []string {
		return append([]string{"mount", "--hub", info.HubURL, "--org", info.OrgID, "--workspace", ws, "--token-file", tok}, append(extra, mnt)...)
	}
	cases := []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"missing mountpoint argument", env, []string{"mount", "--workspace", "Pit design"},
			[]string{"missing MOUNTPOINT", "usage: evofs mount [flags] MOUNTPOINT"}},
		{"missing path argument", env, []string{"versions"}, []string{"missing PATH", "usage: evofs versions"}},
		{"unknown workspace", env, byName("Pit desing"),
			[]string{`no workspace named "Pit desing"`, `"Pit design"`}},
		{"cache size from the environment", userEnv(home, "EVOFS_CACHE_SIZE=lots"), byName("Pit design"),
			[]string{`--cache-size "lots" (from environment variable EVOFS_CACHE_SIZE) is not a size`, "50GiB"}},
		{"wrong hub path", env, []string{"mount", "--hub", info.HubURL + "/evo", "--org", info.OrgID, "--workspace", info.WorkspaceID,
			"--token-file", tok, mnt}, []string{"refused the listing of workspace " + info.WorkspaceID, "HTTP 404 Not Found", "check --hub"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, msg, ok := evofsRun(t, bin, tc.env, tc.args...)
			if ok {
				t.Fatal("exit 0, want a failure")
			}
			oneLine(t, msg, tc.want...)
			if strings.Contains(msg, "()") {
				t.Errorf("%q: empty parentheses", msg)
			}
			if mounted(mnt) {
				t.Fatal("something is mounted")
			}
		})
	}

	t.Run("--version", func(t *testing.T) {
		a, _, ok1 := evofsRun(t, bin, env, "--version")
		b, _, ok2 := evofsRun(t, bin, env, "version")
		if !ok1 || !ok2 || a != b || !strings.HasPrefix(a, "evofs ") {
			t.Fatalf("evofs --version %q (%v), evofs version %q (%v): want the same line", a, ok1, b, ok2)
		}
	})

	t.Run("config typo", func(t *testing.T) {
		cfg := filepath.Join(home, "config", "evofs", "config")
		os.MkdirAll(filepath.Dir(cfg), 0o700)
		os.WriteFile(cfg, []byte("# evofs\nlog-level = debug\ncahce-dir = /var/cache/evofs\n"), 0o600)
		for _, args := range [][]string{{"version"}, {"--version"}, {"--help"}, {"help", "mount"}, {"mount", "--help"}} {
			if out, msg, ok := evofsRun(t, bin, env, args...); !ok || out == "" {
				t.Errorf("evofs %s with a typo in the config file: exit 0 %v, stdout %q, stderr %q", strings.Join(args, " "), ok, out, msg)
			}
		}
		_, msg, ok := evofsRun(t, bin, env, byName("Pit design")...)
		if ok {
			t.Fatal("mount with a typo in the config file: exit 0")
		}
		oneLine(t, msg, "config file "+cfg+":3", `"cahce-dir" is not a flag`, "did you mean cache-dir?")
	})

	t.Run("config value", func(t *testing.T) {
		cfg := filepath.Join(home, "config", "evofs", "config")
		os.WriteFile(cfg, []byte("cache-size = 5 gigs\n"), 0o600)
		_, msg, _ := evofsRun(t, bin, env, byName("Pit design")...)
		oneLine(t, msg, `--cache-size "5 gigs" (from config file `+cfg+`:1) is not a size`)
	})
}
