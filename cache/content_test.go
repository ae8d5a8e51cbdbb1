package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// readerSum is the sha256 of the content as an upload reads it.
func readerSum(t *testing.T, d *Dirty) [32]byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(d.Reader(context.Background()), 0, d.Size()))
	if err != nil {
		t.Fatalf("read through Reader: %v", err)
	}
	return sum(b)
}

func TestRuns(t *testing.T) {
	var r [][2]int64
	for _, add := range [][2]int64{{5, 6}, {1, 2}, {3, 4}, {2, 3}, {10, 12}, {6, 10}, {20, 20}} {
		r = addRun(r, add[0], add[1])
	}
	if want := [][2]int64{{1, 4}, {5, 12}}; !equalRuns(r, want) {
		t.Fatalf("runs %v, want %v", r, want)
	}
	for idx, want := range map[int64][2]int64{0: {0, 1}, 1: {1, 4}, 4: {0, 5}, 11: {1, 12}, 12: {0, maxRun}} {
		f, until := runAt(r, idx)
		if f != (want[0] == 1) || until != want[1] {
			t.Errorf("runAt(%d) = %v, %d; want %v", idx, f, until, want)
		}
	}
	if got := cutRuns(r, 6); !equalRuns(got, [][2]int64{{1, 4}, {5, 6}}) || !equalRuns(r, [][2]int64{{1, 4}, {5, 12}}) {
		t.Fatalf("cutRuns: %v (argument now %v)", got, r)
	}
}

func equalRuns(a, b [][2]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDirtyFileOnlyWhenWhollyLocal: the content file is handed out only
// when no base shows through, and then holds the exact content.
func TestDirtyFileOnlyWhenWhollyLocal(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	base := &bytesBase{b: randBytes(r, 2*PageSize+5)}
	c, _ := openCache(t, "disk", "", Options{})
	d, err := c.NewDirty(Record{Path: "x", FileID: "f", BaseVersion: "1", BaseSize: int64(len(base.b))}, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(ctx, []byte("abc"), 10); err != nil {
		t.Fatal(err)
	}
	if f, ok := d.File(); ok || f != nil {
		t.Fatal("File handed out while the base shows through")
	}
	if err := d.Truncate(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// A sparse write past a gap: the gap reads as zeros in the file too.
	if _, err := d.WriteAt(ctx, []byte("tail"), 3*PageSize); err != nil {
		t.Fatal(err)
	}
	f, ok := d.File()
	if !ok || !d.Record().Direct {
		t.Fatal("File refused for wholly local content")
	}
	want := make([]byte, 3*PageSize+4)
	copy(want[3*PageSize:], "tail")
	got, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the file is not the content (%d bytes, %v)", len(got), err)
	}

	n, _ := c.NewDirty(Record{Path: "new"}, nil)
	if _, ok := n.File(); !ok {
		t.Fatal("File refused for a new file")
	}
}

// TestDirtyRefreshTakesDirectWrites: writes straight into the handed-out
// file (as the kernel's passthrough makes them) become the content at
// Refresh, with a new Gen, also across a restart.
func TestDirtyRefreshTakesDirectWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, _ := openCache(t, "disk", dir, Options{})
	d, _ := c.NewDirty(Record{Path: "p"}, nil)
	if _, err := d.WriteAt(ctx, []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	f, ok := d.File()
	if !ok {
		t.Fatal("no file")
	}
	r := rand.New(rand.NewPCG(5, 6))
	model := append([]byte("hello"), randBytes(r, 3*PageSize)...)
	if _, err := f.WriteAt(model[5:], 5); err != nil {
		t.Fatal(err)
	}
	gen := d.Gen()
	if err := d.Refresh(); err != nil {
		t.Fatal(err)
	}
	if d.Size() != int64(len(model)) || d.Gen() == gen || readerSum(t, d) != sum(model) {
		t.Fatalf("after Refresh: size %d gen %d (was %d)", d.Size(), d.Gen(), gen)
	}
	gen = d.Gen()
	if err := d.Refresh(); err != nil || d.Gen() != gen {
		t.Fatalf("a Refresh with no write changed gen %d to %d (%v)", gen, d.Gen(), err)
	}
	// An overwrite in place, same size, right away: still seen.
	model[7] ^= 0xff
	if _, err := f.WriteAt(model[7:8], 7); err != nil {
		t.Fatal(err)
	}
	if err := d.Refresh(); err != nil || d.Gen() == gen || readerSum(t, d) != sum(model) {
		t.Fatalf("an overwrite in place was not taken in (gen %d, %v)", d.Gen(), err)
	}
	// WriteAt and Truncate go on working on direct content.
	if _, err := d.WriteAt(ctx, []byte("XY"), 1); err != nil {
		t.Fatal(err)
	}
	copy(model[1:], "XY")
	if err := d.Truncate(ctx, int64(len(model))-10); err != nil {
		t.Fatal(err)
	}
	model = model[:len(model)-10]
	if st, err := f.Stat(); err != nil || st.Size() != int64(len(model)) || readerSum(t, d) != sum(model) {
		t.Fatalf("after WriteAt and Truncate: file %v (%v), size %d", st.Size(), err, d.Size())
	}
	// A direct write the process never refreshed before it went away is
	// there at the next start.
	model = append(model, []byte(" and more")...)
	if _, err := f.WriteAt(model[len(model)-9:], int64(len(model))-9); err != nil {
		t.Fatal(err)
	}
	gen = d.Gen()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, _ := openCache(t, "disk", dir, Options{})
	recs, err := c2.Journal()
	if err != nil || len(recs) != 1 {
		t.Fatalf("journal: %+v, %v", recs, err)
	}
	d2, err := c2.OpenDirty(recs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if d2.Size() != int64(len(model)) || d2.Gen() <= gen || readerSum(t, d2) != sum(model) {
		t.Fatalf("reopened direct content: size %d gen %d", d2.Size(), d2.Gen())
	}
}

// TestDirtyRemoveFreesTheFile: Remove unlinks the content file, a shrink
// gives its space back, and an in-memory cache's folder goes at Close.
func TestDirtyRemoveFreesTheFile(t *testing.T) {
	ctx := context.Background()
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			c, _ := openCache(t, kind, "", Options{})
			d, _ := c.NewDirty(Record{Path: "big"}, nil)
			if _, err := d.WriteAt(ctx, make([]byte, 3*PageSize), 0); err != nil {
				t.Fatal(err)
			}
			path := c.local.path(d.ID())
			if st, err := os.Stat(path); err != nil || st.Size() != 3*PageSize {
				t.Fatalf("content file: %v", err)
			}
			if err := d.Truncate(ctx, 10); err != nil {
				t.Fatal(err)
			}
			if st, err := os.Stat(path); err != nil || st.Size() != 10 {
				t.Fatalf("content file after a shrink: %v, %v", st.Size(), err)
			}
			if err := d.Remove(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("content file after Remove: %v", err)
			}
			if kind == "mem" {
				dir := c.local.dir
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("temporary content folder after Close: %v", err)
				}
			}
		})
	}
}

