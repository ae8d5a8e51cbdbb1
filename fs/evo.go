package fs

// The go-fuse nodes under .evo (views.go has their model): thin, read-only
// but for the restore moves out of the trash.

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/evofs/evofs/cache"
	"github.com/evofs/evofs/remote"
)

// roView refuses changes under .evo: every node there embeds it.
type roView struct{ fsys *FS }

func (v *roView) isView() {}

func (v *roView) refuse(op string, err error) syscall.Errno {
	return errno(v.fsys.log, op, "/"+EvoDir, err)
}

func (v *roView) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, v.refuse("create", errViewRO)
}

func (v *roView) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, v.refuse("mkdir", errViewRO)
}

func (v *roView) Unlink(ctx context.Context, name string) syscall.Errno {
	return v.refuse("unlink", errViewRO)
}

func (v *roView) Rmdir(ctx context.Context, name string) syscall.Errno {
	return v.refuse("rmdir", errViewRO)
}

func (v *roView) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return v.refuse("rename", errViewRO)
}

func (v *roView) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, v.refuse("symlink", errViewRO)
}

func (v *roView) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, v.refuse("link", errViewRO)
}

func (v *roView) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, v.refuse("mknod", errViewRO)
}

func (v *roView) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return v.refuse("setattr", errViewRO)
}

// restored reports whether go-fuse has moved a trash node into the live
// tree (a restore by mv): until the kernel forgets the name (notify.go)
// it may still ask this node, which then answers ESTALE, so that the
// kernel looks the name up again and gets the live file or folder.
func restored(in *gofs.Inode) bool {
	_, parent := in.Parent()
	return parent != nil && !isView(parent.Operations())
}

// isView reports whether a node is under .evo.
func isView(n gofs.InodeEmbedder) bool {
	_, ok := n.(interface{ isView() })
	return ok
}

// viewDirAttr and viewFileAttr fill the attributes of a node under .evo.
func (f *FS) viewDirAttr(ino uint64, t time.Time, a *fuse.Attr) {
	f.viewAttr(ino, syscall.S_IFDIR|0o555, 0, t, a)
	a.Nlink = 2
}

func (f *FS) viewFileAttr(ino uint64, size int64, t time.Time, a *fuse.Attr) {
	f.viewAttr(ino, syscall.S_IFREG|0o444, size, t, a)
	a.Nlink = 1
}

func (f *FS) viewAttr(ino uint64, mode uint32, size int64, t time.Time, a *fuse.Attr) {
	a.Ino = ino
	a.Mode = mode &^ (f.opt.Umask & 0o222)
	a.Uid, a.Gid = f.opt.UID, f.opt.GID
	a.Size = uint64(size)
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = uint32(f.cache.BlockSize())
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	a.SetTimes(&t, &t, &t)
}

// rootTime is the newest time of a model's last snapshot (no listing).
func rootTime(w *Workspace) time.Time {
	if s := w.Current(); s != nil {
		return s.Root.ModTime
	}
	return time.Time{}
}

// lookupEvo is .evo, for the root's Lookup.
func (n *dirNode) lookupEvo(ctx context.Context, out *fuse.EntryOut) *gofs.Inode {
	ino := viewIno("evo")
	ch := n.NewInode(ctx, &evoNode{roView: roView{n.fsys}}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino})
	n.fsys.viewDirAttr(ino, rootTime(n.fsys.ws), &out.Attr)
	return ch
}

// evoNode is .evo: versions/ and trash/.
type evoNode struct {
	gofs.Inode
	roView
}

var (
	_ = (gofs.NodeLookuper)((*evoNode)(nil))
	_ = (gofs.NodeReaddirer)((*evoNode)(nil))
	_ = (gofs.NodeGetattrer)((*evoNode)(nil))
)

