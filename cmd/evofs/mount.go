package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	"github.com/evofs/evofs/cache"
	evofs "github.com/evofs/evofs/fs"
	"github.com/evofs/evofs/remote"
)

type mountFlags struct {
	hub, org, workspace  string
	cacheDir             string
	cacheSize            string
	kernelReadahead      string
	ttl                  time.Duration
	readOnly, allowOther bool
	uid, gid             int
	umask                string
	writeBack            string
	localOnly            []string
	unmountWait          time.Duration
	stallTimeout         time.Duration
	stageAhead           bool
	passthrough          bool
	auth                 authFlags
	metricsAddr          string
	logFile              string
	readyFD              int
	// from says where a flag's value came from (flagSource).
	from func(name string) string
}

// parseSize reads the size v of the flag name ("50GiB", "500MB").
func parseSize(name, v string, from func(string) string) (uint64, error) {
	n, err := humanize.ParseBytes(v)
	if err != nil {
		src := ""
		if from != nil {
			src = from(name)
		}
		return 0, fmt.Errorf("--%s %q%s is not a size: write a number and a unit such as 50GiB, 500MB or 1TiB", name, v, src)
	}
	return n, nil
}

func mountCommand(g *globalFlags) *cobra.Command {
	var f mountFlags
	cmd := &cobra.Command{
		Use:   "mount [flags] MOUNTPOINT",
		Short: "Mount a workspace at MOUNTPOINT and serve it until unmounted",
		Long: `Mount an Evo workspace at MOUNTPOINT (an existing empty folder) and serve it in the
foreground until the folder is unmounted (fusermount -u MOUNTPOINT) or evofs gets
SIGINT or SIGTERM; then it unmounts cleanly.

The workspace is a name or an id. With the hub alone, discovery finds the organisation;
with neither, discovery must know exactly one. Tokens come from --token-file, or from
--client-id and --client-secret, or else from the login "evofs login" stored.`,
		Example: `  evofs mount --hub https://350mt.api.seequent.com --workspace "Pit design" ~/evo
  evofs mount --workspace 3fa85f64-5717-4562-b3fc-2c963f66afa6 --read-only ~/evo
  EVOFS_CLIENT_SECRET=... evofs mount --client-id my-service --workspace Drilling /srv/evo`,
		Args: needArgs("MOUNTPOINT, the empty folder to mount the workspace at"),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.from = func(name string) string { return flagSource(cmd.Flags(), name) }
			err := runMount(cmd.Context(), g, f, args[0])
			if err != nil && f.readyFD > 0 {
				// The mount helper waits on this pipe: an error instead of "ok".
				ready(f.readyFD, "error: "+err.Error())
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.hub, "hub", "", "hub URL of the organisation, e.g. https://350mt.api.seequent.com (default: from discovery)")
	fl.StringVar(&f.org, "org", "", "organisation id (default: from discovery)")
	fl.StringVar(&f.workspace, "workspace", "", "workspace name or id (required)")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "folder for the block cache, kept across mounts (default $XDG_CACHE_HOME/evofs/ORG/WORKSPACE)")
	fl.StringVar(&f.cacheSize, "cache-size", "10GiB", "bound on cached file data (least recently used blocks are evicted)")
	fl.StringVar(&f.kernelReadahead, "kernel-read-ahead", "1MiB", "how far the kernel reads ahead of a sequential reader (and so how large its reads are, up to 1 MiB); needs root, else the kernel's 128 KiB stays; 0 leaves it")
	fl.DurationVar(&f.ttl, "listing-ttl", 30*time.Second, "how long a listing of the workspace answers lookups before the next access refreshes it")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount read-only")
	fl.IntVar(&f.uid, "uid", os.Getuid(), "owner of every file")
	fl.IntVar(&f.gid, "gid", os.Getgid(), "group of every file")
	fl.StringVar(&f.umask, "umask", "022", "permission bits to clear from 0666 (files) and 0777 (folders), octal")
	fl.BoolVar(&f.allowOther, "allow-other", false, "let other users than the mounting one access the mount (needs user_allow_other in /etc/fuse.conf unless root)")
	fl.StringVar(&f.writeBack, "write-back", "sync", "sync: close returns once the new version is committed (an upload failure is an error from close); async: close returns once the data is durably in the cache's journal and uploads run in the background (and resume at the next mount after a crash)")
	fl.StringSliceVar(&f.localOnly, "local-only", evofs.DefaultLocalOnly, "name patterns (shell globs on the base name) of transient files kept in the cache and never uploaded; repeat or comma-separate, --local-only= for none")
	fl.DurationVar(&f.unmountWait, "unmount-wait", 10*time.Minute, "in sync mode, how long unmounting waits for pending uploads before leaving them in the journal for the next mount")
	fl.DurationVar(&f.stallTimeout, "stall-timeout", remote.DefaultStallAfter, "how long the service may stay silent (no answer, no bytes moving) before what waits on it fails with EIO; its uploads go on in the background")
	fl.BoolVar(&f.passthrough, "passthrough", false, "let the kernel read cached files and write new ones straight from their local files (FUSE passthrough; needs root and Linux 6.9 or later; experimental, off by default: see docs/semantics.md)")
	fl.BoolVar(&f.stageAhead, "stage-ahead", true, "send the full blocks of a file written front to back while it is written, so close only sends the rest")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9567; port 0 picks one and logs it)")
	fl.StringVar(&f.logFile, "log-file", "", "append logs to this file instead of stderr")
	fl.IntVar(&f.readyFD, "ready-fd", 0, `write "ok" to this file descriptor once mounted (for the mount helper)`)
	_ = fl.MarkHidden("ready-fd")
	f.auth.register(fl, true)
	return cmd
}

