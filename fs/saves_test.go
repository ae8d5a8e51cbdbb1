package fs_test

// Saves that lose nothing (issue 14): conflict copies instead of buried
// versions, writes of handles whose file got a version elsewhere, two
// mounts editing one file, SQLite's side files told apart by their
// database, the save patterns of editors and GDAL keeping the file's id,
// and a WAL GeoPackage whose committed rows reach the service. Every
// outcome is checked through the API (never through the mount): bytes,
// file ids, version counts, and what is live or in the trash.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	evofs "github.com/evofs/evofs/fs"
	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

type saveMode struct {
	name  string
	async bool
}

var saveModes = []saveMode{{"sync", false}, {"async", true}}

// settle waits until m has nothing left to upload.
func waitNothingPending(t *testing.T, m *mount) {
	t.Helper()
	poll(t, 30*time.Second, func() string { return fmt.Sprintf("uploads still pending: %+v", m.FS.Pending()) },
		func() bool { return len(m.FS.Pending()) == 0 })
}

// waitSettled waits until m has nothing left to do (FS.Settled): every
// release in, every checkpoint, upload and deferred delete done.
func waitSettled(t *testing.T, m *mount) {
	t.Helper()
	poll(t, 30*time.Second, func() string { return fmt.Sprintf("the mount still busy; pending %+v", m.FS.Pending()) }, m.FS.Settled)
}

// versionsOf lists the committed versions of a file, newest first.
func versionList(t *testing.T, m *mount, fileID string) []remote.FileVersion {
	t.Helper()
	d, err := m.Client.GetFile(context.Background(), fileID, remote.GetOptions{IncludeVersions: true})
	if err != nil {
		t.Fatalf("get file %s with its versions: %v", fileID, err)
	}
	return d.Versions
}

// liveFiles lists the live files remotely by full path.
func liveByPath(t *testing.T, m *mount) map[string]remote.ListFile {
	t.Helper()
	l, err := m.Client.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]remote.ListFile{}
	for _, f := range l {
		out[f.FullPath()] = f
	}
	return out
}

// trashed lists the full paths of the deleted files remotely.
func trashPaths(t *testing.T, m *mount) []string {
	t.Helper()
	l, err := m.Client.ListAll(context.Background(), remote.ListOptions{Deleted: true})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range l {
		out = append(out, f.FullPath())
	}
	sort.Strings(out)
	return out
}

func sortedPaths(m map[string]remote.ListFile) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// seeRemote uploads a marker as another client and waits until the mount
// lists it: from then on the mount's snapshot has everything uploaded
// before the marker.
func seeRemote(t *testing.T, m *mount, other *remote.Client, marker string) {
	t.Helper()
	upload(t, other, m.Blobs, marker, strings.NewReader("m"), 1)
	poll(t, 30*time.Second, func() string { return "the mount to list " + marker }, func() bool {
		_, err := os.Stat(filepath.Join(m.Dir, marker))
		return err == nil
	})
}

// conflictCopyRe matches the name of a conflict copy of name made on this
// machine: "STEM (conflicted copy YYYY-MM-DD HHMMSS HOST)EXT".
func conflictCopyRe(t *testing.T, name string) *regexp.Regexp {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	ext := path.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	return regexp.MustCompile("^" + regexp.QuoteMeta(stem) + ` \(conflicted copy (\d{4}-\d{2}-\d{2} \d{6}) ` +
		regexp.QuoteMeta(host) + `\)` + regexp.QuoteMeta(ext) + "$")
}

// conflictCopiesOf lists the live conflict copies of the file at p.
func conflictCopiesOf(t *testing.T, m *mount, p string) []remote.ListFile {
	t.Helper()
	re := conflictCopyRe(t, path.Base(p))
	var out []remote.ListFile
	for full, f := range liveByPath(t, m) {
		if path.Dir(full) == path.Dir(p) && re.MatchString(f.Name) {
			out = append(out, f)
		}
	}
	return out
}

