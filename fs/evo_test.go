package fs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	evofs "github.com/evofs/evofs/fs"
	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

// fiveVersions uploads five versions of p through the API, each with its
// own bytes, and returns them oldest first.
func fiveVersions(t *testing.T, c *remote.Client, b *remote.Blobs, p string) ([][]byte, string) {
	t.Helper()
	var contents [][]byte
	var id string
	for i := range 5 {
		data := randomBytes(uint64(100+i), 10_000+i*1_000)
		up := upload(t, c, b, p, bytes.NewReader(data), int64(len(data)))
		id = up.FileID
		contents = append(contents, data)
	}
	return contents, id
}

// versionsOf is the API's answer with versions, oldest first.
func versionsOf(t *testing.T, c *remote.Client, id string, deleted bool) *remote.DownloadFileResponse {
	t.Helper()
	d, err := c.GetFile(context.Background(), id, remote.GetOptions{IncludeVersions: true, Deleted: deleted})
	if err != nil {
		t.Fatalf("get versions of %s: %v", id, err)
	}
	// Oldest first: by time, ties (whole seconds) as listed, newest first.
	if len(d.Versions) > 1 && d.Versions[0].VersionID == d.VersionID {
		slices.Reverse(d.Versions)
	}
	sort.SliceStable(d.Versions, func(i, j int) bool { return d.Versions[i].CreatedAt.Before(d.Versions[j].CreatedAt) })
	if d.Versions[len(d.Versions)-1].VersionID != d.VersionID {
		t.Fatalf("the latest version %s is not last in %+v", d.VersionID, d.Versions)
	}
	return d
}

func getxattr(t *testing.T, path, name string) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(path, name, buf)
	if err != nil {
		t.Fatalf("getxattr %s %s: %v", path, name, err)
	}
	return string(buf[:n])
}

func listxattr(t *testing.T, path string) []string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Listxattr(path, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", path, err)
	}
	return strings.FieldsFunc(string(buf[:n]), func(r rune) bool { return r == 0 })
}

