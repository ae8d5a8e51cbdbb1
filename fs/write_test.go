package fs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	evofs "github.com/evofs/evofs/fs"
	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

// memWriterAt collects a download of a known size (parallel ranges write
// to disjoint parts of b).
type memWriterAt struct{ b []byte }

func (m *memWriterAt) WriteAt(p []byte, off int64) (int, error) {
	return copy(m.b[off:], p), nil
}

// remoteFile returns the latest version of the file at p through the API
// (not through the mount), and its bytes.
func remoteFile(t *testing.T, m *mount, p string) (*remote.DownloadFileResponse, []byte) {
	t.Helper()
	ctx := context.Background()
	d, err := m.Client.GetFileByPath(ctx, p, remote.GetOptions{})
	if err != nil {
		t.Fatalf("get %s through the API: %v", p, err)
	}
	w := &memWriterAt{b: make([]byte, d.Size)}
	if err := m.Blobs.Download(ctx, remote.DownloadLink(m.Client, d), w, d.Size); err != nil {
		t.Fatalf("download %s: %v", p, err)
	}
	return d, w.b[:d.Size]
}

// remoteDeleted waits for the delete of an unlinked file at p, which waits
// its grace (deletes.go) for a save at p to take it over.
func remoteDeleted(t *testing.T, m *mount, p string) {
	t.Helper()
	var err error
	poll(t, evofs.DefaultDeleteGrace+20*time.Second, func() string { return p + " still there remotely: " + fmt.Sprint(err) }, func() bool {
		_, err = m.Client.GetFileByPath(context.Background(), p, remote.GetOptions{})
		return errors.Is(err, remote.ErrNotFound)
	})
}

// remoteMissing asserts that nothing is at p remotely.
func remoteMissing(t *testing.T, m *mount, p string) {
	t.Helper()
	_, err := m.Client.GetFileByPath(context.Background(), p, remote.GetOptions{})
	if !errors.Is(err, remote.ErrNotFound) {
		t.Fatalf("%s should be gone remotely; get says %v", p, err)
	}
}

func sum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestWriteCopyInSizes(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	src := t.TempDir()
	const blk = 8 << 20 // the upload's block size: one block ± 1 byte
	sizes := map[string]int{"empty": 0, "one": 1, "block-1": blk - 1, "block": blk, "block+1": blk + 1, "page+3": 256<<10 + 3}
	for name, n := range sizes {
		os.WriteFile(filepath.Join(src, name), randomBytes(uint64(n)+7, n), 0o644)
	}
	run(t, src, "mkdir", filepath.Join(m.Dir, "in"))
	run(t, src, "sh", "-c", "cp * "+filepath.Join(m.Dir, "in"))
	for name, n := range sizes {
		d, b := remoteFile(t, m, "in/"+name)
		if d.Size != int64(n) || sum(b) != sum(randomBytes(uint64(n)+7, n)) {
			t.Errorf("%s: remote has %d bytes (sha %s), want %d", name, d.Size, sum(b)[:12], n)
		}
		if got := sha256File(t, filepath.Join(m.Dir, "in", name)); got != sum(randomBytes(uint64(n)+7, n)) {
			t.Errorf("%s: read back through the mount differs", name)
		}
	}
	st := emu.Stats()
	if up := st.APICalls(emulator.OpUpsertFileByPath); up != int64(len(sizes)) {
		t.Errorf("%d upserts for %d new files: each close must make one version", up, len(sizes))
	}
}