// oneConflictCopy returns the one conflict copy of p, checking that its
// time stamp is the time it was made (since .. now).
func oneConflictCopy(t *testing.T, m *mount, p string, since time.Time) remote.ListFile {
	t.Helper()
	cps := conflictCopiesOf(t, m, p)
	if len(cps) != 1 {
		t.Fatalf("%d conflict copies of %s, want 1; live files: %v", len(cps), p, sortedPaths(liveByPath(t, m)))
	}
	cp := cps[0]
	stamp := conflictCopyRe(t, path.Base(p)).FindStringSubmatch(cp.Name)[1]
	at, err := time.ParseInLocation("2006-01-02 150405", stamp, time.Local)
	if err != nil {
		t.Fatalf("conflict copy %q: time %q: %v", cp.Name, stamp, err)
	}
	if at.Before(since.Truncate(time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("conflict copy %q: time stamp %s is not the time it was made (after %s)", cp.Name, at, since)
	}
	return cp
}

// conflictWarnings are the WARN lines of m's log about a conflict.
func conflictWarnings(m *mount) []string {
	var out []string
	for _, l := range strings.Split(m.Logs.String(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "conflict") {
			out = append(out, l)
		}
	}
	return out
}

// mountStatusConflict is one entry of the conflicts of the root's status
// attribute.
type mountStatusConflict struct {
	Path          string    `json:"path"`
	Copy          string    `json:"copy"`
	BaseVersion   string    `json:"base_version"`
	RemoteVersion string    `json:"remote_version"`
	At            time.Time `json:"at"`
}

// statusConflicts reads the conflicts of the mount's user.evofs.status.
func statusConflicts(t *testing.T, m *mount) []mountStatusConflict {
	t.Helper()
	buf := make([]byte, 1<<16)
	n, err := unix.Getxattr(m.Dir, evofs.StatusXattr, buf)
	if err != nil {
		t.Fatalf("getxattr %s: %v", evofs.StatusXattr, err)
	}
	var st struct {
		Conflicts []mountStatusConflict `json:"conflicts"`
	}
	if err := json.Unmarshal(buf[:n], &st); err != nil {
		t.Fatalf("status %s: %v", buf[:n], err)
	}
	return st.Conflicts
}

// checkConflictCopy asserts the outcome of a conflict on the file at p
// (based on version base, the other save being theirs): their bytes at
// the path, in the same file, with `versions` versions; ours in one
// conflict copy beside it (a new file, one version); one warning naming
// both versions; the conflict in the mount's status.
func checkConflictCopy(t *testing.T, m *mount, p string, base *remote.DownloadFileResponse, theirs, theirBytes, ourBytes string, versions int, since time.Time) {
	t.Helper()
	checkConflictCopyN(t, m, p, base, theirs, theirBytes, ourBytes, versions, since, 1)
}

// checkConflictCopyN is checkConflictCopy with copyVersions versions of
// the copy (saves of a handle that went on writing after the conflict).
func checkConflictCopyN(t *testing.T, m *mount, p string, base *remote.DownloadFileResponse, theirs, theirBytes, ourBytes string, versions int, since time.Time, copyVersions int) {
	t.Helper()
	d, b := remoteFile(t, m, p)
	if string(b) != theirBytes || d.VersionID != theirs || d.FileID != base.FileID {
		t.Errorf("%s remotely: %q, version %s of file %s; want %q (their version %s of file %s)",
			p, b, d.VersionID, d.FileID, theirBytes, theirs, base.FileID)
	}
	if vs := versionList(t, m, base.FileID); len(vs) != versions {
		t.Errorf("%s has %d versions, want %d", p, len(vs), versions)
	}
	cp := oneConflictCopy(t, m, p, since)
	cd, cb := remoteFile(t, m, cp.FullPath())
	if string(cb) != ourBytes {
		t.Errorf("conflict copy %s: %q, want ours %q", cp.FullPath(), cb, ourBytes)
	}
	if cd.FileID == base.FileID {
		t.Errorf("the conflict copy is the file itself (%s)", cd.FileID)
	}
	if vs := versionList(t, m, cd.FileID); len(vs) != copyVersions {
		t.Errorf("conflict copy %s has %d versions, want %d", cp.FullPath(), len(vs), copyVersions)
	}
	warns := conflictWarnings(m)
	if len(warns) != 1 || !strings.Contains(warns[0], "base_version="+base.VersionID) ||
		!strings.Contains(warns[0], "remote_version="+theirs) {
		t.Errorf("want one WARN line naming base_version=%s and remote_version=%s; got:\n%s",
			base.VersionID, theirs, strings.Join(warns, "\n"))
	}
	cs := statusConflicts(t, m)
	if len(cs) != 1 || cs[0].Path != "/"+p || cs[0].Copy != "/"+cp.FullPath() ||
		cs[0].BaseVersion != base.VersionID || cs[0].RemoteVersion != theirs || cs[0].At.IsZero() {
		t.Errorf("status conflicts: %+v; want one {/%s /%s %s %s}", cs, p, cp.FullPath(), base.VersionID, theirs)
	}
}

// overwrite is base with p written at off.
func patched(base string, off int, p string) string {
	b := []byte(base)
	if n := off + len(p); n > len(b) {
		b = append(b, make([]byte, n-len(b))...)
	}
	copy(b[off:], p)
	return string(b)
}

// TestSaveConflictCopy replaces TestWriteConflictWarning: a file written
// here while another client saves a new version of it keeps their version
// at its path; ours is saved as a conflict copy beside it.
func TestSaveConflictCopy(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) {
			emu := startEmu(t)
			m := mountEmu(t, emu, mountConfig{ttl: 300 * time.Millisecond, async: mode.async})
			other := newClient(t, emu)
			const base, theirs = "base version", "their version"
			upload(t, other, m.Blobs, "shared/plan.txt", strings.NewReader(base), int64(len(base)))
			v0, _ := remoteFile(t, m, "shared/plan.txt")
			since := time.Now()

			f, err := os.OpenFile(filepath.Join(m.Dir, "shared/plan.txt"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("OURS"), 0); err != nil {
				t.Fatal(err)
			}
			up := upload(t, other, m.Blobs, "shared/plan.txt", strings.NewReader(theirs), int64(len(theirs)))
			if up.VersionID == v0.VersionID || up.FileID != v0.FileID {
				t.Fatalf("the other client's upload: file %s version %s, base %s/%s", up.FileID, up.VersionID, v0.FileID, v0.VersionID)
			}
			seeRemote(t, m, other, "shared/marker.txt")
			if err := f.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			waitNothingPending(t, m)
			checkConflictCopy(t, m, "shared/plan.txt", v0, up.VersionID, theirs, patched(base, 0, "OURS"), 2, since)
		})
	}
}

// TestSaveConflictCopyDeletedElsewhere: a file written here while another
// client deletes it: the path stays deleted, ours is saved as a conflict
// copy beside it, and the warning says the remote version is gone.
func TestSaveConflictCopyDeletedElsewhere(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) {
			emu := startEmu(t)
			m := mountEmu(t, emu, mountConfig{ttl: 300 * time.Millisecond, async: mode.async})
			other := newClient(t, emu)
			const base = "base version"
			upload(t, other, m.Blobs, "shared/plan.txt", strings.NewReader(base), int64(len(base)))
			v0, _ := remoteFile(t, m, "shared/plan.txt")
			since := time.Now()
			f, err := os.OpenFile(filepath.Join(m.Dir, "shared/plan.txt"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("OURS"), 0); err != nil {
				t.Fatal(err)
			}
			if err := other.DeleteFile(context.Background(), v0.FileID); err != nil {
				t.Fatal(err)
			}
			seeRemote(t, m, other, "shared/marker.txt")
			if err := f.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			waitNothingPending(t, m)
			remoteMissing(t, m, "shared/plan.txt")
			cp := oneConflictCopy(t, m, "shared/plan.txt", since)
			cd, cb := remoteFile(t, m, cp.FullPath())
			if want := patched(base, 0, "OURS"); string(cb) != want || cd.FileID == v0.FileID {
				t.Errorf("conflict copy %s: %q in file %s, want %q in a new file", cp.FullPath(), cb, cd.FileID, want)
			}
			warns := conflictWarnings(m)
			if len(warns) != 1 || !strings.Contains(warns[0], "base_version="+v0.VersionID) || !strings.Contains(warns[0], "remote_version=deleted") {
				t.Errorf("want one WARN line naming base_version=%s and remote_version=deleted; got:\n%s", v0.VersionID, strings.Join(warns, "\n"))
			}
			if cs := statusConflicts(t, m); len(cs) != 1 || cs[0].Copy != "/"+cp.FullPath() || cs[0].RemoteVersion != "deleted" {
				t.Errorf("status conflicts: %+v", cs)
			}
			if trash := trashPaths(t, m); len(trash) != 1 || trash[0] != "shared/plan.txt" {
				t.Errorf("in the trash: %v, want only the other client's delete of shared/plan.txt", trash)
			}
		})
	}
}

