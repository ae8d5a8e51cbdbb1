package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
)

// bigSource writes n pseudo-random bytes to a file outside the mount and
// returns its path and sha256.
func bigSource(t *testing.T, seed uint64, n int64) (string, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "source.bin")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	var key [32]byte
	key[0] = byte(seed)
	r := rand.NewChaCha8(key)
	buf := make([]byte, 4<<20)
	for left := n; left > 0; {
		k := min(int64(len(buf)), left)
		r.Read(buf[:k])
		if _, err := io.MultiWriter(f, h).Write(buf[:k]); err != nil {
			t.Fatal(err)
		}
		left -= k
	}
	return p, hex.EncodeToString(h.Sum(nil))
}

// TestPassthroughCopyOfOneGiB: cp of a 1 GiB file into the mount is
// written by the kernel into the file's local content file (passthrough,
// the mount says so at start) and uploaded from it at close: the version
// the service has is the source, byte for byte. In async mode the mount
// is killed (SIGKILL) right after cp's close, before any block is sent;
// the remount finishes the upload from the same file.
func TestPassthroughCopyOfOneGiB(t *testing.T) {
	src, want := bigSource(t, 7, 1<<30)
	for _, mode := range []string{"sync", "async"} {
		t.Run(mode, func(t *testing.T) {
			emu, gate := startGatedEmu(t)
			info := emu.Info()
			bin, tok, cacheDir := newEnv(t, info)
			r := newRemoteSide(t, info)
			if mode == "async" {
				gate.Hold(0, opPutBlob, opPutBlock, opPutBlockList)
			}
			m := startWriteMount(t, bin, info, tok, cacheDir, "--write-back="+mode, "--passthrough", closeTimeUpload)
			if out, err := exec.Command("cp", src, filepath.Join(m.Dir, "big.bin")).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			if !strings.Contains(m.Stderr.String(), "passthrough on") {
				t.Fatalf("the mount did not say passthrough is on:\n%s", m.Stderr.String())
			}
			if mode == "async" {
				m.Kill()
				r.missing("big.bin")
				gate.Open()
				m = startWriteMount(t, bin, info, tok, cacheDir, "--write-back="+mode, "--passthrough", closeTimeUpload)
				m.waitDrained(3 * time.Minute)
			}
			m.Stop()
			r.checkFile("big.bin", want)
		})
	}
}

// TestKill9DuringColdReadThenRemount: the mount is killed (SIGKILL) while
// a cold read of a 256 MiB file is under way; a new mount over the same
// cache reads the file with every byte right, keeping the blocks stored
// before the kill (it fetches less than the file) and fetching the rest.
func TestKill9DuringColdReadThenRemount(t *testing.T) {
	src, want := bigSource(t, 9, 256<<20)
	emu, _ := startGatedEmu(t)
	info := emu.Info()
	bin, tok, cacheDir := newEnv(t, info)
	w := startWriteMount(t, bin, info, tok, cacheDir)
	if out, err := exec.Command("cp", src, filepath.Join(w.Dir, "big.bin")).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	w.Stop()

	readCache := filepath.Join(t.TempDir(), "cache")
	blocks := filepath.Join(readCache, "blocks", "blocks")
	emu.SetShaping(64<<20, 0) // 64 MB/s: the kill lands mid-read
	m := startWriteMount(t, bin, info, tok, readCache)
	reader := exec.Command("dd", "if="+filepath.Join(m.Dir, "big.bin"), "of=/dev/null", "bs=1M")
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, func() string { return fmt.Sprintf("%d bytes in the block files", dirAlloc(blocks)) },
		func() bool { return dirAlloc(blocks) >= 64<<20 })
	m.Kill()
	reader.Wait() // fails: its mount died under it
	kept := dirAlloc(blocks)
	if kept >= 256<<20 {
		t.Fatalf("the read finished before the kill (%d bytes cached)", kept)
	}

	emu.SetShaping(0, 0)
	before := emu.Stats().Blob[emulator.BlobOpGet].Bytes
	m = startWriteMount(t, bin, info, tok, readCache)
	if got := fileSum(t, filepath.Join(m.Dir, "big.bin")); got != want {
		t.Fatalf("read after the remount: sha256 %s, want %s", got, want)
	}
	fetched := emu.Stats().Blob[emulator.BlobOpGet].Bytes - before
	t.Logf("cached before the kill: %d bytes; fetched after the remount: %d", kept, fetched)
	if fetched == 0 || fetched >= 256<<20 {
		t.Errorf("the remount fetched %d bytes of a 256 MiB file, %d of it cached before the kill: want the rest only", fetched, kept)
	}
	m.Stop()
}

// dirAlloc is the disk space the files in dir take (0 if it is missing).
func dirAlloc(dir string) int64 {
	entries, _ := os.ReadDir(dir)
	var n int64
	for _, e := range entries {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join(dir, e.Name()), &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG {
			n += st.Blocks * 512
		}
	}
	return n
}

// fileSum is the sha256 of the file at p.
func fileSum(t *testing.T, p string) string {
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
