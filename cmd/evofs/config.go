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

// sourceAnnotation records on a flag where a value not given on the
// command line came from ("environment variable EVOFS_X", "config file
// F:3"), for the messages about that value.
const sourceAnnotation = "evofs_source"

// flagSource says where the value of the flag name came from, as a
// parenthesised phrase to put after it ("" for the command line or the
// default).
func flagSource(fl *pflag.FlagSet, name string) string {
	if f := fl.Lookup(name); f != nil && len(f.Annotations[sourceAnnotation]) > 0 {
		return " (from " + f.Annotations[sourceAnnotation][0] + ")"
	}
	return ""
}

// readsConfig reports whether cmd takes its flags from the environment and
// the config file: commands that only print (version, help, completion)
// do not, so that a mistake in the file never hides them.
func readsConfig(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		switch c.Name() {
		case "version", "help", "completion", cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
			return false
		}
	}
	return true
}

func applyEnvAndConfig(cmd *cobra.Command, configFlag string) error {
	if !readsConfig(cmd) {
		return nil
	}
	fl := cmd.Flags()
	path, explicit := configFlag, configFlag != ""
	if !explicit {
		if v := os.Getenv(envName("config")); v != "" {
			path, explicit = v, true
		} else {
			path = defaultConfigPath()
		}
	}
	file := map[string]configLine{}
	if path != "" {
		var err error
		file, err = readConfig(path)
		if errors.Is(err, os.ErrNotExist) && !explicit {
			file, err = map[string]configLine{}, nil
		}
		if err != nil {
			return err
		}
		known := allFlagNames(cmd.Root())
		for k, l := range file {
			if !known[k] {
				hint := "evofs help COMMAND lists the flags"
				if s := closestName(k, known); s != "" {
					hint = "did you mean " + s + "?"
				}
				return fmt.Errorf("config file %s:%d: %q is not a flag of evofs (%s)", path, l.n, k, hint)
			}
		}
	}
	var errs []error
	fl.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" || f.Name == "config" || f.Annotations[noDefaultAnnotation] != nil {
			return
		}
		from := "environment variable " + envName(f.Name)
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			var l configLine
			l, ok = file[f.Name]
			v, from = l.value, fmt.Sprintf("config file %s:%d", path, l.n)
		}
		if ok {
			if err := fl.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("--%s %q from %s: %w", f.Name, v, from, err))
				return
			}
			_ = fl.SetAnnotation(f.Name, sourceAnnotation, []string{from})
		}
	})
	return errors.Join(errs...)
}

// configLine is the value of a key of the config file and its line.
type configLine struct {
	value string
	n     int
}

func readConfig(path string) (map[string]configLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	out := map[string]configLine{}
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
		out[strings.TrimPrefix(k, "--")] = configLine{strings.Trim(strings.TrimSpace(v), `"`), n}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return out, nil
}

// closestName is the name of names nearest to s by edit distance, if it
// is near enough to be a typo of it ("" if none is).
func closestName(s string, names map[string]bool) string {
	best, bestD := "", 3
	for n := range names {
		if d := editDistance(s, n); d < bestD || (d == bestD && best != "" && n < best) {
			best, bestD = n, d
		}
	}
	if bestD > 2 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
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