func TestWriteLargeFile(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	const n = 300 << 20
	src := filepath.Join(t.TempDir(), "big")
	os.WriteFile(src, randomBytes(300, n), 0o644)
	run(t, m.Dir, "cp", src, filepath.Join(m.Dir, "big.bin"))
	d, b := remoteFile(t, m, "big.bin")
	if want := randomBytes(300, n); d.Size != n || sum(b) != sum(want) {
		for i := range b {
			if b[i] != want[i] {
				t.Logf("first difference at %d (block %d, page %d)", i, i/(8<<20), i/(256<<10))
				break
			}
		}
		t.Logf("mount reads the right bytes: %v", sha256File(t, filepath.Join(m.Dir, "big.bin")) == sum(want))
		t.Fatalf("remote big.bin: %d bytes, sha differs: %v", d.Size, sum(b) != sum(randomBytes(300, n)))
	}
	// Blocks went out while cp wrote (eager.go), into the one version
	// close committed: each block once, one version.
	st := emu.Stats()
	if st.BlocksRestaged != 0 || st.APICalls(emulator.OpUpsertFileByPath) != 1 {
		t.Errorf("%d blocks staged twice, %d upserts", st.BlocksRestaged, st.APICalls(emulator.OpUpsertFileByPath))
	}
	if pb := st.Blob[emulator.BlobOpPutBlock]; pb == nil || pb.Count != n/(8<<20)+1 {
		t.Errorf("put block requests: %+v, want one per block", pb)
	}
}

