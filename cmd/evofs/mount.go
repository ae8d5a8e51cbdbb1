package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
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
	tokenFile, cacheDir  string
	cacheSize            string
	ttl                  time.Duration
	readOnly, allowOther bool
	uid, gid             int
	umask                string
	logLevel             string
}

func mountCommand() *cobra.Command {
	var f mountFlags
	cmd := &cobra.Command{
		Use:   "mount [flags] MOUNTPOINT",
		Short: "Mount a workspace at MOUNTPOINT and serve it until unmounted",
		Long: `Mount an Evo workspace at MOUNTPOINT (an existing empty folder) and serve it in the
foreground until the folder is unmounted (fusermount -u MOUNTPOINT) or evofs gets
SIGINT or SIGTERM; then it unmounts cleanly.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd.Context(), f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.hub, "hub", "", "hub URL of the organisation, e.g. https://350mt.api.seequent.com (required)")
	fl.StringVar(&f.org, "org", "", "organisation id (required)")
	fl.StringVar(&f.workspace, "workspace", "", "workspace id (required)")
	fl.StringVar(&f.tokenFile, "token-file", "", "file holding an access token; re-read whenever the service refuses the token (required)")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "folder for the block cache, kept across mounts (required)")
	fl.StringVar(&f.cacheSize, "cache-size", "10GiB", "bound on cached file data (least recently used blocks are evicted)")
	fl.DurationVar(&f.ttl, "listing-ttl", 30*time.Second, "how long a listing of the workspace answers lookups before the next access refreshes it")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount read-only")
	fl.IntVar(&f.uid, "uid", os.Getuid(), "owner of every file")
	fl.IntVar(&f.gid, "gid", os.Getgid(), "group of every file")
	fl.StringVar(&f.umask, "umask", "022", "permission bits to clear from 0666 (files) and 0777 (folders), octal")
	fl.BoolVar(&f.allowOther, "allow-other", false, "let other users than the mounting one access the mount (needs user_allow_other in /etc/fuse.conf unless root)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	for _, name := range []string{"hub", "org", "workspace", "token-file", "cache-dir"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// checkMountpoint refuses a missing, non-folder or non-empty mountpoint and
// a machine without /dev/fuse, each with a message that says what to do.
func checkMountpoint(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mountpoint %s does not exist: create an empty folder first", dir)
	case err != nil:
		return fmt.Errorf("mountpoint %s: %w", dir, err)
	case !st.IsDir():
		return fmt.Errorf("mountpoint %s is not a folder", dir)
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

func runMount(ctx context.Context, f mountFlags, mountpoint string) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}
	umask, err := strconv.ParseUint(f.umask, 8, 32)
	if err != nil || umask > 0o777 {
		return fmt.Errorf("--umask %q: want an octal number such as 022", f.umask)
	}
	cacheBytes, err := humanize.ParseBytes(f.cacheSize)
	if err != nil {
		return fmt.Errorf("--cache-size %q: %w", f.cacheSize, err)
	}
	if mountpoint, err = filepath.Abs(mountpoint); err != nil {
		return err
	}
	if err := checkMountpoint(mountpoint); err != nil {
		return err
	}
	if _, err := tokenFile(f.tokenFile).Token(); err != nil {
		return err
	}
	client, err := remote.New(remote.Config{HubURL: f.hub, OrgID: f.org, WorkspaceID: f.workspace,
		Tokens: tokenFile(f.tokenFile), Logger: log})
	if err != nil {
		return err
	}
	// One cheap call proves the hub, the workspace and the token before
	// anything is mounted.
	probeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = client.ListFiles(probeCtx, remote.ListOptions{Limit: 1})
	cancel()
	if err != nil {
		return describeProbeError(f, err)
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
		return fmt.Errorf("open cache in %s: %w", f.cacheDir, err)
	}
	defer blocks.Close()
	fsys := evofs.New(client, remote.NewBlobs(remote.BlobConfig{}), blocks, evofs.Options{
		TTL: f.ttl, UID: uint32(f.uid), GID: uint32(f.gid), Umask: uint32(umask), ReadOnly: f.readOnly, Logger: log})
	defer fsys.Close()
	srv, err := evofs.Mount(mountpoint, fsys, f.allowOther)
	if err != nil {
		return err
	}
	log.Info("mounted", "mountpoint", mountpoint, "workspace", f.workspace)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			log.Info("unmounting", "signal", sig.String())
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
	log.Info("unmounted", "mountpoint", mountpoint)
	return nil
}

func describeProbeError(f mountFlags, err error) error {
	code := remote.ErrorCode(err)
	switch {
	case errors.Is(err, remote.ErrUnauthorized):
		return fmt.Errorf("the service refused the token in %s (%s): get a new token", f.tokenFile, code)
	case errors.Is(err, remote.ErrForbidden):
		return fmt.Errorf("no access to workspace %s (%s)", f.workspace, code)
	case errors.Is(err, remote.ErrNotFound):
		return fmt.Errorf("workspace %s not found in organisation %s at %s (%s)", f.workspace, f.org, f.hub, code)
	}
	return fmt.Errorf("cannot reach the File API at %s: %w", f.hub, err)
}