func (n *evoNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := n.fsys
	switch name {
	case VersionsDir:
		ino := viewIno("versions", "")
		f.viewDirAttr(ino, rootTime(f.ws), &out.Attr)
		return n.NewInode(ctx, &versionsDirNode{roView: n.roView}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	case TrashDir:
		ino := viewIno("trash", "")
		f.viewDirAttr(ino, rootTime(f.trash), &out.Attr)
		return n.NewInode(ctx, &trashDirNode{roView: n.roView}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	}
	return nil, syscall.ENOENT
}

func (n *evoNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	return gofs.NewListDirStream([]fuse.DirEntry{
		{Name: TrashDir, Mode: syscall.S_IFDIR, Ino: viewIno("trash", "")},
		{Name: VersionsDir, Mode: syscall.S_IFDIR, Ino: viewIno("versions", "")},
	}), 0
}

func (n *evoNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.viewDirAttr(n.StableAttr().Ino, rootTime(n.fsys.ws), &out.Attr)
	return 0
}

// versionsDirNode is a folder of the workspace under .evo/versions: its
// folders, and a folder for each of its remote files.
type versionsDirNode struct {
	gofs.Inode
	roView
	path string
}

var (
	_ = (gofs.NodeLookuper)((*versionsDirNode)(nil))
	_ = (gofs.NodeReaddirer)((*versionsDirNode)(nil))
	_ = (gofs.NodeGetattrer)((*versionsDirNode)(nil))
)

func (n *versionsDirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := n.fsys
	p := joinPath(n.path, name)
	e, dir, err := f.remoteEntry(ctx, p)
	switch {
	case err != nil:
		return nil, errno(f.log, "lookup", "/"+EvoDir+"/"+VersionsDir+"/"+p, err)
	case dir:
		ino := viewIno("versions", p)
		f.viewDirAttr(ino, f.dirTimeOf(p), &out.Attr)
		return n.NewInode(ctx, &versionsDirNode{roView: n.roView, path: p}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	case e != nil:
		ino := viewIno("versions-of", p)
		f.viewDirAttr(ino, e.ModTime, &out.Attr)
		return n.NewInode(ctx, &versionsOfNode{roView: n.roView, path: p}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	}
	return nil, syscall.ENOENT
}

func (n *versionsDirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	f := n.fsys
	items, ok, err := f.ws.List(ctx, n.path)
	if err != nil {
		return nil, errno(f.log, "list", "/"+EvoDir+"/"+VersionsDir+"/"+n.path, err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	s := f.ws.Current()
	out := make([]fuse.DirEntry, 0, len(items))
	for _, it := range items {
		p := joinPath(n.path, it.Name)
		switch {
		case it.Dir:
			out = append(out, fuse.DirEntry{Name: it.Name, Mode: syscall.S_IFDIR, Ino: viewIno("versions", p)})
		case it.Entry != nil || (s != nil && s.Lookup(p) != nil && !s.Lookup(p).Dir):
			out = append(out, fuse.DirEntry{Name: it.Name, Mode: syscall.S_IFDIR, Ino: viewIno("versions-of", p)})
		}
	}
	return gofs.NewListDirStream(out), 0
}

func (n *versionsDirNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f := n.fsys
	if n.path != "" {
		if _, dir, err := f.remoteEntry(ctx, n.path); err != nil || !dir {
			return errno(f.log, "stat", "/"+EvoDir+"/"+VersionsDir+"/"+n.path, cmpErr(err, syscall.ENOENT))
		}
	}
	f.viewDirAttr(n.StableAttr().Ino, f.dirTimeOf(n.path), &out.Attr)
	return 0
}

// cmpErr is err, or dflt when err is nil.
func cmpErr(err error, dflt error) error {
	if err != nil {
		return err
	}
	return dflt
}

// dirTimeOf is a live folder's time as the last listing has it.
func (f *FS) dirTimeOf(p string) time.Time {
	if s := f.ws.Current(); s != nil {
		if d := s.Lookup(p); d != nil {
			return d.ModTime
		}
	}
	return f.ws.dirTime(p)
}

// versionsOfNode is .evo/versions/PATH of a file: one file per version.
type versionsOfNode struct {
	gofs.Inode
	roView
	path string
}

var (
	_ = (gofs.NodeLookuper)((*versionsOfNode)(nil))
	_ = (gofs.NodeReaddirer)((*versionsOfNode)(nil))
	_ = (gofs.NodeGetattrer)((*versionsOfNode)(nil))
)

// versions lists the file's versions (one API call per TTL).
func (n *versionsOfNode) versions(ctx context.Context) (*Entry, []VersionView, *remote.DownloadFileResponse, syscall.Errno) {
	f := n.fsys
	where := "/" + EvoDir + "/" + VersionsDir + "/" + n.path
	e, _, err := f.remoteEntry(ctx, n.path)
	if err != nil || e == nil {
		return nil, nil, nil, errno(f.log, "list versions", where, cmpErr(err, syscall.ENOENT))
	}
	list, d, err := f.Versions(ctx, e)
	if err != nil {
		return nil, nil, nil, errno(f.log, "list versions", where, err)
	}
	return e, list, d, 0
}

func (n *versionsOfNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	e, list, d, eno := n.versions(ctx)
	if eno != 0 {
		return nil, eno
	}
	for _, v := range list {
		if v.Name != name {
			continue
		}
		ino := viewIno("version", d.FileID, v.VersionID)
		node := &viewFileNode{roView: n.roView, key: versionKey{d.FileID, v.VersionID}, size: v.Size, mtime: v.At,
			attrs: versionXattrs(d, v, e)}
		n.fsys.viewFileAttr(ino, v.Size, v.At, &out.Attr)
		return n.NewInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino}), 0
	}
	return nil, syscall.ENOENT
}

func (n *versionsOfNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	_, list, d, eno := n.versions(ctx)
	if eno != 0 {
		return nil, eno
	}
	out := make([]fuse.DirEntry, 0, len(list))
	for _, v := range list {
		out = append(out, fuse.DirEntry{Name: v.Name, Mode: syscall.S_IFREG, Ino: viewIno("version", d.FileID, v.VersionID)})
	}
	return gofs.NewListDirStream(out), 0
}

func (n *versionsOfNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f := n.fsys
	e, _, err := f.remoteEntry(ctx, n.path)
	if err != nil || e == nil {
		return errno(f.log, "stat", "/"+EvoDir+"/"+VersionsDir+"/"+n.path, cmpErr(err, syscall.ENOENT))
	}
	f.viewDirAttr(n.StableAttr().Ino, e.ModTime, &out.Attr)
	return 0
}

// trashDirNode is a folder of .evo/trash.
type trashDirNode struct {
	gofs.Inode
	roView
	path string
}

var (
	_ = (gofs.NodeLookuper)((*trashDirNode)(nil))
	_ = (gofs.NodeReaddirer)((*trashDirNode)(nil))
	_ = (gofs.NodeGetattrer)((*trashDirNode)(nil))
	_ = (gofs.NodeRenamer)((*trashDirNode)(nil))
	_ = (gofs.NodeUnlinker)((*trashDirNode)(nil))
)

func (n *trashDirNode) where(p string) string { return "/" + EvoDir + "/" + TrashDir + "/" + p }

func (n *trashDirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if restored(&n.Inode) {
		return nil, syscall.ESTALE
	}
	f := n.fsys
	p := joinPath(n.path, name)
	it, ok, err := f.trash.Stat(ctx, p)
	switch {
	case err != nil:
		return nil, errno(f.log, "lookup", n.where(p), err)
	case !ok:
		return nil, syscall.ENOENT
	case it.Dir:
		ino := viewIno("trash", p)
		f.viewDirAttr(ino, trashDirTime(f, p), &out.Attr)
		return n.NewInode(ctx, &trashDirNode{roView: n.roView, path: p}, gofs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino}), 0
	case it.Entry != nil:
		e := it.Entry
		ino := viewIno("deleted", e.File.FileID, e.File.VersionID)
		node := &viewFileNode{roView: n.roView, key: versionKey{e.File.FileID, e.File.VersionID}, size: e.File.Size,
			mtime: e.ModTime, deleted: true, attrs: fileXattrs(&e.File)}
		f.viewFileAttr(ino, e.File.Size, e.ModTime, &out.Attr)
		return n.NewInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino}), 0
	}
	return nil, syscall.ENOENT
}

func trashDirTime(f *FS, p string) time.Time {
	if s := f.trash.Current(); s != nil {
		if d := s.Lookup(p); d != nil {
			return d.ModTime
		}
	}
	return time.Time{}
}

func (n *trashDirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	if restored(&n.Inode) {
		return nil, syscall.ESTALE
	}
	f := n.fsys
	items, ok, err := f.trash.List(ctx, n.path)
	if err != nil {
		return nil, errno(f.log, "list", n.where(n.path), err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	out := make([]fuse.DirEntry, 0, len(items))
	for _, it := range items {
		p := joinPath(n.path, it.Name)
		switch {
		case it.Dir:
			out = append(out, fuse.DirEntry{Name: it.Name, Mode: syscall.S_IFDIR, Ino: viewIno("trash", p)})
		case it.Entry != nil:
			out = append(out, fuse.DirEntry{Name: it.Name, Mode: syscall.S_IFREG,
				Ino: viewIno("deleted", it.Entry.File.FileID, it.Entry.File.VersionID)})
		}
	}
	return gofs.NewListDirStream(out), 0
}

func (n *trashDirNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if restored(&n.Inode) {
		return syscall.ESTALE
	}
	f := n.fsys
	if n.path != "" {
		it, ok, err := f.trash.Stat(ctx, n.path)
		if err != nil || !ok || !it.Dir {
			return errno(f.log, "stat", n.where(n.path), cmpErr(err, syscall.ENOENT))
		}
	}
	f.viewDirAttr(n.StableAttr().Ino, trashDirTime(f, n.path), &out.Attr)
	return 0
}

// Unlink in the trash: the service has no purge.
func (n *trashDirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	return errno(n.fsys.log, "unlink", n.where(joinPath(n.path, name)), errNoPurge)
}

// Rmdir in the trash: as Unlink.
func (n *trashDirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	return errno(n.fsys.log, "rmdir", n.where(joinPath(n.path, name)), errNoPurge)
}

// Rename out of the trash into the workspace restores the file (FS.Restore).
func (n *trashDirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	f := n.fsys
	from := joinPath(n.path, name)
	np, ok := newParent.(*dirNode)
	if !ok {
		return errno(f.log, "rename", n.where(from), errViewRO)
	}
	if flags&^uint32(renameNoReplace) != 0 {
		return syscall.EINVAL
	}
	to := np.childPath(newName)
	it, ok, err := f.trash.Stat(ctx, from)
	switch {
	case err != nil:
		return errno(f.log, "restore", n.where(from), err)
	case !ok:
		return syscall.ENOENT
	case it.Dir:
		if err := f.RestoreDir(ctx, from, to); err != nil {
			return errno(f.log, "restore", n.where(from)+" -> /"+to, err)
		}
	case it.Entry == nil:
		return syscall.ENOENT
	default:
		if err := f.Restore(ctx, it.Entry, to); err != nil {
			return errno(f.log, "restore", n.where(from)+" -> /"+to, err)
		}
	}
	// go-fuse moves this node to the target's name: the kernel must ask
	// again, and get the live file's node (notify.go, out of this handler).
	f.notify.enqueue(Change{Entries: []NameRef{{Dir: parentPath(to), Name: baseName(to)}}})
	return 0
}

// viewFileNode is a version of a file (.evo/versions) or a deleted file
// (.evo/trash): read-only, read through the cache like a live file.
type viewFileNode struct {
	gofs.Inode
	roView
	key     versionKey
	size    int64
	mtime   time.Time
	deleted bool
	attrs   []xattr
}

var (
	_ = (gofs.NodeGetattrer)((*viewFileNode)(nil))
	_ = (gofs.NodeOpener)((*viewFileNode)(nil))
	_ = (gofs.NodeGetxattrer)((*viewFileNode)(nil))
	_ = (gofs.NodeListxattrer)((*viewFileNode)(nil))
)

func (n *viewFileNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if restored(&n.Inode) && n.deleted {
		return syscall.ESTALE
	}
	n.fsys.viewFileAttr(n.StableAttr().Ino, n.size, n.mtime, &out.Attr)
	return 0
}

func (n *viewFileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if n.deleted && restored(&n.Inode) {
		return nil, 0, syscall.ESTALE
	}
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, errno(n.fsys.log, "open for writing", "/"+n.Path(nil), errViewRO)
	}
	file, key := n.fsys.versionFile(n.key.fileID, n.key.versionID, n.size, n.deleted)
	// A version never changes: its pages stay valid across opens.
	return &viewHandle{n: n, file: file, key: key}, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *viewFileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getXattr(n.attrs, attr, dest)
}

func (n *viewFileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listXattr(n.attrs, dest)
}

// viewHandle is an open version or deleted file.
type viewHandle struct {
	n    *viewFileNode
	file *cache.File
	key  versionKey
}

var (
	_ = (gofs.FileReader)((*viewHandle)(nil))
	_ = (gofs.FileReleaser)((*viewHandle)(nil))
)

func (h *viewHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f := h.n.fsys
	f.reads.Add(1)
	ctx, done := f.away(ctx)
	defer done()
	n, err := h.file.ReadAt(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, errno(f.log, "read", "/"+h.n.Path(nil), f.awayErr(ctx, err))
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *viewHandle) Release(ctx context.Context) syscall.Errno {
	h.file.Close()
	h.n.fsys.released(h.key)
	return 0
}

var (
	_ = (gofs.NodeGetxattrer)((*fileNode)(nil))
	_ = (gofs.NodeListxattrer)((*fileNode)(nil))
)

// xattrs are a live file's attributes: the service's metadata of the
// version it shows, or user.evo.state while its content is not committed.
func (n *fileNode) xattrs() []xattr {
	f := n.fsys
	l, e := n.current()
	if l != nil {
		if st := f.localState(l); st != "" {
			return []xattr{{StateXattr, st}}
		}
		f.wmu.Lock()
		c := l.committed
		f.wmu.Unlock()
		if c != nil {
			e = c
		} else {
			n.mu.Lock()
			e = n.e
			n.mu.Unlock()
		}
	}
	if e == nil {
		return nil
	}
	lf := e.File
	// A version committed here is known by its ids and size until a
	// listing shows it with the rest; the file's creation is known from
	// the listing of an earlier version, if any (else absent).
	var le *Entry
	if s := f.ws.Current(); s != nil {
		le = s.ByID(lf.FileID)
	}
	switch {
	case le != nil && le.File.VersionID == lf.VersionID:
		lf = le.File
	case le != nil:
		lf.CreatedAt, lf.CreatedBy = le.File.CreatedAt, le.File.CreatedBy
	case lf.CreatedBy == nil: // committedEntry's times are the commit's
		lf.CreatedAt = time.Time{}
	}
	return fileXattrs(&lf)
}

func (n *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getXattr(n.xattrs(), attr, dest)
}

func (n *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listXattr(n.xattrs(), dest)
}