// TestDirtyOpenRemovesOrphanFiles: a content file no record owns (a crash
// between a record's delete and its file's unlink) goes at the next Open.
func TestDirtyOpenRemovesOrphanFiles(t *testing.T) {
	dir := t.TempDir()
	c, _ := openCache(t, "disk", dir, Options{})
	keep, _ := c.NewDirty(Record{Path: "keep"}, nil)
	orphan := filepath.Join(dir, "local", "999")
	if err := os.WriteFile(orphan, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	openCache(t, "disk", dir, Options{})
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan after Open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "local", "1")); err != nil || keep.ID() != 1 {
		t.Fatalf("owned content file after Open: %v", err)
	}
}

// TestDirtyMigratesOldFormat: a record of the format before content files
// (no format, pages in Badger under 'd', a short page, a page never
// written) keeps its content: OpenDirty moves the pages into a content
// file, and deletes them.
func TestDirtyMigratesOldFormat(t *testing.T) {
	for _, kind := range stores {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			r := rand.New(rand.NewPCG(8, 9))
			base := &bytesBase{b: randBytes(r, 3*PageSize+100)}
			c, logs := openCache(t, kind, dir, Options{})
			const id = 7
			size := int64(4*PageSize + 10)
			old := map[string]any{ // the JSON of an old record
				"path": "old/file.bin", "file_id": "f", "base_file_id": "f", "base_version": "v1",
				"base_size": len(base.b), "base_limit": len(base.b), "size": size, "gen": 5, "pending": true,
			}
			pages := map[int64][]byte{0: randBytes(r, PageSize), 2: randBytes(r, 1000), 4: randBytes(r, 10)}
			// The content as the old format read it: a page's bytes, zeros
			// to the page's end; the base under base_limit elsewhere.
			want := make([]byte, size)
			copy(want, base.b)
			for idx, p := range pages {
				clear(want[idx*PageSize : min(size, (idx+1)*PageSize)])
				copy(want[idx*PageSize:], p)
			}
			err := c.update(func(txn *badger.Txn) error { // outside maintenance's compaction
				v, _ := json.Marshal(old)
				if err := txn.Set(journalKey(id), v); err != nil {
					return err
				}
				for idx, p := range pages {
					k := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64([]byte{'d'}, id), uint64(idx))
					if err := txn.Set(k, p); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if kind == "disk" {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				c, logs = openCache(t, kind, dir, Options{})
			}
			recs, err := c.Journal()
			if err != nil || len(recs) != 1 || recs[0].ID != id || recs[0].Format != 0 {
				t.Fatalf("journal: %+v, %v", recs, err)
			}
			d, err := c.OpenDirty(recs[0], base)
			if err != nil {
				t.Fatal(err)
			}
			if readerSum(t, d) != sum(want) || d.Size() != size || d.Gen() != 5 || !d.Record().Pending {
				t.Fatalf("migrated content differs (size %d gen %d)", d.Size(), d.Gen())
			}
			if logs.count("moved local content") != 1 {
				t.Fatalf("log:\n%s", logs.String())
			}
			left := 0
			c.db.View(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: pagePrefix})
				defer it.Close()
				for it.Rewind(); it.Valid(); it.Next() {
					left++
				}
				return nil
			})
			if left != 0 {
				t.Fatalf("%d old pages left in Badger", left)
			}
			recs, _ = c.Journal()
			if recs[0].Format != contentFormat || !equalRuns(recs[0].Filled, [][2]int64{{0, 1}, {2, 3}, {4, 5}}) {
				t.Fatalf("migrated record: %+v", recs[0])
			}
			// Writes go on over the migrated content.
			if _, err := d.WriteAt(ctx, []byte("zz"), 2*PageSize+999); err != nil {
				t.Fatal(err)
			}
			copy(want[2*PageSize+999:], "zz")
			if !bytes.Equal(readDirty(t, d), want) {
				t.Fatal("content after a write over migrated content differs")
			}
			if kind == "mem" {
				return
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			c2, _ := openCache(t, kind, dir, Options{})
			recs, _ = c2.Journal()
			d2, err := c2.OpenDirty(recs[0], base)
			if err != nil || readerSum(t, d2) != sum(want) {
				t.Fatalf("migrated content after a restart differs (%v)", err)
			}
		})
	}
}