// TestSaveRemovedHereSavedElsewhereKeepsTheirs: a file removed here waits
// out its delete grace; another client saves a version of it meanwhile.
// Their save wins, as it would over content: the file is not deleted,
// shows again through the mount with their bytes, and one WARN line says
// so. A removed file nobody touched is deleted as before.
func TestSaveRemovedHereSavedElsewhereKeepsTheirs(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{ttl: 300 * time.Millisecond})
	other := newClient(t, emu)
	for _, p := range []string{"shared/plan.txt", "shared/old.txt"} {
		upload(t, other, m.Blobs, p, strings.NewReader("base of "+p), int64(len("base of "+p)))
		seeRemote(t, m, other, p)
	}
	v0, _ := remoteFile(t, m, "shared/plan.txt")
	for _, p := range []string{"shared/plan.txt", "shared/old.txt"} {
		if err := os.Remove(filepath.Join(m.Dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	const theirs = "their save, made after our rm"
	upload(t, other, m.Blobs, "shared/plan.txt", strings.NewReader(theirs), int64(len(theirs)))
	remoteDeleted(t, m, "shared/old.txt")
	waitSettled(t, m)
	d, b := remoteFile(t, m, "shared/plan.txt")
	if string(b) != theirs || d.FileID != v0.FileID {
		t.Fatalf("shared/plan.txt remotely: %q in file %s, want their save in file %s", b, d.FileID, v0.FileID)
	}
	var got []byte
	poll(t, 10*time.Second, func() string { return fmt.Sprintf("the mount shows %q", got) }, func() bool {
		got, _ = os.ReadFile(filepath.Join(m.Dir, "shared/plan.txt"))
		return string(got) == theirs
	})
	if n := strings.Count(m.Logs.String(), "not deleted: the file was saved elsewhere"); n != 1 {
		t.Errorf("%d warnings of the delete given up, want 1:\n%s", n, m.Logs.String())
	}
	if trash := trashPaths(t, m); len(trash) != 1 || trash[0] != "shared/old.txt" {
		t.Errorf("in the trash: %v, want only shared/old.txt", trash)
	}
}

// TestSaveAsyncTheirSaveWhileOursWaits: in async mode our content is
// closed (acknowledged) and waits for its upload; another client saves a
// version before it is committed: ours goes to a conflict copy.
func TestSaveAsyncTheirSaveWhileOursWaits(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{async: true})
	other := newClient(t, emu)
	const base, theirs = "base version", "their version"
	upload(t, other, m.Blobs, "plan.txt", strings.NewReader(base), int64(len(base)))
	v0, _ := remoteFile(t, m, "plan.txt")
	since := time.Now()
	f, err := os.OpenFile(filepath.Join(m.Dir, "plan.txt"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("OURS"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	up := upload(t, other, m.Blobs, "plan.txt", strings.NewReader(theirs), int64(len(theirs)))
	if vs := versionList(t, m, v0.FileID); len(vs) != 2 || vs[0].VersionID != up.VersionID {
		t.Fatalf("ours was committed before their save (no wait after close); versions: %+v", vs)
	}
	waitNothingPending(t, m)
	checkConflictCopy(t, m, "plan.txt", v0, up.VersionID, theirs, patched(base, 0, "OURS"), 2, since)
}

// TestSaveRenameOverChangedTarget: mount A (its listing from before) saves
// a file with a temp file renamed over it after mount B saved a version A
// has not seen: B's version stays, A's save goes to a conflict copy, and
// the temp file is gone.
func TestSaveRenameOverChangedTarget(t *testing.T) {
	for _, mode := range saveModes {
		for _, pat := range []struct{ name, cmd, tmp string }{
			{"temp-rename", `printf "A's save by rename\n" > .plan.txt.tmp && mv .plan.txt.tmp plan.txt`, ".plan.txt.tmp"},
			{"delete-rename", `printf "A's save by rename\n" > plan_packed.txt && rm plan.txt && mv plan_packed.txt plan.txt`, "plan_packed.txt"},
		} {
			t.Run(mode.name+"/"+pat.name, func(t *testing.T) {
				emu := startEmu(t)
				a := mountEmu(t, emu, mountConfig{ttl: time.Hour, async: mode.async})
				b := mountEmu(t, emu, mountConfig{async: mode.async})
				other := newClient(t, emu)
				const base, fromB, fromA = "base version\n", "B's save\n", "A's save by rename\n"
				upload(t, other, a.Blobs, "doc/plan.txt", strings.NewReader(base), int64(len(base)))
				v0, _ := remoteFile(t, a, "doc/plan.txt")
				since := time.Now()
				if _, err := os.Stat(filepath.Join(a.Dir, "doc/plan.txt")); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(b.Dir, "doc/plan.txt"), []byte(fromB), 0o644); err != nil {
					t.Fatal(err)
				}
				waitNothingPending(t, b)
				vb, _ := remoteFile(t, b, "doc/plan.txt")
				run(t, filepath.Join(a.Dir, "doc"), "sh", "-c", pat.cmd)
				waitNothingPending(t, a)
				var live map[string]remote.ListFile
				poll(t, 20*time.Second, func() string { return fmt.Sprintf("the temp file gone; live: %v", sortedPaths(live)) }, func() bool {
					live = liveByPath(t, a)
					_, tmp := live["doc/"+pat.tmp]
					return !tmp
				})
				waitSettled(t, a) // a deferred delete has run
				checkConflictCopy(t, a, "doc/plan.txt", v0, vb.VersionID, fromB, fromA, 2, since)
			})
		}
	}
}

// TestSaveHandleWritesOnAfterItsConflictCopy: a handle whose content went
// to a conflict copy (at fsync in sync mode) goes on writing: its later
// writes go to the copy too, never to the file whose version it lost to.
func TestSaveHandleWritesOnAfterItsConflictCopy(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) {
			emu := startEmu(t)
			m := mountEmu(t, emu, mountConfig{ttl: 300 * time.Millisecond, async: mode.async})
			other := newClient(t, emu)
			const base, theirs = "base version, long enough\n", "their version\n"
			upload(t, other, m.Blobs, "plan.txt", strings.NewReader(base), int64(len(base)))
			v0, _ := remoteFile(t, m, "plan.txt")
			since := time.Now()
			f, err := os.OpenFile(filepath.Join(m.Dir, "plan.txt"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("OURS"), 0); err != nil {
				t.Fatal(err)
			}
			up := upload(t, other, m.Blobs, "plan.txt", strings.NewReader(theirs), int64(len(theirs)))
			seeRemote(t, m, other, "marker.txt")
			if err := f.Sync(); err != nil {
				t.Fatalf("fsync: %v", err)
			}
			if _, err := f.WriteAt([]byte("MORE"), 4); err != nil {
				t.Fatalf("write after the fsync: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			waitNothingPending(t, m)
			want := patched(patched(base, 0, "OURS"), 4, "MORE")
			// Sync: the fsync saved the copy, the close saved it again.
			copyVersions := 2
			if mode.async {
				copyVersions = 1
			}
			checkConflictCopyN(t, m, "plan.txt", v0, up.VersionID, theirs, want, 2, since, copyVersions)
		})
	}
}

// TestSaveWriteAfterRemoteSave: a handle opened for writing, nothing
// written, while another client saves the file; the mount's listing sees
// their version; then the handle writes, reads its write back, fsyncs and
// closes, all without an error, and what it wrote lands in a conflict
// copy.
func TestSaveWriteAfterRemoteSave(t *testing.T) {
	for _, mode := range saveModes {
		for _, appendMode := range []bool{false, true} {
			name := mode.name + "/rdwr"
			if appendMode {
				name = mode.name + "/append"
			}
			t.Run(name, func(t *testing.T) {
				emu := startEmu(t)
				m := mountEmu(t, emu, mountConfig{ttl: 300 * time.Millisecond, async: mode.async})
				other := newClient(t, emu)
				const base, theirs = "base version\n", "their version, longer\n"
				upload(t, other, m.Blobs, "plan.txt", strings.NewReader(base), int64(len(base)))
				v0, _ := remoteFile(t, m, "plan.txt")
				p := filepath.Join(m.Dir, "plan.txt")
				since := time.Now()

				flags := os.O_RDWR
				if appendMode {
					flags |= os.O_APPEND
				}
				f, err := os.OpenFile(p, flags, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				up := upload(t, other, m.Blobs, "plan.txt", strings.NewReader(theirs), int64(len(theirs)))
				poll(t, 30*time.Second, func() string { return "the mount to see their version of plan.txt" }, func() bool {
					st, err := os.Stat(p)
					return err == nil && st.Size() == int64(len(theirs))
				})

				want := patched(base, 0, "OURS")
				if appendMode {
					want = base + "OURS"
				}
				if _, err := f.Write([]byte("OURS")); err != nil {
					t.Fatalf("write after their save: %v", err)
				}
				got := make([]byte, len(want)+16)
				n, err := f.ReadAt(got, 0)
				if (err != nil && err != io.EOF) || string(got[:n]) != want {
					t.Fatalf("read back through the same handle: %q, %v; want %q", got[:n], err, want)
				}
				if err := f.Sync(); err != nil {
					t.Fatalf("fsync: %v", err)
				}
				if err := f.Close(); err != nil {
					t.Fatalf("close: %v", err)
				}
				waitNothingPending(t, m)
				checkConflictCopy(t, m, "plan.txt", v0, up.VersionID, theirs, want, 2, since)
			})
		}
	}
}

// TestSaveWriteAfterRemoteSaveTwoMounts: mount B holds a file open for
// writing while mount A saves it the way editors do (a temp file renamed
// over it); after B's listing sees A's version, B writes and closes: A's
// save stays at the path, B's lands in a conflict copy.
func TestSaveWriteAfterRemoteSaveTwoMounts(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) {
			emu := startEmu(t)
			a := mountEmu(t, emu, mountConfig{ttl: 300 * time.Millisecond, async: mode.async})
			b := mountEmu(t, emu, mountConfig{ttl: 300 * time.Millisecond, async: mode.async})
			other := newClient(t, emu)
			const base, fromA = "base version\n", "saved by A through a rename\n"
			upload(t, other, a.Blobs, "plan.txt", strings.NewReader(base), int64(len(base)))
			v0, _ := remoteFile(t, a, "plan.txt")
			since := time.Now()

			fb, err := os.OpenFile(filepath.Join(b.Dir, "plan.txt"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fb.Close()
			// A's listing must know plan.txt before the rename over it.
			if _, err := os.Stat(filepath.Join(a.Dir, "plan.txt")); err != nil {
				t.Fatal(err)
			}
			run(t, a.Dir, "sh", "-c", `printf 'saved by A through a rename\n' > .plan.txt.tmp && mv .plan.txt.tmp plan.txt`)
			waitNothingPending(t, a)
			va, ab := remoteFile(t, a, "plan.txt")
			if string(ab) != fromA || va.FileID != v0.FileID {
				t.Fatalf("after A's save: %q in file %s, want %q in file %s", ab, va.FileID, fromA, v0.FileID)
			}
			poll(t, 30*time.Second, func() string { return "B to see A's version" }, func() bool {
				st, err := os.Stat(filepath.Join(b.Dir, "plan.txt"))
				return err == nil && st.Size() == int64(len(fromA))
			})
			if _, err := fb.WriteAt([]byte("from B"), 0); err != nil {
				t.Fatalf("B's write: %v", err)
			}
			if err := fb.Close(); err != nil {
				t.Fatalf("B's close: %v", err)
			}
			waitNothingPending(t, b)
			checkConflictCopy(t, b, "plan.txt", v0, va.VersionID, fromA, patched(base, 0, "from B"), 2, since)
			if w := conflictWarnings(a); len(w) != 0 {
				t.Errorf("A, whose save was first, warned of a conflict:\n%s", strings.Join(w, "\n"))
			}
		})
	}
}

// TestSaveTwoMountsEditOneFile: mounts A and B both write the same file;
// B closes first, then A: B's save is at the path, A's in a conflict
// copy, and the file has exactly one version more. Whether A's listing saw
// B's version before A's close or not: the check is made against the
// service when A commits.
func TestSaveTwoMountsEditOneFile(t *testing.T) {
	for _, mode := range saveModes {
		for _, refreshed := range []bool{true, false} {
			name := mode.name + "/stale-listing"
			ttl := time.Hour
			if refreshed {
				name, ttl = mode.name+"/refreshed-listing", 300*time.Millisecond
			}
			t.Run(name, func(t *testing.T) {
				emu := startEmu(t)
				a := mountEmu(t, emu, mountConfig{ttl: ttl, async: mode.async})
				b := mountEmu(t, emu, mountConfig{ttl: 300 * time.Millisecond, async: mode.async})
				other := newClient(t, emu)
				const base, fromB = "base line\n", "B rewrote the whole file\n"
				upload(t, other, a.Blobs, "doc/notes.txt", strings.NewReader(base), int64(len(base)))
				v0, _ := remoteFile(t, a, "doc/notes.txt")
				since := time.Now()

				fa, err := os.OpenFile(filepath.Join(a.Dir, "doc/notes.txt"), os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer fa.Close()
				fb, err := os.OpenFile(filepath.Join(b.Dir, "doc/notes.txt"), os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer fb.Close()
				if _, err := fa.WriteAt([]byte("AAAA"), 0); err != nil {
					t.Fatal(err)
				}
				if _, err := fb.WriteAt([]byte(fromB), 0); err != nil {
					t.Fatal(err)
				}
				if err := fb.Close(); err != nil {
					t.Fatalf("B's close: %v", err)
				}
				waitNothingPending(t, b)
				vb, bb := remoteFile(t, b, "doc/notes.txt")
				if string(bb) != fromB || vb.FileID != v0.FileID {
					t.Fatalf("after B's close: %q in %s", bb, vb.FileID)
				}
				if refreshed {
					seeRemote(t, a, other, "doc/marker.txt")
				}
				if err := fa.Close(); err != nil {
					t.Fatalf("A's close: %v", err)
				}
				waitNothingPending(t, a)
				checkConflictCopy(t, a, "doc/notes.txt", v0, vb.VersionID, fromB, patched(base, 0, "AAAA"), 2, since)
				if w := conflictWarnings(b); len(w) != 0 {
					t.Errorf("B, which saved first, warned of a conflict:\n%s", strings.Join(w, "\n"))
				}
			})
		}
	}
}

// TestSaveSideFiles: names that look like SQLite's side files are
// transient only beside their database. "field-journal" with no "field"
// beside it is a file like any other (uploaded), a remote "trip-journal"
// edited here gets a new version; a real rollback journal (sqlite3 making
// a database in the mount), a -journal made beside its database and a vim
// swap file never reach the service.
func TestSaveSideFiles(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) {
			emu := startEmu(t)
			m := mountEmu(t, emu, mountConfig{async: mode.async})
			other := newClient(t, emu)
			upload(t, other, m.Blobs, "trips/trip-journal", strings.NewReader("day 1\n"), 6)
			t0, _ := remoteFile(t, m, "trips/trip-journal")
			mp := func(p string) string { return filepath.Join(m.Dir, p) }

			if err := os.Mkdir(mp("logs"), 0o755); err != nil {
				t.Fatal(err)
			}
			plain := map[string]string{
				"logs/field-journal":      "field notes\n",
				"logs/expedition-journal": "expedition notes\n",
				"logs/seawall-wal":        "seawall readings\n",
			}
			for p, c := range plain {
				if err := os.WriteFile(mp(p), []byte(c), 0o644); err != nil {
					t.Fatalf("write %s: %v", p, err)
				}
			}
			run(t, mp("trips"), "sh", "-c", "printf 'day 2\\n' >> trip-journal")
			if out := run(t, m.Dir, "sqlite3", "notes.db",
				"PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES(1);"); out != "delete\n" {
				t.Fatalf("sqlite3: %q", out)
			}
			run(t, m.Dir, "sh", "-c", "printf 'a database' > other.db && printf 'its journal' > other.db-journal && printf 'swap' > .x.swp")
			waitNothingPending(t, m)

			for p, c := range plain {
				d, b := remoteFile(t, m, p)
				if string(b) != c {
					t.Errorf("%s remotely: %q, want %q", p, b, c)
				}
				if vs := versionList(t, m, d.FileID); len(vs) != 1 {
					t.Errorf("%s: %d versions, want 1", p, len(vs))
				}
			}
			tj, b := remoteFile(t, m, "trips/trip-journal")
			if string(b) != "day 1\nday 2\n" || tj.FileID != t0.FileID {
				t.Errorf("trips/trip-journal remotely: %q in file %s, want the appended line in file %s", b, tj.FileID, t0.FileID)
			}
			if vs := versionList(t, m, t0.FileID); len(vs) != 2 {
				t.Errorf("trips/trip-journal: %d versions, want 2", len(vs))
			}
			_, db := remoteFile(t, m, "notes.db")
			local := filepath.Join(t.TempDir(), "notes.db")
			if err := os.WriteFile(local, db, 0o644); err != nil {
				t.Fatal(err)
			}
			if out := run(t, t.TempDir(), "sqlite3", local, "PRAGMA integrity_check;", "SELECT count(*) FROM t;"); out != "ok\n1\n" {
				t.Errorf("notes.db remotely: %q", out)
			}
			if _, b := remoteFile(t, m, "other.db"); string(b) != "a database" {
				t.Errorf("other.db remotely: %q", b)
			}
			for _, p := range []string{"notes.db-journal", "other.db-journal", ".x.swp"} {
				remoteMissing(t, m, p)
			}
			for _, p := range trashPaths(t, m) {
				t.Errorf("%s is in the trash: a transient file reached the service", p)
			}
			// They stay on this machine.
			if b, err := os.ReadFile(mp("other.db-journal")); err != nil || string(b) != "its journal" {
				t.Errorf("other.db-journal through the mount: %q, %v", b, err)
			}
			if b, err := os.ReadFile(mp(".x.swp")); err != nil || string(b) != "swap" {
				t.Errorf(".x.swp through the mount: %q, %v", b, err)
			}
		})
	}
}

// The save patterns of TestSaveKeepsFileID, each a shell command run in
// data/ over x.txt ("old content\n"); each leaves "new" there, except
// in-place, which the test does itself.
var savePatterns = []struct {
	name, cmd string
	temps     []string // names the pattern makes and removes
}{
	{"in-place", "", nil},
	{"truncate", `printf new > x.txt`, nil},
	{"unlink-create", `rm x.txt; printf new > x.txt`, nil},
	{"temp-rename", `printf new > .x.txt.tmp && mv .x.txt.tmp x.txt`, []string{".x.txt.tmp"}},
	{"delete-rename", `printf new > x_packed.txt && rm x.txt && mv x_packed.txt x.txt`, []string{"x_packed.txt"}},
}

// TestSaveKeepsFileIDSync, TestSaveKeepsFileIDAsync: however a program
// saves a file (in place, O_TRUNC, unlink and create, temp file renamed over
// it, delete then rename), the file keeps its id and gets exactly one
// version more, and nothing else appears in the workspace (async: not even
// in the trash).
func TestSaveKeepsFileIDSync(t *testing.T)  { testSaveKeepsFileID(t, saveModes[0]) }
func TestSaveKeepsFileIDAsync(t *testing.T) { testSaveKeepsFileID(t, saveModes[1]) }

func testSaveKeepsFileID(t *testing.T, mode saveMode) {
	for _, pat := range savePatterns {
		t.Run(pat.name, func(t *testing.T) {
			emu := startEmu(t)
			m := mountEmu(t, emu, mountConfig{async: mode.async})
			const base = "old content\n"
			upload(t, m.Client, m.Blobs, "data/x.txt", strings.NewReader(base), int64(len(base)))
			v0, _ := remoteFile(t, m, "data/x.txt")
			want := "new"
			if pat.cmd == "" {
				f, err := os.OpenFile(filepath.Join(m.Dir, "data/x.txt"), os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt([]byte("NEW"), 0); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatalf("close: %v", err)
				}
				want = patched(base, 0, "NEW")
			} else {
				run(t, filepath.Join(m.Dir, "data"), "sh", "-c", pat.cmd)
			}
			waitNothingPending(t, m)
			// Deferred work (a delete after a grace period, the
			// removal of a temp file) may still run: wait for the
			// workspace to hold only x.txt, with our bytes.
			var live map[string]remote.ListFile
			poll(t, 20*time.Second, func() string { return fmt.Sprintf("only data/x.txt, with %q, live; live: %v", want, sortedPaths(live)) }, func() bool {
				live = liveByPath(t, m)
				x, ok := live["data/x.txt"]
				return len(live) == 1 && ok && x.Size == int64(len(want))
			})
			// And it stays that way once the deferred delete has run.
			waitSettled(t, m)
			d, b := remoteFile(t, m, "data/x.txt")
			if string(b) != want {
				t.Errorf("data/x.txt remotely: %q, want %q", b, want)
			}
			if d.FileID != v0.FileID {
				t.Errorf("data/x.txt is file %s now, was %s: the save made a new file", d.FileID, v0.FileID)
			}
			wantN := 2 // the seed and this save: a redirect's emptying is no version of its own
			if vs := versionList(t, m, v0.FileID); len(vs) != wantN {
				t.Errorf("file %s has %d versions, want %d", v0.FileID, len(vs), wantN)
			}
			if live := liveByPath(t, m); len(live) != 1 {
				t.Errorf("live files after the save: %v, want only data/x.txt", sortedPaths(live))
			}
			trash := trashPaths(t, m)
			if mode.async {
				for _, p := range trash {
					t.Errorf("%s is in the trash: an async save of x.txt reached the service with another file", p)
				}
			} else if len(trash) > 0 {
				t.Logf("sync mode: in the trash after the save: %v", trash)
			}
		})
	}
}

// TestSaveAsyncBurstMakesOneVersion: in async mode, saves of one file in a
// burst (five within a second) become one version, of the last save.
func TestSaveAsyncBurstMakesOneVersion(t *testing.T) {
	emu := startEmu(t)
	m := mountEmu(t, emu, mountConfig{async: true})
	const base = "old content\n"
	upload(t, m.Client, m.Blobs, "data/x.txt", strings.NewReader(base), int64(len(base)))
	v0, _ := remoteFile(t, m, "data/x.txt")
	run(t, filepath.Join(m.Dir, "data"), "sh", "-c",
		`for i in 1 2 3 4 5; do printf "save $i" > x.txt; sleep 0.2; done`)
	waitNothingPending(t, m)
	d, b := remoteFile(t, m, "data/x.txt")
	if string(b) != "save 5" || d.FileID != v0.FileID {
		t.Fatalf("data/x.txt remotely: %q in file %s, want %q in file %s", b, d.FileID, "save 5", v0.FileID)
	}
	vs := versionList(t, m, v0.FileID)
	t.Logf("a burst of 5 saves made %d version(s)", len(vs)-1)
	if len(vs)-1 > 1 {
		t.Errorf("a burst of 5 saves within a second made %d versions, want at most 1", len(vs)-1)
	}
}

// TestSaveShapefileRepackKeepsFileIDs: GDAL deletes a feature of a
// shapefile and repacks it (writing collars_packed.* and renaming them
// over the originals after deleting those): every sidecar that changed
// keeps its file id, and no _packed file is left in the workspace.
func TestSaveShapefileRepackKeepsFileIDs(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) {
			emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
			m := mountEmu(t, emu, mountConfig{async: mode.async})
			exts := []string{"shp", "shx", "dbf", "cpg", "prj"}
			type state struct {
				id, version, sha string
				versions         int
			}
			at := func() map[string]state {
				out := map[string]state{}
				for _, e := range exts {
					d, b := remoteFile(t, m, "vectors/collars."+e)
					out[e] = state{d.FileID, d.VersionID, sum(b), len(versionList(t, m, d.FileID))}
				}
				return out
			}
			before := at()
			liveBefore := liveByPath(t, m)
			vectors := filepath.Join(m.Dir, "vectors")
			// GDAL 3.6 does not take OGR SQL's DELETE on a shapefile; the
			// SQLite dialect does, and the driver repacks at close.
			run(t, vectors, "ogrinfo", "collars.shp", "-dialect", "SQLite", "-sql", "DELETE FROM collars WHERE rowid = 0")
			run(t, vectors, "ogrinfo", "collars.shp", "-sql", "REPACK collars")
			waitNothingPending(t, m)
			var live map[string]remote.ListFile
			poll(t, 20*time.Second, func() string { return fmt.Sprintf("the seeded files only; live: %v", sortedPaths(live)) }, func() bool {
				live = liveByPath(t, m)
				for p := range live {
					if strings.Contains(p, "_packed") {
						return false
					}
				}
				return len(live) == len(liveBefore)
			})
			waitSettled(t, m)
			after := at()

			// The remote shapefile, read outside the mount.
			local := t.TempDir()
			for _, e := range exts {
				_, b := remoteFile(t, m, "vectors/collars."+e)
				os.WriteFile(filepath.Join(local, "collars."+e), b, 0o644)
			}
			if out := run(t, local, "ogrinfo", "-so", "collars.shp", "collars"); !strings.Contains(out, "Feature Count: 24") {
				t.Errorf("the remote shapefile after the delete:\n%s", out)
			}
			changed := 0
			for _, e := range exts {
				b, a := before[e], after[e]
				if a.id != b.id {
					t.Errorf("collars.%s is file %s now, was %s", e, a.id, b.id)
				}
				if a.sha == b.sha {
					if a.version != b.version {
						t.Errorf("collars.%s: unchanged bytes, yet version %s -> %s", e, b.version, a.version)
					}
					continue
				}
				changed++
				t.Logf("collars.%s: %d new version(s)", e, a.versions-b.versions)
				if mode.async && a.versions-b.versions > 1 {
					t.Errorf("collars.%s: %d new versions from one burst of saves, want at most 1", e, a.versions-b.versions)
				}
			}
			if changed < 3 {
				t.Errorf("%d of .shp .shx .dbf changed remotely, want all 3", changed)
			}
			if live := liveByPath(t, m); len(live) != len(liveBefore) {
				t.Errorf("live files: %v, were %v", sortedPaths(live), sortedPaths(liveBefore))
			}
			trash := trashPaths(t, m)
			if mode.async {
				for _, p := range trash {
					t.Errorf("%s is in the trash: the repack reached the service with another file", p)
				}
			} else if len(trash) > 0 {
				t.Logf("sync mode: in the trash after the repack: %v", trash)
			}
		})
	}
}

