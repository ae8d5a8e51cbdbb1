package fs

// The model under .evo (FUSE-free): every version of a file, the trash
// and the service's metadata as extended attributes. The nodes in evo.go
// call these.

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/evofs/evofs/remote"
	"golang.org/x/sync/singleflight"
)

// EvoDir is the hidden folder at the mount's root: found by name, never
// listed. It holds VersionsDir and TrashDir.
const (
	EvoDir      = ".evo"
	VersionsDir = "versions"
	TrashDir    = "trash"
)

// VersionTimeFormat is the time at the start of a version's name in
// .evo/versions: UTC, with '-' for ':' so that the name is one a Windows
// share or a zip file takes too.
const VersionTimeFormat = "2006-01-02T15-04-05Z"

// VersionName is the name of a version's file in .evo/versions/PATH/: its
// time, its number in the file's history (1 the first; four digits, so
// that versions made within one second sort too), its id, and the file's
// own extension ("2026-12-01T10-22-03Z_v0003_1764584523120000.tif").
// Names sort in the order the versions were made.
func VersionName(fileName string, n int, versionID string, at time.Time) string {
	return fmt.Sprintf("%s_v%04d_%s%s", at.UTC().Format(VersionTimeFormat), n, versionID, path.Ext(fileName))
}

// oldestFirst orders a file's versions as they were made: by time, and
// where times tie (the service's have whole seconds) as the service lists
// them, which is newest first when the file's latest version comes first.
func oldestFirst(d *remote.DownloadFileResponse) []remote.FileVersion {
	vs := slices.Clone(d.Versions)
	if len(vs) > 1 && vs[0].VersionID == d.VersionID {
		slices.Reverse(vs)
	}
	slices.SortStableFunc(vs, func(a, b remote.FileVersion) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return vs
}

// VersionView is one version of a file as .evo/versions shows it.
type VersionView struct {
	Name      string // VersionName
	VersionID string
	Size      int64
	At        time.Time    // when the version was made
	By        *remote.User // who made it
}

// fileVersions is one file's versions as one call listed them.
type fileVersions struct {
	taken time.Time
	file  *remote.DownloadFileResponse // without Versions
	list  []VersionView                // oldest first
}

// versionLists caches the version lists of files, by file id and the
// version the listing shows (a new version lists again), for the TTL.
type versionLists struct {
	calls singleflight.Group
	mu    sync.Mutex
	m     map[string]*fileVersions // GUARDED_BY(mu)
}

// Versions lists the versions of the remote file e, oldest first: one
// API call (include_versions), then the cached answer for the TTL or
// until the listing shows a newer version.
func (f *FS) Versions(ctx context.Context, e *Entry) ([]VersionView, *remote.DownloadFileResponse, error) {
	key := e.File.FileID + "@" + e.File.VersionID
	now := time.Now()
	f.vers.mu.Lock()
	if v := f.vers.m[key]; v != nil && now.Sub(v.taken) < f.opt.TTL {
		f.vers.mu.Unlock()
		return v.list, v.file, nil
	}
	f.vers.mu.Unlock()
	r, err, _ := f.vers.calls.Do(key, func() (any, error) {
		d, err := f.files.GetFile(ctx, e.File.FileID, remote.GetOptions{IncludeVersions: true})
		if err != nil {
			return nil, fmt.Errorf("list the versions of %s: %w", e.Path, err)
		}
		v := &fileVersions{taken: time.Now(), file: d}
		for i, fv := range oldestFirst(d) {
			v.list = append(v.list, VersionView{Name: VersionName(e.Name, i+1, fv.VersionID, fv.CreatedAt),
				VersionID: fv.VersionID, Size: fv.Size, At: fv.CreatedAt, By: fv.CreatedBy})
		}
		d.Versions = nil
		f.vers.mu.Lock()
		if f.vers.m == nil {
			f.vers.m = map[string]*fileVersions{}
		}
		for k, old := range f.vers.m { // the map holds only live answers
			if v.taken.Sub(old.taken) >= f.opt.TTL {
				delete(f.vers.m, k)
			}
		}
		f.vers.m[key] = v
		f.vers.mu.Unlock()
		return v, nil
	})
	if err != nil {
		return nil, nil, err
	}
	v := r.(*fileVersions)
	return v.list, v.file, nil
}

// remoteEntry is the remote file at p (in the listing, or committed here
// since), or nil: a folder, nothing, or content never committed.
func (f *FS) remoteEntry(ctx context.Context, p string) (*Entry, bool, error) {
	it, ok, err := f.ws.Stat(ctx, p)
	if err != nil || !ok {
		return nil, false, err
	}
	if it.Dir {
		return nil, true, nil
	}
	if it.Entry != nil {
		return it.Entry, false, nil
	}
	if s := f.ws.Current(); s != nil {
		if e := s.Lookup(p); e != nil && !e.Dir {
			return e, false, nil
		}
	}
	return nil, false, nil
}

// trashLister lists the trash: the deleted files. Of the files deleted
// at one path, the one deleted last shows at it, the others beside it as
// TrashName says; the FS learns where they were (FS.trashFrom).
type trashLister struct {
	Lister
	f *FS
}

func (d *trashLister) ListAll(ctx context.Context, o remote.ListOptions) ([]remote.ListFile, error) {
	o.Deleted = true
	files, err := d.Lister.ListAll(ctx, o)
	if err != nil {
		return nil, err
	}
	from := trashNames(files)
	d.f.mu.Lock()
	d.f.trashFrom = from
	d.f.mu.Unlock()
	return files, nil
}

// TrashName is the name in .evo/trash of a deleted file that another file
// deleted later at the same path has displaced: its name with when it was
// deleted and the start of its id before the extension
// ("b (deleted 2026-12-01T10-22-03Z 85de7e6a).tif").
func TrashName(name, fileID string, deletedAt time.Time) string {
	ext := path.Ext(name)
	if ext == name {
		ext = "" // ".profile"
	}
	short := fileID
	if len(short) > 8 {
		short = short[:8]
	}
	return fmt.Sprintf("%s (deleted %s %s)%s", strings.TrimSuffix(name, ext), deletedAt.UTC().Format(VersionTimeFormat), short, ext)
}

// trashNames renames, in place, the deleted files that share a path with
// one deleted after them, and returns their old paths by file id.
func trashNames(files []remote.ListFile) map[string]string {
	at := map[string][]int{}
	for i := range files {
		p := files[i].FullPath()
		at[p] = append(at[p], i)
	}
	from := map[string]string{}
	for p, idx := range at {
		if len(idx) < 2 {
			continue
		}
		deleted := func(i int) time.Time {
			if t := files[i].DeletedAt; t != nil {
				return *t
			}
			return files[i].ModifiedAt
		}
		slices.SortFunc(idx, func(a, b int) int {
			if c := deleted(b).Compare(deleted(a)); c != 0 {
				return c // last deleted first
			}
			return strings.Compare(files[a].FileID, files[b].FileID)
		})
		for _, i := range idx[1:] {
			f := &files[i]
			if n := TrashName(f.Name, f.FileID, deleted(i)); remote.ValidateName(n) == nil {
				f.Name = n
				from[f.FileID] = p
			}
		}
	}
	return from
}

// under is c with its folders moved under dir (the trash's changes are
// of names under .evo/trash).
func (c Change) under(dir string) Change {
	out := Change{Entries: make([]NameRef, len(c.Entries))}
	for i, r := range c.Entries {
		out.Entries[i] = NameRef{Dir: joinPath(dir, r.Dir), Name: r.Name}
	}
	return out
}

// trashOrigin is where the trash entry e was when it was deleted.
func (f *FS) trashOrigin(e *Entry) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.trashFrom[e.File.FileID]; ok {
		return p
	}
	return e.Path
}