// TestDirtyCrashKeepsContent: the cache directory as a kill -9 leaves it
// (copied while the cache is open, so without Close; the page cache
// survives a process) reopens with every acknowledged write. Under
// another boot id (a power loss) unsynced content is marked unstored,
// and content synced since its last write is not.
func TestDirtyCrashKeepsContent(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(10, 11))
	base := &bytesBase{b: randBytes(r, 2*PageSize+3)}
	c, _ := openCache(t, "disk", dir, Options{})
	d, err := c.NewDirty(Record{Path: "c", FileID: "f", BaseVersion: "v", BaseSize: int64(len(base.b))}, base)
	if err != nil {
		t.Fatal(err)
	}
	synced, _ := c.NewDirty(Record{Path: "s"}, nil)
	if _, err := synced.WriteAt(ctx, []byte("synced"), 0); err != nil {
		t.Fatal(err)
	}
	if err := synced.Sync(); err != nil {
		t.Fatal(err)
	}
	model := append([]byte(nil), base.b...)
	for i := 0; i < 40; i++ {
		off := r.IntN(len(model) + PageSize)
		p := randBytes(r, 1+r.IntN(PageSize))
		if _, err := d.WriteAt(ctx, p, int64(off)); err != nil {
			t.Fatal(err)
		}
		if end := off + len(p); end > len(model) {
			model = append(model, make([]byte, end-len(model))...)
		}
		copy(model[off:], p)
		if i == 20 {
			if err := d.Truncate(ctx, PageSize+7); err != nil {
				t.Fatal(err)
			}
			model = model[:PageSize+7]
		}
	}
	crashed := func() string {
		cp := t.TempDir()
		if out, err := exec.Command("cp", "-a", dir+"/.", cp).CombinedOutput(); err != nil {
			t.Fatalf("copy the cache directory: %v: %s", err, out)
		}
		return cp
	}
	reopen := func(c2 *Cache) map[string]*Dirty {
		recs, err := c2.Journal()
		if err != nil || len(recs) != 2 {
			t.Fatalf("journal after the crash: %+v, %v", recs, err)
		}
		out := map[string]*Dirty{}
		for _, rec := range recs {
			var b BaseReader
			if rec.BaseVersion != "" {
				b = base
			}
			d2, err := c2.OpenDirty(rec, b)
			if err != nil {
				t.Fatal(err)
			}
			out[rec.Path] = d2
		}
		return out
	}

	c2, _ := openCache(t, "disk", crashed(), Options{})
	got := reopen(c2)
	if readerSum(t, got["c"]) != sum(model) || got["c"].Unstored() != nil {
		t.Fatalf("content after a kill -9 differs (size %d, want %d; %v)", got["c"].Size(), len(model), got["c"].Unstored())
	}

	c3, _ := openCache(t, "disk", crashed(), Options{})
	c3.local.boot = "another boot"
	got = reopen(c3)
	if err := got["c"].Unstored(); !errors.Is(err, ErrUnstored) || !errors.Is(err, errRestarted) {
		t.Fatalf("unsynced content after a power loss: %v", err)
	}
	if err := got["s"].Unstored(); err != nil || !bytes.Equal(readDirty(t, got["s"]), []byte("synced")) {
		t.Fatalf("synced content after a power loss: %v", err)
	}
	// The machine-wide Sync covers every content file.
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	c4, _ := openCache(t, "disk", crashed(), Options{})
	c4.local.boot = "yet another boot"
	if got := reopen(c4); got["c"].Unstored() != nil || readerSum(t, got["c"]) != sum(model) {
		t.Fatalf("content synced by Cache.Sync after a power loss: %v", got["c"].Unstored())
	}
}

