// Command evofs mounts a Seequent Evo workspace as a folder.
//
// This file only wires flags to the packages below it: see mount.go.
package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

func main() {
	// EVOFS_CPUPROFILE=FILE writes a CPU profile of the whole run (make bench).
	if p := os.Getenv("EVOFS_CPUPROFILE"); p != "" {
		if f, err := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid())); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	root := &cobra.Command{
		Use:           "evofs",
		Short:         "Mount a Seequent Evo workspace as a folder",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(mountCommand(), statusCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "evofs:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
