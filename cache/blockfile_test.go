package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// blockFile is the path of v's block file in cache c.
func blockFile(c *Cache, v Version) string { return c.blockPath(fileName(versionKey(v))) }

// damage changes v's block file on disk behind the cache's back.
type damage struct {
	name string
	do   func(t *testing.T, path string, bs int64)
	// bad is how many blocks of the 3-block version the damage spoils.
	bad int64
}

var damages = []damage{
	{"overwrite", func(t *testing.T, path string, bs int64) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt([]byte("rot"), bs+1000); err != nil {
			t.Fatal(err)
		}
	}, 1},
	{"truncate", func(t *testing.T, path string, bs int64) {
		if err := os.Truncate(path, bs+bs/2); err != nil { // block 1 short, block 2 gone
			t.Fatal(err)
		}
	}, 2},
	{"zeros", func(t *testing.T, path string, bs int64) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := punch(f, 2*bs, bs); err != nil { // as an unclean stop can leave it
			t.Fatal(err)
		}
	}, 1},
	{"unlink", func(t *testing.T, path string, bs int64) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}, 3},
}

// TestDamagedBlocksAreRefetched: a block file changed on disk (bytes
// overwritten, truncated, holes, removed) is caught by the checksum, while
// the cache is open and after a reopen: the read returns the source's
// bytes, each spoiled block is counted and fetched once again, and stored
// again.
func TestDamagedBlocksAreRefetched(t *testing.T) {
	const bs = 64 << 10
	for _, reopen := range []bool{false, true} {
		for _, d := range damages {
			name := d.name
			if reopen {
				name += "/reopen"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				v := Version{FileID: "dmg", VersionID: "1", Size: 3*bs - 100}
				src := newSource(v.Size, 5)
				c, logs := openCache(t, "disk", dir, Options{BlockSize: bs})
				readBlocks(t, c, v, src, 0, 1, 2)
				if !c.Complete(v) {
					t.Fatal("not complete after reading every block")
				}
				d.do(t, blockFile(c, v), bs)
				if reopen {
					if err := c.Close(); err != nil {
						t.Fatal(err)
					}
					c, logs = openCache(t, "disk", dir, Options{})
				}
				calls := src.calls.Load()
				f := c.File(v, src, FileOptions{Readahead: -1})
				got := readAll(t, f, v.Size, 10000)
				f.Close()
				quiesce(t, c)
				if sum(got) != sum(src.want(0, v.Size)) {
					t.Fatal("wrong bytes after the damage")
				}
				fetched := src.calls.Load() - calls
				s := c.Stats()
				if d.name == "unlink" && reopen {
					// Open sees the file is gone and drops its blocks: plain misses.
					if s.Corrupt != 0 || fetched != 3 {
						t.Errorf("corrupt %d, %d fetches; want 0 and 3", s.Corrupt, fetched)
					}
				} else if s.Corrupt != d.bad || fetched != d.bad {
					t.Errorf("corrupt %d, %d fetches; want %d of each", s.Corrupt, fetched, d.bad)
				}
				if s.Corrupt > 0 && !strings.Contains(logs.String(), "failed verification") {
					t.Error("the damage is not logged")
				}
				if !c.Complete(v) {
					t.Errorf("blocks %v stored after the refetch, want all 3", cached(c, v, 3))
				}
				// Stored again: read from the cache now.
				calls = src.calls.Load()
				if sum(readAll(t, c.File(v, src, FileOptions{}), v.Size, 7777)) != sum(src.want(0, v.Size)) || src.calls.Load() != calls {
					t.Error("second read: wrong bytes or fetched again")
				}
			})
		}
	}
}

// TestUncleanStop: what a crash can leave (block bytes written but not
// indexed, an orphan file, index entries over bytes that never reached the
// disk) costs refetches and no disk space.
func TestUncleanStop(t *testing.T) {
	const bs = 64 << 10
	dir := t.TempDir()
	v := Version{FileID: "crash", VersionID: "1", Size: 6 * bs}
	src := newSource(v.Size, 1)
	c1, _ := openCache(t, "disk", dir, Options{BlockSize: bs})
	readBlocks(t, c1, v, src, 0, 1, 2)
	path := blockFile(c1, v)
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Blocks 3 and 4 written, the crash before their index entries.
	if _, err := f.WriteAt(src.want(3*bs, 2*bs), 3*bs); err != nil {
		t.Fatal(err)
	}
	// Block 1's index entry reached the disk, its bytes did not.
	if err := punch(f, bs, bs); err != nil {
		t.Fatal(err)
	}
	f.Close()
	orphan := filepath.Join(filepath.Dir(path), fileName(versionKey(Version{FileID: "never", VersionID: "indexed"})))
	if err := os.WriteFile(orphan, make([]byte, 3*bs), 0o600); err != nil {
		t.Fatal(err)
	}

	c2, _ := openCache(t, "disk", dir, Options{})
	if _, err := os.Stat(orphan); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("orphan block file after Open: %v", err)
	}
	if got := cached(c2, v, 6); len(got) != 3 || got[2] != 2 {
		t.Errorf("indexed after the crash: %v, want [0 1 2]", got)
	}
	if n := allocatedBytes(t, path); n > c2.Usage().Bytes {
		t.Errorf("block file takes %d bytes after Open, the index counts %d", n, c2.Usage().Bytes)
	}
	calls := src.calls.Load()
	got := readAll(t, c2.File(v, src, FileOptions{Readahead: -1}), v.Size, 50000)
	if sum(got) != sum(src.want(0, v.Size)) {
		t.Fatal("wrong bytes after the crash")
	}
	quiesce(t, c2)
	// Block 1 (corrupt) and 3, 4, 5 (never indexed).
	if s, n := c2.Stats(), src.calls.Load()-calls; s.Corrupt != 1 || n != 4 {
		t.Errorf("corrupt %d, %d fetches; want 1 and 4", s.Corrupt, n)
	}
}