// readTx is a process holding a read transaction on a SQLite database
// (python3's sqlite3, read-only, on an absolute path, so that nothing
// touches the mount between fork and exec).
type readTx struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr bytes.Buffer
	first  string
}

const readTxScript = `
import sqlite3, sys
con = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True, isolation_level=None)
cur = con.cursor()
cur.execute('BEGIN')
print(cur.execute('SELECT count(*) FROM collars').fetchone()[0], flush=True)
sys.stdin.read()
n = cur.execute('SELECT count(*) FROM collars').fetchone()[0]
cur.execute('COMMIT')
con.close()
print(n, flush=True)
`

// holdReadTx starts a reader of db (absolute) and waits until its read
// transaction has begun.
func holdReadTx(t *testing.T, db string) *readTx {
	t.Helper()
	r := &readTx{cmd: exec.Command("/usr/bin/python3", "-c", readTxScript, db)}
	r.cmd.Dir = t.TempDir()
	r.cmd.Stderr = &r.stderr
	var err error
	if r.in, err = r.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.out = bufio.NewReader(out)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.in.Close()
		r.cmd.Process.Kill()
		r.cmd.Wait()
	})
	if r.first, err = r.out.ReadString('\n'); err != nil {
		t.Fatalf("the reader of %s: %v\n%s", db, err, r.stderr.String())
	}
	return r
}

