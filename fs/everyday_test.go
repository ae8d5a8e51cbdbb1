package fs_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestEverydayCommandsPreservingMetadata: the commands that copy
// permissions, times and extended attributes (cp -p, cp -a, install,
// sed -i, touch -d) finish with exit 0 and say nothing, in and out of the
// mount; the bytes arrive. Setting an attribute evofs does not store
// answers ENOTSUP, the "not supported here" those commands expect.
func TestEverydayCommandsPreservingMetadata(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	body := []byte("x,y\n1,2\n")
	for _, name := range []string{"a.csv", "sub/b.csv"} {
		if err := os.WriteFile(filepath.Join(src, name), body, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// A user attribute and an ACL on the source, so cp -a tries to copy
	// them (setfattr and setfacl may be missing: set them directly).
	unix.Setxattr(filepath.Join(src, "a.csv"), "user.origin", []byte("field laptop"), 0)

	cmds := [][]string{
		{"cp", "-p", filepath.Join(src, "a.csv"), "p.csv"},
		{"cp", "-a", filepath.Join(src, "a.csv"), "a.csv"},
		{"cp", "-a", src, "tree"},
		{"install", "-m", "0644", filepath.Join(src, "a.csv"), "installed.csv"},
		{"sed", "-i", "s/1,2/3,4/", "a.csv"},
		{"touch", "-d", "2020-01-01", "p.csv"},
		{"chmod", "600", "p.csv"},
		{"cp", "-a", "p.csv", filepath.Join(t.TempDir(), "out.csv")},
	}
	for _, c := range cmds {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.Dir = m.Dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("%s: %v, stderr %q", strings.Join(c, " "), err, stderr.String())
		}
	}
	for name, want := range map[string]string{
		"p.csv": string(body), "installed.csv": string(body), "tree/sub/b.csv": string(body),
		"a.csv": strings.Replace(string(body), "1,2", "3,4", 1),
	} {
		if b, err := os.ReadFile(filepath.Join(m.Dir, name)); err != nil || string(b) != want {
			t.Errorf("%s through the mount: %q, %v; want %q", name, b, err, want)
		}
	}
	for _, attr := range []string{"user.origin", "user.evo.file_id"} {
		if err := unix.Setxattr(filepath.Join(m.Dir, "p.csv"), attr, []byte("v"), 0); !errors.Is(err, unix.ENOTSUP) {
			t.Errorf("setxattr %s: %v, want ENOTSUP", attr, err)
		}
	}
	if err := unix.Removexattr(filepath.Join(m.Dir, "tree"), "user.origin"); !errors.Is(err, unix.ENOTSUP) {
		t.Errorf("removexattr on a folder: %v, want ENOTSUP", err)
	}
}

// TestStatusWithHundredsPending: with 500 uploads waiting, `evofs status`
// (the root's status attribute) still answers, within the kernel's 64 KiB
// for an attribute, with the count of them all and as many as fit.
func TestStatusWithHundredsPending(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{async: true, debounce: 10 * time.Minute})
	dir := filepath.Join(m.Dir, "survey-2026", "drillholes-with-a-long-folder-name-as-field-crews-make-them")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		name := fmt.Sprintf("collar-%04d-assays-and-lithology-logged-by-the-night-shift.csv", i)
		if err := os.WriteFile(filepath.Join(dir, name), []byte("hole,depth\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st := status(t, m)
	if st.PendingTotal != n {
		t.Errorf("pending_total %d, want %d", st.PendingTotal, n)
	}
	if len(st.Pending) == 0 || len(st.Pending) >= n {
		t.Errorf("%d pending listed of %d: want the first that fit", len(st.Pending), n)
	}
	buf := make([]byte, 1<<20)
	sz, err := unix.Getxattr(m.Dir, "user.evofs.status", buf)
	if err != nil || sz > 64<<10 {
		t.Errorf("status attribute: %d bytes, %v", sz, err)
	}
}
