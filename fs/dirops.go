package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Folder operations of the go-fuse nodes: thin calls into writes.go.

var _ = (gofs.NodeCreater)((*dirNode)(nil))

// Create makes a new, empty local file (journaled before it returns).
func (n *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	f := n.fsys
	p := n.childPath(name)
	if err := checkName(p); err != nil {
		return nil, nil, 0, errno(f.log, "create", "/"+p, err)
	}
	if err := f.writableFor(ctx, p); err != nil {
		return nil, nil, 0, errno(f.log, "create", "/"+p, err)
	}
	it, ok, err := f.ws.Stat(ctx, p)
	if err != nil {
		return nil, nil, 0, errno(f.log, "create", "/"+p, err)
	}
	if ok {
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, syscall.EEXIST
		}
		if it.Dir {
			return nil, nil, 0, syscall.EISDIR
		}
		// It appeared since the kernel looked: open it.
		ch := f.child(ctx, &n.Inode, it)
		fh, fl, eno := ch.Operations().(*fileNode).Open(ctx, flags|syscall.O_TRUNC)
		if eno != 0 {
			return nil, nil, 0, eno
		}
		f.nodeAttr(ch, it, &out.Attr)
		return ch, fh, fl, 0
	}
	ino := localIno()
	l, err := f.newLocal(p, nil, ino)
	if err != nil {
		return nil, nil, 0, errno(f.log, "create", "/"+p, err)
	}
	node := &fileNode{fsys: f, l: l, opens: 1, path: p}
	ch := n.NewInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFREG, Ino: ino})
	f.localOpened(l)
	h := &fileHandle{n: node, append: flags&syscall.O_APPEND != 0, family: f.familyOpened(p)}
	h.trunc.Store(true)
	f.nodeAttr(ch, Item{Local: l}, &out.Attr)
	if ph, eno := node.passthrough(ctx, h, true); eno == 0 && ph != nil {
		return ch, ph, 0, 0
	}
	return ch, h, 0, 0
}

var _ = (gofs.NodeMkdirer)((*dirNode)(nil))

func (n *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	f := n.fsys
	p := n.childPath(name)
	if _, ok, err := f.ws.Stat(ctx, p); err != nil || ok {
		if ok {
			return nil, syscall.EEXIST
		}
		return nil, errno(f.log, "mkdir", "/"+p, err)
	}
	if err := f.Mkdir(ctx, p); err != nil {
		return nil, errno(f.log, "mkdir", "/"+p, err)
	}
	it := Item{Name: name, Dir: true, Ino: dirIno(p)}
	ch := f.child(ctx, &n.Inode, it)
	f.nodeAttr(ch, it, &out.Attr)
	return ch, 0
}

var _ = (gofs.NodeRmdirer)((*dirNode)(nil))

func (n *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	f := n.fsys
	p := n.childPath(name)
	it, ok, err := f.ws.Stat(ctx, p)
	switch {
	case err != nil:
		return errno(f.log, "rmdir", "/"+p, err)
	case !ok:
		return syscall.ENOENT
	case !it.Dir:
		return syscall.ENOTDIR
	}
	if err := f.Rmdir(ctx, p); err != nil {
		return errno(f.log, "rmdir", "/"+p, err)
	}
	return 0
}

var _ = (gofs.NodeUnlinker)((*dirNode)(nil))

func (n *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	f := n.fsys
	p := n.childPath(name)
	it, ok, err := f.ws.Stat(ctx, p)
	switch {
	case err != nil:
		return errno(f.log, "unlink", "/"+p, err)
	case !ok:
		return syscall.ENOENT
	case it.Dir:
		return syscall.EISDIR
	}
	// The kernel's node may hold content the overlay no longer names
	// (finished meanwhile): use what the node knows.
	if ch := n.GetChild(name); ch != nil && it.Local == nil {
		if fn, ok := ch.Operations().(*fileNode); ok {
			if l, _ := fn.current(); l != nil {
				it.Local = l
			}
		}
	}
	if err := f.Remove(ctx, p, it); err != nil {
		return errno(f.log, "unlink", "/"+p, err)
	}
	if ch := n.GetChild(name); ch != nil {
		if fn, ok := ch.Operations().(*fileNode); ok {
			fn.unlink()
		}
	}
	return 0
}