// TestDirtyFailedPwriteIsUnstored: a write the content file refuses (here
// a descriptor that cannot write) fails, marks its range unstored, and
// leaves the journaled content as it was.
func TestDirtyFailedPwriteIsUnstored(t *testing.T) {
	ctx := context.Background()
	c, _ := openCache(t, "disk", "", Options{})
	d, _ := c.NewDirty(Record{Path: "x"}, nil)
	if _, err := d.WriteAt(ctx, []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	ro, err := os.Open(c.local.path(d.ID()))
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	rw := d.f
	d.f = ro
	d.mu.Unlock()
	if _, err := d.WriteAt(ctx, []byte("world"), 5); err == nil {
		t.Fatal("a write the file refused succeeded")
	}
	d.mu.Lock()
	d.f = rw
	d.mu.Unlock()
	ro.Close()
	if u := d.Unstored(); !errors.Is(u, ErrUnstored) || d.Size() != 5 || string(readDirty(t, d)) != "hello" {
		t.Fatalf("after a failed pwrite: %v, size %d", u, d.Size())
	}
	if _, err := d.WriteAt(ctx, []byte("world"), 5); err != nil || d.Unstored() != nil {
		t.Fatalf("writing the range again: %v, %v", err, d.Unstored())
	}
}

// TestDirtyBytesPastTheEndAreNeverRead: what the file holds past the end
// (bytes of a write that failed after its pwrite) reads as zeros once a
// write past a gap or a truncate up moves the end over it.
func TestDirtyBytesPastTheEndAreNeverRead(t *testing.T) {
	ctx := context.Background()
	c, _ := openCache(t, "mem", "", Options{})
	d, _ := c.NewDirty(Record{Path: "x"}, nil)
	if _, err := d.WriteAt(ctx, []byte("abc"), 0); err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte{0xee}, 2*PageSize)
	if _, err := d.f.WriteAt(junk, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(ctx, []byte("z"), PageSize+10); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, PageSize+11)
	copy(want, "abc")
	want[PageSize+10] = 'z'
	if !bytes.Equal(readDirty(t, d), want) {
		t.Fatal("a write past a gap shows bytes the file held past the end")
	}
	if _, err := d.f.WriteAt(junk, PageSize+11); err != nil {
		t.Fatal(err)
	}
	if err := d.Truncate(ctx, 3*PageSize); err != nil {
		t.Fatal(err)
	}
	want = append(want, make([]byte, 3*PageSize-len(want))...)
	if !bytes.Equal(readDirty(t, d), want) {
		t.Fatal("a truncate up shows bytes the file held past the end")
	}
}