func TestWriteEditsInPlace(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	base := randomBytes(1, 3<<20+17)
	upload(t, m.Client, m.Blobs, "doc/data.bin", bytes.NewReader(base), int64(len(base)))
	p := filepath.Join(m.Dir, "doc/data.bin")
	want := append([]byte(nil), base...)
	v0, _ := remoteFile(t, m, "doc/data.bin")

	// Overwrite in the middle, across a page boundary.
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := []byte(strings.Repeat("evofs!", 100_000))
	if _, err := f.WriteAt(patch, 1<<20+5); err != nil {
		t.Fatal(err)
	}
	copy(want[1<<20+5:], patch)
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	v1, b := remoteFile(t, m, "doc/data.bin")
	if sum(b) != sum(want) || v1.FileID != v0.FileID || v1.VersionID == v0.VersionID {
		t.Fatalf("after overwrite: same bytes %v, file %s->%s, version %s->%s", sum(b) == sum(want), v0.FileID, v1.FileID, v0.VersionID, v1.VersionID)
	}

	// Append.
	run(t, m.Dir, "sh", "-c", "printf 'tail' >> doc/data.bin")
	want = append(want, "tail"...)
	if _, b := remoteFile(t, m, "doc/data.bin"); sum(b) != sum(want) {
		t.Fatalf("after append: remote has %d bytes, want %d", len(b), len(want))
	}

	// Truncate down, then up: the gap reads zeros, not the old bytes.
	if err := os.Truncate(p, 1000); err != nil {
		t.Fatal(err)
	}
	want = want[:1000]
	if _, b := remoteFile(t, m, "doc/data.bin"); sum(b) != sum(want) {
		t.Fatalf("after truncate down: %d bytes", len(b))
	}
	f, err = os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(5000); err != nil {
		t.Fatal(err)
	}
	want = append(want, make([]byte, 4000)...)
	if got := make([]byte, 5000); true {
		if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("read after ftruncate up: err %v, equal %v", err, bytes.Equal(got, want))
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, b := remoteFile(t, m, "doc/data.bin"); sum(b) != sum(want) {
		t.Fatalf("after ftruncate up: %d bytes", len(b))
	}
	if got := sha256File(t, p); got != sum(want) {
		t.Fatal("the mount reads other bytes than the remote has")
	}
}

func TestWriteNoChangeNoVersion(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	base := randomBytes(2, 600<<10)
	upload(t, m.Client, m.Blobs, "same.bin", bytes.NewReader(base), int64(len(base)))
	v0, _ := remoteFile(t, m, "same.bin")
	p := filepath.Join(m.Dir, "same.bin")
	emu.ResetStats()

	// Opened for writing and closed without a write.
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The same bytes written over themselves.
	f, _ = os.OpenFile(p, os.O_RDWR, 0)
	if _, err := f.WriteAt(base[300<<10:400<<10], 300<<10); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	v1, _ := remoteFile(t, m, "same.bin")
	st := emu.Stats()
	if v1.VersionID != v0.VersionID || st.APICalls(emulator.OpUpdateFile)+st.APICalls(emulator.OpUpsertFileByPath) != 0 {
		t.Fatalf("version %s -> %s, %d update and %d upsert calls: nothing changed, nothing may be uploaded",
			v0.VersionID, v1.VersionID, st.APICalls(emulator.OpUpdateFile), st.APICalls(emulator.OpUpsertFileByPath))
	}
}

func TestWriteRenameUnlinkAndFolders(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	put := func(p, content string) {
		upload(t, m.Client, m.Blobs, p, strings.NewReader(content), int64(len(content)))
	}
	put("a/one.txt", "one")
	put("a/sub/two.txt", "two")
	put("target.txt", "old target")
	put("moved.txt", "moved")
	target0, _ := remoteFile(t, m, "target.txt")
	mp := func(p string) string { return filepath.Join(m.Dir, p) }

	// A file, by name.
	if err := os.Rename(mp("moved.txt"), mp("renamed.txt")); err != nil {
		t.Fatal(err)
	}
	if _, b := remoteFile(t, m, "renamed.txt"); string(b) != "moved" {
		t.Fatalf("renamed.txt has %q", b)
	}
	remoteMissing(t, m, "moved.txt")

	// Over an existing file: the target gets a new version (its history stays).
	os.WriteFile(mp("tmp.save"), []byte("new target"), 0o644)
	if err := os.Rename(mp("tmp.save"), mp("target.txt")); err != nil {
		t.Fatal(err)
	}
	target1, b := remoteFile(t, m, "target.txt")
	if string(b) != "new target" || target1.FileID != target0.FileID || target1.VersionID == target0.VersionID {
		t.Fatalf("target.txt: %q, file %s->%s", b, target0.FileID, target1.FileID)
	}
	remoteMissing(t, m, "tmp.save")

	// A folder with files.
	if err := os.Rename(mp("a"), mp("b")); err != nil {
		t.Fatal(err)
	}
	if _, b := remoteFile(t, m, "b/sub/two.txt"); string(b) != "two" {
		t.Fatalf("b/sub/two.txt: %q", b)
	}
	remoteMissing(t, m, "a/one.txt")
	if got := run(t, m.Dir, "find", ".", "-type", "f"); strings.Contains(got, "./a/") || !strings.Contains(got, "./b/one.txt") {
		t.Fatalf("find after the folder rename:\n%s", got)
	}

	// mkdir, rmdir (ENOTEMPTY while something is in it), unlink.
	if err := os.Mkdir(mp("empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mp("empty"), 0o755); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("second mkdir: %v", err)
	}
	if err := syscall.Rmdir(mp("b")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir of a full folder: %v", err)
	}
	if err := os.Remove(mp("b/one.txt")); err != nil {
		t.Fatal(err)
	}
	remoteDeleted(t, m, "b/one.txt")
	if err := os.RemoveAll(mp("b")); err != nil {
		t.Fatalf("rm -r: %v", err)
	}
	remoteDeleted(t, m, "b/sub/two.txt")
	if err := os.Remove(mp("empty")); err != nil {
		t.Fatal(err)
	}
	if got := run(t, m.Dir, "ls", "-1"); got != "renamed.txt\ntarget.txt\n" {
		t.Fatalf("ls at the end:\n%s", got)
	}
}

func TestWriteRenameWhileOpen(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	mp := func(p string) string { return filepath.Join(m.Dir, p) }
	f, err := os.Create(mp(".report.tmp"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("first half, ")
	if err := os.Rename(mp(".report.tmp"), mp("report.txt")); err != nil {
		t.Fatal(err)
	}
	f.WriteString("second half")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, b := remoteFile(t, m, "report.txt"); string(b) != "first half, second half" {
		t.Fatalf("report.txt: %q", b)
	}
	remoteMissing(t, m, ".report.tmp")
}

func TestWriteBadInput(t *testing.T) {
	emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
	m := mountEmu(t, emu, mountConfig{})
	mp := func(p string) string { return filepath.Join(m.Dir, p) }
	long := strings.Repeat("x", 256)
	if _, err := os.Create(mp(long)); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("256-byte name: %v", err)
	}
	wantLogLine(t, m, `msg="create refused" path=/`+long+` code=files/invalid-path errno="file name too long" why="the name is 256 bytes; the service allows 255"`)
	deep := strings.Repeat("abcdefgh/", 120) + "x"
	if err := os.MkdirAll(mp(deep), 0o755); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("1,081-byte path: %v", err)
	}
	wantLogLine(t, m, `msg="mkdir refused" path=/`+deep[:1025]+` code=files/invalid-path errno="file name too long" why="the path is 1025 bytes; the service allows 1024"`)
	if _, err := os.Create(mp("bad\x01name")); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("control character: %v", err)
	}
	wantLogLine(t, m, `msg="create refused" path="/bad\x01name" code=files/invalid-path errno="invalid argument"`)
	if err := os.Symlink("README.txt", mp("link")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("symlink: %v", err)
	}
	if err := os.Link(mp("README.txt"), mp("hard")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("link: %v", err)
	}
	if err := os.Chmod(mp("README.txt"), 0o600); err != nil {
		t.Errorf("chmod is accepted: %v", err)
	}
	if err := os.Chtimes(mp("README.txt"), time.Now(), time.Now()); err != nil {
		t.Errorf("utimens is accepted: %v", err)
	}
	if st := emu.Stats(); st.APICalls(emulator.OpUpsertFileByPath) != 0 {
		t.Errorf("refused names reached the service: %d upserts", st.APICalls(emulator.OpUpsertFileByPath))
	}

	// A viewer: EACCES at open, and nothing reaches the service.
	ro := mountEmu(t, emu, mountConfig{token: emu.Info().ViewerToken})
	if _, err := os.OpenFile(filepath.Join(ro.Dir, "README.txt"), os.O_WRONLY, 0); !errors.Is(err, syscall.EACCES) {
		t.Errorf("viewer's open for writing: %v", err)
	}
	wantLogLine(t, ro, `msg="open for writing refused" path=/README.txt code=auth/insufficient-role errno="permission denied" why="the workspace role only allows reading"`)
	if _, err := os.Create(filepath.Join(ro.Dir, "new.txt")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("viewer's create: %v", err)
	}
	wantLogLine(t, ro, `msg="create refused" path=/new.txt code=auth/insufficient-role errno="permission denied"`)
	// A read-only mount: EROFS, from evofs (the kernel mount is not "ro",
	// so that local-only side files work: readonly_test.go).
	rofs := mountEmu(t, emu, mountConfig{readOnly: true})
	if _, err := os.Create(filepath.Join(rofs.Dir, "new.txt")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("read-only mount's create: %v", err)
	}
	if err := os.Truncate(filepath.Join(rofs.Dir, "README.txt"), 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("read-only mount's truncate: %v", err)
	}
}

// wantLogLine fails unless exactly one line of m's log contains want.
func wantLogLine(t *testing.T, m *mount, want string) {
	t.Helper()
	var got []string
	for _, l := range strings.Split(m.Logs.String(), "\n") {
		if strings.Contains(l, want) {
			got = append(got, l)
		}
	}
	if len(got) != 1 {
		t.Errorf("%d log lines contain %q, want 1; the log:\n%s", len(got), want, m.Logs.String())
	}
}

func TestWriteSQLiteReadOfWALGeoPackageUploadsNothing(t *testing.T) {
	emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
	m := mountEmu(t, emu, mountConfig{})
	v0, _ := remoteFile(t, m, "vectors/geology.gpkg")
	emu.ResetStats()
	// sqlite3 opens the database read-write, makes -wal and -shm beside it,
	// reads, and removes them when it closes, as QGIS does.
	out := run(t, filepath.Join(m.Dir, "vectors"), "sqlite3", "geology.gpkg",
		"PRAGMA journal_mode;", "SELECT count(*) FROM gpkg_contents;")
	if !strings.HasPrefix(out, "wal\n") {
		t.Fatalf("sqlite3 output:\n%s", out)
	}
	v1, _ := remoteFile(t, m, "vectors/geology.gpkg")
	st := emu.Stats()
	if v1.VersionID != v0.VersionID {
		t.Errorf("version %s -> %s after a read", v0.VersionID, v1.VersionID)
	}
	for _, op := range []string{emulator.OpUpsertFileByPath, emulator.OpUpdateFile} {
		if n := st.APICalls(op); n != 0 {
			t.Errorf("%d %s calls after a read", n, op)
		}
	}
	// The one delete allowed is the role probe of an open for writing,
	// which names no file (404).
	if n := st.APICalls(emulator.OpDeleteFile) - st.APICount(emulator.OpDeleteFile, 404); n != 0 {
		t.Errorf("%d deletes after a read", n)
	}
	files, err := m.Client.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f.Name, "-wal") || strings.HasSuffix(f.Name, "-shm") {
			t.Errorf("side file %s reached the service", f.FullPath())
		}
	}
}

