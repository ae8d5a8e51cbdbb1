package fs

import (
	"context"
	"sort"
	"strings"
	"time"
)

// The overlay: what this mount changed that the listing does not show (yet).
//
//   - locals: files whose content is here: being written, waiting for their
//     upload, or transient side files that never leave the cache.
//   - patches: the effect of calls that completed (a version committed, a
//     file deleted, a folder removed), shown until a sweep that started
//     after them has been installed; that listing shows them itself.
//   - dirs: folders made here that no file has reached yet (kept in the
//     cache database across mounts).
//   - hiddenIDs: remote files about to be replaced by local content under
//     another name (a rename whose upload is pending): not shown.
//
// Every lookup and readdir is the snapshot with the overlay on top.

// Item is what a path names now: a folder, a remote file version (Entry),
// or a file with local content (Local).
type Item struct {
	Name  string
	Dir   bool
	Ino   uint64
	Entry *Entry // a remote version (files without local content)
	Local *Local // local content
}

// patch is a completed change: e is the path's new version, or nil when
// the path is gone (dir: a folder).
type patch struct {
	e   *Entry
	dir bool
	seq uint64
}

// overlay is kept in the Workspace under its mu. Its maps change only
// through the methods below, which keep implied in step.
type overlay struct {
	locals    map[string]*Local
	patches   map[string]patch
	dirs      map[string]bool
	hiddenIDs map[string]int
	dirTimes  map[string]time.Time // when local folders were made (mkdir)
	seq       uint64               // counts completed changes
	// implied counts, for each folder, the locals, patched versions and
	// local folders under it: the folders the overlay makes exist.
	implied map[string]int
}

func newOverlay() overlay {
	return overlay{locals: map[string]*Local{}, patches: map[string]patch{},
		dirs: map[string]bool{}, hiddenIDs: map[string]int{}, implied: map[string]int{}, dirTimes: map[string]time.Time{}}
}

// imply adds n to the count of every folder above p.
func (o *overlay) imply(p string, n int) {
	for d := parentPath(p); d != ""; d = parentPath(d) {
		if o.implied[d] += n; o.implied[d] <= 0 {
			delete(o.implied, d)
		}
	}
}

func (o *overlay) putLocal(p string, l *Local) {
	if o.locals[p] == nil {
		o.imply(p, 1)
	}
	o.locals[p] = l
}

// dropLocal takes l from p, unless p holds other content by now.
func (o *overlay) dropLocal(p string, l *Local) {
	if o.locals[p] == l {
		delete(o.locals, p)
		o.imply(p, -1)
	}
}

func (o *overlay) putPatch(p string, pt patch) {
	o.dropPatch(p)
	o.patches[p] = pt
	if pt.e != nil {
		o.imply(p, 1)
	}
}

func (o *overlay) dropPatch(p string) {
	if old, ok := o.patches[p]; ok {
		delete(o.patches, p)
		if old.e != nil {
			o.imply(p, -1)
		}
	}
}

func (o *overlay) setDir(p string, on bool) {
	switch {
	case on && !o.dirs[p]:
		o.dirs[p] = true
		o.dirTimes[p] = time.Now()
		o.imply(p, 1)
	case !on && o.dirs[p]:
		delete(o.dirs, p)
		delete(o.dirTimes, p)
		o.imply(p, -1)
	}
}

// expire drops the patches a listing started after seq shows by itself.
func (o *overlay) expire(seq uint64) {
	for p, pt := range o.patches {
		if pt.seq <= seq {
			o.dropPatch(p)
		}
	}
}