var _ = (gofs.NodeRenamer)((*dirNode)(nil))

// Rename moves a file or a folder; see FS.Rename. go-fuse moves the node
// (and open handles with it) once this returns.
func (n *dirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	f := n.fsys
	np, ok := newParent.(*dirNode)
	if !ok && isView(newParent) {
		return errno(f.log, "rename", "/"+n.childPath(name), errViewRO)
	}
	if !ok {
		return syscall.EXDEV
	}
	from, to := n.childPath(name), np.childPath(newName)
	if flags&^uint32(renameNoReplace) != 0 {
		return syscall.EINVAL // RENAME_EXCHANGE and RENAME_WHITEOUT
	}
	src, ok, err := f.ws.Stat(ctx, from)
	if err != nil {
		return errno(f.log, "rename", "/"+from, err)
	}
	if !ok {
		return syscall.ENOENT
	}
	if from == to {
		return 0
	}
	dst, dstOK, err := f.ws.Stat(ctx, to)
	if err != nil {
		return errno(f.log, "rename", "/"+to, err)
	}
	if dstOK {
		switch {
		case flags&uint32(renameNoReplace) != 0:
			return syscall.EEXIST
		case src.Dir && !dst.Dir:
			return syscall.ENOTDIR
		case !src.Dir && dst.Dir:
			return syscall.EISDIR
		case dst.Dir:
			items, _, err := f.ws.List(ctx, to)
			if err != nil {
				return errno(f.log, "rename", "/"+to, err)
			}
			if len(items) > 0 {
				return syscall.ENOTEMPTY
			}
		}
	}
	if ch := n.GetChild(name); ch != nil && src.Local == nil && !src.Dir {
		if fn, ok := ch.Operations().(*fileNode); ok {
			if l, _ := fn.current(); l != nil {
				src.Local = l
			}
		}
	}
	if err := f.Rename(ctx, from, to, src, dst, dstOK); err != nil {
		return errno(f.log, "rename", "/"+from+" -> /"+to, err)
	}
	if dstOK && !dst.Dir {
		if ch := np.GetChild(newName); ch != nil {
			if fn, ok := ch.Operations().(*fileNode); ok {
				fn.unlink() // replaced: its handles keep what they write
			}
		}
	}
	if !src.Dir {
		if ch := n.GetChild(name); ch != nil {
			if fn, ok := ch.Operations().(*fileNode); ok {
				fn.movedTo(to)
			}
		}
		// A remote version (or local content its upload finished
		// meanwhile) was copied to a new version at the target and
		// deleted: the node go-fuse moves there is that new version now
		// (the old one can no longer be read, nor written over).
		if ch := n.GetChild(name); ch != nil {
			if fn, ok := ch.Operations().(*fileNode); ok {
				if it, ok, err := f.ws.Stat(ctx, to); err == nil && ok && it.Entry != nil {
					fn.moved(it.Entry)
				}
			}
		}
	}
	return 0
}

var _ = (gofs.NodeSymlinker)((*dirNode)(nil))

// Symlink: the service stores files only (POSIX: EPERM when the file
// system does not support symbolic links).
func (n *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

var _ = (gofs.NodeLinker)((*dirNode)(nil))

// Link: no hard links (POSIX: EPERM when the file system does not support
// them).
func (n *dirNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

var _ = (gofs.NodeMknoder)((*dirNode)(nil))

// Mknod: no device files, FIFOs or sockets.
func (n *dirNode) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EPERM
}

// renameNoReplace is renameat2's RENAME_NOREPLACE.
const renameNoReplace = 0x1