func TestWriteSQLiteDatabase(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{})
	run(t, m.Dir, "mkdir", "db")
	var script strings.Builder
	script.WriteString("CREATE TABLE samples(id INTEGER PRIMARY KEY, hole TEXT, depth REAL, grade REAL);\n")
	for tx := 0; tx < 10; tx++ {
		script.WriteString("BEGIN;\n")
		for i := 0; i < 1000; i++ {
			n := tx*1000 + i
			fmt.Fprintf(&script, "INSERT INTO samples(hole, depth, grade) VALUES ('DH%03d', %d.5, 0.%d);\n", n%500, n, n%10)
		}
		script.WriteString("COMMIT;\n")
	}
	sqlFile := filepath.Join(t.TempDir(), "load.sql")
	os.WriteFile(sqlFile, []byte(script.String()), 0o644)
	run(t, filepath.Join(m.Dir, "db"), "sh", "-c", "sqlite3 assays.db < "+sqlFile)

	// The remote copy, checked by sqlite3 outside the mount.
	_, b := remoteFile(t, m, "db/assays.db")
	local := filepath.Join(t.TempDir(), "copy.db")
	os.WriteFile(local, b, 0o644)
	if out := run(t, t.TempDir(), "sqlite3", local, "PRAGMA integrity_check;", "SELECT count(*) FROM samples;"); out != "ok\n10000\n" {
		t.Fatalf("remote copy: %q", out)
	}
	remoteMissing(t, m, "db/assays.db-journal")
}

func TestWriteOgr2ogrGeoPackage(t *testing.T) {
	emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
	m := mountEmu(t, emu, mountConfig{})
	run(t, m.Dir, "mkdir", "out")
	run(t, m.Dir, "ogr2ogr", "-f", "GPKG", "out/collars.gpkg", "vectors/collars.shp")
	_, b := remoteFile(t, m, "out/collars.gpkg")
	local := filepath.Join(t.TempDir(), "collars.gpkg")
	os.WriteFile(local, b, 0o644)
	out := run(t, t.TempDir(), "ogrinfo", "-so", "-al", local)
	if !strings.Contains(out, "Layer name: collars") || !strings.Contains(out, "Feature Count:") {
		t.Fatalf("ogrinfo of the remote copy:\n%s", out)
	}
	files, err := m.Client.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.Contains(f.Name, "-journal") || strings.HasSuffix(f.Name, "-wal") {
			t.Errorf("side file %s reached the service", f.FullPath())
		}
	}
}