// Stat resolves a path through the snapshot and the overlay. ok is false
// when nothing is there.
func (w *Workspace) Stat(ctx context.Context, path string) (it Item, ok bool, err error) {
	s, err := w.Snapshot(ctx)
	if err != nil {
		return Item{}, false, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	it, ok = w.statLocked(s, path)
	return it, ok, nil
}

// peek resolves a path through the last snapshot and the overlay without
// listing (nothing is there before the first sweep).
func (w *Workspace) peek(p string) (Item, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.snap == nil {
		return w.statLocked(&Snapshot{byPath: map[string]*Entry{}}, p)
	}
	return w.statLocked(w.snap, p)
}

// LOCKS_REQUIRED(w.mu)
func (w *Workspace) statLocked(s *Snapshot, p string) (Item, bool) {
	o := &w.ov
	if p == "" {
		return Item{Dir: true, Ino: rootIno}, true
	}
	name := baseName(p)
	if l := o.locals[p]; l != nil {
		return Item{Name: name, Ino: l.ino, Local: l}, true
	}
	// A database whose WAL here was written over a version shows that
	// version while the WAL lives: its frames belong to no other.
	for _, sfx := range []string{"-wal", "-shm"} {
		if l := o.locals[p+sfx]; l != nil {
			if e := l.pin.Load(); e != nil {
				return Item{Name: name, Ino: e.Ino, Entry: e}, true
			}
		}
	}
	pt, patched := o.patches[p]
	if patched && pt.e != nil && o.hiddenIDs[pt.e.File.FileID] == 0 {
		return Item{Name: name, Ino: pt.e.Ino, Entry: pt.e}, true
	}
	if e := s.Lookup(p); e != nil && !(patched && pt.dir == e.Dir) {
		if !e.Dir && o.hiddenIDs[e.File.FileID] == 0 {
			return Item{Name: name, Ino: e.Ino, Entry: e}, true
		}
		if e.Dir {
			return Item{Name: name, Dir: true, Ino: e.Ino}, true
		}
	}
	if o.dirs[p] || w.impliesDirLocked(p) {
		return Item{Name: name, Dir: true, Ino: dirIno(p)}, true
	}
	return Item{}, false
}

// impliesDirLocked: something of the overlay lives under p.
//
// LOCKS_REQUIRED(w.mu)
func (w *Workspace) impliesDirLocked(p string) bool { return w.ov.implied[p] > 0 }

// List returns a folder's items sorted by name, or ok false when path is
// not a folder.
func (w *Workspace) List(ctx context.Context, path string) (items []Item, ok bool, err error) {
	s, err := w.Snapshot(ctx)
	if err != nil {
		return nil, false, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if it, ok := w.statLocked(s, path); !ok || !it.Dir {
		return nil, false, nil
	}
	names := map[string]bool{}
	if d := s.Lookup(path); d != nil && d.Dir {
		for _, c := range d.Children {
			names[c.Name] = true
		}
	}
	pre := ""
	if path != "" {
		pre = path + "/"
	}
	addOverlay := func(k string) {
		if rest, found := strings.CutPrefix(k, pre); found && rest != "" {
			first, _, _ := strings.Cut(rest, "/")
			names[first] = true
		}
	}
	for k := range w.ov.locals {
		addOverlay(k)
	}
	for k := range w.ov.patches {
		addOverlay(k)
	}
	for k := range w.ov.dirs {
		addOverlay(k)
	}
	for n := range names {
		if it, ok := w.statLocked(s, pre+n); ok {
			items = append(items, it)
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	return items, true, nil
}

// addLocal puts a local file at its path.
func (w *Workspace) addLocal(l *Local) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ov.putLocal(l.path, l)
}

// dropLocal takes a local file from p (if it is still there).
func (w *Workspace) dropLocal(p string, l *Local) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ov.dropLocal(p, l)
}

// moveLocal moves a local file from one path to another.
func (w *Workspace) moveLocal(from, to string, l *Local) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ov.dropLocal(from, l)
	w.ov.putLocal(to, l)
}

// setPatch records a completed change of path (e nil: gone; dir: a folder).
func (w *Workspace) setPatch(path string, e *Entry, dir bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ov.seq++
	w.ov.putPatch(path, patch{e: e, dir: dir, seq: w.ov.seq})
}

// hideID hides (n=1) or shows again (n=-1) a remote file by id.
func (w *Workspace) hideID(id string, n int) {
	if id == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ov.hiddenIDs[id] += n; w.ov.hiddenIDs[id] <= 0 {
		delete(w.ov.hiddenIDs, id)
	}
}

// isHidden reports whether a remote file is hidden: left at its path by
// content renamed away, to be deleted (or deleted already).
func (w *Workspace) isHidden(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ov.hiddenIDs[id] > 0
}

// setDir marks or unmarks a local folder and reports whether that changed
// anything.
func (w *Workspace) setDir(path string, on bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on {
		if pt, ok := w.ov.patches[path]; ok && pt.e == nil {
			w.ov.dropPatch(path) // made again after an rmdir
		}
	}
	changed := w.ov.dirs[path] != on
	w.ov.setDir(path, on)
	return changed
}

// dirTime is when a local folder was made here (zero if it was not).
func (w *Workspace) dirTime(p string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ov.dirTimes[p]
}

// localDirsUnder lists local folder marks at or under path.
func (w *Workspace) localDirsUnder(path string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for k := range w.ov.dirs {
		if k == path || strings.HasPrefix(k, path+"/") {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// committedEntry is the entry of a version this mount just committed.
func committedEntry(path, fileID, versionID string, size int64) *Entry {
	folder, name := splitWorkspacePath(path)
	now := time.Now()
	e := &Entry{Path: path, Name: name, Ino: fileIno(fileID, versionID), ModTime: now}
	e.File.FileID, e.File.VersionID, e.File.Size = fileID, versionID, size
	e.File.Name, e.File.Path = name, folder
	e.File.ModifiedAt, e.File.CreatedAt = now, now
	return e
}

// splitWorkspacePath turns "a/b/c.txt" into the listing's ("/a/b/", "c.txt").
func splitWorkspacePath(p string) (folder, name string) {
	dir := parentPath(p)
	if dir == "" {
		return "/", baseName(p)
	}
	return "/" + dir + "/", baseName(p)
}