// ready tells whoever waits on fd (the mount helper) how the mount went,
// and closes it.
func ready(fd int, msg string) {
	f := os.NewFile(uintptr(fd), "ready")
	if f == nil {
		return
	}
	fmt.Fprintln(f, msg)
	f.Close()
}

// checkMountpoint refuses a missing, non-folder or non-empty mountpoint and
// a machine without /dev/fuse, each with a message that says what to do.
// A folder that is an evofs mount already is refused as such; one left
// mounted by an evofs that died (the kernel answers ENOTCONN) is detached
// so that a restart mounts again, with one log line.
func checkMountpoint(dir string, log *slog.Logger) error {
	st, err := os.Stat(dir)
	if errors.Is(err, syscall.ENOTCONN) && isEvofsMount(dir) {
		if err := detach(dir); err != nil {
			return fmt.Errorf("mountpoint %s is left mounted by an evofs that stopped, and detaching it failed (%w): run fusermount -uz %s (or umount -l as root)", dir, err, dir)
		}
		log.Warn("detached the mount an evofs that stopped had left at the mountpoint", "mountpoint", dir)
		st, err = os.Stat(dir)
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mountpoint %s does not exist: create an empty folder first", dir)
	case errors.Is(err, syscall.ENOTCONN):
		return fmt.Errorf("mountpoint %s is a FUSE mount whose program stopped: run fusermount -uz %s (or umount -l as root), then mount again", dir, dir)
	case err != nil:
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	case !st.IsDir():
		return fmt.Errorf("mountpoint %s is not a folder", dir)
	case isEvofsMount(dir):
		return fmt.Errorf("mountpoint %s is already an evofs mount: unmount it first (fusermount -u %s) or mount on another empty folder", dir, dir)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	}
	names, _ := d.Readdirnames(1)
	d.Close()
	if len(names) > 0 {
		return fmt.Errorf("mountpoint %s is not empty (it holds %q): mount on an empty folder", dir, names[0])
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return errors.New("/dev/fuse is missing: load the fuse kernel module (modprobe fuse) or give the container the device")
	}
	return nil
}

// detach unmounts dir lazily: itself as root, else with fusermount.
func detach(dir string) error {
	err := syscall.Unmount(dir, syscall.MNT_DETACH)
	if err == nil || !errors.Is(err, syscall.EPERM) {
		return err
	}
	for _, prog := range []string{"fusermount3", "fusermount"} {
		if p, lerr := exec.LookPath(prog); lerr == nil {
			if out, ferr := exec.Command(p, "-uz", dir).CombinedOutput(); ferr != nil {
				return fmt.Errorf("%s -uz: %w: %s", prog, ferr, strings.TrimSpace(string(out)))
			}
			return nil
		}
	}
	return err
}

// isEvofsMount reports whether dir is the mount point of an evofs mount
// (by mountinfo: a stat of a dead mount fails).
func isEvofsMount(dir string) bool {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, m := range evofsMounts(string(info)) {
		if filepath.Clean(m) == dir {
			return true
		}
	}
	return false
}

// cacheLocked reports whether opening the cache failed because another
// process holds its Badger folder.
func cacheLocked(err error) bool {
	return errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// tokenFile reads the access token from a file each time one is needed (at
// start and after the service refused the current one), so that replacing
// the file renews the credentials of a running mount.
type tokenFile string

func (f tokenFile) Token() (*oauth2.Token, error) {
	b, err := os.ReadFile(string(f))
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("token file %s is empty", f)
	}
	return &oauth2.Token{AccessToken: tok, TokenType: "Bearer"}, nil
}

