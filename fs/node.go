package fs

import (
	"context"
	"errors"
	"io"
	"net/http/httptrace"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/evofs/evofs/cache"
	"github.com/evofs/evofs/remote"
)

// dirNode is a folder of the workspace, identified by its path.
type dirNode struct {
	gofs.Inode
	fsys *FS
	path string
}

// fileNode is one version of a file of the workspace (its inode number
// derives from file id and version id).
type fileNode struct {
	gofs.Inode
	fsys *FS
	e    *Entry // immutable: the version this inode is
}

// child makes (or finds) the node of a snapshot entry.
func (f *FS) child(ctx context.Context, parent *gofs.Inode, e *Entry) *gofs.Inode {
	var ops gofs.InodeEmbedder
	mode := uint32(syscall.S_IFREG)
	if e.Dir {
		ops, mode = &dirNode{fsys: f, path: e.Path}, syscall.S_IFDIR
	} else {
		ops = &fileNode{fsys: f, e: e}
	}
	// NewInode returns the existing inode for the same number, if any.
	return parent.NewInode(ctx, ops, gofs.StableAttr{Mode: mode, Ino: e.Ino})
}

func (n *dirNode) entry(ctx context.Context) (*Entry, syscall.Errno) {
	s, err := n.fsys.ws.Snapshot(ctx)
	if err != nil {
		return nil, errno(n.fsys.log, "list", "/"+n.path, err)
	}
	e := s.Lookup(n.path)
	if e == nil || !e.Dir {
		return nil, syscall.ENOENT
	}
	return e, 0
}

var _ = (gofs.NodeLookuper)((*dirNode)(nil))

// Lookup answers from the snapshot: a name that is not there costs no API
// call.
func (n *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d, eno := n.entry(ctx)
	if eno != 0 {
		return nil, eno
	}
	e := d.Child(name)
	if e == nil {
		return nil, syscall.ENOENT
	}
	n.fsys.attr(e, &out.Attr)
	return n.fsys.child(ctx, &n.Inode, e), 0
}

var _ = (gofs.NodeReaddirer)((*dirNode)(nil))

// Readdir lists the folder sorted by name, inode numbers as in Lookup.
func (n *dirNode) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	d, eno := n.entry(ctx)
	if eno != 0 {
		return nil, eno
	}
	out := make([]fuse.DirEntry, 0, len(d.Children))
	for _, c := range d.Children {
		mode := uint32(syscall.S_IFREG)
		if c.Dir {
			mode = syscall.S_IFDIR
		}
		out = append(out, fuse.DirEntry{Name: c.Name, Ino: c.Ino, Mode: mode})
	}
	return gofs.NewListDirStream(out), 0
}

var _ = (gofs.NodeGetattrer)((*dirNode)(nil))

func (n *dirNode) Getattr(ctx context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d, eno := n.entry(ctx)
	if eno != 0 {
		return eno
	}
	n.fsys.attr(d, &out.Attr)
	return 0
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

var _ = (gofs.NodeGetattrer)((*fileNode)(nil))

func (n *fileNode) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.attr(n.e, &out.Attr)
	return 0
}

var _ = (gofs.NodeOpener)((*fileNode)(nil))

// Open pins the handle to the file's current version.
func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR|syscall.O_TRUNC) != 0 {
		return nil, 0, syscall.EROFS
	}
	e := n.e
	v := cache.Version{FileID: e.File.FileID, VersionID: e.File.VersionID, Size: e.File.Size}
	src := &versionFetcher{fsys: n.fsys, key: versionKey{v.FileID, v.VersionID}}
	n.fsys.opened(src.key)
	h := &readHandle{fsys: n.fsys, key: src.key, path: "/" + e.Path, file: n.fsys.cache.File(v, src, cache.FileOptions{
		Readahead: n.fsys.opt.Readahead, Parallelism: n.fsys.opt.Parallelism})}
	// The inode is this version: its pages stay valid across opens.
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// readHandle is an open file, pinned to one version.
type readHandle struct {
	fsys *FS
	key  versionKey
	path string
	file *cache.File

	mu     sync.Mutex
	logged map[string]bool // GUARDED_BY(mu): errors already logged for this handle (the kernel retries a failed page read)
}

// fail maps a read error to its errno, logging it the first time this
// handle meets it.
func (h *readHandle) fail(err error) syscall.Errno {
	key := remote.ErrorCode(err) + "/" + toErrno(err).Error()
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
	return errno(h.fsys.log, "read", h.path, err)
}

var _ = (gofs.FileReader)((*readHandle)(nil))

func (h *readHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.file.ReadAt(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, h.fail(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

var _ = (gofs.FileReleaser)((*readHandle)(nil))

func (h *readHandle) Release(ctx context.Context) syscall.Errno {
	h.file.Close()
	h.fsys.released(h.key)
	return 0
}

// versionFetcher reads one version's bytes from the blob store for the
// cache, getting the download link on first need. It does not log: the
// read that fails does, once, with the path.
type versionFetcher struct {
	fsys *FS
	key  versionKey
}

func (v *versionFetcher) FetchAt(ctx context.Context, p []byte, off int64) (int, error) {
	l, err := v.fsys.link(ctx, v.key)
	if err != nil {
		return 0, err
	}
	return v.fsys.blobs.ReadAt(TraceHTTP(ctx), l, p, off)
}

// FetchAtProgress lets the cache hand out each block of a multi-block
// fetch as soon as its bytes are in.
func (v *versionFetcher) FetchAtProgress(ctx context.Context, p []byte, off int64, progress func(int)) (int, error) {
	l, err := v.fsys.link(ctx, v.key)
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
