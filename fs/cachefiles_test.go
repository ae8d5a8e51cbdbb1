package fs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/evofs/evofs/remote/emulator"
)

// blockFiles lists the read cache's block files under the cache folder
// dir, with the bytes they take on disk in all.
func blockFiles(t *testing.T, dir string) (files []string, alloc int64) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blocks"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			p := filepath.Join(dir, "blocks", e.Name())
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				t.Fatal(err)
			}
			files = append(files, p)
			alloc += st.Blocks * 512
		}
	}
	return files, alloc
}

// TestCacheFileDamageIsRefetched: a version read once is kept in one block
// file of the cache. With the mount stopped, one block of that file is
// overwritten on disk and the file is cut short of its last block; over
// the same cache a new mount reads the file: the bytes are the version's
// (sha256), with passthrough on or off, the two damaged blocks are
// counted as corrupt and fetched again, and the blocks left whole are not.
func TestCacheFileDamageIsRefetched(t *testing.T) {
	for _, pt := range []bool{true, false} {
		t.Run(map[bool]string{true: "passthrough", false: "no-passthrough"}[pt], func(t *testing.T) {
			emu := startEmu(t)
			cacheDir := t.TempDir()
			m := mountEmu(t, emu, mountConfig{cacheDir: cacheDir, passthrough: pt})
			bs := int64(m.Cache.BlockSize())
			content := randomBytes(43, int(6*bs+bs/3)) // 7 blocks, the last short
			upload(t, m.Client, m.Blobs, "grids/dem.tif", bytes.NewReader(content), int64(len(content)))
			p := filepath.Join(m.Dir, "grids/dem.tif")
			if got := readAllSum(t, p); got != sum(content) {
				t.Fatalf("cold read: sha256 %s, want %s", got, sum(content))
			}
			m.unmount()

			files, _ := blockFiles(t, cacheDir)
			if len(files) != 1 {
				t.Fatalf("%d block files after reading one version, want 1: %v", len(files), files)
			}
			f, err := os.OpenFile(files[0], os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, 100), 2*bs+4096); err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(6*bs + 17); err != nil { // the last block cut short
				t.Fatal(err)
			}
			f.Close()

			before := emu.Stats().Blob[emulator.BlobOpGet].Bytes
			m2 := mountEmu(t, emu, mountConfig{cacheDir: cacheDir, passthrough: pt})
			p = filepath.Join(m2.Dir, "grids/dem.tif")
			if got := readAllSum(t, p); got != sum(content) {
				t.Fatalf("read over the damaged cache: sha256 %s, want %s", got, sum(content))
			}
			if c := m2.Cache.Stats().Corrupt; c != 2 {
				t.Errorf("%d blocks counted corrupt, want 2 (the overwritten and the cut one)", c)
			}
			fetched := emu.Stats().Blob[emulator.BlobOpGet].Bytes - before
			if want := bs + bs/3; fetched != want {
				t.Errorf("fetched %d bytes again, want %d (the two damaged blocks only)", fetched, want)
			}
			// And again: the refetched blocks are whole now.
			dropAllPageCaches(t)
			if got := readAllSum(t, p); got != sum(content) {
				t.Fatalf("second read: sha256 %s, want %s", got, sum(content))
			}
			if g := emu.Stats().Blob[emulator.BlobOpGet].Bytes - before; g != fetched {
				t.Errorf("the second read fetched %d more bytes", g-fetched)
			}
		})
	}
}

// TestCacheStaysWithinItsBound: reading three times the cache's size of
// files through the mount leaves the block files taking no more disk than
// the bound (allocated bytes, as du counts them), and the files read
// last still in it.
func TestCacheStaysWithinItsBound(t *testing.T) {
	emu := startEmu(t)
	cacheDir := t.TempDir()
	const bound = 24 << 20
	m := mountEmu(t, emu, mountConfig{cacheDir: cacheDir, cacheBytes: bound})
	bs := int64(m.Cache.BlockSize())
	size := 8 << 20
	var sums []string
	for i := range 9 { // 72 MiB: three times the bound
		content := randomBytes(uint64(100+i), size)
		sums = append(sums, sum(content))
		upload(t, m.Client, m.Blobs, filepathName(i), bytes.NewReader(content), int64(size))
	}
	for i := range 9 {
		if got := readAllSum(t, filepath.Join(m.Dir, filepathName(i))); got != sums[i] {
			t.Fatalf("%s: sha256 %s, want %s", filepathName(i), got, sums[i])
		}
		if _, alloc := blockFiles(t, cacheDir); alloc > bound {
			t.Fatalf("after reading %d files the block files take %d bytes on disk, over the bound of %d", i+1, alloc, bound)
		}
	}
	if ev := m.Cache.Stats().Evictions; ev == 0 {
		t.Errorf("no block evicted after reading three times the bound")
	}
	// The last file read is still whole in the cache: read again, it
	// fetches nothing.
	before := emu.Stats().Blob[emulator.BlobOpGet].Bytes
	dropAllPageCaches(t)
	if got := readAllSum(t, filepath.Join(m.Dir, filepathName(8))); got != sums[8] {
		t.Fatalf("re-read: sha256 %s, want %s", got, sums[8])
	}
	if g := emu.Stats().Blob[emulator.BlobOpGet].Bytes - before; g != 0 {
		t.Errorf("re-reading the last file fetched %d bytes (block size %d)", g, bs)
	}
}

func filepathName(i int) string { return filepath.Join("tiles", string(rune('a'+i))+".tif") }
