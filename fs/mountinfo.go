package fs

import (
	"os"
	"strconv"
	"strings"
)

// MountEntry is one line of /proc/self/mountinfo, the parts evofs uses.
type MountEntry struct {
	Device     string // "major:minor"
	MountPoint string // unescaped
	FSType     string // e.g. "fuse.evofs"
	Source     string // unescaped
}

// ParseMountinfo reads the text of /proc/self/mountinfo:
// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS.
func ParseMountinfo(text string) []MountEntry {
	var out []MountEntry
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		e := MountEntry{Device: f[2], MountPoint: unescapeMountinfo(f[4])}
		for i := 5; i+1 < len(f); i++ {
			if f[i] == "-" {
				e.FSType = f[i+1]
				if i+2 < len(f) {
					e.Source = unescapeMountinfo(f[i+2])
				}
				break
			}
		}
		out = append(out, e)
	}
	return out
}

// Mounts lists this process's mounts (a read of /proc/self/mountinfo,
// never a stat of a mount point, which a dead mount would fail or hang).
func Mounts() ([]MountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return ParseMountinfo(string(b)), nil
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
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