// allocatedBytes is st_blocks*512 of path.
func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// duBytes walks dir and sums st_blocks*512 of its files: those in the
// block folder, and all of them.
func duBytes(t *testing.T, dir string) (blocks, all int64) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n := allocatedBytes(t, path)
		all += n
		if filepath.Base(filepath.Dir(path)) == blocksDirName {
			blocks += n
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return blocks, all
}

// TestDiskUseStaysBounded: after reading three times MaxBytes of distinct
// versions (short last blocks included), the block files take at most
// MaxBytes on disk, and the whole folder at most MaxBytes and the index.
func TestDiskUseStaysBounded(t *testing.T) {
	const bs = 1 << 20
	const maxBytes = 8 * bs
	// Badger's own files: its memtable WAL (touched pages only), the
	// manifest, the value log's header; the index itself is a few KiB.
	const indexSlack = 4 << 20
	dir := t.TempDir()
	c, _ := openCache(t, "disk", dir, Options{BlockSize: bs, MaxBytes: maxBytes})
	var read int64
	for i := 0; read < 3*maxBytes; i++ {
		v := Version{FileID: "bound", VersionID: string(rune('a' + i)), Size: int64(i%4)*bs + int64(i*7919%bs) + 1}
		src := newSource(v.Size, byte(i))
		f := c.File(v, src, FileOptions{})
		if sum(readAll(t, f, v.Size, 128<<10)) != sum(src.want(0, v.Size)) {
			t.Fatalf("version %d: wrong bytes", i)
		}
		settle(t, c, f)
		f.Close()
		read += v.Size
		if u := c.Usage(); u.Bytes > maxBytes {
			t.Fatalf("usage %+v past MaxBytes %d", u, maxBytes)
		}
	}
	blocks, all := duBytes(t, dir)
	t.Logf("read %d MiB; usage %+v; block files %d KiB, folder %d KiB", read>>20, c.Usage(), blocks>>10, all>>10)
	if blocks > maxBytes {
		t.Errorf("block files take %d bytes, MaxBytes is %d", blocks, maxBytes)
	}
	if blocks > c.Usage().Bytes {
		t.Errorf("block files take %d bytes, the index counts %d", blocks, c.Usage().Bytes)
	}
	if all > maxBytes+indexSlack {
		t.Errorf("the cache folder takes %d bytes, want at most MaxBytes %d and %d of index", all, maxBytes, indexSlack)
	}
	if c.Stats().Evictions == 0 {
		t.Error("nothing evicted: the test does not exercise eviction")
	}
}

