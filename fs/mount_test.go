package fs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

// seedFiles lists the seed's files (relative paths) with their sha256.
func seedFiles(t *testing.T) map[string]string {
	t.Helper()
	root := seedDir(t)
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = sha256File(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMountBrowseAndCopy(t *testing.T) {
	emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
	want := seedFiles(t)
	m := mountEmu(t, emu, mountConfig{})
	emu.ResetStats()

	ls := run(t, m.Dir, "ls", "-1")
	if ls != "README.txt\nrasters\ntables\nvectors\n" {
		t.Fatalf("ls of the root:\n%s", ls)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(run(t, m.Dir, "find", ".", "-type", "f")), "\n") {
		names = append(names, strings.TrimPrefix(l, "./"))
	}
	sort.Strings(names)
	var wantNames []string
	for n := range want {
		wantNames = append(wantNames, n)
	}
	sort.Strings(wantNames)
	if strings.Join(names, " ") != strings.Join(wantNames, " ") {
		t.Fatalf("find: %v\nwant %v", names, wantNames)
	}

	// stat: size, mode, st_blocks, times.
	seedTif, _ := os.Stat(filepath.Join(seedDir(t), "rasters/dem.tif"))
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(m.Dir, "rasters/dem.tif"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != seedTif.Size() || st.Mode != syscall.S_IFREG|0o644 || st.Blocks != (st.Size+511)/512 || st.Mtim.Sec == 0 {
		t.Fatalf("stat dem.tif: size %d mode %o blocks %d mtime %d", st.Size, st.Mode, st.Blocks, st.Mtim.Sec)
	}
	var dst syscall.Stat_t
	if err := syscall.Stat(filepath.Join(m.Dir, "rasters"), &dst); err != nil || dst.Mode != syscall.S_IFDIR|0o755 {
		t.Fatalf("stat rasters: mode %o err %v", dst.Mode, err)
	}
	if du := strings.Fields(run(t, m.Dir, "du", "-s", "--block-size=1", "."))[0]; du == "0" {
		t.Fatal("du reports 0 bytes")
	}
	if df := run(t, m.Dir, "df", "-P", "."); !strings.Contains(df, "evofs") {
		t.Fatalf("df: %s", df)
	}

	// A miss is free: sidecar probes make no API call.
	before := emu.Stats()
	for _, probe := range []string{"rasters/dem.tif.aux.xml", "rasters/dem.tif.ovr", "vectors/collars.qix", "nothing/here"} {
		if _, err := os.Stat(filepath.Join(m.Dir, probe)); !os.IsNotExist(err) {
			t.Fatalf("stat %s: %v, want ENOENT", probe, err)
		}
	}
	if d := apiCalls(emu.Stats()) - apiCalls(before); d != 0 {
		t.Fatalf("sidecar probes made %d API calls", d)
	}

	// cp -r: every byte as in the seed; one link per file read.
	out := t.TempDir()
	run(t, m.Dir, "cp", "-r", ".", out)
	for rel, sum := range want {
		if got := sha256File(t, filepath.Join(out, rel)); got != sum {
			t.Errorf("%s: sha256 %s, want %s", rel, got, sum)
		}
	}
	s := emu.Stats()
	if n := s.APICalls(emulator.OpListFiles); n != 1 {
		t.Errorf("%d list calls, want 1 snapshot", n)
	}
	if n := s.APICalls(emulator.OpGetFile); n != int64(len(want)) {
		t.Errorf("%d download links for %d files", n, len(want))
	}
}

func apiCalls(s emulator.Stats) int64 {
	var n int64
	for op := range s.API {
		n += s.APICalls(op)
	}
	return n
}

func TestMountScale12001Files(t *testing.T) {
	const n = 12001
	emu := startEmu(t, func(c *emulator.Config) { c.Synthetic = n })
	m := mountEmu(t, emu, mountConfig{ttl: 5 * time.Minute})
	emu.ResetStats()
	lines := strings.Count(run(t, m.Dir, "find", ".", "-type", "f"), "\n")
	if lines != n {
		t.Fatalf("find found %d files, want %d", lines, n)
	}
	if got := emu.Stats().APICalls(emulator.OpListFiles); got != 3 {
		t.Fatalf("the snapshot cost %d list calls, want 3 pages", got)
	}
	emu.ResetStats()
	run(t, m.Dir, "ls", "-lR")
	if got := apiCalls(emu.Stats()); got != 0 {
		t.Fatalf("ls -lR inside the TTL made %d API calls", got)
	}
}

// pattern is deterministic content: byte i is a function of i.
func pattern(size int) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < size; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < size; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func TestMountRandomPreads(t *testing.T) {
	const size = 256 << 20
	emu := startEmu(t)
	c := newClient(t, emu)
	m0 := mountEmu(t, emu, mountConfig{})
	src := pattern(size)
	upload(t, c, m0.Blobs, "big/random.bin", bytes.NewReader(src), size)
	m0.FS.Workspace().Invalidate()

	f, err := os.Open(filepath.Join(m0.Dir, "big/random.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 256<<10)
	for i := 0; i < 1000; i++ {
		n := 1 + r.IntN(len(buf))
		off := r.Int64N(size)
		got, err := f.ReadAt(buf[:n], off)
		want := src[off:min(off+int64(n), size)]
		if (err != nil && got != len(want)) || !bytes.Equal(buf[:got], want) {
			t.Fatalf("pread %d bytes at %d: got %d bytes, err %v, equal %v", n, off, got, err, bytes.Equal(buf[:got], want))
		}
	}
	// Random reads fetch only what they touch, not the whole file.
	if got := emu.Stats().Blob[emulator.BlobOpGet]; got == nil || got.Bytes >= size {
		t.Fatalf("random preads downloaded %v", got)
	}
}

func TestMountRemountWarmCacheMakesNoBlobGets(t *testing.T) {
	emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
	cacheDir := t.TempDir()
	m1 := mountEmu(t, emu, mountConfig{cacheDir: cacheDir})
	want := sha256File(t, filepath.Join(seedDir(t), "vectors/geology.gpkg"))
	if got := sha256File(t, filepath.Join(m1.Dir, "vectors/geology.gpkg")); got != want {
		t.Fatalf("first read: sha256 %s, want %s", got, want)
	}
	m1.unmount()

	emu.ResetStats()
	m2 := mountEmu(t, emu, mountConfig{cacheDir: cacheDir})
	if got := sha256File(t, filepath.Join(m2.Dir, "vectors/geology.gpkg")); got != want {
		t.Fatalf("warm read: sha256 %s, want %s", got, want)
	}
	s := emu.Stats()
	if g := s.Blob[emulator.BlobOpGet]; g != nil && g.Count != 0 {
		t.Fatalf("warm remount made %d blob GETs", g.Count)
	}
	if n := s.APICalls(emulator.OpGetFile); n != 0 {
		t.Fatalf("warm remount asked for %d download links", n)
	}
}

func TestMountSeesRemoteReplacementAfterTTL(t *testing.T) {
	emu := startEmu(t)
	c := newClient(t, emu)
	m := mountEmu(t, emu, mountConfig{ttl: time.Second})
	old := []byte("version one\n")
	upload(t, c, m.Blobs, "notes/a.txt", bytes.NewReader(old), int64(len(old)))
	m.FS.Workspace().Invalidate()
	p := filepath.Join(m.Dir, "notes/a.txt")
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, old) {
		t.Fatalf("read: %q, %v", got, err)
	}
	pinned, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()

	newer := []byte("version two, longer\n")
	upload(t, c, m.Blobs, "notes/a.txt", bytes.NewReader(newer), int64(len(newer)))
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := os.ReadFile(p)
		if err == nil && bytes.Equal(got, newer) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still reading %q (err %v) after the TTL", got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The handle opened before the replacement stays on its version.
	buf := make([]byte, 64)
	n, _ := pinned.ReadAt(buf, 0)
	if !bytes.Equal(buf[:n], old) {
		t.Fatalf("pinned handle read %q, want %q", buf[:n], old)
	}
	if st, _ := os.Stat(p); st.Size() != int64(len(newer)) {
		t.Fatalf("size after the TTL %d, want %d", st.Size(), len(newer))
	}
}

func TestMountGDALReadsWithFewCalls(t *testing.T) {
	emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
	m := mountEmu(t, emu, mountConfig{})
	emu.ResetStats()
	info := run(t, m.Dir, "gdalinfo", "rasters/dem.tif")
	if !strings.Contains(info, "Size is 64, 64") || !strings.Contains(info, "MGA zone 55") {
		t.Fatalf("gdalinfo:\n%s", info)
	}
	ogr := run(t, m.Dir, "ogrinfo", "-so", "vectors/collars.shp", "collars")
	if !strings.Contains(ogr, "Feature Count: 25") {
		t.Fatalf("ogrinfo:\n%s", ogr)
	}
	s := emu.Stats()
	// One listing; one link per file actually read (the GeoTIFF and at
	// most the shapefile's five parts); the probes of missing sidecars cost
	// nothing.
	if n := s.APICalls(emulator.OpListFiles); n != 1 {
		t.Errorf("%d list calls, want 1", n)
	}
	links := s.APICalls(emulator.OpGetFile)
	if links < 2 || links > 6 {
		t.Errorf("%d download links for 1 raster and 1 shapefile", links)
	}
	if total := apiCalls(s); total != links+1 {
		t.Errorf("%d API calls in all, want %d (links + 1 listing): %v", total, links+1, s.API)
	}
	t.Logf("gdalinfo + ogrinfo: %d API calls, %d links, %d blob GETs", apiCalls(s), links, s.Blob[emulator.BlobOpGet].Count)
}

func TestMountReadOfRemotelyDeletedFileIsENOENTWithOneLogLine(t *testing.T) {
	emu := startEmu(t)
	c := newClient(t, emu)
	m := mountEmu(t, emu, mountConfig{})
	body := []byte("soon gone\n")
	up := upload(t, c, m.Blobs, "notes/gone.txt", bytes.NewReader(body), int64(len(body)))
	m.FS.Workspace().Invalidate()
	f, err := os.Open(filepath.Join(m.Dir, "notes/gone.txt")) // listed; nothing read yet
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.DeleteFile(t.Context(), up.FileID); err != nil {
		t.Fatal(err)
	}
	_, err = f.Read(make([]byte, 16))
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("read of a file deleted remotely: %v, want ENOENT", err)
	}
	var lines []string
	for _, l := range strings.Split(m.Logs.String(), "\n") {
		if strings.Contains(l, "read failed") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "path=/notes/gone.txt") || !strings.Contains(lines[0], "code=files/gone") {
		t.Fatalf("want one log line naming the path and the service's code, got %q", lines)
	}
}

// TestAllowOtherEnforcesModes: under allow_other another user acts with the
// mounting user's login, so the kernel holds them to the modes shown
// (default_permissions): with umask 077 they can do nothing, with 022 read
// only; nothing they try reaches the service.
func TestAllowOtherEnforcesModes(t *testing.T) {
	for _, tc := range []struct {
		umask    uint32
		canRead  bool
		readable string
	}{
		{0o077, false, "-rw-------"},
		{0o022, true, "-rw-r--r--"},
	} {
		t.Run(fmt.Sprintf("umask=%03o", tc.umask), func(t *testing.T) {
			emu := startEmu(t)
			body := []byte("owner only\n")
			upload(t, newClient(t, emu), remote.NewBlobs(remote.BlobConfig{}), "site/notes.txt", bytes.NewReader(body), int64(len(body)))
			m := mountEmu(t, emu, mountConfig{allowOther: true, umask: tc.umask})
			// Let the other user reach the mountpoint (t.TempDir's are 0700).
			if err := os.Chmod(filepath.Dir(m.Dir), 0o755); err != nil {
				t.Fatal(err)
			}
			// The owner (root here) may write.
			if err := os.WriteFile(filepath.Join(m.Dir, "site/owner.txt"), body, 0o644); err != nil {
				t.Errorf("the owner's write: %v", err)
			}
			waitSettled(t, m)
			fi, err := os.Stat(filepath.Join(m.Dir, "site/notes.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().String(); got != tc.readable {
				t.Fatalf("mode %s, want %s", got, tc.readable)
			}
			emu.ResetStats()
			asNobody := func(script string) (string, error) {
				cmd := exec.Command("sh", "-c", script)
				cmd.Dir = "/"
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			f := filepath.Join(m.Dir, "site/notes.txt")
			out, err := asNobody("cat " + f)
			if tc.canRead != (err == nil) || (!tc.canRead && !strings.Contains(out, "Permission denied")) {
				t.Errorf("cat as nobody: %v %q (may read: %v)", err, out, tc.canRead)
			}
			if tc.canRead && out != string(body) {
				t.Errorf("cat as nobody read %q", out)
			}
			for _, script := range []string{
				"echo x >> " + f,
				"echo x > " + filepath.Join(m.Dir, "site/new.txt"),
				"rm -f " + f,
				"mv " + f + " " + filepath.Join(m.Dir, "site/moved.txt"),
				"mkdir " + filepath.Join(m.Dir, "site/sub"),
			} {
				if out, err := asNobody(script); err == nil || !strings.Contains(out, "Permission denied") {
					t.Errorf("%s as nobody: %v %q, want Permission denied", script, err, out)
				}
			}
			waitSettled(t, m)
			st := emu.Stats()
			if n := st.APICalls(emulator.OpUpsertFileByPath); n != 0 {
				t.Errorf("%d upserts reached the service", n)
			}
			if n := st.APICalls(emulator.OpDeleteFile) + st.APICalls(emulator.OpDeleteFileByPath); n != 0 {
				t.Errorf("%d deletes reached the service", n)
			}
			if _, got := remoteFile(t, m, "site/notes.txt"); string(got) != string(body) {
				t.Errorf("notes.txt remotely %q", got)
			}
		})
	}
}