func runMount(ctx context.Context, g *globalFlags, f mountFlags, mountpoint string) error {
	logTo := io.Writer(os.Stderr)
	if f.logFile != "" {
		lf, err := os.OpenFile(f.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("--log-file: %w", err)
		}
		defer lf.Close()
		logTo = lf
	}
	log, err := g.logger(logTo)
	if err != nil {
		return err
	}
	umask, err := strconv.ParseUint(f.umask, 8, 32)
	if err != nil || umask > 0o777 {
		return fmt.Errorf("--umask %q: want an octal number such as 022", f.umask)
	}
	var wb evofs.WriteBack
	switch f.writeBack {
	case "sync":
		wb = evofs.WriteBackSync
	case "async":
		wb = evofs.WriteBackAsync
	default:
		return fmt.Errorf("--write-back %q: want sync or async", f.writeBack)
	}
	localOnly := []string{}
	for _, p := range f.localOnly {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("--local-only %q: %w", p, err)
		}
		localOnly = append(localOnly, p)
	}
	readahead, err := parseSize("kernel-read-ahead", f.kernelReadahead, f.from)
	if err != nil {
		return err
	}
	cacheBytes, err := parseSize("cache-size", f.cacheSize, f.from)
	if err != nil {
		return err
	}
	if f.workspace == "" {
		return errors.New("--workspace is required: a workspace name or id (`evofs workspaces` lists them)")
	}
	if mountpoint, err = filepath.Abs(mountpoint); err != nil {
		return err
	}
	if err := checkMountpoint(mountpoint, log); err != nil {
		return err
	}
	ctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	tokens, tokensFrom, err := f.auth.tokenSource(ctx, log)
	if err != nil {
		return err
	}
	metrics := newMetrics()
	platform, err := newPlatform(&f.auth, tokens, log, metrics)
	if err != nil {
		return err
	}
	t, err := resolveTarget(ctx, platform, f.hub, f.org, f.workspace)
	if err != nil {
		return err
	}
	f.hub, f.org, f.workspace = t.hub, t.org, t.workspace
	// The API client and the blob transfers tell one Health whether the
	// service answers: kernel requests stop waiting once it does not.
	health := remote.NewHealth(f.stallTimeout, log)
	client, err := remote.New(remote.Config{HubURL: t.hub, OrgID: t.org, WorkspaceID: t.workspace,
		Tokens: tokens, Logger: log, Observer: metrics, Health: health})
	if err != nil {
		return err
	}
	if f.cacheDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no --cache-dir and no user cache folder: %w", err)
		}
		f.cacheDir = filepath.Join(dir, "evofs", t.org, t.workspace)
	}
	if err := os.MkdirAll(f.cacheDir, 0o700); err != nil {
		return fmt.Errorf("cache dir: %w", err)
	}
	// EVOFS_TRACE=FILE writes the cache's per-block trace (docs/benchmarks.md).
	var trace io.Writer
	if p := os.Getenv("EVOFS_TRACE"); p != "" {
		tf, err := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid()))
		if err != nil {
			return fmt.Errorf("EVOFS_TRACE: %w", err)
		}
		defer tf.Close()
		trace = tf
	}
	blocks, err := cache.Open(cache.Options{Dir: filepath.Join(f.cacheDir, "blocks"), MaxBytes: int64(cacheBytes), BlockSize: 4 << 20, Logger: log, Trace: trace})
	if err != nil {
		if cacheLocked(err) {
			return fmt.Errorf("another evofs uses the cache folder %s (a mount of this workspace already runs): unmount it first, or give this mount a folder of its own with --cache-dir DIR", f.cacheDir)
		}
		return fmt.Errorf("open cache in %s: %w", f.cacheDir, err)
	}
	defer blocks.Close()
	metrics.watchCache(blocks)
	if f.metricsAddr != "" {
		stop, err := metrics.serve(f.metricsAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	// The workspace's first listing, before anything is mounted: its first
	// page proves the hub, the workspace and the token, and the mount's
	// first snapshot is made of it (no separate probe call).
	first := &firstListing{Files: client}
	listCtx, cancelList := context.WithTimeout(ctx, firstListingTimeout)
	err = first.list(listCtx)
	cancelList()
	if err != nil {
		return describeProbeError(f, tokensFrom, err)
	}
	fsys := evofs.New(first, remote.NewBlobs(remote.BlobConfig{Observer: metrics, Health: health}), blocks, evofs.Options{
		TTL: f.ttl, UID: uint32(f.uid), GID: uint32(f.gid), Umask: uint32(umask), ReadOnly: f.readOnly, Logger: log,
		WriteBack: wb, LocalOnly: localOnly, NoEager: !f.stageAhead, NoPassthrough: !f.passthrough, KernelReadahead: int64(readahead),
		Health: health, FsName: cmp.Or(t.name, t.workspace)})
	metrics.PendingUploads = func() int { return len(fsys.Pending()) }
	defer fsys.Close()
	// The workspace's first listing, which the first look into the mount
	// needs anyway, proves the hub, the workspace and the token (its first
	// page answers) before anything is mounted; the mount's first snapshot
	// is made of it.
	if _, err := fsys.Workspace().Snapshot(ctx); err != nil {
		return fmt.Errorf("first listing of the workspace: %w", err)
	}
	srv, err := evofs.Mount(mountpoint, fsys, f.allowOther)
	if err != nil {
		return err
	}
	log.Info("mounted", "mountpoint", mountpoint, "hub", t.hub, "org", t.org, "workspace", t.workspace,
		"name", t.name, "tokens", tokensFrom, "cache", f.cacheDir, "version", versionString())
	if f.readyFD > 0 {
		ready(f.readyFD, "ok")
	}
	notifySystemd("READY=1", log)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			log.Info("unmounting", "signal", sig.String())
			notifySystemd("STOPPING=1", log)
			if err := srv.Unmount(); err != nil {
				// Busy (a shell inside it, an open file): detach it now,
				// the kernel finishes when the last user leaves.
				log.Warn("unmount failed; detaching lazily", "err", err)
				if err := syscall.Unmount(mountpoint, syscall.MNT_DETACH); err != nil {
					log.Error("lazy unmount failed", "err", err)
				}
			}
		}
	}()
	srv.Wait()
	// go-fuse does not pass the kernel's DESTROY on: pending uploads are
	// finished (sync mode) or left journaled (async mode) here.
	shutCtx, cancelShut := context.WithTimeout(context.Background(), f.unmountWait)
	left := fsys.Shutdown(shutCtx)
	cancelShut()
	// Closed here (the defers are for early returns) so that the last line
	// means the cache is closed and nothing of the mount runs any more:
	// whoever waits for it may remove the cache dir.
	fsys.Close()
	if err := blocks.Close(); err != nil {
		log.Error("close the cache failed", "cache", f.cacheDir, "err", err)
	}
	log.Info("unmounted", "mountpoint", mountpoint, "uploads_left_in_journal", left)
	return nil
}