// TestBacking: a version is handed out for passthrough only when it is
// complete and every block verified; a damaged block fails the check and
// is dropped; a pinned version is not evicted.
func TestBacking(t *testing.T) {
	const bs = 64 << 10
	dir := t.TempDir()
	v := Version{FileID: "pass", VersionID: "1", Size: 4*bs + 10}
	src := newSource(v.Size, 2)
	c1, _ := openCache(t, "disk", dir, Options{BlockSize: bs, MaxBytes: 8 * bs})
	readBlocks(t, c1, v, src, 0, 1, 2)
	if c1.Complete(v) {
		t.Fatal("complete with 3 of 5 blocks")
	}
	if _, _, ok := c1.Backing(t.Context(), v); ok {
		t.Fatal("backing of an incomplete version")
	}
	f := c1.File(v, src, FileOptions{Readahead: -1})
	readAll(t, f, v.Size, 40000)
	quiesce(t, c1)
	if !f.Complete() {
		t.Fatal("File.Complete false after reading it all")
	}
	f.Close()
	checkBacking := func(c *Cache) func() {
		t.Helper()
		bf, release, ok := c.Backing(t.Context(), v)
		if !ok {
			t.Fatal("no backing for a complete version")
		}
		got, err := io.ReadAll(bf)
		bf.Close()
		if err != nil || sum(got) != sum(src.want(0, v.Size)) {
			t.Fatalf("backing file: %d bytes, %v, same as the source %v", len(got), err, sum(got) == sum(src.want(0, v.Size)))
		}
		return release
	}
	checkBacking(c1)()
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened, nothing is verified yet: Backing reads the file, and
	// finds block 3 damaged.
	c2, _ := openCache(t, "disk", dir, Options{MaxBytes: 8 * bs})
	damages[0].do(t, blockFile(c2, v), 3*bs) // bytes in block 3
	if _, _, ok := c2.Backing(t.Context(), v); ok {
		t.Fatal("backing with a damaged block")
	}
	if c2.Has(v, 3) || c2.Stats().Corrupt != 1 {
		t.Fatalf("after the failed check: block 3 stored %v, %d corrupt (want dropped, 1)", c2.Has(v, 3), c2.Stats().Corrupt)
	}
	readBlocks(t, c2, v, src, 3)
	release := checkBacking(c2)
	release2 := checkBacking(c2) // verified already: no read, a second pin

	// Pinned, v (5 blocks) survives 6 blocks of others in an 8-block cache.
	w := Version{FileID: "other", VersionID: "1", Size: 6 * bs}
	wsrc := newSource(w.Size, 3)
	readBlocks(t, c2, w, wsrc, 0, 1, 2, 3, 4, 5)
	if !c2.Complete(v) {
		t.Fatalf("pinned version lost blocks: %v", cached(c2, v, 5))
	}
	if u := c2.Usage(); u.Bytes > 8*bs {
		t.Fatalf("usage %+v past MaxBytes", u)
	}
	release()
	release() // a second call does nothing
	if !c2.Complete(v) {
		t.Fatal("still pinned once, and evicted")
	}
	release2()
	readBlocks(t, c2, w, wsrc, 0, 1, 2, 3, 4, 5)
	if c2.Complete(v) {
		t.Fatal("unpinned version not evicted by newer blocks")
	}
}

// TestOlderFormatDropsBlocksKeepsJournal: a cache of the Badger-block
// format opens with its blocks gone, its journal and dirty pages kept,
// and one line logged.
func TestOlderFormatDropsBlocksKeepsJournal(t *testing.T) {
	const bs = 64 << 10
	dir := t.TempDir()
	c1, _ := openCache(t, "disk", dir, Options{BlockSize: bs})
	d, err := c1.NewDirty(Record{Path: "kept.txt"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(t.Context(), []byte("acknowledged"), 0); err != nil {
		t.Fatal(err)
	}
	// What format 2 kept: blocks as chunk values under 'b' keys.
	old := [][]byte{[]byte("bf\x001\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), []byte("bf\x001\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00")}
	v2 := make([]byte, 9)
	v2[0] = 2
	binary.BigEndian.PutUint64(v2[1:], bs)
	if err := c1.update(func(txn *badger.Txn) error {
		for _, k := range old {
			if err := txn.Set(k, bytes.Repeat([]byte{7}, 256<<10)); err != nil {
				return err
			}
		}
		return txn.Set(configKey, v2)
	}); err != nil {
		t.Fatal(err)
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	c2, logs := openCache(t, "disk", dir, Options{})
	if n := logs.count("old block format cleared"); n != 1 {
		t.Errorf("%d upgrade lines logged, want 1:\n%s", n, logs)
	}
	if err := c2.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: oldBlockPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			t.Errorf("old block key %q still stored", it.Item().Key())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if bs2, format, err := readConfig(c2.db); err != nil || format != formatVersion || bs2 != bs {
		t.Errorf("config after the upgrade: block size %d, format %d, %v", bs2, format, err)
	}
	recs, err := c2.Journal()
	if err != nil || len(recs) != 1 || recs[0].Path != "kept.txt" || recs[0].Size != 12 {
		t.Fatalf("journal after the upgrade: %+v, %v", recs, err)
	}
	d2, err := c2.OpenDirty(recs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 12)
	if _, err := d2.ReadAt(t.Context(), p, 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if string(p) != "acknowledged" {
		t.Errorf("journaled bytes after the upgrade: %q", p)
	}
	// The cache works in the new format.
	v := Version{FileID: "f", VersionID: "1", Size: 2 * bs}
	src := newSource(v.Size, 0)
	readBlocks(t, c2, v, src, 0, 1)
	if !c2.Complete(v) {
		t.Error("blocks not stored after the upgrade")
	}
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	c3, logs3 := openCache(t, "disk", dir, Options{})
	if logs3.count("old block format") != 0 || !c3.Complete(v) {
		t.Errorf("second open: upgraded again or lost blocks:\n%s", logs3)
	}
}
