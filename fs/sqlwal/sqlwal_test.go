package sqlwal

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// memDB is a bytes-backed DB.
type memDB struct{ b []byte }

func (m *memDB) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memDB) Truncate(_ context.Context, size int64) error {
	if size <= int64(len(m.b)) {
		m.b = m.b[:size]
		return nil
	}
	m.b = append(m.b, make([]byte, size-int64(len(m.b)))...)
	return nil
}

// sqlite runs script through the sqlite3 CLI on file db in dir and returns
// its output; anything on stderr fails the test.
func sqlite(t *testing.T, dir, db, script string) string {
	t.Helper()
	cmd := exec.Command("sqlite3", "-batch", "-bail", db)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(script)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("sqlite3 %s: %v: %s", db, err, errb.String())
	}
	return out.String()
}

// query writes db (and wal, when not nil) as x.db and x.db-wal in a fresh
// directory and runs sql on them with sqlite3: SQLite's own view of the bytes.
func query(t *testing.T, db, wal []byte, sql string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.db"), db, 0o644); err != nil {
		t.Fatal(err)
	}
	if wal != nil {
		if err := os.WriteFile(filepath.Join(dir, "x.db-wal"), wal, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sqlite(t, dir, "x.db", sql)
}

// view is everything the tests compare: integrity, row counts, and a SHA3
// digest (the sqlite3 CLI's sha3_query) of the schema and every row.
func view(t *testing.T, db, wal []byte) string {
	t.Helper()
	return query(t, db, wal, "PRAGMA integrity_check;\n"+
		"SELECT count(*) FROM t;\n"+
		"SELECT hex(sha3_query('SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name; SELECT * FROM t ORDER BY id'));\n")
}

func sameView(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.HasPrefix(got, "ok\n") {
		t.Fatalf("%s: integrity_check: %.300q", what, got)
	}
	if got != want {
		t.Fatalf("%s: content differs:\n got %q\nwant %q", what, got, want)
	}
}

// Script fragments. Every statement outside BEGIN/COMMIT is a transaction.
func prefix(pageSize int) string {
	return fmt.Sprintf("PRAGMA page_size=%d;\nPRAGMA journal_mode=WAL;\nPRAGMA wal_autocheckpoint=0;\n", pageSize)
}

const create = "CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, v TEXT);\nCREATE INDEX t_n ON t(n);\n"

func insert(from, to int) string {
	return fmt.Sprintf("WITH RECURSIVE c(i) AS (SELECT %d UNION ALL SELECT i+1 FROM c WHERE i<%d)\n"+
		"INSERT INTO t(n, v) SELECT i, printf('%%d:', i) || hex(zeroblob(i %% 200)) FROM c;\n", from, to)
}

// snap copies the database and its WAL from inside the running sqlite3,
// before its last close checkpoints and deletes the WAL.
func snap(name string) string {
	return fmt.Sprintf(".shell cp x.db %[1]s.db\n.shell cp x.db-wal %[1]s.db-wal\n", name)
}

type snapshot struct{ db, wal []byte }

// generate runs script on a new x.db and returns the named snapshots.
func generate(t *testing.T, script string, names ...string) map[string]snapshot {
	t.Helper()
	dir := t.TempDir()
	sqlite(t, dir, "x.db", script)
	snaps := make(map[string]snapshot)
	for _, name := range names {
		db, err := os.ReadFile(filepath.Join(dir, name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		wal, err := os.ReadFile(filepath.Join(dir, name+".db-wal"))
		if err != nil {
			t.Fatal(err)
		}
		snaps[name] = snapshot{db, wal}
	}
	return snaps
}

// frameInfo is one frame as the file holds it, validated or not.
type frameInfo struct {
	off                  int64 // of the frame header
	pgno, commit         uint32
	salt1, salt2, c1, c2 uint32
}

// frames lists every whole frame of wal without checking anything.
func frames(t *testing.T, wal []byte) (pageSize int, fs []frameInfo) {
	t.Helper()
	if len(wal) < 32 {
		t.Fatalf("WAL of %d bytes", len(wal))
	}
	be := binary.BigEndian
	pageSize = int(be.Uint32(wal[8:]))
	for off := 32; off+24+pageSize <= len(wal); off += 24 + pageSize {
		h := wal[off:]
		fs = append(fs, frameInfo{int64(off), be.Uint32(h), be.Uint32(h[4:]), be.Uint32(h[8:]), be.Uint32(h[12:]), be.Uint32(h[16:]), be.Uint32(h[20:])})
	}
	return pageSize, fs
}

// sum is the test's own rendering of SQLite's WAL checksum.
func sum(bigEndian bool, b []byte, s [2]uint32) [2]uint32 {
	word := func(p []byte) uint32 {
		if bigEndian {
			return uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])
		}
		return uint32(p[3])<<24 | uint32(p[2])<<16 | uint32(p[1])<<8 | uint32(p[0])
	}
	for len(b) >= 8 {
		s[0] += word(b) + s[1]
		s[1] += word(b[4:]) + s[0]
		b = b[8:]
	}
	return s
}

// reseal returns a copy of wal with the given magic, frame i's salts set by
// salt (when not nil), and every checksum recomputed so all of it is valid.
func reseal(t *testing.T, wal []byte, magic uint32, salt func(i int, s1, s2 uint32) (uint32, uint32)) []byte {
	t.Helper()
	w := bytes.Clone(wal)
	be := binary.BigEndian
	big := magic&1 == 1
	be.PutUint32(w, magic)
	s := sum(big, w[:24], [2]uint32{})
	be.PutUint32(w[24:], s[0])
	be.PutUint32(w[28:], s[1])
	pageSize, fs := frames(t, w)
	for i, fr := range fs {
		h := w[fr.off : fr.off+24+int64(pageSize)]
		if salt != nil {
			s1, s2 := salt(i, be.Uint32(w[16:]), be.Uint32(w[20:]))
			be.PutUint32(h[8:], s1)
			be.PutUint32(h[12:], s2)
		}
		s = sum(big, h[:8], s)
		s = sum(big, h[24:], s)
		be.PutUint32(h[16:], s[0])
		be.PutUint32(h[20:], s[1])
	}
	return w
}

func read(t *testing.T, wal []byte) *Frames {
	t.Helper()
	f, err := Read(bytes.NewReader(wal), int64(len(wal)))
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return f
}

// fold checkpoints wal into a copy of db with the package and checks the
// result's size and database header.
func fold(t *testing.T, db, wal []byte) (*Frames, []byte) {
	t.Helper()
	f := read(t, wal)
	if f == nil {
		t.Fatal("Read: nothing to checkpoint")
	}
	m := &memDB{b: bytes.Clone(db)}
	if err := f.Apply(context.Background(), bytes.NewReader(wal), m); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if want := int64(f.DBPages) * int64(f.PageSize); int64(len(m.b)) != want {
		t.Fatalf("folded size %d, want %d", len(m.b), want)
	}
	be := binary.BigEndian
	hdrPageSize := int(be.Uint16(m.b[16:]))
	if hdrPageSize == 1 {
		hdrPageSize = 65536
	}
	if hdrPageSize != f.PageSize {
		t.Fatalf("database header page size %d, WAL's %d", hdrPageSize, f.PageSize)
	}
	// The in-header size is what SQLite trusts when the change counter and
	// the version-valid-for number agree.
	if be.Uint32(m.b[24:]) == be.Uint32(m.b[92:]) && be.Uint32(m.b[28:]) != f.DBPages {
		t.Fatalf("database header says %d pages, commit frame %d", be.Uint32(m.b[28:]), f.DBPages)
	}
	return f, m.b
}

// checkPages recomputes from the raw frames which frame holds each page's
// newest image up to frame limit (exclusive), and compares with f.
func checkPages(t *testing.T, f *Frames, wal []byte, limit int) {
	t.Helper()
	_, fs := frames(t, wal)
	want := make(map[uint32]int64)
	for _, fr := range fs[:limit] {
		if fr.pgno <= f.DBPages {
			want[fr.pgno] = fr.off + 24
		}
	}
	if !reflect.DeepEqual(f.Pages, want) {
		t.Fatalf("Pages: %d entries, want %d (%v vs %v)", len(f.Pages), len(want), f.Pages, want)
	}
}

const counts = "SELECT count(*), sum(n), sum(v LIKE '%xyz') FROM t;\n"

// Test 1 and 6: whole WALs written by SQLite fold into a database SQLite
// sees as the same content, at several page sizes, including a WAL whose
// last commit shrinks the database below the file's size.
func TestFoldMatchesSQLite(t *testing.T) {
	t.Parallel()
	work := insert(1, 3000) + "UPDATE t SET v = v || 'xyz' WHERE n % 7 = 0;\nDELETE FROM t WHERE n % 10 = 3;\n"
	grow := insert(1, 3000) + "PRAGMA wal_checkpoint(TRUNCATE);\n" + insert(3001, 6000) + "DELETE FROM t WHERE n > 500;\nVACUUM;\n"
	tests := []struct {
		name       string
		pageSize   int
		script     string
		wantCounts string
		shrinks    bool // last commit is smaller than the db file
	}{
		{"fresh/4096", 4096, work, "2700|4052100|386\n", false},
		{"fresh/1024", 1024, work, "2700|4052100|386\n", false},
		{"fresh/65536", 65536, work, "2700|4052100|386\n", false},
		{"over-checkpointed/4096", 4096, insert(1, 3000) + "PRAGMA wal_checkpoint(TRUNCATE);\n" +
			"BEGIN;\nUPDATE t SET v = v || 'xyz' WHERE n % 7 = 0;\nDELETE FROM t WHERE n % 10 = 3;\nCOMMIT;\n" + insert(3001, 4000),
			"3700|7552600|386\n", false},
		{"shrink/4096", 4096, grow, "500|125250|0\n", true},
		{"shrink/1024", 1024, grow, "500|125250|0\n", true},
		{"shrink/65536", 65536, grow, "500|125250|0\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := generate(t, prefix(tt.pageSize)+create+tt.script+snap("end"), "end")["end"]
			f, folded := fold(t, s.db, s.wal)
			if f.PageSize != tt.pageSize {
				t.Fatalf("PageSize %d, want %d", f.PageSize, tt.pageSize)
			}
			_, fs := frames(t, s.wal)
			commits, last := 0, fs[len(fs)-1]
			for _, fr := range fs {
				if fr.commit != 0 {
					commits++
				}
			}
			if f.Commits != commits || last.commit != f.DBPages {
				t.Fatalf("Commits %d DBPages %d, frames say %d and %d", f.Commits, f.DBPages, commits, last.commit)
			}
			checkPages(t, f, s.wal, len(fs))
			if tt.shrinks {
				if int64(len(folded)) >= int64(len(s.db)) {
					t.Fatalf("folded %d bytes, db file %d: expected a shrink", len(folded), len(s.db))
				}
				beyond := false
				for _, fr := range fs {
					beyond = beyond || fr.pgno > f.DBPages
				}
				if !beyond {
					t.Fatal("no frame beyond the final size: the test does not exercise dropping them")
				}
			}
			sameView(t, "folded", view(t, folded, nil), view(t, s.db, s.wal))
			if got := query(t, folded, nil, counts); got != tt.wantCounts {
				t.Fatalf("counts %q, want %q", got, tt.wantCounts)
			}
		})
	}
}