// Trash is the model of .evo/trash: the deleted files at their old paths,
// a snapshot of the deleted=true listing, paged and refreshed like the
// live one. Of files deleted at one path, the one deleted last shows at
// it, the others beside it (TrashName).
func (f *FS) Trash() *Workspace { return f.trash }

// Restore brings back the deleted file e (an entry of the trash) at the
// live path to: in place when to is its old path, with its versions;
// else restored and then renamed (a rename is a copy and a delete: the
// file at to starts a history of its own, the old one goes back to the
// trash with its history). A path taken answers EEXIST, a viewer EACCES,
// and nothing changes.
func (f *FS) Restore(ctx context.Context, e *Entry, to string) error {
	if f.opt.ReadOnly {
		return errReadOnly
	}
	if err := checkName(to); err != nil {
		return err
	}
	if err := f.writable(ctx); err != nil {
		return err
	}
	if _, ok, err := f.ws.Stat(ctx, to); err != nil {
		return err
	} else if ok {
		return syscall.EEXIST
	}
	id := e.File.FileID
	r, err := f.files.RestoreFile(ctx, id)
	if err != nil {
		return fmt.Errorf("restore %s: %w", e.Path, err)
	}
	at := f.trashOrigin(e)
	orig := at
	live := e.File
	live.DeletedAt, live.DeletedBy = nil, nil
	live.Path, live.Name = splitWorkspacePath(at)
	if r.Moved && r.File != nil {
		// Its old path was taken since the listing: the service put it
		// at a new name.
		at = r.File.FullPath()
		live.Path, live.Name = r.File.Path, r.File.Name
		if at != to && to == orig {
			// The restore asked for is in place, and the place is
			// taken: put it back in the trash.
			if err := f.deleteFile(ctx, id); err != nil {
				return fmt.Errorf("restore %s: the path is taken; the service restored it at %s, and deleting it again failed: %w", orig, at, err)
			}
			return syscall.EEXIST
		}
	}
	f.trash.setPatch(e.Path, nil, false)
	restored := &Entry{Path: at, Name: baseName(at), Ino: fileIno(id, live.VersionID), File: live, ModTime: live.ModifiedAt}
	f.ws.setPatch(at, restored, false)
	f.landed(at)
	f.log.Info("restored", "path", "/"+at, "file_id", id, "moved", r.Moved)
	if at == to {
		return nil
	}
	if err := f.Rename(ctx, at, to, Item{Name: baseName(at), Ino: restored.Ino, Entry: restored}, Item{}, false); err != nil {
		return fmt.Errorf("restore %s: restored at /%s, then rename to /%s: %w", e.Path, at, to, err)
	}
	return nil
}

