package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Every evofs subprocess of these tests writes its stderr (and the mount
// helper's daemons their log files) through here; TestMain then checks
// that no log line holds a token or a link signature.
var (
	logsMu   sync.Mutex
	allLogs  bytes.Buffer
	logFiles []string
)

// secretInLogs finds what must never be logged: a SAS signature, a bearer
// token, an emulator token (they all start "evo1.").
var secretInLogs = regexp.MustCompile(`(?i)sig=|bearer\s+[a-z0-9]|evo1\.`)

func TestMain(m *testing.M) {
	code := m.Run()
	logsMu.Lock()
	for _, f := range logFiles {
		b, _ := os.ReadFile(f)
		allLogs.Write(b)
	}
	logs := allLogs.String()
	logsMu.Unlock()
	if code == 0 {
		if loc := secretInLogs.FindStringIndex(logs); loc != nil {
			lo, hi := max(0, loc[0]-200), min(len(logs), loc[1]+40)
			fmt.Fprintf(os.Stderr, "FAIL: a secret reached the evofs logs:\n...%s...\n", logs[lo:hi])
			code = 1
		} else if flag.Lookup("test.run").Value.String() == "" && (!strings.Contains(logs, "level=DEBUG") || !strings.Contains(logs, "mounted")) {
			fmt.Fprintf(os.Stderr, "FAIL: the log check saw no debug logs of a mount (%d bytes): it checked nothing\n", len(logs))
			code = 1
		}
	}
	os.Exit(code)
}

// logBuffer collects one process's stderr for its test and for TestMain.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	logsMu.Lock()
	allLogs.Write(p)
	logsMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func collectLogFile(path string) {
	logsMu.Lock()
	defer logsMu.Unlock()
	logFiles = append(logFiles, path)
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildEvofs builds the command once per test binary run.
func buildEvofs(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "evofs-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "evofs")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// userEnv is an environment with a home of its own: config (the stored
// login) and cache folders under dir, nothing from the real user.
func userEnv(dir string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EVOFS_") || strings.HasPrefix(kv, "EVOFS_AZURITE_URL=") {
			env = append(env, kv)
		}
	}
	env = append(env, "HOME="+dir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"XDG_CACHE_HOME="+filepath.Join(dir, "cache"))
	return append(env, extra...)
}

// runEvofs runs a command to its end and returns its stdout.
func runEvofs(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout bytes.Buffer
	stderr := &logBuffer{}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, &stdout, stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("evofs %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), err
}

// startMount runs `evofs ARGS... MNT` and waits until MNT is mounted. It
// unmounts in t.Cleanup (SIGTERM, then a lazy unmount if need be).
func startMount(t *testing.T, bin string, env []string, mnt string, args ...string) (*exec.Cmd, *logBuffer) {
	t.Helper()
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	stderr := &logBuffer{}
	cmd := exec.Command(bin, append(args, mnt)...)
	cmd.Env, cmd.Stderr = env, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("evofs did not exit 30 s after SIGTERM:\n%s", stderr.String())
			_ = cmd.Process.Kill()
		}
		if mounted(mnt) {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !mounted(mnt) {
		select {
		case err := <-done:
			t.Fatalf("evofs exited before mounting: %v\n%s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("not mounted after 30 s:\n%s", stderr.String())
		}
	}
	return cmd, stderr
}

// watchdog fails the test with a dump instead of hanging CI when a mount
// wedges: it detaches the mount (which frees any reader stuck in it).
func watchdog(t *testing.T, d time.Duration, mnt string) {
	timer := time.AfterFunc(d, func() {
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Errorf("watchdog: test still running after %s; detached %s", d, mnt)
	})
	t.Cleanup(func() { timer.Stop() })
}

func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}
