package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Flags not given on the command line are taken from the environment
// (EVOFS_CACHE_DIR for --cache-dir) and then from the config file, lines of
// "name = value" (or "name value") named like the flags, # for comments:
//
//	hub = https://350mt.api.seequent.com
//	cache-size = 50GiB
//
// The file is shared by every command: a key that is a flag of another
// command is ignored, a key that is no flag at all is an error.

// noDefaultAnnotation marks a flag that only the command line sets: one
// that names what a single run acts on (restore's --version), which an
// EVOFS_ variable or a config line left over from something else must not
// fill in.
const noDefaultAnnotation = "evofs_command_line_only"

// envName is the environment variable of a flag.
func envName(flag string) string {
	return "EVOFS_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// defaultConfigPath is $XDG_CONFIG_HOME/evofs/config ("" if unknown).
func defaultConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "evofs", "config")
}

func applyEnvAndConfig(cmd *cobra.Command, configFlag string) error {
	fl := cmd.Flags()
	path, explicit := configFlag, configFlag != ""
	if !explicit {
		if v := os.Getenv(envName("config")); v != "" {
			path, explicit = v, true
		} else {
			path = defaultConfigPath()
		}
	}
	file := map[string]string{}
	if path != "" {
		var err error
		file, err = readConfig(path)
		if errors.Is(err, os.ErrNotExist) && !explicit {
			file, err = map[string]string{}, nil
		}
		if err != nil {
			return err
		}
		known := allFlagNames(cmd.Root())
		for k := range file {
			if !known[k] {
				return fmt.Errorf("config file %s: %q is not a flag of evofs", path, k)
			}
		}
	}
	var errs []error
	fl.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" || f.Name == "config" || f.Annotations[noDefaultAnnotation] != nil {
			return
		}
		from, v, ok := "environment variable "+envName(f.Name), "", false
		if v, ok = os.LookupEnv(envName(f.Name)); !ok {
			from = "config file " + path
			v, ok = file[f.Name]
		}
		if ok {
			if err := fl.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("--%s from %s: %w", f.Name, from, err))
			}
		}
	})
	return errors.Join(errs...)
}

func readConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			k, v, ok = strings.Cut(line, " ")
		}
		k = strings.ReplaceAll(strings.TrimSpace(k), "_", "-")
		if !ok || k == "" {
			return nil, fmt.Errorf("config file %s:%d: want name = value", path, n)
		}
		out[strings.TrimPrefix(k, "--")] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return out, nil
}

func allFlagNames(c *cobra.Command) map[string]bool {
	names := map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		add := func(f *pflag.Flag) { names[f.Name] = true }
		c.Flags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(c)
	return names
}