// twoCommits makes snapshot a (create and insert: several commits) and
// snapshot b (a, then one large update) and c (b, then an insert).
func twoCommits(t *testing.T) map[string]snapshot {
	t.Helper()
	return generate(t, prefix(1024)+create+insert(1, 3000)+snap("a")+
		"UPDATE t SET v = v || 'xyz';\n"+snap("b")+insert(3001, 3500)+snap("c"), "a", "b", "c")
}

// frameCount is the number of whole frames in wal.
func frameCount(t *testing.T, wal []byte) int {
	t.Helper()
	_, fs := frames(t, wal)
	return len(fs)
}

// Test 2: a last transaction without its commit frame is not applied.
func TestUncommittedTail(t *testing.T) {
	t.Parallel()
	s := twoCommits(t)
	a, b := s["a"], s["b"]
	if !bytes.HasPrefix(b.wal, a.wal) {
		t.Fatal("WAL b does not extend WAL a")
	}
	pageSize, fs := frames(t, b.wal)
	nA := frameCount(t, a.wal)
	if len(fs)-nA < 4 || fs[len(fs)-1].commit == 0 {
		t.Fatalf("update wrote %d frames", len(fs)-nA)
	}
	frameSize := 24 + pageSize
	tests := []struct {
		name string
		size int
	}{
		{"cut mid transaction", 32 + (nA+2)*frameSize},
		{"cut before commit frame", 32 + (len(fs)-1)*frameSize},
		{"cut inside commit frame", len(b.wal) - 100},
		{"cut inside commit frame header", len(b.wal) - frameSize + 10},
	}
	want := read(t, a.wal)
	wantView := view(t, a.db, a.wal)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wal := b.wal[:tt.size]
			if got := read(t, wal); !reflect.DeepEqual(got, want) {
				t.Fatalf("Read = %+v, want %+v", got, want)
			}
			_, folded := fold(t, b.db, wal)
			sameView(t, "folded", view(t, folded, nil), wantView)
			sameView(t, "SQLite's recovery", view(t, b.db, wal), wantView)
			if got := query(t, folded, nil, counts); got != "3000|4501500|0\n" {
				t.Fatalf("counts %q", got)
			}
		})
	}
}