// RestoreDir restores every file under the trash folder dir to the same
// place under the live folder to (Restore, file by file). Nothing is
// restored when a target is taken (EEXIST), to is a file (ENOTDIR) or a
// folder with something in it (ENOTEMPTY), as rename(2) would answer.
func (f *FS) RestoreDir(ctx context.Context, dir, to string) error {
	if f.opt.ReadOnly {
		return errReadOnly
	}
	if err := f.writable(ctx); err != nil {
		return err
	}
	if it, ok, err := f.ws.Stat(ctx, to); err != nil {
		return err
	} else if ok && !it.Dir {
		return syscall.ENOTDIR
	} else if ok {
		items, _, err := f.ws.List(ctx, to)
		if err != nil {
			return err
		}
		if len(items) > 0 {
			return syscall.ENOTEMPTY
		}
	}
	type move struct {
		e  *Entry
		to string
	}
	var moves []move
	var walk func(d, target string) error
	walk = func(d, target string) error {
		items, _, err := f.trash.List(ctx, d)
		if err != nil {
			return err
		}
		for _, it := range items {
			switch {
			case it.Dir:
				if err := walk(joinPath(d, it.Name), joinPath(target, it.Name)); err != nil {
					return err
				}
			case it.Entry != nil:
				moves = append(moves, move{it.Entry, joinPath(target, it.Name)})
			}
		}
		return nil
	}
	if err := walk(dir, to); err != nil {
		return fmt.Errorf("list the trash under %s: %w", dir, err)
	}
	for _, m := range moves {
		if err := checkName(m.to); err != nil {
			return err
		}
		if _, ok, err := f.ws.Stat(ctx, m.to); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("restore %s to /%s: /%s is taken: %w", dir, to, m.to, syscall.EEXIST)
		}
	}
	for i, m := range moves {
		if err := f.Restore(ctx, m.e, m.to); err != nil {
			return fmt.Errorf("restore %s to /%s (%d of %d files restored): %w", dir, to, i, len(moves), err)
		}
	}
	f.trash.setPatch(dir, nil, true)
	return nil
}

// xattr is one extended attribute.
type xattr struct{ name, value string }

// XattrPrefix starts the names of the service's metadata attributes.
const XattrPrefix = "user.evo."

