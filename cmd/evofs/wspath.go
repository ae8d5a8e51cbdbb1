package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/evofs/evofs/remote"
)

// The commands that name one file (versions, restore) take either a path
// in the workspace ("A/b.tif") or a path inside a mounted evofs folder
// ("~/evo/A/b.tif", or "b.tif" from inside ~/evo/A). A path that lies
// inside a fuse.evofs mount of this machine is taken relative to that
// mount's root; anything else is a workspace path. The mount does not say
// which workspace it shows: --workspace (or the config file) still names
// it.

// evofsFSType is the filesystem type evofs mounts show in mountinfo.
const evofsFSType = "fuse.evofs"

// evofsMounts lists the mount points of the evofs mounts in mountinfo
// (/proc/self/mountinfo's format), unescaped.
func evofsMounts(mountinfo string) []string {
	var out []string
	for _, l := range strings.Split(mountinfo, "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		for i := 5; i+1 < len(f); i++ {
			if f[i] == "-" {
				if f[i+1] == evofsFSType {
					out = append(out, unescapeMountinfo(f[4]))
				}
				break
			}
		}
	}
	return out
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space,
// \011, \012, \134).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// workspacePathIn turns arg into a workspace path ("A/b.tif"): relative to
// the root of the mount it lies in (abs is arg made absolute, symlinks
// resolved), else arg itself, cleaned, without its leading slash.
func workspacePathIn(arg, abs string, mounts []string) (p string, mount string, err error) {
	best := ""
	for _, m := range mounts {
		m = filepath.Clean(m)
		if (abs == m || strings.HasPrefix(abs, m+"/")) && len(m) > len(best) {
			best = m
		}
	}
	if best != "" {
		rel, err := filepath.Rel(best, abs)
		if err != nil || rel == "." {
			return "", best, fmt.Errorf("%s is the root of the evofs mount %s: name a file in it", arg, best)
		}
		p = filepath.ToSlash(rel)
		// The mount's own views name the file they show below them:
		// .evo/trash/A/b.tif and the folder .evo/versions/A/b.tif are A/b.tif.
		if p == ".evo" || p == ".evo/trash" || p == ".evo/versions" {
			return "", best, fmt.Errorf("%s is a folder of the evofs mount %s's views: name a file in it", arg, best)
		}
		for _, view := range []string{".evo/trash/", ".evo/versions/"} {
			if rest, ok := strings.CutPrefix(p, view); ok && rest != "" {
				p = rest
				break
			}
		}
	} else {
		p = strings.Trim(path.Clean("/"+filepath.ToSlash(arg)), "/")
	}
	if p == "" {
		return "", best, fmt.Errorf("%q names no file: give a path in the workspace (A/b.tif) or in a mounted evofs folder", arg)
	}
	if err := remote.ValidatePath(p); err != nil {
		return "", best, fmt.Errorf("%s is not a path the workspace can hold: %w", p, err)
	}
	return p, best, nil
}

// workspacePath is workspacePathIn with this machine's mounts and working
// folder.
func workspacePath(arg string) (string, error) {
	info, _ := os.ReadFile("/proc/self/mountinfo")
	mounts := evofsMounts(string(info))
	abs := arg
	if len(mounts) > 0 {
		var err error
		if abs, err = filepath.Abs(arg); err != nil {
			return "", fmt.Errorf("%s: %w", arg, err)
		}
		abs = resolveExisting(abs)
	}
	p, _, err := workspacePathIn(arg, abs, mounts)
	return p, err
}

// resolveExisting resolves the symlinks of the longest part of abs that
// exists (a deleted file's path does not, its folder may).
func resolveExisting(abs string) string {
	rest := ""
	for p := abs; ; {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return abs
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}