// Test 3: a corrupted byte invalidates its frame and every frame after it.
func TestCorruptFrame(t *testing.T) {
	t.Parallel()
	s := twoCommits(t)
	pageSize, fs := frames(t, s["c"].wal)
	nA, nB := frameCount(t, s["a"].wal), frameCount(t, s["b"].wal)
	tests := []struct {
		name   string
		frame  int
		at     int // offset within the frame
		want   string
		counts string
	}{
		{"page data of first update frame", nA, 24 + pageSize/2, "a", "3000|4501500|0\n"},
		{"page data of a middle update frame", (nA + nB) / 2, 24 + 7, "a", "3000|4501500|0\n"},
		{"last byte of update commit frame", nB - 1, 24 + pageSize - 1, "a", "3000|4501500|0\n"},
		{"commit field of update commit frame", nB - 1, 6, "a", "3000|4501500|0\n"},
		{"page number of first insert frame", nB, 3, "b", "3000|4501500|3000\n"},
		{"checksum of insert commit frame", len(fs) - 1, 20, "b", "3000|4501500|3000\n"},
	}
	views := map[string]string{"a": view(t, s["a"].db, s["a"].wal), "b": view(t, s["b"].db, s["b"].wal)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wal := bytes.Clone(s["c"].wal)
			wal[fs[tt.frame].off+int64(tt.at)] ^= 0x10
			want := s[tt.want]
			if got := read(t, wal); !reflect.DeepEqual(got, read(t, want.wal)) {
				t.Fatalf("Read = %+v, want snapshot %s", got, tt.want)
			}
			_, folded := fold(t, s["c"].db, wal)
			wantView := views[tt.want]
			sameView(t, "folded", view(t, folded, nil), wantView)
			sameView(t, "SQLite's recovery", view(t, s["c"].db, wal), wantView)
			if got := query(t, folded, nil, counts); got != tt.counts {
				t.Fatalf("counts %q, want %q", got, tt.counts)
			}
		})
	}
}