// end ends the transaction and the process, returning what the
// transaction counted at its end (the same as at its start).
func (r *readTx) end(t *testing.T) string {
	t.Helper()
	r.in.Close()
	last, err := r.out.ReadString('\n')
	if werr := r.cmd.Wait(); err != nil || werr != nil {
		t.Fatalf("the reader: %v, exit %v\n%s", err, werr, r.stderr.String())
	}
	return last
}

// gpkgCheck downloads a version of a GeoPackage and queries it with
// sqlite3 outside the mount, with no -wal beside it.
func gpkgCheck(t *testing.T, m *mount, p string, sql ...string) string {
	t.Helper()
	_, b := remoteFile(t, m, p)
	local := filepath.Join(t.TempDir(), "check.gpkg")
	if err := os.WriteFile(local, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return run(t, t.TempDir(), "sqlite3", append([]string{local}, sql...)...)
}

// noSideFilesRemotely asserts no -wal, -shm or -journal file is live or in
// the trash.
func noSideFilesRemotely(t *testing.T, m *mount) {
	t.Helper()
	all := trashPaths(t, m)
	all = append(all, sortedPaths(liveByPath(t, m))...)
	for _, p := range all {
		if strings.HasSuffix(p, "-wal") || strings.HasSuffix(p, "-shm") || strings.HasSuffix(p, "-journal") {
			t.Errorf("side file %s reached the service", p)
		}
	}
}

// walInsert commits a row to the seeded GeoPackage's collars through GDAL
// (plain sqlite3 lacks the ST_ functions its triggers call).
func walInsert(t *testing.T, db, hole string) {
	t.Helper()
	run(t, t.TempDir(), "ogrinfo", db, "-sql", "INSERT INTO collars(hole_id) VALUES ('"+hole+"')")
}

const gpkgPath = "vectors/geology.gpkg"

// TestSaveGeoPackageWALReaderAndWriter: a reader holds a read transaction
// on the seeded WAL GeoPackage while a writer commits rows; the reader's
// snapshot keeps SQLite from checkpointing, so when both have closed the
// rows are only in the (local-only) -wal. evofs must still get them to the
// service: a new version whose bytes alone (no -wal) hold the rows and
// pass integrity_check. No side file reaches the service.
func TestSaveGeoPackageWALReaderAndWriter(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) {
			emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
			m := mountEmu(t, emu, mountConfig{async: mode.async})
			g0, _ := remoteFile(t, m, gpkgPath)
			db := filepath.Join(m.Dir, gpkgPath)
			r := holdReadTx(t, db)
			if r.first != "25\n" {
				t.Fatalf("the reader counted %q", r.first)
			}
			walInsert(t, db, "A1")
			walInsert(t, db, "A2")
			if got := r.end(t); got != "25\n" {
				t.Errorf("the reader's snapshot counted %q at its end", got)
			}
			closed := time.Now()
			poll(t, 30*time.Second, func() string { return "a new version of " + gpkgPath }, func() bool {
				return len(versionList(t, m, g0.FileID)) > 1
			})
			t.Logf("%s: a new version %s after the last close", mode.name, time.Since(closed).Round(100*time.Millisecond))
			waitNothingPending(t, m)
			out := gpkgCheck(t, m, gpkgPath, "PRAGMA integrity_check;", "SELECT count(*) FROM collars;",
				"SELECT group_concat(hole_id) FROM (SELECT hole_id FROM collars WHERE hole_id IN ('A1','A2') ORDER BY hole_id);")
			if out != "ok\n27\nA1,A2\n" {
				t.Errorf("the latest version, alone: %q, want ok, 27 rows, A1 and A2", out)
			}
			if d, _ := remoteFile(t, m, gpkgPath); d.FileID != g0.FileID {
				t.Errorf("%s is file %s now, was %s", gpkgPath, d.FileID, g0.FileID)
			}
			t.Logf("%s has %d versions", gpkgPath, len(versionList(t, m, g0.FileID)))
			noSideFilesRemotely(t, m)
			// The mount still reads the rows.
			if out := run(t, t.TempDir(), "sqlite3", "file:"+db+"?mode=ro", "SELECT count(*) FROM collars;"); out != "27\n" {
				t.Errorf("count through the mount: %q", out)
			}
		})
	}
}