func who(u *remote.User) string {
	if u == nil {
		return ""
	}
	return u.Name + " <" + u.Email + ">"
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func TestEvoVersions(t *testing.T) {
	emu := startEmu(t)
	c := newClient(t, emu)
	b := remote.NewBlobs(remote.BlobConfig{})
	contents, id := fiveVersions(t, c, b, "a/b.tif")
	m := mountEmu(t, emu, mountConfig{})

	// The root, find and du never enter .evo, and cost no version listing.
	emu.ResetStats()
	root, err := os.ReadDir(m.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range root {
		if e.Name() == evofs.EvoDir {
			t.Fatalf("readdir of the root lists %s", evofs.EvoDir)
		}
	}
	for _, cmd := range [][]string{{"find", "."}, {"du", "-a", "."}, {"ls", "-laR"}} {
		if out := run(t, m.Dir, cmd[0], cmd[1:]...); strings.Contains(out, evofs.EvoDir) || !strings.Contains(out, "b.tif") {
			t.Fatalf("%v walked into %s (or missed the file):\n%s", cmd, evofs.EvoDir, out)
		}
	}
	if n := emu.Stats().APICalls(emulator.OpGetFile); n != 0 {
		t.Fatalf("walking the mount made %d get calls", n)
	}
	// ... but .evo is there by name.
	if fi, err := os.Stat(filepath.Join(m.Dir, ".evo/versions/a")); err != nil || !fi.IsDir() {
		t.Fatalf("stat .evo/versions/a: %v %v", fi, err)
	}

	d := versionsOf(t, c, id, false)
	if len(d.Versions) != 5 {
		t.Fatalf("the API lists %d versions", len(d.Versions))
	}
	var want []string
	for i, v := range d.Versions {
		want = append(want, evofs.VersionName("b.tif", i+1, v.VersionID, v.CreatedAt))
	}
	dir := filepath.Join(m.Dir, ".evo/versions/a/b.tif")
	emu.ResetStats()
	ents, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("versions folder lists\n%v\nwant, in time order,\n%v", got, want)
	}
	if _, err := os.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	if n := emu.Stats().APICalls(emulator.OpGetFile); n != 1 {
		t.Fatalf("listing the versions twice made %d get calls, want 1", n)
	}
	for i, name := range got {
		p := filepath.Join(dir, name)
		if !strings.HasSuffix(name, ".tif") || !strings.Contains(name, d.Versions[i].VersionID) {
			t.Errorf("name %s: want the version id and .tif", name)
		}
		if s := sha256File(t, p); s != sum(contents[i]) {
			t.Errorf("version %d (%s) reads other bytes", i, name)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != int64(len(contents[i])) || !fi.ModTime().Equal(d.Versions[i].CreatedAt) || fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("%s: size %d mtime %s mode %s; want %d, %s, read-only", name, fi.Size(), fi.ModTime(), fi.Mode(), len(contents[i]), d.Versions[i].CreatedAt)
		}
		attrs := map[string]string{
			"user.evo.file_id": id, "user.evo.version_id": d.Versions[i].VersionID,
			"user.evo.created_by": who(d.CreatedBy), "user.evo.created_at": rfc(d.CreatedAt),
			"user.evo.modified_by": who(d.Versions[i].CreatedBy), "user.evo.modified_at": rfc(d.Versions[i].CreatedAt),
		}
		for k, v := range attrs {
			if g := getxattr(t, p, k); g != v {
				t.Errorf("%s %s = %q, want %q", name, k, g, v)
			}
		}
		if l := listxattr(t, p); len(l) < len(attrs) {
			t.Errorf("%s lists attributes %v", name, l)
		}
	}

	// The current version read through versions/ is in the cache the
	// live file reads from: no blob GET, no link.
	emu.ResetStats()
	if s := sha256File(t, filepath.Join(m.Dir, "a/b.tif")); s != sum(contents[4]) {
		t.Fatal("the live file reads other bytes")
	}
	if st := emu.Stats(); st.Blob[emulator.BlobOpGet] != nil || st.APICalls(emulator.OpGetFile) != 0 {
		t.Errorf("the live file, read after its version in versions/, cost %+v blob GETs and %d get calls",
			st.Blob[emulator.BlobOpGet], st.APICalls(emulator.OpGetFile))
	}

	// The live file's attributes are the listing's.
	page, err := c.ListFiles(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lf := page.Files[0]
	live := filepath.Join(m.Dir, "a/b.tif")
	wantLive := map[string]string{
		"user.evo.file_id": lf.FileID, "user.evo.version_id": lf.VersionID, "user.evo.etag": lf.ETag,
		"user.evo.created_by": who(lf.CreatedBy), "user.evo.created_at": rfc(lf.CreatedAt),
		"user.evo.modified_by": who(lf.ModifiedBy), "user.evo.modified_at": rfc(lf.ModifiedAt),
	}
	names := listxattr(t, live)
	for k, v := range wantLive {
		if g := getxattr(t, live, k); g != v {
			t.Errorf("live %s = %q, want %q", k, g, v)
		}
		if !slices.Contains(names, k) {
			t.Errorf("listxattr of the live file misses %s: %v", k, names)
		}
	}
	if _, err := exec.LookPath("getfattr"); err == nil {
		if out := run(t, m.Dir, "getfattr", "-d", "a/b.tif"); !strings.Contains(out, "user.evo.file_id=\""+lf.FileID) {
			t.Errorf("getfattr -d shows\n%s", out)
		}
	}

	// Read-only: no writes, no new files, no deletes.
	if err := os.WriteFile(filepath.Join(dir, got[0]), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write a version: %v, want EROFS", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "new.tif"), []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("create in versions: %v, want EROFS", err)
	}
	if err := os.Mkdir(filepath.Join(m.Dir, ".evo/versions/new"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mkdir in versions: %v, want EROFS", err)
	}
	if err := os.Remove(filepath.Join(dir, got[0])); !errors.Is(err, syscall.EROFS) {
		t.Errorf("rm a version: %v, want EROFS", err)
	}
	if err := os.Rename(live, filepath.Join(dir, "x.tif")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mv a live file into versions: %v, want EROFS", err)
	}
}

func TestEvoRestoreVersionByCopy(t *testing.T) {
	emu := startEmu(t)
	c := newClient(t, emu)
	b := remote.NewBlobs(remote.BlobConfig{})
	contents, id := fiveVersions(t, c, b, "a/b.tif")
	m := mountEmu(t, emu, mountConfig{})
	d := versionsOf(t, c, id, false)
	old := evofs.VersionName("b.tif", 2, d.Versions[1].VersionID, d.Versions[1].CreatedAt)

	emu.ResetStats()
	run(t, m.Dir, "cp", ".evo/versions/a/b.tif/"+old, "a/b.tif")
	st := emu.Stats()
	after := versionsOf(t, c, id, false)
	if len(after.Versions) != 6 {
		t.Fatalf("after cp the file has %d versions, want 6", len(after.Versions))
	}
	latest := after.Versions[5]
	if latest.Size != int64(len(contents[1])) || after.VersionID != latest.VersionID {
		t.Fatalf("the sixth version: %+v (file's latest %s)", latest, after.VersionID)
	}
	got := make([]byte, latest.Size)
	if _, err := b.ReadAt(context.Background(), remote.DownloadLink(c, after), got, 0); err != nil {
		t.Fatal(err)
	}
	if sum(got) != sum(contents[1]) {
		t.Fatal("the sixth version's bytes are not the old version's")
	}
	// What went through the machine: the old version's bytes down (no
	// store-side copy; see docs/semantics.md) and the new version's up.
	var down, up, copies int64
	if g := st.Blob[emulator.BlobOpGet]; g != nil {
		down = g.Bytes
	}
	for _, op := range []string{emulator.BlobOpPutBlob, emulator.BlobOpPutBlock} {
		if g := st.Blob[op]; g != nil {
			up += g.Bytes
		}
	}
	if g := st.Blob[emulator.BlobOpCopy]; g != nil {
		copies = g.Count
	}
	t.Logf("cp of a %d-byte version: %d bytes downloaded, %d uploaded, %d store-side copies", len(contents[1]), down, up, copies)
	if down != int64(len(contents[1])) || up != int64(len(contents[1])) || copies != 0 {
		t.Fatalf("cp moved %d bytes down, %d up, %d copies; want the version's %d each way through the machine", down, up, copies, len(contents[1]))
	}
	// The restored content reads as the live file.
	live := filepath.Join(m.Dir, "a/b.tif")
	if s := sha256File(t, live); s != sum(contents[1]) {
		t.Fatal("the live file reads other bytes after the restore")
	}
	// Committed here, before any listing shows it: its ids, and the
	// file's creation from the listing of the version before.
	for k, v := range map[string]string{"user.evo.file_id": id, "user.evo.version_id": after.VersionID,
		"user.evo.created_at": rfc(after.CreatedAt), "user.evo.created_by": who(after.CreatedBy)} {
		if g := getxattr(t, live, k); g != v {
			t.Errorf("after cp %s = %q, want %q", k, g, v)
		}
	}
	if _, err := unix.Getxattr(live, evofs.StateXattr, make([]byte, 64)); !errors.Is(err, unix.ENODATA) {
		t.Errorf("%s of a committed file: %v, want ENODATA", evofs.StateXattr, err)
	}
	// The new version is in versions/ once the listing has it.
	m.FS.Workspace().Invalidate()
	ents, err := os.ReadDir(filepath.Join(m.Dir, ".evo/versions/a/b.tif"))
	if err != nil || len(ents) != 6 || ents[5].Name() != evofs.VersionName("b.tif", 6, latest.VersionID, latest.CreatedAt) {
		t.Errorf("after the restore versions/ lists %v, %v", ents, err)
	}
}

// deleteAPI deletes the file at p through the API, as another client would.
func deleteAPI(t *testing.T, c *remote.Client, p string) {
	t.Helper()
	if err := c.DeleteFileByPath(context.Background(), p); err != nil {
		t.Fatalf("delete %s: %v", p, err)
	}
}

func TestEvoTrash(t *testing.T) {
	emu := startEmu(t)
	c := newClient(t, emu)
	b := remote.NewBlobs(remote.BlobConfig{})
	ctx := context.Background()
	gone1 := randomBytes(1, 5000)
	upload(t, c, b, "a/gone.tif", bytes.NewReader(randomBytes(2, 3000)), 3000)
	up := upload(t, c, b, "a/gone.tif", bytes.NewReader(gone1), int64(len(gone1)))
	deleteAPI(t, c, "a/gone.tif")
	// taken.tif: deleted, then a new file at its path.
	oldTaken := upload(t, c, b, "a/taken.tif", bytes.NewReader([]byte("old")), 3)
	deleteAPI(t, c, "a/taken.tif")
	newTaken := upload(t, c, b, "a/taken.tif", bytes.NewReader([]byte("new!")), 4)
	// late.tif: deleted, and a new file at its path after the mount listed.
	lateOld := upload(t, c, b, "a/late.tif", bytes.NewReader([]byte("late")), 4)
	deleteAPI(t, c, "a/late.tif")
	// moved.tif: restored to another path.
	upload(t, c, b, "b/moved.tif", bytes.NewReader([]byte("moved")), 5)
	deleteAPI(t, c, "b/moved.tif")
	// dup.tif: deleted twice, as two files.
	first := upload(t, c, b, "c/dup.tif", bytes.NewReader([]byte("one")), 3)
	deleteAPI(t, c, "c/dup.tif")
	upload(t, c, b, "c/dup.tif", bytes.NewReader([]byte("two!")), 4)
	deleteAPI(t, c, "c/dup.tif")
	m := mountEmu(t, emu, mountConfig{})

	trash := filepath.Join(m.Dir, ".evo/trash")
	// Of two files deleted at one path, the last deleted keeps the name.
	fd := versionsOf(t, c, first.FileID, true)
	older := evofs.TrashName("dup.tif", first.FileID, *fd.DeletedAt)
	for name, want := range map[string]string{"dup.tif": "two!", older: "one"} {
		if got, err := os.ReadFile(filepath.Join(trash, "c", name)); err != nil || string(got) != want {
			t.Fatalf("trash/c/%s reads %q, %v; want %q", name, got, err, want)
		}
	}
	// Its folder is gone with it: make it first, as for any mv.
	if err := os.Mkdir(filepath.Join(m.Dir, "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(trash, "c", older), filepath.Join(m.Dir, "c/dup.tif")); err != nil {
		t.Fatalf("restore the file deleted first: %v", err)
	}
	if d, err := c.GetFileByPath(ctx, "c/dup.tif", remote.GetOptions{}); err != nil || d.FileID != first.FileID {
		t.Fatalf("after restoring the file deleted first the API has %+v, %v", d, err)
	}
	if got, err := os.ReadFile(filepath.Join(m.Dir, "c/dup.tif")); err != nil || string(got) != "one" {
		t.Fatalf("the restored c/dup.tif reads %q, %v", got, err)
	}
	ents, err := os.ReadDir(filepath.Join(trash, "a"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"gone.tif", "late.tif", "taken.tif"}) {
		t.Fatalf("trash/a lists %v", names)
	}
	tp := filepath.Join(trash, "a/gone.tif")
	if s := sha256File(t, tp); s != sum(gone1) {
		t.Fatal("the deleted file reads other bytes")
	}
	del := versionsOf(t, c, up.FileID, true)
	for k, v := range map[string]string{
		"user.evo.file_id": up.FileID, "user.evo.version_id": del.VersionID,
		"user.evo.deleted_by": who(del.DeletedBy), "user.evo.deleted_at": rfc(*del.DeletedAt),
		"user.evo.modified_at": rfc(del.ModifiedAt),
	} {
		if g := getxattr(t, tp, k); g != v || v == "" {
			t.Errorf("trash %s = %q, want %q", k, g, v)
		}
	}

	// No purge, no writes.
	if err := os.Remove(tp); !errors.Is(err, syscall.EPERM) {
		t.Errorf("rm in the trash: %v, want EPERM", err)
	}
	if err := os.WriteFile(tp, []byte("x"), 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write in the trash: %v, want EROFS", err)
	}
	if err := os.Rename(tp, filepath.Join(trash, "a/other.tif")); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mv within the trash: %v, want EROFS", err)
	}

	// A restore onto a taken path changes nothing.
	emu.ResetStats()
	if err := os.Rename(filepath.Join(trash, "a/taken.tif"), filepath.Join(m.Dir, "a/taken.tif")); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("restore onto a taken path: %v, want EEXIST", err)
	}
	if n := emu.Stats().APICalls(emulator.OpRestoreFile); n != 0 {
		t.Errorf("the refused restore made %d restore calls", n)
	}
	if d := versionsOf(t, c, oldTaken.FileID, true); d.DeletedAt == nil {
		t.Error("the deleted file at the taken path was restored")
	}
	if d, err := c.GetFileByPath(ctx, "a/taken.tif", remote.GetOptions{}); err != nil || d.FileID != newTaken.FileID || d.VersionID != newTaken.VersionID {
		t.Errorf("the file at the taken path changed: %+v %v", d, err)
	}

	// The service finds the path taken though the mount's listing did
	// not (303, restored at a new name): the file goes back to the trash.
	if _, err := os.Stat(filepath.Join(m.Dir, "a/late.tif")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a/late.tif before: %v", err)
	}
	lateNew := upload(t, c, b, "a/late.tif", bytes.NewReader([]byte("newer")), 5)
	if err := os.Rename(filepath.Join(trash, "a/late.tif"), filepath.Join(m.Dir, "a/late.tif")); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("restore onto a path taken since the listing: %v, want EEXIST", err)
	}
	if d := versionsOf(t, c, lateOld.FileID, true); d.DeletedAt == nil {
		t.Errorf("the file restored onto a taken path stays live at /%s", d.FullPath())
	}
	if d, err := c.GetFileByPath(ctx, "a/late.tif", remote.GetOptions{}); err != nil || d.FileID != lateNew.FileID {
		t.Errorf("the file at the taken path changed: %+v %v", d, err)
	}

	// mv back restores in place, with the file's versions.
	if err := os.Rename(tp, filepath.Join(m.Dir, "a/gone.tif")); err != nil {
		t.Fatalf("restore: %v", err)
	}
	d, err := c.GetFileByPath(ctx, "a/gone.tif", remote.GetOptions{IncludeVersions: true})
	if err != nil || d.FileID != up.FileID || len(d.Versions) != 2 || d.DeletedAt != nil {
		t.Fatalf("after the restore the API shows %+v, %v; want file %s live with 2 versions", d, err, up.FileID)
	}
	if s := sha256File(t, filepath.Join(m.Dir, "a/gone.tif")); s != sum(gone1) {
		t.Fatal("the restored file reads other bytes")
	}
	if _, err := os.Stat(tp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the restored file is still in the trash: %v", err)
	}
	// It is a live file again: it takes a new version.
	if err := os.WriteFile(filepath.Join(m.Dir, "a/gone.tif"), []byte("again"), 0o644); err != nil {
		t.Fatalf("write the restored file: %v", err)
	}
	if d := versionsOf(t, c, up.FileID, false); len(d.Versions) != 3 {
		t.Errorf("after a write the restored file has %d versions, want 3", len(d.Versions))
	}

	// A restore to another path: restored, then renamed.
	if err := os.Rename(filepath.Join(trash, "b/moved.tif"), filepath.Join(m.Dir, "a/elsewhere.tif")); err != nil {
		t.Fatalf("restore to another path: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(m.Dir, "a/elsewhere.tif")); err != nil || string(got) != "moved" {
		t.Fatalf("the file restored elsewhere reads %q, %v", got, err)
	}
	if _, err := c.GetFileByPath(ctx, "a/elsewhere.tif", remote.GetOptions{}); err != nil {
		t.Fatalf("the API has no file at the restore's target: %v", err)
	}
	if _, err := c.GetFileByPath(ctx, "b/moved.tif", remote.GetOptions{}); err == nil {
		t.Fatal("the file restored elsewhere is also live at its old path")
	}
}

func TestEvoTrash12001Files(t *testing.T) {
	const n = 12001
	emu := startEmu(t, func(c *emulator.Config) { c.SyntheticDeleted = n })
	m := mountEmu(t, emu, mountConfig{ttl: 5 * time.Minute})
	if got := strings.Count(run(t, m.Dir, "find", ".", "-type", "f"), "\n"); got != 0 {
		t.Fatalf("find of the mount found %d files: the trash is not live", got)
	}
	emu.ResetStats()
	lines := strings.Count(run(t, m.Dir, "find", ".evo/trash", "-type", "f"), "\n")
	if lines != n {
		t.Fatalf("find found %d files in the trash, want %d", lines, n)
	}
	if got := emu.Stats().APICalls(emulator.OpListFiles); got != 3 {
		t.Fatalf("the trash cost %d list calls, want 3 pages", got)
	}
	if got := emu.Stats().APICalls(emulator.OpGetFile); got != 0 {
		t.Fatalf("listing the trash made %d get calls", got)
	}
}

func TestEvoViewer(t *testing.T) {
	emu := startEmu(t)
	c := newClient(t, emu)
	b := remote.NewBlobs(remote.BlobConfig{})
	contents, id := fiveVersions(t, c, b, "a/b.tif")
	gone := randomBytes(7, 4000)
	up := upload(t, c, b, "a/gone.tif", bytes.NewReader(gone), int64(len(gone)))
	deleteAPI(t, c, "a/gone.tif")
	m := mountEmu(t, emu, mountConfig{token: emu.Info().ViewerToken})

	d := versionsOf(t, c, id, false)
	v := filepath.Join(m.Dir, ".evo/versions/a/b.tif", evofs.VersionName("b.tif", 1, d.Versions[0].VersionID, d.Versions[0].CreatedAt))
	if s := sha256File(t, v); s != sum(contents[0]) {
		t.Fatal("a viewer reads other bytes of the first version")
	}
	tp := filepath.Join(m.Dir, ".evo/trash/a/gone.tif")
	if s := sha256File(t, tp); s != sum(gone) {
		t.Fatal("a viewer reads other bytes of the deleted file")
	}
	emu.ResetStats()
	if err := os.Rename(tp, filepath.Join(m.Dir, "a/gone.tif")); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("a viewer's restore: %v, want EACCES", err)
	}
	if n := emu.Stats().APICount(emulator.OpRestoreFile, 204) + emu.Stats().APICount(emulator.OpRestoreFile, 303); n != 0 {
		t.Fatalf("a viewer's restore went through (%d)", n)
	}
	if dd := versionsOf(t, c, up.FileID, true); dd.DeletedAt == nil {
		t.Fatal("the viewer's restore restored the file")
	}
	if _, err := os.Stat(tp); err != nil {
		t.Fatalf("the file left the viewer's trash: %v", err)
	}
}

func TestEvoStateXattr(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{async: true, debounce: time.Minute})
	p := filepath.Join(m.Dir, "new.tif")
	if err := os.WriteFile(p, []byte("not yet uploaded"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := getxattr(t, p, evofs.StateXattr); got != "pending" {
		t.Fatalf("%s of a file not uploaded = %q, want pending", evofs.StateXattr, got)
	}
	if l := listxattr(t, p); !slices.Equal(l, []string{evofs.StateXattr}) {
		t.Fatalf("a file not uploaded lists %v", l)
	}
	if _, err := unix.Getxattr(p, "user.evo.file_id", make([]byte, 64)); !errors.Is(err, unix.ENODATA) {
		t.Fatalf("file_id of a file not uploaded: %v, want ENODATA", err)
	}
	// The root's status attribute is still there.
	if st := status(t, m); len(st.Pending) != 1 {
		t.Fatalf("status lists %d pending uploads", len(st.Pending))
	}
}

func TestEvoTrashShowsDeletesHere(t *testing.T) {
	emu := startEmu(t)
	c := newClient(t, emu)
	b := remote.NewBlobs(remote.BlobConfig{})
	up := upload(t, c, b, "a/x.tif", bytes.NewReader([]byte("x")), 1)
	upload(t, c, b, "a/y.tif", bytes.NewReader([]byte("y")), 1)
	deleteAPI(t, c, "a/y.tif")
	m := mountEmu(t, emu, mountConfig{ttl: 10 * time.Minute})
	tp := filepath.Join(m.Dir, ".evo/trash/a/x.tif")
	if _, err := os.Stat(tp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat of a live file in the trash: %v", err) // and the kernel keeps the miss
	}
	if err := os.Remove(filepath.Join(m.Dir, "a/x.tif")); err != nil {
		t.Fatal(err)
	}
	poll(t, 20*time.Second, func() string { return "the delete did not reach the service" }, func() bool {
		d, err := c.GetFile(context.Background(), up.FileID, remote.GetOptions{Deleted: true})
		return err == nil && d.DeletedAt != nil
	})
	// Well inside the TTL, the next look lists the trash again, and the
	// kernel forgets its miss.
	ents, err := os.ReadDir(filepath.Join(m.Dir, ".evo/trash"))
	if err != nil || len(ents) != 1 || ents[0].Name() != "a" {
		t.Fatalf("the trash lists %v, %v", ents, err)
	}
	poll(t, 5*time.Second, func() string { return "the kernel still misses the file in the trash" }, func() bool {
		_, err := os.Stat(tp)
		return err == nil
	})
}

func TestEvoTrashRestoreFolder(t *testing.T) {
	emu := startEmu(t)
	c := newClient(t, emu)
	b := remote.NewBlobs(remote.BlobConfig{})
	ctx := context.Background()
	ids := map[string]string{}
	for _, p := range []string{"d/one.tif", "d/sub/two.tif", "e/three.tif"} {
		upload(t, c, b, p, bytes.NewReader([]byte("old "+p)), int64(len("old "+p)))
		ids[p] = upload(t, c, b, p, bytes.NewReader([]byte(p)), int64(len(p))).FileID
		deleteAPI(t, c, p)
	}
	upload(t, c, b, "e/three.tif", bytes.NewReader([]byte("taken")), 5)
	m := mountEmu(t, emu, mountConfig{})
	trash := filepath.Join(m.Dir, ".evo/trash")

	// A folder whose file's path is taken: nothing is restored.
	if err := os.Mkdir(filepath.Join(m.Dir, "f"), 0o755); err != nil {
		t.Fatal(err)
	}
	// (rename(2) itself: os.Rename refuses an existing folder as target.)
	if err := unix.Rename(filepath.Join(trash, "e"), filepath.Join(m.Dir, "e")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("restore a folder onto a folder with files: %v, want ENOTEMPTY", err)
	}
	if d := versionsOf(t, c, ids["e/three.tif"], true); d.DeletedAt == nil {
		t.Fatal("a refused folder restore restored a file")
	}
	// Into an empty folder (made here): restored, then renamed.
	if err := unix.Rename(filepath.Join(trash, "e"), filepath.Join(m.Dir, "f")); err != nil {
		t.Fatalf("restore a folder into an empty folder: %v", err)
	}
	poll(t, 5*time.Second, func() string { return "f/three.tif does not read as restored" }, func() bool {
		got, err := os.ReadFile(filepath.Join(m.Dir, "f/three.tif"))
		return err == nil && string(got) == "e/three.tif"
	})
	if got, err := os.ReadFile(filepath.Join(m.Dir, "e/three.tif")); err != nil || string(got) != "taken" {
		t.Fatalf("e/three.tif reads %q, %v", got, err)
	}

	// The whole folder back in place, with the files' histories.
	if err := os.Rename(filepath.Join(trash, "d"), filepath.Join(m.Dir, "d")); err != nil {
		t.Fatalf("restore a folder: %v", err)
	}
	for _, p := range []string{"d/one.tif", "d/sub/two.tif"} {
		d, err := c.GetFileByPath(ctx, p, remote.GetOptions{IncludeVersions: true})
		if err != nil || d.FileID != ids[p] || len(d.Versions) != 2 {
			t.Fatalf("after the folder's restore the API has %s as %+v, %v", p, d, err)
		}
		poll(t, 5*time.Second, func() string { return p + " does not read as restored" }, func() bool {
			got, err := os.ReadFile(filepath.Join(m.Dir, p))
			return err == nil && string(got) == p
		})
	}
	if _, err := os.Stat(filepath.Join(trash, "d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the restored folder is still in the trash: %v", err)
	}
}
