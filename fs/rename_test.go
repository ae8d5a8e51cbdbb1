package fs_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

// Folder renames that fail: refused before anything moves, or undone, and
// in every case both folders show what the service holds.

// apiTree is every file path the service lists, with its file id.
func apiTree(t *testing.T, m *mount) map[string]string {
	t.Helper()
	files, err := m.Client.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		out[f.FullPath()] = f.FileID
	}
	return out
}

// mountTree is what find shows through the mount: files, and folders with
// a trailing slash.
func mountTree(t *testing.T, m *mount) []string {
	t.Helper()
	var out []string
	for _, kind := range []string{"f", "d"} {
		for _, l := range strings.Split(strings.TrimSpace(run(t, m.Dir, "find", ".", "-mindepth", "1", "-type", kind)), "\n") {
			if l == "" {
				continue
			}
			p := strings.TrimPrefix(l, "./")
			if kind == "d" {
				p += "/"
			}
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// treeOf is the tree the service's files make: each file and its folders.
func treeOf(files map[string]string) []string {
	set := map[string]bool{}
	for p := range files {
		set[p] = true
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			set[d+"/"] = true
		}
	}
	var out []string
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// wantMountShowsService fails unless the mount shows exactly the service's
// files (the kernel may take a moment to forget cached names).
func wantMountShowsService(t *testing.T, m *mount) map[string]string {
	t.Helper()
	var got, want []string
	var files map[string]string
	if !waitUntil(10*time.Second, func() bool {
		files = apiTree(t, m)
		got, want = mountTree(t, m), treeOf(files)
		return slices.Equal(got, want)
	}) {
		t.Fatalf("the mount shows\n  %s\nthe service has\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	return files
}

// changes counts the API calls that change something, and blob copies.
func changes(emu *emulator.Server) int64 {
	st := emu.Stats()
	n := int64(0)
	for _, op := range []string{emulator.OpUpsertFileByPath, emulator.OpUpdateFile, emulator.OpDeleteFile,
		emulator.OpDeleteFileByPath, emulator.OpRestoreFile, emulator.OpGetFile} {
		n += st.APICalls(op)
	}
	if b := st.Blob[emulator.BlobOpCopy]; b != nil {
		n += b.Count
	}
	return n
}

// TestRenameFolderRefusedBeforeAnythingMoves: a folder rename that would
// put a file past the service's 1024-byte path limit is ENAMETOOLONG with
// no call that changes anything, and both folders stay as they were.
func TestRenameFolderRefusedBeforeAnythingMoves(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	deep := strings.Repeat("d", 250) + "/" + strings.Repeat("e", 250) + "/" + strings.Repeat("f", 250)
	for _, p := range []string{"src/a.txt", "src/b.txt", "src/" + deep + "/deep.txt"} {
		upload(t, m.Client, m.Blobs, p, strings.NewReader(p), int64(len(p)))
	}
	parent := strings.Repeat("p", 200)
	if err := os.Mkdir(filepath.Join(m.Dir, parent), 0o755); err != nil {
		t.Fatal(err)
	}
	before := mountTree(t, m)
	filesBefore := apiTree(t, m)
	emu.ResetStats()

	to := filepath.Join(m.Dir, parent, strings.Repeat("t", 255)) // its own path is fine; deep.txt's would be 1,217 bytes
	err := os.Rename(filepath.Join(m.Dir, "src"), to)
	if !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Fatalf("rename: %v, want ENAMETOOLONG", err)
	}
	if n := changes(emu); n != 0 {
		t.Errorf("%d calls that change or copy something, want none", n)
	}
	if after := mountTree(t, m); !slices.Equal(after, before) {
		t.Errorf("the mount shows\n  %s\nbefore it showed\n  %s", strings.Join(after, "\n  "), strings.Join(before, "\n  "))
	}
	if filesAfter := apiTree(t, m); !maps.Equal(filesAfter, filesBefore) {
		t.Errorf("the service has %v, before it had %v", filesAfter, filesBefore)
	}
	if !strings.Contains(m.Logs.String(), "deep.txt") {
		t.Errorf("the refusal's log line does not name the file:\n%s", m.Logs.String())
	}
}

// TestRenameFolderRefusedPartWayIsUndone: the service refuses the third
// file's new path (400 files/invalid-path, for a reason evofs cannot
// check): the rename is EINVAL, the two files already moved are restored
// in place (same file ids), their copies deleted, and no folder is left at
// the target.
func TestRenameFolderRefusedPartWayIsUndone(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	paths := []string{"src/a.txt", "src/b.txt", "src/c.txt", "src/sub/d.txt"}
	for _, p := range paths {
		upload(t, m.Client, m.Blobs, p, strings.NewReader(p), int64(len(p)))
	}
	before := mountTree(t, m)
	filesBefore := apiTree(t, m)
	emu.FailCalls(emulator.OpUpsertFileByPath, 2, 1, http.StatusBadRequest, remote.CodeInvalidPath)

	err := os.Rename(filepath.Join(m.Dir, "src"), filepath.Join(m.Dir, "dst"))
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("rename: %v, want EINVAL", err)
	}
	files := wantMountShowsService(t, m)
	if !maps.Equal(files, filesBefore) {
		t.Errorf("the service has %v, before it had %v (the same files, restored in place)", files, filesBefore)
	}
	if after := mountTree(t, m); !slices.Equal(after, before) {
		t.Errorf("the mount shows\n  %s\nbefore it showed\n  %s", strings.Join(after, "\n  "), strings.Join(before, "\n  "))
	}
	if _, err := os.Stat(filepath.Join(m.Dir, "dst")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat dst: %v, want ENOENT (no folder left behind)", err)
	}
	for _, p := range paths {
		if b, err := os.ReadFile(filepath.Join(m.Dir, p)); err != nil || string(b) != p {
			t.Errorf("read %s: %q, %v", p, b, err)
		}
	}
	// The same rename goes through once the service takes it.
	if err := os.Rename(filepath.Join(m.Dir, "src"), filepath.Join(m.Dir, "dst")); err != nil {
		t.Fatal(err)
	}
	wantMountShowsService(t, m)
}

// TestRenameFolderServiceFailsPartWay: the service fails every delete
// after the first (502, past the retries) while a folder is renamed, so
// the rename can be neither finished nor undone: it answers EIO, and both
// folders show exactly what the service holds (no file lost, none hidden,
// no empty folder), at once, not after the listing's TTL.
func TestRenameFolderServiceFailsPartWay(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{retry: remote.RetryPolicy{MaxAttempts: 2, Base: time.Millisecond, Max: 5 * time.Millisecond}})
	paths := []string{"src/a.txt", "src/b.txt", "src/c.txt", "src/sub/d.txt"}
	for _, p := range paths {
		upload(t, m.Client, m.Blobs, p, strings.NewReader(p), int64(len(p)))
	}
	// A write first: the mount's probe of the role (a delete) is done.
	if err := os.WriteFile(filepath.Join(m.Dir, "warm.txt"), []byte("w"), 0o644); err != nil {
		t.Fatal(err)
	}
	mountTree(t, m) // the kernel knows both names
	emu.FailCalls(emulator.OpDeleteFile, 1, 1000, http.StatusBadGateway, remote.CodeMetadataStoreError)

	err := os.Rename(filepath.Join(m.Dir, "src"), filepath.Join(m.Dir, "dst"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("rename: %v, want EIO", err)
	}
	emu.FailCalls(emulator.OpDeleteFile, 0, 0, 0, "")
	files := wantMountShowsService(t, m)
	t.Logf("after the failed rename the service has %d files: %v", len(files), slices.Sorted(maps.Keys(files)))
	for _, p := range paths {
		if _, ok := files[p]; !ok {
			t.Errorf("%s is gone from the service (the original of every file must stay, or come back)", p)
		}
		if b, err := os.ReadFile(filepath.Join(m.Dir, p)); err != nil || string(b) != p {
			t.Errorf("read %s: %q, %v", p, b, err)
		}
	}
}