// Test 4: frames of an earlier WAL generation left past a restarted WAL's
// frames are ignored.
func TestStaleSaltAfterRestart(t *testing.T) {
	t.Parallel()
	s := generate(t, prefix(4096)+create+insert(1, 3000)+"PRAGMA wal_checkpoint;\n"+snap("old")+
		insert(3001, 3001)+snap("new"), "old", "new")
	old, cur := s["old"], s["new"]
	_, fs := frames(t, cur.wal)
	be := binary.BigEndian
	salt1, salt2 := be.Uint32(cur.wal[16:]), be.Uint32(cur.wal[20:])
	if salt1 == be.Uint32(old.wal[16:]) {
		t.Fatal("WAL did not restart")
	}
	fresh := 0
	for fresh < len(fs) && fs[fresh].salt1 == salt1 && fs[fresh].salt2 == salt2 {
		fresh++
	}
	if fresh == 0 || fresh >= len(fs)-5 {
		t.Fatalf("%d frames with the new salt of %d: no stale tail", fresh, len(fs))
	}
	f, folded := fold(t, cur.db, cur.wal)
	if f.Commits != 1 || f.Salt1 != salt1 || f.Salt2 != salt2 {
		t.Fatalf("Commits %d salts %#x %#x", f.Commits, f.Salt1, f.Salt2)
	}
	checkPages(t, f, cur.wal, fresh)
	sameView(t, "folded", view(t, folded, nil), view(t, cur.db, cur.wal))
	if got := query(t, folded, nil, counts); got != "3001|4504501|0\n" {
		t.Fatalf("counts %q", got)
	}
}

