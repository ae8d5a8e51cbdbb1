// Command evofs mounts a Seequent Evo workspace as a folder.
//
// This file only wires flags to the packages below it: see mount.go.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "evofs",
		Short:         "Mount a Seequent Evo workspace as a folder",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(mountCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "evofs:", err)
		os.Exit(1)
	}
}
