package fs_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/evofs/evofs/cache"
	evofs "github.com/evofs/evofs/fs"
	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
	"github.com/evofs/evofs/remote/emulator/emutest"
)

// mount is one real kernel mount of an emulated workspace, unmounted in
// t.Cleanup and watched by a watchdog: a hung FUSE server would otherwise
// hang every process that touches the mount, CI included.
type mount struct {
	t      *testing.T
	Dir    string
	Emu    *emulator.Server
	Client *remote.Client
	Blobs  *remote.Blobs
	FS     *evofs.FS
	Cache  *cache.Cache
	Logs   *lockedWriter
	// unmount unmounts and closes the cache, once; Cleanup calls it too.
	unmount func()
}

type mountConfig struct {
	ttl      time.Duration
	cacheDir string // "" = a fresh one
	readOnly bool
	async    bool   // --write-back=async
	token    string // "" = the editor's
	hub      string // the File API's URL; "" = the emulator's (a proxy in front of it otherwise)
	// hangAfter is how long the mount may stay mounted before the
	// watchdog calls it hung; 0 = 4 minutes. Long randomized runs set
	// more: under the race detector on a busy machine they progress
	// slowly, and a slow run is not a hang.
	hangAfter time.Duration
	// kernelReadahead is Options.KernelReadahead (0: the kernel's default).
	kernelReadahead int64
	// stallAfter is the silence after which the service counts as away
	// (remote.Health); 0: remote.DefaultStallAfter.
	stallAfter time.Duration
	// allowOther mounts with allow_other (and so default_permissions).
	allowOther bool
	umask      uint32
	// debounce is Options.Debounce (0: the default; negative: none).
	debounce time.Duration
	// retry is the mount's API retry policy (zero: the client's default).
	retry remote.RetryPolicy
	// passthrough turns kernel passthrough on (Options.NoPassthrough
	// false), as --passthrough does.
	passthrough bool
	// cacheBytes is the cache's MaxBytes (0: 1 GiB).
	cacheBytes int64
}

func newClient(t testing.TB, emu *emulator.Server) *remote.Client {
	return newClientAs(t, emu, "")
}

func newClientAs(t testing.TB, emu *emulator.Server, token string) *remote.Client {
	return newClientVia(t, emu, emu.Info().HubURL, token)
}

// newClientVia is a client of emu's workspace that calls the File API at
// hub.
func newClientVia(t testing.TB, emu *emulator.Server, hub, token string) *remote.Client {
	t.Helper()
	return newClientWith(t, emu, hub, token, nil, remote.RetryPolicy{})
}

