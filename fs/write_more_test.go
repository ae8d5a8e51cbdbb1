package fs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

// smallDisk mounts a tmpfs of size (e.g. "64m") on a fresh folder and
// unmounts it when the test ends (after the mount using it: cleanups run
// last-registered first).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs on %s: %v\n%s", dir, err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// TestWriteFullCacheDiskENOSPC: a file larger than the cache disk fails
// with ENOSPC from write() (Badger's memory-mapped files would SIGBUS the
// whole process on a full tmpfs), close reports it too, no version of the
// file is made (not even of the part that fitted), and the mount stays
// usable.
func TestWriteFullCacheDiskENOSPC(t *testing.T) {
	emu := startEmu(t)
	cacheDir := smallDisk(t, "64m")
	m := mountEmu(t, emu, mountConfig{cacheDir: cacheDir})
	p := filepath.Join(m.Dir, "big.bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	chunk := randomBytes(9, 1<<20)
	var werr error
	written := 0
	for i := 0; i < 128 && werr == nil; i++ {
		var n int
		n, werr = f.Write(chunk)
		written += n
	}
	cerr := f.Close()
	t.Logf("%d MiB written, then write: %v; close: %v", written>>20, werr, cerr)
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("write of 128 MiB onto a 64 MiB cache disk: %v, want ENOSPC", werr)
	}
	if written == 0 {
		t.Errorf("not even a first MiB fitted on the cache disk")
	}
	if !errors.Is(cerr, syscall.ENOSPC) {
		t.Errorf("close after the failed write: %v, want ENOSPC (the content is not saved)", cerr)
	}
	remoteMissing(t, m, "big.bin")
	// Blocks written in order before the failure may have been sent ahead
	// (uncommitted, invisible); nothing may be committed.
	st := emu.Stats()
	for _, op := range []string{emulator.BlobOpPutBlockList, emulator.BlobOpPutBlob, emulator.BlobOpCopy} {
		if b := st.Blob[op]; b != nil && b.Count > 0 {
			t.Errorf("%d %s requests for a file whose write failed", b.Count, op)
		}
	}

	// The mount stays usable: the partial file can be deleted, and a
	// small file saves.
	if err := os.Remove(p); err != nil {
		t.Fatalf("remove the partial file: %v", err)
	}
	small := randomBytes(10, 100<<10)
	if err := os.WriteFile(filepath.Join(m.Dir, "small.bin"), small, 0o644); err != nil {
		t.Fatalf("a small file after the full disk: %v", err)
	}
	if _, b := remoteFile(t, m, "small.bin"); sum(b) != sum(small) {
		t.Fatalf("small.bin: %d bytes remotely, want %d", len(b), len(small))
	}
	remoteMissing(t, m, "big.bin")
	if got := run(t, m.Dir, "ls"); got != "small.bin\n" {
		t.Fatalf("ls: %q", got)
	}
	if len(m.FS.Pending()) != 0 {
		t.Errorf("pending after all: %+v", m.FS.Pending())
	}
}

