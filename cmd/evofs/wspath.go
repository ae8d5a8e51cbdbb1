package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	evofs "github.com/evofs/evofs/fs"
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
	for _, m := range evofs.ParseMountinfo(mountinfo) {
		if m.FSType == evofsFSType {
			out = append(out, m.MountPoint)
		}
	}
	return out
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
