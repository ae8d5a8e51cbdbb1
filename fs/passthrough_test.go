package fs_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
)

// readAll reads the file at p through a fresh descriptor and returns the
// sha256 of its bytes.
func readAllSum(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestPassthroughReadsReachNoEvofs: once a version is whole in the cache,
// the next open of it is served by the kernel from the cache's file: the
// read reaches evofs with no request at all, and gives the same bytes.
// With --passthrough=false the same read is served by evofs.
func TestPassthroughReadsReachNoEvofs(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			emu := startEmu(t)
			m := mountEmu(t, emu, mountConfig{passthrough: on})
			content := randomBytes(41, 9<<20+12345)
			upload(t, m.Client, m.Blobs, "survey/dem.tif", bytes.NewReader(content), int64(len(content)))
			p := filepath.Join(m.Dir, "survey/dem.tif")

			if got := readAllSum(t, p); got != sum(content) {
				t.Fatalf("cold read: sha256 %s, want %s", got, sum(content))
			}
			cold := m.FS.ReadRequests()
			if cold == 0 {
				t.Fatalf("the cold read reached evofs with no read request")
			}
			gets := emu.Stats().Blob[emulator.BlobOpGet].Count
			// Drop the kernel's pages, so the read must come from
			// somewhere: the backing file (on) or evofs (off).
			dropAllPageCaches(t)
			if got := readAllSum(t, p); got != sum(content) {
				t.Fatalf("warm read: sha256 %s, want %s", got, sum(content))
			}
			warm := m.FS.ReadRequests() - cold
			if on && warm != 0 {
				t.Errorf("passthrough on: the warm read sent evofs %d read requests, want 0", warm)
			}
			if !on && warm == 0 {
				t.Errorf("passthrough off: the warm read sent evofs no read request")
			}
			if g := emu.Stats().Blob[emulator.BlobOpGet].Count; g != gets {
				t.Errorf("the warm read fetched %d times from the store", g-gets)
			}
			if want := map[bool]string{true: "passthrough on", false: "passthrough off"}[on]; !strings.Contains(m.Logs.String(), want) {
				t.Errorf("no %q line in the log", want)
			}
		})
	}
}

// dropAllPageCaches drops every clean page the kernel caches (the
// backing files' too: a passthrough file has no pages of its own).
func dropAllPageCaches(t *testing.T) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("1\n"), 0); err != nil {
		t.Fatalf("drop the page cache: %v", err)
	}
}

// TestPassthroughWriterAndReaderShareTheFile: a reader holds the cached
// version open by passthrough while a writer in the same mount opens the
// file and changes it: the reader's descriptor sees the change (as on a
// local disk), the close makes one version with the writer's bytes, and
// neither reached evofs with a read or write request.
func TestPassthroughWriterAndReaderShareTheFile(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			emu := startEmu(t)
			m := mountEmu(t, emu, mountConfig{async: async, debounce: -1, passthrough: true})
			content := randomBytes(42, 3<<20)
			upload(t, m.Client, m.Blobs, "a/layer.shp", bytes.NewReader(content), int64(len(content)))
			p := filepath.Join(m.Dir, "a/layer.shp")
			if got := readAllSum(t, p); got != sum(content) {
				t.Fatalf("cold read: sha256 %s, want %s", got, sum(content))
			}
			r, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			reads, writes := m.FS.ReadRequests(), m.FS.WriteRequests()
			w, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatalf("open for writing beside a passthrough reader: %v", err)
			}
			patch := []byte("EDITED BY THE WRITER")
			if _, err := w.WriteAt(patch, 1<<20); err != nil {
				t.Fatal(err)
			}
			want := append([]byte(nil), content...)
			copy(want[1<<20:], patch)
			got := make([]byte, len(patch))
			if _, err := r.ReadAt(got, 1<<20); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, patch) {
				t.Fatalf("the reader's descriptor reads %q where the writer wrote %q", got, patch)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("close the writer: %v", err)
			}
			if n := m.FS.ReadRequests() - reads; n != 0 {
				t.Errorf("%d read requests reached evofs", n)
			}
			if n := m.FS.WriteRequests() - writes; n != 0 {
				t.Errorf("%d write requests reached evofs", n)
			}
			waitNoPending(t, m)
			if _, b := remoteFile(t, m, "a/layer.shp"); sum(b) != sum(want) {
				t.Fatalf("the service has %d bytes (sha256 %s), want the writer's %s", len(b), sum(b), sum(want))
			}
			if got := readAllSum(t, p); got != sum(want) {
				t.Fatalf("read after the save: sha256 %s, want %s", got, sum(want))
			}
		})
	}
}

// TestPassthroughNewFileWrittenByTheKernel: a new file (cp) is written by
// the kernel into its local file with no write request reaching evofs;
// close uploads it from the file: the service has the source's bytes.
func TestPassthroughNewFileWrittenByTheKernel(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(map[bool]string{false: "sync", true: "async"}[async], func(t *testing.T) {
			emu := startEmu(t)
			m := mountEmu(t, emu, mountConfig{async: async, debounce: -1, passthrough: true})
			src := filepath.Join(t.TempDir(), "src.tif")
			content := randomBytes(43, 64<<20+777)
			if err := os.WriteFile(src, content, 0o644); err != nil {
				t.Fatal(err)
			}
			writes := m.FS.WriteRequests()
			run(t, m.Dir, "cp", src, "copy.tif")
			if n := m.FS.WriteRequests() - writes; n != 0 {
				t.Errorf("cp sent evofs %d write requests, want 0 (passthrough)", n)
			}
			st, err := os.Stat(filepath.Join(m.Dir, "copy.tif"))
			if err != nil || st.Size() != int64(len(content)) {
				t.Fatalf("stat after cp: %v, size %d, want %d", err, st.Size(), len(content))
			}
			waitNoPending(t, m)
			if _, b := remoteFile(t, m, "copy.tif"); sum(b) != sum(content) {
				t.Fatalf("the service has %d bytes, want the source's %d (sha256)", len(b), len(content))
			}
			// A shell redirect: open(O_TRUNC), then the writes; one
			// version, with the final bytes.
			run(t, m.Dir, "sh", "-c", "echo hello > note.txt")
			waitNoPending(t, m)
			if _, b := remoteFile(t, m, "note.txt"); string(b) != "hello\n" {
				t.Fatalf("note.txt: %q", b)
			}
		})
	}
}

// waitNoPending waits until the mount has no upload pending.
func waitNoPending(t *testing.T, m *mount) {
	t.Helper()
	poll(t, 2*time.Minute, func() string { return "uploads still pending" },
		func() bool { return len(m.FS.Pending()) == 0 })
}