// TestWriteConflictCopy: a file written here while another client saves a
// new version of it: ours buries nobody's save. It goes to a conflict copy
// beside the file (a new file, named as sync clients name them), theirs
// stays the file's latest version, and one warning names both versions.
func TestWriteConflictCopy(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{ttl: 300 * time.Millisecond})
	other := newClient(t, emu)
	upload(t, other, m.Blobs, "shared/plan.txt", strings.NewReader("base version"), 12)
	v0, _ := remoteFile(t, m, "shared/plan.txt")

	f, err := os.OpenFile(filepath.Join(m.Dir, "shared/plan.txt"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("OURS"), 0); err != nil {
		t.Fatal(err)
	}
	theirs := upload(t, other, m.Blobs, "shared/plan.txt", strings.NewReader("their version"), 13)
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	v2, b := remoteFile(t, m, "shared/plan.txt")
	if string(b) != "their version" || v2.VersionID != theirs.VersionID || v2.FileID != v0.FileID {
		t.Fatalf("the file: %q, version %s (theirs %s), file %s -> %s", b, v2.VersionID, theirs.VersionID, v0.FileID, v2.FileID)
	}
	files, err := m.Client.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var copies []string
	for _, lf := range files {
		if strings.HasPrefix(lf.Name, "plan (conflicted copy ") && strings.HasSuffix(lf.Name, ").txt") {
			copies = append(copies, lf.FullPath())
		}
	}
	if len(copies) != 1 {
		t.Fatalf("conflict copies: %q", copies)
	}
	if _, b := remoteFile(t, m, copies[0]); string(b) != "OURS version" {
		t.Fatalf("the conflict copy holds %q", b)
	}
	// The mount shows both, and `evofs status` lists the copy.
	if got, err := os.ReadFile(filepath.Join(m.Dir, copies[0])); err != nil || string(got) != "OURS version" {
		t.Fatalf("the copy through the mount: %q, %v", got, err)
	}
	poll(t, 10*time.Second, func() string { return "the mount to show their version" }, func() bool {
		got, err := os.ReadFile(filepath.Join(m.Dir, "shared/plan.txt"))
		return err == nil && string(got) == "their version"
	})
	if st := status(t, m); len(st.Conflicts) != 1 || "/"+copies[0] != st.Conflicts[0].Copy || st.Conflicts[0].RemoteVersion != theirs.VersionID {
		t.Fatalf("status conflicts: %+v", st.Conflicts)
	}
	var warns []string
	for _, l := range strings.Split(m.Logs.String(), "\n") {
		if strings.Contains(l, "msg=\"conflict") {
			warns = append(warns, l)
		}
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "level=WARN") ||
		!strings.Contains(warns[0], v0.VersionID) || !strings.Contains(warns[0], theirs.VersionID) {
		t.Fatalf("want one warning naming %s and %s; conflict lines:\n%s", v0.VersionID, theirs.VersionID, strings.Join(warns, "\n"))
	}
}

// TestWriteViewerReadsWALGeoPackage: in a workspace the user may only
// read, sqlite3 opens the seeded WAL GeoPackage (its -wal and -shm side
// files are local-only, so a viewer may create them), nothing is uploaded,
// and a real file still answers EACCES.
func TestWriteViewerReadsWALGeoPackage(t *testing.T) {
	emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
	m := mountEmu(t, emu, mountConfig{token: emu.Info().ViewerToken})
	v0, _ := remoteFile(t, m, "vectors/geology.gpkg")
	before, err := m.Client.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	emu.ResetStats()
	out := run(t, filepath.Join(m.Dir, "vectors"), "sqlite3", "geology.gpkg",
		"PRAGMA journal_mode;", "SELECT count(*) FROM gpkg_contents;")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "wal" || lines[1] == "0" {
		t.Fatalf("sqlite3 output:\n%s", out)
	}
	if _, err := os.Create(filepath.Join(m.Dir, "vectors/x.txt")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("viewer's create of vectors/x.txt: %v, want EACCES", err)
	}
	st := emu.Stats()
	for _, op := range []string{emulator.OpUpsertFileByPath, emulator.OpUpdateFile} {
		if n := st.APICalls(op); n != 0 {
			t.Errorf("%d %s calls from a viewer's read", n, op)
		}
	}
	if b := st.Blob[emulator.BlobOpPutBlob]; b != nil && b.Count > 0 {
		t.Errorf("%d blobs put", b.Count)
	}
	if v1, _ := remoteFile(t, m, "vectors/geology.gpkg"); v1.VersionID != v0.VersionID {
		t.Errorf("version %s -> %s", v0.VersionID, v1.VersionID)
	}
	after, err := m.Client.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("%d files remotely before, %d after", len(before), len(after))
	}
	remoteMissing(t, m, "vectors/x.txt")
	remoteMissing(t, m, "vectors/geology.gpkg-wal")
	remoteMissing(t, m, "vectors/geology.gpkg-shm")
}

