package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// helperValue is a valid value of a flag for an fstab option.
func helperValue(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "bool":
		return "true"
	case "stringSlice":
		return "*.tmp"
	}
	if f.Name == "log-file" {
		return "/var/log/evofs.log"
	}
	return f.DefValue
}

// Every flag of `evofs mount` (and the global ones) is an fstab option, in
// its - and its _ spelling, reaching `evofs mount` as that flag; the
// refused ones are refused by name with the reason.
func TestHelperAcceptsEveryMountFlag(t *testing.T) {
	var mount *pflag.FlagSet
	root := rootCommand()
	for _, c := range root.Commands() {
		if c.Name() == "mount" {
			mount = c.Flags()
		}
	}
	all := pflag.NewFlagSet("all", pflag.ContinueOnError)
	all.AddFlagSet(mount)
	all.AddFlagSet(root.PersistentFlags())
	n := 0
	all.VisitAll(func(f *pflag.Flag) {
		if why := helperRefused[f.Name]; why != "" {
			_, _, err := helperArgs([]string{"ws", "/mnt", "-o", f.Name + "=x"})
			if err == nil || !strings.Contains(err.Error(), why) {
				t.Errorf("-o %s=x: %v, want refused saying %q", f.Name, err, why)
			}
			return
		}
		n++
		v := helperValue(f)
		for _, name := range []string{f.Name, strings.ReplaceAll(f.Name, "-", "_")} {
			args, logFile, err := helperArgs([]string{"ws", "/mnt", "-o", "rw,nofail," + name + "=" + v})
			if err != nil {
				t.Errorf("-o %s=%s: %v", name, v, err)
				continue
			}
			if f.Name == "log-file" {
				if logFile != v {
					t.Errorf("-o %s=%s: log file %q", name, v, logFile)
				}
				continue
			}
			if !slices.Contains(args, "--"+f.Name+"="+v) {
				t.Errorf("-o %s=%s: evofs %q lacks --%s=%s", name, v, args, f.Name, v)
			}
			if f.Value.Type() == "bool" {
				args, _, err := helperArgs([]string{"ws", "/mnt", "-o" + name})
				if err != nil || !slices.Contains(args, "--"+f.Name+"=true") {
					t.Errorf("-o %s alone: %q, %v", name, args, err)
				}
			}
		}
	})
	for _, want := range []string{"write-back", "kernel-read-ahead", "local-only", "stage-ahead", "unmount-wait", "passthrough"} {
		if all.Lookup(want) == nil {
			t.Errorf("evofs mount has no --%s any more: update this test", want)
		}
	}
	if n < 20 {
		t.Fatalf("only %d flags checked", n)
	}
}

func TestHelperOptions(t *testing.T) {
	args, _, err := helperArgs([]string{"Pit design", "/mnt/evo", "-o", "ro,write_back=async,local_only=*.tmp,local_only=~$*,passthrough=false,_netdev", "-t", "fuse.evofs"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"mount", "--workspace", "Pit design", "--read-only=true", "--write-back=async", "--local-only=*.tmp", "--local-only=~$*", "--passthrough=false", "/mnt/evo"}
	if !slices.Equal(args, want) {
		t.Fatalf("got %q\nwant %q", args, want)
	}
	for opt, msg := range map[string]string{
		"write_bak=async":  `unknown mount option "write_bak"`,
		"cache_dir":        `mount option "cache_dir" needs a value`,
		"unmount_wait=10":  "mount option unmount_wait=10",
		"stage_ahead=soon": "mount option stage_ahead=soon",
	} {
		if _, _, err := helperArgs([]string{"ws", "/mnt", "-o", opt}); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("-o %s: %v, want %q", opt, err, msg)
		}
	}
}
