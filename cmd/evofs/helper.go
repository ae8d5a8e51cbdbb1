package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// mount(8) runs a helper for a filesystem of type fuse.evofs as
//
//	/sbin/mount.fuse.evofs SOURCE DIR [-sfnv] [-o OPTIONS] [-t fuse.evofs]
//
// and expects it to return once DIR is mounted, leaving the filesystem
// served in the background. That helper is this binary under that name (a
// symlink). SOURCE is the workspace name or id; OPTIONS are evofs's mount
// flags with _ or - (hub=URL,org=ID,token_file=PATH,cache_dir=DIR,
// write_back=async,...; a flag that is on or off alone turns it on, e.g.
// allow_other, or name=false), the usual generic options, which are
// ignored (ro is --read-only), and log_file=PATH (default $XDG_CACHE_HOME/evofs/mount-DIR.log) for the
// background process's logs.

// helperFlags are the flags an fstab line may set: every flag of `evofs
// mount` and the global ones, taken from the commands themselves so that a
// new mount flag is an fstab option too.
func helperFlags() *pflag.FlagSet {
	root := rootCommand()
	set := pflag.NewFlagSet("mount.fuse.evofs", pflag.ContinueOnError)
	for _, c := range root.Commands() {
		if c.Name() == "mount" {
			set.AddFlagSet(c.Flags())
		}
	}
	set.AddFlagSet(root.PersistentFlags())
	return set
}

// helperRefused are mount flags an fstab line may not set, and why.
var helperRefused = map[string]string{
	"workspace":     "the workspace is the fstab line's first field",
	"client-secret": "/etc/fstab is readable by every user: put client-secret in the config file (config=FILE) or EVOFS_CLIENT_SECRET",
	"ready-fd":      "it is internal to the mount helper",
}

// helperAliases are option names mount(8) users know for a flag.
var helperAliases = map[string]string{"ro": "read-only"}

// ignoredOptions are generic mount options that mean nothing to evofs, or
// that mount(8) has acted on already.
var ignoredOptions = map[string]bool{
	"defaults": true, "rw": true, "auto": true, "noauto": true, "user": true, "users": true, "nouser": true,
	"owner": true, "group": true, "_netdev": true, "nofail": true, "suid": true, "nosuid": true, "dev": true,
	"nodev": true, "exec": true, "noexec": true, "atime": true, "noatime": true, "relatime": true,
	"norelatime": true, "strictatime": true, "nodiratime": true, "diratime": true, "async": true, "sync": true,
	"lazytime": true, "nolazytime": true, "silent": true, "loud": true, "default_permissions": true,
}

// helperArgs turns mount(8)'s arguments into `evofs mount` arguments and
// the log file of the background process.
func helperArgs(args []string) (mountArgs []string, logFile string, err error) {
	var pos, opts []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-o" || a == "-t":
			if i+1 == len(args) {
				return nil, "", fmt.Errorf("%s needs a value", a)
			}
			if a == "-o" {
				opts = append(opts, strings.Split(args[i+1], ",")...)
			}
			i++
		case strings.HasPrefix(a, "-o"):
			opts = append(opts, strings.Split(a[2:], ",")...)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// -s (sloppy), -f (fake), -n (no mtab), -v (verbose): nothing to do.
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, "", fmt.Errorf("usage: mount.fuse.evofs WORKSPACE MOUNTPOINT [-o OPTIONS] (got %d arguments)", len(pos))
	}
	out := []string{"mount", "--workspace", pos[0]}
	flags := helperFlags()
	for _, o := range opts {
		o = strings.TrimSpace(o)
		k, v, hasValue := strings.Cut(o, "=")
		if o == "" || ignoredOptions[k] || strings.HasPrefix(k, "x-") || k == "comment" {
			continue
		}
		name := strings.ReplaceAll(k, "_", "-")
		if a, ok := helperAliases[name]; ok {
			name = a
		}
		f := flags.Lookup(name)
		switch {
		case helperRefused[name] != "":
			return nil, "", fmt.Errorf("mount option %q is not for fstab: %s", k, helperRefused[name])
		case f == nil:
			return nil, "", fmt.Errorf("unknown mount option %q: the options are evofs mount's flags (evofs mount --help) with _ or -, e.g. cache_dir=DIR,write_back=async", k)
		case !hasValue && f.Value.Type() != "bool":
			return nil, "", fmt.Errorf("mount option %q needs a value (%s=VALUE)", k, k)
		}
		if !hasValue {
			v = "true"
		}
		// Checked here, so that a bad value fails mount(8) at once.
		if err := f.Value.Set(v); err != nil {
			return nil, "", fmt.Errorf("mount option %s=%s: %w", k, v, err)
		}
		if name == "log-file" {
			logFile = v
			continue
		}
		out = append(out, "--"+name+"="+v)
	}
	dir, err := filepath.Abs(pos[1])
	if err != nil {
		return nil, "", err
	}
	if logFile == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, "", fmt.Errorf("no log_file option and no user cache folder: %w", err)
		}
		logFile = filepath.Join(cache, "evofs", "mount"+strings.ReplaceAll(dir, "/", "-")+".log")
	}
	return append(out, dir), logFile, nil
}

// runHelper mounts in the background as mount(8) expects: it starts
// `evofs mount` in a session of its own, its output in the log file, and
// waits for it to report that the folder is mounted (or why not).
func runHelper(args []string) error {
	mountArgs, logFile, err := helperArgs(args)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the evofs binary: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(logFile), 0o700); err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	logs, err := os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logs.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(self, append(mountArgs[:len(mountArgs)-1], "--ready-fd", "3", mountArgs[len(mountArgs)-1])...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, logs, logs
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("start evofs mount: %w", err)
	}
	w.Close()
	// The background process keeps running: never wait for it, only for
	// its word on the pipe (EOF without a word: it died).
	go func() { _ = cmd.Wait() }()
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case msg := <-got:
		switch {
		case msg == "ok":
			return nil
		case strings.HasPrefix(msg, "error: "):
			return errors.New(strings.TrimPrefix(msg, "error: "))
		}
		return fmt.Errorf("evofs mount stopped before mounting: see %s", logFile)
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("evofs mount did not mount in 2 minutes: see %s", logFile)
	}
}
