package fs

import (
	"context"
	"errors"
	"io"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/evofs/evofs/cache"
	"github.com/evofs/evofs/remote"
)

// dirNode is a folder of the workspace. Its path is where go-fuse's tree
// has it now (renames move it).
type dirNode struct {
	gofs.Inode
	fsys *FS
}

// fileNode is a file: one remote version (its inode number derives from
// file id and version id), or content born or written here (l).
type fileNode struct {
	gofs.Inode
	fsys *FS

	mu    sync.Mutex
	e     *Entry  // GUARDED_BY(mu): the version this inode was made for (nil: born here)
	l     *Local  // GUARDED_BY(mu): local content, once written
	opens int     // GUARDED_BY(mu)
	pt    backing // GUARDED_BY(mu): the backing file its handles share (passthrough.go)
	// writers are the handles open for writing that have not written
	// yet: the kernel's O_TRUNC of one of them comes as a truncate with
	// no handle (see Setattr).
	writers map[*fileHandle]struct{} // GUARDED_BY(mu)
	// path is where the node was last seen in the tree: a node a refresh
	// replaced (a new version from elsewhere) still writes there.
	path string // GUARDED_BY(mu)
	// unlinked: this mount removed the node's name (unlink, or a rename
	// over it); what its handles write stays local to them.
	unlinked bool // GUARDED_BY(mu)
}

func (n *dirNode) path() string { return n.Path(nil) }

// sameVersion reports whether the node shows the remote version of it:
// the version it was made for, or the one its local content, finished,
// was committed as (a listing after this mount's save shows that version;
// the node and the handles open on it stay the file at that name).
func (n *fileNode) sameVersion(it Item) bool {
	n.mu.Lock()
	unlinked := n.unlinked
	n.mu.Unlock()
	if unlinked || it.Local != nil || it.Entry == nil {
		return false
	}
	l, e := n.current()
	return l == nil && e != nil &&
		e.File.FileID == it.Entry.File.FileID && e.File.VersionID == it.Entry.File.VersionID
}

// child makes (or finds) the node of an item.
func (f *FS) child(ctx context.Context, parent *gofs.Inode, it Item) *gofs.Inode {
	if ch := parent.GetChild(it.Name); ch != nil {
		// A folder keeps its node (and number) while it is there: a
		// rename moved it with everything under it.
		if _, isDir := ch.Operations().(*dirNode); isDir && it.Dir {
			return ch
		}
		// A file this mount saved, or renamed there (fileNode.moved),
		// shows the version that made, under its old number: it stays
		// the file at that name, or handles opened on it since would not
		// see what is done through the name.
		if fn, ok := ch.Operations().(*fileNode); ok && !it.Dir && fn.sameVersion(it) {
			return ch
		}
	}
	var ops gofs.InodeEmbedder
	mode := uint32(syscall.S_IFREG)
	switch {
	case it.Dir:
		ops, mode = &dirNode{fsys: f}, syscall.S_IFDIR
	case it.Local != nil:
		ops = &fileNode{fsys: f, l: it.Local, path: joinPath(parent.Path(nil), it.Name)}
	default:
		ops = &fileNode{fsys: f, e: it.Entry, path: joinPath(parent.Path(nil), it.Name)}
	}
	// NewInode returns the existing inode for the same number, if any.
	return parent.NewInode(ctx, ops, gofs.StableAttr{Mode: mode, Ino: it.Ino})
}

// stat resolves this folder (ENOENT when it is gone).
func (n *dirNode) stat(ctx context.Context) (Item, syscall.Errno) {
	it, ok, err := n.fsys.ws.Stat(ctx, n.path())
	if err != nil {
		return Item{}, errno(n.fsys.log, "list", "/"+n.path(), err)
	}
	if !ok || !it.Dir {
		return Item{}, syscall.ENOENT
	}
	return it, 0
}

func (n *dirNode) childPath(name string) string { return joinPath(n.path(), name) }

var _ = (gofs.NodeLookuper)((*dirNode)(nil))