// testGeoPackageTwoMounts is TestSaveGeoPackageWALTwoMounts*: mount A has
// committed rows A1, A2 through a reader+writer (as in
// TestSaveGeoPackageWALReaderAndWriter); mount B commits row B1 (sqlite3,
// a table of its own, a normal close) either while A's reader is still
// open (bFirst) or once A's version is on the service. Then, after A's
// TTL, A only reads: no version is made, the latest version has B's rows
// and passes integrity_check, and A's rows are in it or in a conflict
// copy that passes integrity_check.
func testGeoPackageTwoMounts(t *testing.T, mode saveMode, bFirst bool) {
	emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
	const ttl = time.Second
	a := mountEmu(t, emu, mountConfig{ttl: ttl, async: mode.async})
	b := mountEmu(t, emu, mountConfig{ttl: ttl, async: mode.async})
	other := newClient(t, emu)
	g0, _ := remoteFile(t, a, gpkgPath)
	dbA, dbB := filepath.Join(a.Dir, gpkgPath), filepath.Join(b.Dir, gpkgPath)
	since := time.Now()
	bWrites := func() {
		t.Helper()
		run(t, t.TempDir(), "sqlite3", dbB, "CREATE TABLE b_rows(x TEXT); INSERT INTO b_rows VALUES('B1');")
		waitNothingPending(t, b)
	}

	r := holdReadTx(t, dbA)
	walInsert(t, dbA, "A1")
	walInsert(t, dbA, "A2")
	if bFirst {
		bWrites()
		r.end(t)
	} else {
		r.end(t)
		poll(t, 30*time.Second, func() string { return "A's version on the service" }, func() bool {
			return len(versionList(t, a, g0.FileID)) > 1
		})
		waitNothingPending(t, a)
		seeRemote(t, b, other, "vectors/marker-b.txt")
		bWrites()
	}
	waitNothingPending(t, a)
	seeRemote(t, a, other, "vectors/marker-a.txt")
	waitSettled(t, a) // whatever A does once its databases closed
	n0 := len(versionList(t, a, g0.FileID))
	copies0 := len(conflictCopiesOf(t, a, gpkgPath))

	// Only reads on A.
	out, err := runErr(a.Dir, "sqlite3", "file:"+gpkgPath+"?mode=ro", "SELECT count(*) FROM collars;")
	if err != nil {
		t.Errorf("A's read-only sqlite3: %v", err)
	}
	t.Logf("A's read-only count after B's save: %q", out)
	if out, err := runErr(a.Dir, "ogrinfo", "-ro", "-so", gpkgPath); err != nil {
		t.Errorf("A's ogrinfo -ro: %v\n%s", err, out)
	}
	waitSettled(t, a)
	if n := len(versionList(t, a, g0.FileID)); n != n0 {
		t.Errorf("A's reads made %d version(s) of %s", n-n0, gpkgPath)
	}
	if n := len(conflictCopiesOf(t, a, gpkgPath)); n != copies0 {
		t.Errorf("A's reads made %d conflict copies", n-copies0)
	}

	latest := gpkgCheck(t, a, gpkgPath, "PRAGMA integrity_check;", "SELECT group_concat(x) FROM b_rows;",
		"SELECT count(*) FROM collars WHERE hole_id IN ('A1','A2');")
	lines := strings.Split(strings.TrimSpace(latest), "\n")
	if len(lines) != 3 || lines[0] != "ok" || lines[1] != "B1" {
		t.Fatalf("the latest version of %s: %q, want integrity ok and B's row B1", gpkgPath, latest)
	}
	if !bFirst && lines[2] != "2" {
		t.Errorf("B saved over A's version, yet the latest has %s of A's rows, want 2", lines[2])
	}
	if lines[2] != "2" {
		// A's rows must be in a conflict copy, and A says so once.
		cp := oneConflictCopy(t, a, gpkgPath, since)
		if out := gpkgCheck(t, a, cp.FullPath(), "PRAGMA integrity_check;",
			"SELECT count(*) FROM collars WHERE hole_id IN ('A1','A2');"); out != "ok\n2\n" {
			t.Errorf("conflict copy %s: %q, want integrity ok and A's 2 rows", cp.FullPath(), out)
		}
		if w := conflictWarnings(a); len(w) != 1 {
			t.Errorf("%d conflict warnings from A, want 1:\n%s", len(w), strings.Join(w, "\n"))
		}
		if cs := statusConflicts(t, a); len(cs) != 1 || cs[0].Path != "/"+gpkgPath || cs[0].Copy != "/"+cp.FullPath() {
			t.Errorf("A's status conflicts: %+v, want the copy %s", cs, cp.FullPath())
		}
	} else if w := conflictWarnings(a); len(w) != 0 {
		t.Errorf("no conflict copy, yet A warned:\n%s", strings.Join(w, "\n"))
	}
	if w := conflictWarnings(b); len(w) != 0 {
		t.Errorf("B warned of a conflict:\n%s", strings.Join(w, "\n"))
	}
	t.Logf("%s: %d versions; conflict copies: %d", gpkgPath, len(versionList(t, a, g0.FileID)), len(conflictCopiesOf(t, a, gpkgPath)))
	noSideFilesRemotely(t, a)
}

func TestSaveGeoPackageWALTwoMountsOtherSavesFirst(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) { testGeoPackageTwoMounts(t, mode, true) })
	}
}

func TestSaveGeoPackageWALTwoMountsOtherSavesAfter(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) { testGeoPackageTwoMounts(t, mode, false) })
	}
}