// firstListingTimeout bounds the listing made before mounting.
const firstListingTimeout = 5 * time.Minute

// firstListing is the File API client with the workspace's listing made
// once before the mount: the mount's first full listing is answered from
// it, every later one (and every other call) goes to the service.
type firstListing struct {
	evofs.Files
	mu    sync.Mutex
	files []remote.ListFile // GUARDED_BY(mu): the listing not yet handed out
	ready bool              // GUARDED_BY(mu)
}

func (l *firstListing) list(ctx context.Context) error {
	files, err := l.Files.ListAll(ctx, remote.ListOptions{})
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.files, l.ready = files, true
	l.mu.Unlock()
	return nil
}

func (l *firstListing) ListAll(ctx context.Context, o remote.ListOptions) ([]remote.ListFile, error) {
	l.mu.Lock()
	files, ready := l.files, l.ready && reflect.DeepEqual(o, remote.ListOptions{})
	if ready {
		l.files, l.ready = nil, false
	}
	l.mu.Unlock()
	if ready {
		return files, nil
	}
	return l.Files.ListAll(ctx, o)
}

// notifySystemd sends state to systemd when it runs evofs as a Type=notify
// service (NOTIFY_SOCKET is set); otherwise it does nothing.
func notifySystemd(state string, log *slog.Logger) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	if strings.HasPrefix(sock, "@") {
		sock = "\x00" + sock[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		log.Warn("cannot notify systemd", "err", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
}

func describeProbeError(f mountFlags, tokensFrom string, err error) error {
	what := remote.ErrorCode(err)
	var e *remote.Error
	if errors.As(err, &e) && what == "" {
		what = fmt.Sprintf("HTTP %d %s without an Evo error code", e.Status, http.StatusText(e.Status))
	}
	switch {
	case errors.Is(err, remote.ErrUnauthorized):
		return fmt.Errorf("the service refused %s (%s): get a new token (evofs login)", tokensFrom, what)
	case errors.Is(err, remote.ErrForbidden):
		return fmt.Errorf("no access to workspace %s (%s): ask its owner for a role in it", f.workspace, what)
	case errors.Is(err, remote.ErrNotFound) && remote.ErrorCode(err) == "":
		// No Evo answer at all: the URL is not the File API's.
		return fmt.Errorf("%s refused the listing of workspace %s in organisation %s (%s): check --hub, the hub's URL without a path, such as https://350mt.api.seequent.com (evofs workspaces lists them)",
			f.hub, f.workspace, f.org, what)
	case errors.Is(err, remote.ErrNotFound):
		return fmt.Errorf("workspace %s not found in organisation %s at %s (%s): evofs workspaces lists the workspaces", f.workspace, f.org, f.hub, what)
	}
	return fmt.Errorf("cannot reach the File API at %s: %w", f.hub, err)
}