// newClientWith is newClientVia that reports to health and retries as
// retry says (zero: the client's default).
func newClientWith(t testing.TB, emu *emulator.Server, hub, token string, health *remote.Health, retry remote.RetryPolicy) *remote.Client {
	t.Helper()
	info := emu.Info()
	if token == "" {
		token = info.Token
	}
	c, err := remote.New(remote.Config{HubURL: hub, OrgID: info.OrgID, WorkspaceID: info.WorkspaceID,
		Tokens: remote.StaticToken(token), Health: health, Retry: retry})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mountEmu(t *testing.T, emu *emulator.Server, cfg mountConfig) *mount {
	t.Helper()
	if cfg.ttl == 0 {
		cfg.ttl = time.Minute
	}
	if cfg.cacheDir == "" {
		cfg.cacheDir = t.TempDir()
	}
	logs := &lockedWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	health := remote.NewHealth(cfg.stallAfter, log)
	hub := cmp.Or(cfg.hub, emu.Info().HubURL)
	m := &mount{t: t, Dir: t.TempDir(), Emu: emu, Client: newClientWith(t, emu, hub, cfg.token, health, cfg.retry),
		Blobs: remote.NewBlobs(remote.BlobConfig{Health: health}), Logs: logs}
	c, err := cache.Open(cache.Options{Dir: cfg.cacheDir, MaxBytes: cmp.Or(cfg.cacheBytes, 1<<30), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	m.Cache = c
	wb := evofs.WriteBackSync
	if cfg.async {
		wb = evofs.WriteBackAsync
	}
	m.FS = evofs.New(m.Client, m.Blobs, c, evofs.Options{TTL: cfg.ttl, UID: 0, GID: 0, ReadOnly: cfg.readOnly, Logger: log, WriteBack: wb,
		KernelReadahead: cfg.kernelReadahead, Health: health, Umask: cfg.umask, Debounce: cfg.debounce,
		NoPassthrough: !cfg.passthrough})
	srv, err := evofs.Mount(m.Dir, m.FS, cfg.allowOther)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	hangAfter := cmp.Or(cfg.hangAfter, 4*time.Minute)
	dog := watchdog(t, m.Dir, hangAfter)
	var once sync.Once
	m.unmount = func() {
		once.Do(func() {
			if err := srv.Unmount(); err != nil {
				t.Logf("unmount %s: %v; detaching lazily", m.Dir, err)
				syscall.Unmount(m.Dir, syscall.MNT_DETACH)
			}
			srv.Wait()
			dog.Stop()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			m.FS.Shutdown(ctx)
			cancel()
			m.FS.Close()
			if err := c.Close(); err != nil {
				t.Errorf("close cache: %v", err)
			}
			if t.Failed() {
				t.Logf("evofs log:\n%s", logs.String())
			}
		})
	}
	t.Cleanup(m.unmount)
	return m
}

// watchdog fails loudly instead of hanging: after limit it dumps every
// goroutine, detaches the mount and aborts the FUSE connection, so that
// processes blocked on the mount return.
func watchdog(t *testing.T, dir string, limit time.Duration) *time.Timer {
	return time.AfterFunc(limit, func() {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		fmt.Fprintf(os.Stderr, "WATCHDOG: %s still mounted after %s; goroutines:\n%s\n", dir, limit, buf[:n])
		// Aborting the connection releases every process blocked on the
		// mount (this one included, or it could not even exit).
		const ctl = "/sys/fs/fuse/connections"
		if entries, _ := os.ReadDir(ctl); len(entries) == 0 {
			syscall.Mount("fusectl", ctl, "fusectl", 0, "")
		}
		// The connection number is the mount's device minor; read it from
		// mountinfo, since a stat of a hung mount would hang too.
		info, _ := os.ReadFile("/proc/self/mountinfo")
		for _, l := range strings.Split(string(info), "\n") {
			if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
				if _, minor, ok := strings.Cut(f[2], ":"); ok {
					os.WriteFile(ctl+"/"+minor+"/abort", []byte("1"), 0)
				}
			}
		}
		syscall.Unmount(dir, syscall.MNT_DETACH)
		panic("watchdog: mount test hung")
	})
}

// waitUntil polls cond until it holds (true) or limit passes (false).
func waitUntil(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// poll waits for cond, failing the test with what() after limit.
func poll(t *testing.T, limit time.Duration, what func() string, cond func() bool) {
	t.Helper()
	if !waitUntil(limit, cond) {
		t.Fatalf("after %s: %s", limit, what())
	}
}

// lockedWriter is a log sink safe for the FUSE server's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// run runs a command (never a binary on the mount) in dir and returns its
// stdout.
//
// The command changes to dir itself, after exec: a child that touched the
// mount between fork and exec would deadlock this process, which serves the
// mount. Go holds syscall.ForkLock until the child execs (vfork), while the
// server needs it for any new socket (a listing, a link) to answer the
// child's request.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", `cd "$0" && exec "$@"`, dir, name}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out.String()
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// upload puts content at path through the API, as another client would.
func upload(t *testing.T, c *remote.Client, b *remote.Blobs, path string, content io.ReaderAt, size int64) *remote.UploadFileResponse {
	t.Helper()
	up, err := c.UploadPath(context.Background(), b, path, content, size, remote.UploadOptions{})
	if err != nil {
		t.Fatalf("upload %s: %v", path, err)
	}
	return up
}

// seedDir is the repository's small GIS workspace.
func seedDir(t *testing.T) string {
	d, err := filepath.Abs("../testdata/workspace")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func startEmu(t *testing.T, mod ...func(*emulator.Config)) *emulator.Server {
	return emutest.Start(t, mod...)
}

// mountStatus is `evofs status` of a mount: the root's status attribute.
type mountStatus struct {
	WriteBack        string                `json:"write_back"`
	UnreachableSince string                `json:"unreachable_since"`
	PendingTotal     int                   `json:"pending_total"`
	Pending          []evofs.PendingUpload `json:"pending"`
	Conflicts        []evofs.Conflict      `json:"conflicts"`
}

func status(t *testing.T, m *mount) mountStatus {
	t.Helper()
	buf := make([]byte, 1<<20)
	n, err := unix.Getxattr(m.Dir, evofs.StatusXattr, buf)
	if err != nil {
		t.Fatalf("status of %s: %v", m.Dir, err)
	}
	var st mountStatus
	if err := json.Unmarshal(buf[:n], &st); err != nil {
		t.Fatalf("status of %s: %v: %s", m.Dir, err, buf[:n])
	}
	return st
}