// Lookup answers from the snapshot and the overlay: a name that is in
// neither costs no API call.
func (n *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if name == EvoDir && n.IsRoot() {
		return n.lookupEvo(ctx, out), 0 // never listed (Readdir): see evo.go
	}
	it, ok, err := n.fsys.ws.Stat(ctx, n.childPath(name))
	if err != nil {
		return nil, errno(n.fsys.log, "lookup", "/"+n.childPath(name), err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	ch := n.fsys.child(ctx, &n.Inode, it)
	n.fsys.nodeAttr(ch, it, &out.Attr)
	return ch, 0
}

var _ = (gofs.NodeReaddirer)((*dirNode)(nil))

// Readdir lists the folder sorted by name, inode numbers as in Lookup.
func (n *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	items, ok, err := n.fsys.ws.List(ctx, n.path())
	if err != nil {
		return nil, errno(n.fsys.log, "list", "/"+n.path(), err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	out := make([]fuse.DirEntry, 0, len(items))
	for _, c := range items {
		mode := uint32(syscall.S_IFREG)
		ino := c.Ino
		if c.Dir {
			mode = syscall.S_IFDIR
			if ch := n.GetChild(c.Name); ch != nil && ch.IsDir() {
				ino = ch.StableAttr().Ino
			}
		} else if ch := n.GetChild(c.Name); ch != nil {
			// The number stat gives: a node kept for this version (child).
			if fn, ok := ch.Operations().(*fileNode); ok && fn.sameVersion(c) {
				ino = ch.StableAttr().Ino
			}
		}
		out = append(out, fuse.DirEntry{Name: c.Name, Ino: ino, Mode: mode})
	}
	return gofs.NewListDirStream(out), 0
}

var _ = (gofs.NodeGetattrer)((*dirNode)(nil))

func (n *dirNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	it, eno := n.stat(ctx)
	if eno != 0 {
		return eno
	}
	n.fsys.nodeAttr(&n.Inode, it, &out.Attr)
	return 0
}

var _ = (gofs.NodeSetattrer)((*dirNode)(nil))

// Setattr of a folder: modes, owners and times are accepted and ignored
// (the service stores none of them).
func (n *dirNode) Setattr(ctx context.Context, _ gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fsys.opt.ReadOnly {
		return errno(n.fsys.log, "setattr", "/"+n.Path(nil), errReadOnly)
	}
	return n.Getattr(ctx, nil, out)
}

var _ = (gofs.NodeStatfser)((*dirNode)(nil))

// Statfs answers large round figures: the service has no quota to report,
// and df and cp want room.
func (n *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const bsize = 4096
	const total = 1 << 50 / bsize // 1 PiB
	out.Bsize, out.Frsize = bsize, bsize
	out.Blocks, out.Bfree, out.Bavail = total, total, total
	out.Files, out.Ffree = 1<<32, 1<<32
	out.NameLen = 255
	return 0
}

// StatusXattr is the extended attribute of the mount's root that holds
// `evofs status` (JSON: the write-back mode and pending uploads).
const StatusXattr = "user.evofs.status"

var _ = (gofs.NodeGetxattrer)((*dirNode)(nil))

func (n *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !n.IsRoot() || attr != StatusXattr {
		return 0, syscall.ENODATA
	}
	return xattrReply(n.fsys.statusJSON(), dest)
}

// current is what the file is now: local content, or a remote version.
func (n *fileNode) current() (*Local, *Entry) {
	n.mu.Lock()
	l, e := n.l, n.e
	n.mu.Unlock()
	if l == nil {
		return nil, e
	}
	n.fsys.wmu.Lock()
	defer n.fsys.wmu.Unlock()
	if l.live() {
		return l, nil
	}
	if l.committed != nil {
		return nil, l.committed
	}
	return nil, e
}

// moved makes the node version e, the copy a rename made of its remote
// version (local content that is finished is forgotten: e replaces the
// version it was committed as).
func (n *fileNode) moved(e *Entry) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.e = e
	if n.l != nil {
		n.fsys.wmu.Lock()
		live := n.l.live()
		n.fsys.wmu.Unlock()
		if !live {
			n.l = nil
		}
	}
}

var _ = (gofs.NodeGetattrer)((*fileNode)(nil))

func (n *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	l, e := n.current()
	n.fsys.nodeAttr(&n.Inode, Item{Entry: e, Local: l}, &out.Attr)
	return 0
}

// nodeAttr fills a FUSE attribute for an item shown by node ch.
func (f *FS) nodeAttr(ch *gofs.Inode, it Item, a *fuse.Attr) {
	a.Ino = ch.StableAttr().Ino
	a.Uid, a.Gid = f.opt.UID, f.opt.GID
	a.Blksize = uint32(f.cache.BlockSize())
	var t time.Time
	switch {
	case it.Dir:
		a.Mode = syscall.S_IFDIR | (0o777 &^ f.opt.Umask)
		a.Nlink = 2
		p := ch.Path(nil)
		if e := f.ws.Current(); e != nil {
			if d := e.Lookup(p); d != nil {
				t = d.ModTime
			}
		}
		if t.IsZero() {
			t = f.ws.dirTime(p) // made here (mkdir), or kept since (remount: the mount's start)
		}
	case it.Local != nil:
		a.Mode = syscall.S_IFREG | (0o666 &^ f.opt.Umask)
		a.Nlink = 1
		f.refresh(it.Local)
		f.wmu.Lock()
		if it.Local.live() {
			a.Size = uint64(it.Local.d.Size())
		}
		t = it.Local.mtime
		f.wmu.Unlock()
	case it.Entry != nil:
		a.Mode = syscall.S_IFREG | (0o666 &^ f.opt.Umask)
		a.Nlink = 1
		a.Size = uint64(it.Entry.File.Size)
		t = it.Entry.ModTime
	}
	a.Blocks = (a.Size + 511) / 512
	if f.opt.ReadOnly {
		a.Mode &^= 0o222
	}
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	a.SetTimes(&t, &t, &t)
}

// localFor returns the node's local content, starting it (over the
// node's version) on the first change.
func (n *fileNode) localFor(ctx context.Context) (*Local, error) {
	if l, _ := n.current(); l != nil {
		return l, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.localForLocked()
}

// localForLocked is localFor with n.mu held.
//
// LOCKS_REQUIRED(n.mu)
func (n *fileNode) localForLocked() (*Local, error) {
	if n.l != nil {
		n.fsys.wmu.Lock()
		live := n.l.live()
		n.fsys.wmu.Unlock()
		if live {
			return n.l, nil
		}
	}
	base := n.e
	if n.l != nil {
		n.fsys.wmu.Lock()
		if n.l.committed != nil {
			base = n.l.committed
		}
		n.fsys.wmu.Unlock()
	}
	var l *Local
	var err error
	if n.pt.file != nil {
		// Handles read the node's backing file: the content is that file.
		l, err = n.adoptBacking(n.linkedPath(), base)
	}
	if l == nil && err == nil {
		l, err = n.fsys.newLocal(n.linkedPath(), base, n.StableAttr().Ino)
	}
	if err != nil {
		return nil, err
	}
	n.fsys.wmu.Lock()
	l.opens = n.opens
	n.fsys.wmu.Unlock()
	n.e = base // what the node is, should this content end unchanged
	n.l = l
	return l, nil
}

// linkedPath is the node's path, or "" when this mount took its name away
// (unlinked, or replaced by a rename over it) and it lives only for its
// open handles. A node that a refresh replaced (the file got a version
// elsewhere, or was deleted elsewhere) keeps its path: what its handles
// write is saved, as a conflict copy if need be.
//
// LOCKS_REQUIRED(n.mu)
func (n *fileNode) linkedPath() string {
	name, parent := n.Parent()
	if parent != nil && parent.GetChild(name) == &n.Inode {
		n.path = n.Path(nil)
		return n.path
	}
	if n.unlinked {
		return ""
	}
	return n.path
}

// unlink marks the node as taken out of the tree by this mount.
func (n *fileNode) unlink() {
	n.mu.Lock()
	n.unlinked = true
	n.mu.Unlock()
}

// movedTo records the node's new path after a rename.
func (n *fileNode) movedTo(p string) {
	n.mu.Lock()
	n.path = p
	n.mu.Unlock()
}

var _ = (gofs.NodeOpener)((*fileNode)(nil))

// Open pins a handle's reads of a remote version to the version current
// at open; once the file has local content, every handle reads that.
func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	write := flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0
	p := n.Path(nil)
	if write {
		actx, done := n.fsys.away(ctx)
		err := n.fsys.writableFor(actx, p)
		done()
		if err != nil {
			return nil, 0, errno(n.fsys.log, "open for writing", "/"+p, n.fsys.awayErr(actx, err))
		}
	}
	h := &fileHandle{n: n, append: flags&syscall.O_APPEND != 0, family: n.fsys.familyOpened(p)}
	h.trunc.Store(flags&syscall.O_TRUNC != 0)
	l, e := n.current()
	if l == nil && e != nil {
		h.openVersion(e)
	}
	n.mu.Lock()
	n.opens++
	if n.l != nil {
		n.fsys.localOpened(n.l)
	}
	if write {
		if n.writers == nil {
			n.writers = map[*fileHandle]struct{}{}
		}
		n.writers[h] = struct{}{}
	}
	n.mu.Unlock()
	if flags&syscall.O_TRUNC != 0 {
		if eno := n.truncate(ctx, 0, true); eno != 0 {
			h.Release(ctx)
			return nil, 0, eno
		}
	}
	if ph, eno := n.passthrough(ctx, h, write); eno != 0 {
		h.Release(ctx)
		return nil, 0, eno
	} else if ph != nil {
		return ph, 0, 0
	}
	if l == nil && e != nil && !write {
		// The inode is this version: its pages stay valid across opens.
		return h, fuse.FOPEN_KEEP_CACHE, 0
	}
	return h, 0, 0
}

// handleOf is the fileHandle of a go-fuse file handle of a file.
func handleOf(fh gofs.FileHandle) (*fileHandle, bool) {
	switch h := fh.(type) {
	case *fileHandle:
		return h, true
	case *ptHandle:
		return h.fileHandle, true
	}
	return nil, false
}

// fileHandle is an open file.
type fileHandle struct {
	n      *fileNode
	append bool
	family string // the key its open is counted under (sqlite.go)
	// trunc: opened with O_TRUNC (or created); wrote: written through
	// since. A shell redirect opens with O_TRUNC, dup2s the descriptor
	// and closes the first copy before writing: that close must not
	// commit the empty file (see save).
	trunc atomic.Bool
	wrote atomic.Bool

	ver    *cache.File // reads of the remote version the node shows (see version)
	verKey versionKey

	mu     sync.Mutex
	logged map[string]bool // GUARDED_BY(mu): errors already logged (the kernel retries a failed page read)
	left   []*cache.File   // GUARDED_BY(mu): readers of versions the node has moved on from
}

func (h *fileHandle) openVersion(e *Entry) {
	f := h.n.fsys
	v := cache.Version{FileID: e.File.FileID, VersionID: e.File.VersionID, Size: e.File.Size}
	h.verKey = versionKey{v.FileID, v.VersionID}
	f.opened(h.verKey)
	h.ver = f.cache.File(v, &versionFetcher{fsys: f, key: h.verKey}, cache.FileOptions{
		Readahead: f.opt.Readahead, Parallelism: f.opt.Parallelism})
}

// version is the reader of e, the version the node shows now. A handle
// follows its node through what this mount does to it (a truncate of the
// path committed, a rename's copy): those keep the node, while another
// client's save is a new node its handles never see. Readers of the
// version left behind are closed at Release: a read may still be in it.
func (h *fileHandle) version(e *Entry) *cache.File {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ver != nil && h.verKey == (versionKey{e.File.FileID, e.File.VersionID}) {
		return h.ver
	}
	if h.ver != nil {
		h.left = append(h.left, h.ver)
		h.n.fsys.released(h.verKey)
	}
	h.openVersion(e)
	return h.ver
}

// fail maps an error to its errno, logging it the first time this handle
// meets it.
func (h *fileHandle) fail(op string, err error) syscall.Errno {
	key := op + "/" + remote.ErrorCode(err) + "/" + toErrno(err).Error()
	h.mu.Lock()
	first := !h.logged[key]
	if first {
		if h.logged == nil {
			h.logged = map[string]bool{}
		}
		h.logged[key] = true
	}
	h.mu.Unlock()
	if !first {
		return toErrno(err)
	}
	return errno(h.n.fsys.log, op, "/"+h.n.Path(nil), err)
}

var _ = (gofs.FileReader)((*fileHandle)(nil))

func (h *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	var n int
	var err error
	h.n.fsys.reads.Add(1)
	ctx, done := h.n.fsys.away(ctx)
	defer done()
	if l, e := h.n.current(); l != nil {
		n, err = l.d.ReadAt(ctx, dest, off)
	} else if e != nil {
		n, err = h.version(e).ReadAt(ctx, dest, off)
	} else {
		err = io.EOF
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, h.fail("read", h.n.fsys.awayErr(ctx, err))
	}
	return fuse.ReadResultData(dest[:n]), 0
}

var _ = (gofs.FileWriter)((*fileHandle)(nil))

// Write puts the bytes in the cache (not in memory) before it returns.
func (h *fileHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.n.fsys.writes.Add(1)
	if !h.wrote.Load() {
		h.n.mu.Lock()
		delete(h.n.writers, h) // no O_TRUNC of its open is to come now
		h.n.mu.Unlock()
	}
	ctx, done := h.n.fsys.away(ctx)
	defer done()
	l, err := h.n.localFor(ctx) // counts this handle among its opens
	if err != nil {
		return 0, h.fail("write", h.n.fsys.awayErr(ctx, err))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := h.n.fsys
	f.wmu.Lock()
	d := l.d
	f.wmu.Unlock()
	if d == nil {
		return 0, syscall.EIO
	}
	if h.append {
		off = d.Size()
	}
	h.wrote.Store(true)
	n, err := d.WriteAt(ctx, data, off)
	f.wmu.Lock()
	l.mtime = time.Now()
	f.wmu.Unlock()
	if err != nil {
		return uint32(n), h.fail("write", h.n.fsys.awayErr(ctx, err))
	}
	f.noteWrite(l, off, off+int64(n))
	return uint32(n), 0
}

// truncate sets the length of the local content; opened says whether a
// handle of the node asks (ftruncate, O_TRUNC), not a path.
func (n *fileNode) truncate(ctx context.Context, size int64, opened bool) syscall.Errno {
	var err error
	ctx, done := n.fsys.away(ctx)
	defer done()
	// Content no handle keeps open (a truncate of a path) may be finished
	// by its background upload between localFor and l.mu: then it is a
	// committed version, and the truncate starts new content over it.
	for try := 0; ; try++ {
		var l *Local
		if l, err = n.localFor(ctx); err != nil {
			break
		}
		l.mu.Lock()
		n.fsys.wmu.Lock()
		d := l.d
		l.mtime = time.Now()
		n.fsys.wmu.Unlock()
		if d == nil && !opened && try < 3 {
			l.mu.Unlock()
			continue
		}
		if d == nil {
			err = syscall.EIO
		} else if err = d.Truncate(ctx, size); err == nil {
			n.fsys.noteTruncate(l, size)
		}
		l.mu.Unlock()
		break
	}
	if err != nil {
		return errno(n.fsys.log, "truncate", "/"+n.Path(nil), n.fsys.awayErr(ctx, err))
	}
	return 0
}

var _ = (gofs.NodeSetattrer)((*fileNode)(nil))

// Setattr changes the size; modes, owners and times are accepted and
// ignored (the service stores none of them).
func (n *fileNode) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fsys.opt.ReadOnly && !n.fsys.isLocalOnly(n.Path(nil)) {
		return errno(n.fsys.log, "setattr", "/"+n.Path(nil), errReadOnly)
	}
	if size, ok := in.GetSize(); ok {
		if err := n.fsys.writableFor(ctx, n.Path(nil)); err != nil {
			return errno(n.fsys.log, "truncate", "/"+n.Path(nil), err)
		}
		h, opened := handleOf(fh)
		if size == 0 {
			n.emptied(h)
		}
		if eno := n.truncate(ctx, int64(size), opened); eno != 0 {
			return eno
		}
		if !opened {
			// truncate(2) of a path: no close follows, so it saves now.
			if eno := n.saveUnopened(ctx); eno != 0 {
				return eno
			}
		}
	}
	if mtime, ok := in.GetMTime(); ok {
		if l, _ := n.current(); l != nil {
			n.fsys.wmu.Lock()
			l.mtime = mtime
			n.fsys.wmu.Unlock()
		}
	}
	return n.Getattr(ctx, fh, out)
}

// emptied marks the handles an emptying may be the O_TRUNC of (h, or
// with no handle every handle open for writing that has not written
// yet): the kernel sends the O_TRUNC of an open as a truncate after it,
// without the handle, and a shell redirect closes a copy of the new
// descriptor before writing. Such a close commits nothing (see save):
// the close after the writes does, or the last release.
func (n *fileNode) emptied(h *fileHandle) {
	if h != nil {
		if !h.wrote.Load() {
			h.trunc.Store(true)
		}
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for w := range n.writers {
		if !w.wrote.Load() {
			w.trunc.Store(true)
		}
	}
}

// saveUnopened saves a change made without a handle (truncate of a path)
// as close would, when no handle is open to do it later.
func (n *fileNode) saveUnopened(ctx context.Context) syscall.Errno {
	l, _ := n.current()
	if l == nil {
		return 0
	}
	n.fsys.wmu.Lock()
	open := l.opens > 0
	n.fsys.wmu.Unlock()
	if open {
		return 0
	}
	if err := n.fsys.Flush(ctx, l); err != nil {
		return errno(n.fsys.log, "truncate", "/"+n.Path(nil), err)
	}
	n.fsys.localOpened(l)
	n.fsys.localClosed(l)
	return 0
}

var _ = (gofs.FileFlusher)((*fileHandle)(nil))

// Flush is close(2): see FS.Flush.
func (h *fileHandle) Flush(ctx context.Context) syscall.Errno { return h.save(ctx, "close") }

var _ = (gofs.FileFsyncer)((*fileHandle)(nil))

// Fsync uploads (sync mode) or journals durably (async mode), as close.
func (h *fileHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return h.save(ctx, "fsync")
}

// save saves the node's local content, if any: see FS.Flush.
func (h *fileHandle) save(ctx context.Context, op string) syscall.Errno {
	l, _ := h.n.current()
	if l == nil {
		return 0
	}
	f := h.n.fsys
	f.refresh(l)
	f.wmu.Lock()
	empty := l.d != nil && l.d.Size() == 0
	f.wmu.Unlock()
	if op == "close" && h.trunc.Load() && !h.wrote.Load() && empty {
		// Emptied at open and not written yet: the close of a copy of
		// the descriptor (a redirect's dup2), or an emptying whose
		// version the last release commits. Not a version of its own.
		return 0
	}
	if err := f.Flush(ctx, l); err != nil {
		return h.fail(op, err)
	}
	return 0
}

var _ = (gofs.FileReleaser)((*fileHandle)(nil))

func (h *fileHandle) Release(ctx context.Context) syscall.Errno {
	f := h.n.fsys
	h.mu.Lock()
	if h.ver != nil {
		h.ver.Close()
		f.released(h.verKey)
	}
	for _, v := range h.left {
		v.Close()
	}
	h.mu.Unlock()
	h.n.mu.Lock()
	delete(h.n.writers, h)
	h.n.opens--
	l := h.n.l
	h.n.mu.Unlock()
	if l != nil {
		f.localClosed(l)
	}
	f.familyClosed(context.WithoutCancel(ctx), h.family)
	return 0
}

// versionFetcher reads one version's bytes from the blob store for the
// cache, getting the download link on first need. It does not log: the
// read that fails does, once, with the path.
type versionFetcher struct {
	fsys    *FS
	key     versionKey
	deleted bool // a file in the trash (FS.link)
}

func (v *versionFetcher) FetchAt(ctx context.Context, p []byte, off int64) (int, error) {
	l, err := v.fsys.link(ctx, v.key, v.deleted)
	if err != nil {
		return 0, err
	}
	return v.fsys.blobs.ReadAt(TraceHTTP(ctx), l, p, off)
}

// FetchAtProgress lets the cache hand out each block of a multi-block
// fetch as soon as its bytes are in.
func (v *versionFetcher) FetchAtProgress(ctx context.Context, p []byte, off int64, progress func(int)) (int, error) {
	l, err := v.fsys.link(ctx, v.key, v.deleted)
	if err != nil {
		return 0, err
	}
	return v.fsys.blobs.ReadAtProgress(TraceHTTP(ctx), l, p, off, progress)
}

// TraceHTTP adds the HTTP steps of a block fetch (connection, first byte
// of the response) to the cache's trace when ctx is a traced fetch's.
func TraceHTTP(ctx context.Context) context.Context {
	if !cache.Tracing(ctx) {
		return ctx
	}
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(ci httptrace.GotConnInfo) {
			if ci.Reused {
				cache.TraceMark(ctx, "conn reused")
			} else {
				cache.TraceMark(ctx, "conn new")
			}
		},
		GotFirstResponseByte: func() { cache.TraceMark(ctx, "first-byte") },
	})
}

// Extended attributes other than evofs's own are not stored (the service
// keeps none): setting or removing one answers ENOTSUP, which cp -a,
// rsync -X, sed -i and install take for "not supported here" and go on
// quietly (ENODATA, go-fuse's default, made them warn and fail).
var (
	_ = (gofs.NodeSetxattrer)((*fileNode)(nil))
	_ = (gofs.NodeRemovexattrer)((*fileNode)(nil))
	_ = (gofs.NodeSetxattrer)((*dirNode)(nil))
	_ = (gofs.NodeRemovexattrer)((*dirNode)(nil))
)

func (n *fileNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.ENOTSUP
}

func (n *fileNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.ENOTSUP
}

func (n *dirNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.ENOTSUP
}

func (n *dirNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.ENOTSUP
}