// userString shows who did something as the service gives it: name and
// email ("Jane Doe <jane@example.com>").
func userString(u *remote.User) string {
	switch {
	case u == nil:
		return ""
	case u.Email == "":
		return u.Name
	case u.Name == "":
		return "<" + u.Email + ">"
	}
	return u.Name + " <" + u.Email + ">"
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// fileXattrs are the attributes of a listed file (empty values left out).
func fileXattrs(lf *remote.ListFile) []xattr {
	out := []xattr{
		{"file_id", lf.FileID}, {"version_id", lf.VersionID},
		{"created_by", userString(lf.CreatedBy)}, {"created_at", timeString(lf.CreatedAt)},
		{"modified_by", userString(lf.ModifiedBy)}, {"modified_at", timeString(lf.ModifiedAt)},
		{"etag", lf.ETag},
	}
	if lf.DeletedAt != nil {
		out = append(out, xattr{"deleted_by", userString(lf.DeletedBy)}, xattr{"deleted_at", timeString(*lf.DeletedAt)})
	}
	return prefixed(out)
}

// versionXattrs are the attributes of a version of file d: the file's
// creation, the version's making as its modification; the etag where it
// is the version the listing shows (cur).
func versionXattrs(d *remote.DownloadFileResponse, v VersionView, cur *Entry) []xattr {
	out := []xattr{
		{"file_id", d.FileID}, {"version_id", v.VersionID},
		{"created_by", userString(d.CreatedBy)}, {"created_at", timeString(d.CreatedAt)},
		{"modified_by", userString(v.By)}, {"modified_at", timeString(v.At)},
	}
	if cur != nil && cur.File.VersionID == v.VersionID {
		out = append(out, xattr{"etag", cur.File.ETag})
	}
	return prefixed(out)
}

func prefixed(in []xattr) []xattr {
	out := in[:0]
	for _, a := range in {
		if a.value != "" {
			out = append(out, xattr{XattrPrefix + a.name, a.value})
		}
	}
	return out
}

// StateXattr is the attribute of a file written here and not committed:
// "pending" (waiting for its upload), "uploading", "failed" (its last
// upload failed; it is retried), "conflict" (a conflict copy not yet
// uploaded), "local" (a transient file, never uploaded).
const StateXattr = XattrPrefix + "state"

// localState is the state of local content, or "" when it is committed
// (or unchanged over the version it was opened on).
func (f *FS) localState(l *Local) string {
	f.refresh(l)
	f.wmu.Lock()
	dirty, transient, uploading, failures, p := l.dirty(), l.transient, l.uploading, l.failures, l.path
	f.wmu.Unlock()
	switch {
	case transient:
		return "local"
	case !dirty:
		return ""
	case uploading:
		return "uploading"
	case failures > 0:
		return "failed"
	}
	for _, c := range f.Conflicts() {
		if c.Copy == p {
			return "conflict"
		}
	}
	return "pending"
}

// getXattr answers getxattr(2) from attrs.
func getXattr(attrs []xattr, name string, dest []byte) (uint32, syscall.Errno) {
	for _, a := range attrs {
		if a.name == name {
			return xattrReply([]byte(a.value), dest)
		}
	}
	return 0, syscall.ENODATA
}

// listXattr answers listxattr(2) from attrs.
func listXattr(attrs []xattr, dest []byte) (uint32, syscall.Errno) {
	var b []byte
	for _, a := range attrs {
		b = append(append(b, a.name...), 0)
	}
	return xattrReply(b, dest)
}

// xattrReply answers a getxattr(2) or listxattr(2) of value: its size
// when dest is empty, ERANGE when dest is too small.
func xattrReply(value, dest []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(value)), 0
	}
	if len(dest) < len(value) {
		return uint32(len(value)), syscall.ERANGE
	}
	return uint32(copy(dest, value)), 0
}

// viewIno numbers the nodes under .evo: kind and identity, clear of the
// live tree's numbers (a version shown in both places is two inodes, one
// cache).
func viewIno(kind string, parts ...string) uint64 {
	return fixIno(xxhash.Sum64String("e\x00" + kind + "\x00" + strings.Join(parts, "\x00")))
}

// errViewRO refuses a change under .evo other than a restore.
var errViewRO error = &refusal{errno: syscall.EROFS, why: "the versions and the trash under " + EvoDir + " are read-only (restore: mv from the trash, cp from versions)"}

// errNoPurge refuses a delete in the trash: the API has no purge.
var errNoPurge error = &refusal{errno: syscall.EPERM, why: "files in the trash cannot be deleted (the service has no purge)"}