// Test 4, synthetic: frames whose checksums chain correctly but whose salt
// is not the header's end the valid part of the WAL, for SQLite and for Read.
func TestWrongSaltValidChecksum(t *testing.T) {
	t.Parallel()
	s := twoCommits(t)
	a, b := s["a"], s["b"]
	nA := frameCount(t, a.wal)
	wantView := view(t, a.db, a.wal)
	for _, which := range []int{1, 2} {
		t.Run(fmt.Sprintf("salt%d", which), func(t *testing.T) {
			wal := reseal(t, b.wal, magicLE, func(i int, s1, s2 uint32) (uint32, uint32) {
				if i >= nA && which == 1 {
					s1--
				} else if i >= nA {
					s2 ^= 1 << 31
				}
				return s1, s2
			})
			if got := read(t, wal); !reflect.DeepEqual(got, read(t, a.wal)) {
				t.Fatalf("Read = %+v", got)
			}
			_, folded := fold(t, b.db, wal)
			sameView(t, "folded", view(t, folded, nil), wantView)
			sameView(t, "SQLite's recovery", view(t, b.db, wal), wantView)
		})
	}
}

// Big-endian checksums (magic 0x377f0683), as a big-endian machine writes
// them: SQLite accepts the rewritten WAL, and so does Read.
func TestBigEndianChecksums(t *testing.T) {
	t.Parallel()
	s := twoCommits(t)["c"]
	wal := reseal(t, s.wal, magicBE, nil)
	if bytes.Equal(wal[24:32], s.wal[24:32]) {
		t.Fatal("resealing did not change the header checksum")
	}
	want := view(t, s.db, s.wal)
	sameView(t, "SQLite on big-endian WAL", view(t, s.db, wal), want)
	if got, le := read(t, wal), read(t, s.wal); !reflect.DeepEqual(got, le) {
		t.Fatalf("Read big-endian = %+v, little-endian %+v", got, le)
	}
	_, folded := fold(t, s.db, wal)
	sameView(t, "folded", view(t, folded, nil), want)
	// Little-endian checksums under the big-endian magic are invalid.
	bad := bytes.Clone(s.wal)
	binary.BigEndian.PutUint32(bad, magicBE)
	if f := read(t, bad); f != nil {
		t.Fatalf("Read with mismatched byte order = %+v", f)
	}
}