// TestWriteLocalFoldersSurviveRemount: folders made on a mount are there
// after a remount with the same cache; a file copied into one lands
// remotely (and with it the folder); an empty one can still be removed.
func TestWriteLocalFoldersSurviveRemount(t *testing.T) {
	emu := startEmu(t)
	cacheDir := t.TempDir()
	m1 := mountEmu(t, emu, mountConfig{cacheDir: cacheDir})
	for _, d := range []string{"maps", "maps/2024/q1", "empty"} {
		if err := os.MkdirAll(filepath.Join(m1.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m1.unmount()

	m2 := mountEmu(t, emu, mountConfig{cacheDir: cacheDir})
	mp := func(p string) string { return filepath.Join(m2.Dir, p) }
	if got := run(t, m2.Dir, "find", ".", "-type", "d"); got != ".\n./empty\n./maps\n./maps/2024\n./maps/2024/q1\n" {
		// find lists in readdir order: sorted by name here.
		t.Fatalf("folders after the remount:\n%s", got)
	}
	src := filepath.Join(t.TempDir(), "sheet.txt")
	os.WriteFile(src, []byte("sheet one"), 0o644)
	run(t, m2.Dir, "cp", src, mp("maps/2024/q1/sheet.txt"))
	if _, b := remoteFile(t, m2, "maps/2024/q1/sheet.txt"); string(b) != "sheet one" {
		t.Fatalf("maps/2024/q1/sheet.txt remotely: %q", b)
	}
	files, err := m2.Client.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].FullPath() != "maps/2024/q1/sheet.txt" {
		var names []string
		for _, f := range files {
			names = append(names, f.FullPath())
		}
		t.Fatalf("remote files: %v", names)
	}
	if err := syscall.Rmdir(mp("empty")); err != nil {
		t.Fatalf("rmdir of an empty local folder after the remount: %v", err)
	}
	if err := syscall.Rmdir(mp("maps/2024")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of maps/2024: %v, want ENOTEMPTY", err)
	}
	if got := run(t, m2.Dir, "ls"); got != "maps\n" {
		t.Fatalf("ls after rmdir: %q", got)
	}
	// And the rmdir outlives a remount too.
	m2.unmount()
	m3 := mountEmu(t, emu, mountConfig{cacheDir: cacheDir})
	if got := run(t, m3.Dir, "find", "."); got != ".\n./maps\n./maps/2024\n./maps/2024/q1\n./maps/2024/q1/sheet.txt\n" {
		t.Fatalf("after a second remount:\n%s", got)
	}
}

// TestWriteMknodAppendNoReplace: mknod answers EPERM; two O_APPEND
// handles interleave without losing a byte; renameat2 RENAME_NOREPLACE
// onto an existing file answers EEXIST and changes nothing.
func TestWriteMknodAppendNoReplace(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	mp := func(p string) string { return filepath.Join(m.Dir, p) }
	// Uploaded before the mount's first listing (its TTL is a minute).
	upload(t, m.Client, m.Blobs, "log.txt", strings.NewReader("start\n"), 6)
	upload(t, m.Client, m.Blobs, "keep.txt", strings.NewReader("keep"), 4)

	if err := syscall.Mknod(mp("fifo"), syscall.S_IFIFO|0o644, 0); !errors.Is(err, syscall.EPERM) {
		t.Errorf("mknod of a FIFO: %v, want EPERM", err)
	}

	a, err := os.OpenFile(mp("log.txt"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.OpenFile(mp("log.txt"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := "start\n"
	for i := 0; i < 50; i++ {
		fd, who := a, "a"
		if i%2 == 1 {
			fd, who = b, "b"
		}
		line := fmt.Sprintf("%s%02d %s\n", who, i, strings.Repeat("x", i*37))
		if _, err := fd.WriteString(line); err != nil {
			t.Fatal(err)
		}
		want += line
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, got := remoteFile(t, m, "log.txt"); string(got) != want {
		t.Fatalf("log.txt remotely: %d bytes, want %d:\n%.300s", len(got), len(want), got)
	}

	k0, _ := remoteFile(t, m, "keep.txt")
	l0, _ := remoteFile(t, m, "log.txt")
	err = unix.Renameat2(unix.AT_FDCWD, mp("log.txt"), unix.AT_FDCWD, mp("keep.txt"), unix.RENAME_NOREPLACE)
	if !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("renameat2 RENAME_NOREPLACE onto an existing file: %v, want EEXIST", err)
	}
	if k1, got := remoteFile(t, m, "keep.txt"); string(got) != "keep" || k1.VersionID != k0.VersionID {
		t.Errorf("keep.txt: %q, version %s -> %s", got, k0.VersionID, k1.VersionID)
	}
	if l1, got := remoteFile(t, m, "log.txt"); string(got) != want || l1.VersionID != l0.VersionID {
		t.Errorf("log.txt changed: version %s -> %s", l0.VersionID, l1.VersionID)
	}
	// Onto a free name it renames.
	if err := unix.Renameat2(unix.AT_FDCWD, mp("keep.txt"), unix.AT_FDCWD, mp("kept.txt"), unix.RENAME_NOREPLACE); err != nil {
		t.Fatalf("renameat2 RENAME_NOREPLACE onto a free name: %v", err)
	}
	if _, got := remoteFile(t, m, "kept.txt"); string(got) != "keep" {
		t.Fatalf("kept.txt: %q", got)
	}
	remoteMissing(t, m, "keep.txt")
}

// TestWriteAsyncCopyIn: in async mode close returns before the uploads;
// they all finish in the background, one version each.
func TestWriteAsyncCopyIn(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{async: true})
	const n = 20
	content := func(i int) []byte { return randomBytes(uint64(100+i), 1000+i*40_000) }
	if err := os.Mkdir(filepath.Join(m.Dir, "batch"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(m.Dir, "batch", fmt.Sprintf("f%02d.bin", i)), content(i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, 2*time.Minute, func() string { return "the background uploads" }, func() bool { return len(m.FS.Pending()) == 0 })
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("batch/f%02d.bin", i)
		if d, b := remoteFile(t, m, p); sum(b) != sum(content(i)) {
			t.Errorf("%s: %d bytes remotely, want %d", p, d.Size, len(content(i)))
		}
	}
	st := emu.Stats()
	if up, upd := st.APICalls(emulator.OpUpsertFileByPath), st.APICalls(emulator.OpUpdateFile); up != n || upd != 0 {
		t.Errorf("%d upserts and %d updates for %d new files: want one upsert each", up, upd, n)
	}
	if st.BlocksRestaged != 0 {
		t.Errorf("%d blocks staged twice", st.BlocksRestaged)
	}
}

// TestReadHandleFollowsTruncateOfItsPath: a descriptor opened for reading
// on a file this mount saved reads what a truncate(2) of the path left, in
// both write-back modes (the truncate commits a version the node now
// shows; found by TestFsx/second-writer: the handle kept reading the
// version it was opened on).
func TestReadHandleFollowsTruncateOfItsPath(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			emu := startEmu(t)
			m := mountEmu(t, emu, mountConfig{async: async, ttl: 200 * time.Millisecond})
			p := filepath.Join(m.Dir, "notes.txt")
			full := randomBytes(31, 2200)
			// Created empty and closed, then written through a second
			// open, as TestFsx did.
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			w, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(full); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(p); err != nil || sum(b) != sum(full) {
				t.Fatalf("read back: %d bytes, %v", len(b), err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			g, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			// A listing newer than the save.
			time.Sleep(500 * time.Millisecond)
			run(t, m.Dir, "ls")
			for _, size := range []int64{729, 609} {
				if err := os.Truncate(p, size); err != nil {
					t.Fatalf("truncate to %d: %v", size, err)
				}
				got := make([]byte, 4096)
				n, err := f.ReadAt(got, 0)
				if err != nil && !errors.Is(err, io.EOF) {
					t.Fatalf("read through the descriptor after truncate to %d: %v", size, err)
				}
				if sum(got[:n]) != sum(full[:size]) {
					t.Fatalf("read through the descriptor after truncate to %d: %d bytes, want the first %d of the file", size, n, size)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			poll(t, time.Minute, func() string { return fmt.Sprintf("pending: %+v", m.FS.Pending()) },
				func() bool { return len(m.FS.Pending()) == 0 })
			if _, b := remoteFile(t, m, "notes.txt"); sum(b) != sum(full[:609]) {
				t.Fatalf("the service has %d bytes, want the first 609", len(b))
			}
		})
	}
}
