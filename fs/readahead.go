package fs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The kernel reads ahead of a sequential reader of a FUSE mount by at most
// its default 128 KiB, whatever the mount asks for at init (it takes the
// smaller of the two), and so sends reads of at most 128 KiB: one round
// trip through evofs per 128 KiB. Only the mount's backing device info in
// sysfs raises it afterwards, and only root may write there; gcsfuse's
// max-read-ahead-kb and rclone's documentation do the same.

// SetKernelReadahead sets how far the kernel reads ahead in the FUSE mount
// at dir (bytes, rounded down to KiB). It needs root.
func SetKernelReadahead(dir string, bytes int64) error {
	dev, err := mountDevice(dir)
	if err != nil {
		return err
	}
	p := "/sys/class/bdi/" + dev + "/read_ahead_kb"
	if err := os.WriteFile(p, []byte(strconv.FormatInt(bytes>>10, 10)), 0); err != nil {
		return fmt.Errorf("set the kernel's readahead: %w", err)
	}
	return nil
}

// KernelReadahead is the kernel's readahead in the mount at dir, in bytes.
func KernelReadahead(dir string) (int64, error) {
	dev, err := mountDevice(dir)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile("/sys/class/bdi/" + dev + "/read_ahead_kb")
	if err != nil {
		return 0, err
	}
	kb, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return kb << 10, err
}

// mountDevice is the "major:minor" of the mount at dir, from
// /proc/self/mountinfo (not a stat of dir, which would ask the mount
// itself).
func mountDevice(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	mounts, err := Mounts()
	if err != nil {
		return "", err
	}
	dev := ""
	for _, m := range mounts {
		if m.MountPoint == abs {
			dev = m.Device // the last one mounted there wins
		}
	}
	if dev == "" {
		return "", fmt.Errorf("%s is not a mount point", abs)
	}
	return dev, nil
}