// Test 5: WALs with nothing to checkpoint.
func TestNothingToCheckpoint(t *testing.T) {
	t.Parallel()
	s := generate(t, prefix(4096)+create+insert(1, 200)+snap("s"), "s")["s"]
	_, fs := frames(t, s.wal)
	firstCommit := 0
	for fs[firstCommit].commit == 0 {
		firstCommit++
	}
	garbage := make([]byte, 4096+32)
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	badSum := bytes.Clone(s.wal)
	badSum[17] ^= 1 // salt-1: header checksum no longer matches
	// synth is a WAL of one committed one-page transaction, valid but
	// for a page size SQLite may not accept.
	synth := func(pageSize uint32) []byte {
		w := make([]byte, 32+24+int(pageSize))
		be := binary.BigEndian
		be.PutUint32(w[4:], 3007000)
		be.PutUint32(w[8:], pageSize)
		be.PutUint32(w[16:], 0x1234)
		be.PutUint32(w[32:], 1)      // page number
		be.PutUint32(w[36:], 1)      // commit: 1 page
		be.PutUint32(w[40:], 0x1234) // salt-1
		return reseal(t, w, magicLE, nil)
	}
	if f := read(t, synth(512)); f == nil || f.DBPages != 1 || f.Pages[1] != 32+24 {
		t.Fatalf("synthetic WAL: %+v", f)
	}
	tests := []struct {
		name string
		wal  []byte
	}{
		{"empty", nil},
		{"short header", s.wal[:31]},
		{"header only", s.wal[:32]},
		{"header and partial frame", s.wal[:32+24+100]},
		{"no commit frame", s.wal[:fs[firstCommit].off]},
		{"garbage", garbage},
		{"zeros", make([]byte, 32+24+4096)},
		{"bad header checksum", badSum},
		{"page size 1000", synth(1000)},
		{"page size 256", synth(256)},
		{"page size 131072", synth(131072)},
	}
	if firstCommit == 0 {
		t.Fatal("first transaction has a single frame")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Read(bytes.NewReader(tt.wal), int64(len(tt.wal)))
			if f != nil || err != nil {
				t.Fatalf("Read = %+v, %v; want nil, nil", f, err)
			}
		})
	}
	t.Run("zero-byte file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.db-wal")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		f, err := Read(fh, 0)
		if f != nil || err != nil {
			t.Fatalf("Read = %+v, %v", f, err)
		}
		// A nil *Frames applies nothing.
		m := &memDB{b: []byte("db")}
		if err := f.Apply(context.Background(), fh, m); err != nil || string(m.b) != "db" {
			t.Fatalf("nil Apply: %v, db %q", err, m.b)
		}
	})
	t.Run("unknown version", func(t *testing.T) {
		w := bytes.Clone(s.wal)
		binary.BigEndian.PutUint32(w[4:], 3007001)
		w = reseal(t, w, magicLE, nil)
		if f, err := Read(bytes.NewReader(w), int64(len(w))); err == nil || f != nil {
			t.Fatalf("Read = %+v, %v; want a version error", f, err)
		}
	})
	t.Run("WAL shorter than size", func(t *testing.T) {
		if f, err := Read(bytes.NewReader(s.wal[:1000]), int64(len(s.wal))); err == nil || f != nil {
			t.Fatalf("Read = %+v, %v; want a read error", f, err)
		}
	})
}

type failDB struct{ memDB }

func (failDB) WriteAt([]byte, int64) (int, error) { return 0, errors.New("disk on fire") }

func TestApplyErrors(t *testing.T) {
	t.Parallel()
	s := generate(t, prefix(4096)+create+insert(1, 200)+snap("s"), "s")["s"]
	f := read(t, s.wal)
	if f == nil {
		t.Fatal("nothing to checkpoint")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := &memDB{b: bytes.Clone(s.db)}
	if err := f.Apply(ctx, bytes.NewReader(s.wal), m); !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with cancelled context: %v", err)
	}
	if !bytes.Equal(m.b, s.db) {
		t.Fatal("cancelled Apply wrote")
	}
	err := f.Apply(context.Background(), bytes.NewReader(s.wal), &failDB{})
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "write page 1 ") {
		t.Fatalf("Apply on failing db: %v", err)
	}
	err = f.Apply(context.Background(), bytes.NewReader(s.wal[:100]), m)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Apply on short WAL: %v", err)
	}
}
