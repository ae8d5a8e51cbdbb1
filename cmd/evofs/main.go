// Command evofs mounts a Seequent Evo workspace as a folder.
//
// The files of this package only wire flags to the packages below it:
// mount.go (evofs mount), login.go (login, logout and where tokens come
// from), workspaces.go, helper.go (mount(8)'s mount.fuse.evofs),
// versions.go (versions, restore; wspath.go maps their paths), config.go
// (environment and config file), metrics.go, log.go.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
)

// softMemoryLimit is the heap size past which the runtime collects
// eagerly; evofs's working set (in-flight blocks, readahead, handles'
// last blocks) is well under it.
const softMemoryLimit = 128 << 20

func main() {
	// EVOFS_CPUPROFILE=FILE writes a CPU profile of the whole run (make bench).
	if p := os.Getenv("EVOFS_CPUPROFILE"); p != "" {
		if f, err := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid())); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	// A soft memory limit: the Go runtime collects more often as the heap
	// nears it, instead of letting it double between collections while
	// blocks stream through. The environment's GOMEMLIMIT overrides it.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit)
	}
	var err error
	if strings.HasPrefix(filepath.Base(os.Args[0]), "mount.") {
		// mount(8) runs /sbin/mount.fuse.evofs SOURCE DIR -o OPTIONS.
		err = runHelper(os.Args[1:])
	} else {
		err = rootCommand().Execute()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "evofs:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	var g globalFlags
	root := &cobra.Command{
		Use:   "evofs",
		Short: "Mount a Seequent Evo workspace as a folder",
		Long: `evofs mounts a Seequent Evo workspace as a folder: sign in once with "evofs login",
find a workspace with "evofs workspaces", then "evofs mount --workspace NAME DIR".

Every flag can also be set by an environment variable, EVOFS_ and the flag's name in
capitals with _ for - (--cache-dir: EVOFS_CACHE_DIR), or by a line "cache-dir = DIR" in
the config file (--config, default ` + "`$XDG_CONFIG_HOME/evofs/config`" + `). A flag on the
command line wins over the environment, which wins over the file.`,
		Example: `  evofs login
  evofs workspaces
  evofs mount --hub https://350mt.api.seequent.com --workspace "Pit design" ~/evo`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnvAndConfig(cmd, g.config)
		},
	}
	// evofs --version, as evofs version.
	root.Version = versionString()
	root.SetVersionTemplate("{{.Version}}\n")
	g.register(root)
	root.AddCommand(mountCommand(&g), loginCommand(&g), logoutCommand(&g), workspacesCommand(&g), statusCommand(),
		versionsCommand(&g), restoreCommand(&g), versionCommand())
	return root
}

// needArgs accepts exactly the arguments named (each "NAME, what it is"),
// and says which are missing or extra, with the command's usage.
func needArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return fmt.Errorf("missing %s (usage: %s)", strings.Join(names[len(args):], "; "), cmd.UseLine())
		case len(args) > len(names):
			return fmt.Errorf("too many arguments: %q after %d (usage: %s)", args[len(names):], len(names), cmd.UseLine())
		}
		return nil
	}
}
