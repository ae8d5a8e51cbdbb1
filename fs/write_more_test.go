package fs_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

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
	st := emu.Stats()
	if n := st.APICalls(emulator.OpUpsertFileByPath) + st.APICalls(emulator.OpUpdateFile); n != 0 {
		t.Errorf("%d upsert/update calls for a file whose write failed", n)
	}
	if b := st.Blob[emulator.BlobOpPutBlock]; b != nil && b.Count > 0 {
		t.Errorf("%d blocks staged for a file whose write failed", b.Count)
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
