package fs

// Kernel passthrough (FUSE_PASSTHROUGH, Linux 6.9 and later): the kernel
// reads and writes an open file straight from a local backing file, with
// no request reaching evofs.
//
// A node shares one backing file among all its handles: the kernel refuses
// two backing files for one inode, and a handle without one beside handles
// with one (go-fuse counts the backing per inode, not per handle). So a
// node's handles are either all passthrough or none are:
//
//   - the first open of a node takes passthrough when the node's bytes are
//     whole in one local file: a remote version every block of which is in
//     the cache and verified (cache.Backing), or local content with no base
//     showing through (a new file, one opened with O_TRUNC: Dirty.File);
//   - a later open joins the handles already open, passthrough or not (a
//     reader opening after content finished here, while its file still
//     lingers, goes through evofs: that file is unlinked);
//   - a change to a node whose backing file is a cached version (a write
//     open, a truncate of its path) makes that very file the node's local
//     content (cache.Adopt), so the handles reading it see the change, as
//     on a local disk; the cache gives the version up.
//
// A node lets go of its backing file a second after its last passthrough
// handle is released, not at once: go-fuse drops the kernel's
// registration of the file only after the release returns, and an open
// arriving meanwhile is given that registration, so it must find the same
// file here, or what it writes would land in a file nobody reads.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/evofs/evofs/cache"
)

// backing is a node's passthrough state.
type backing struct {
	open    int      // passthrough handles open
	n       int      // open, and released less than ptLinger ago
	file    *os.File // the backing file; nil: none
	release func()   // gives a cached version's file back to the cache (nil: local content's)
	ver     cache.Version
	local   *Local // the local content the file is, once it is
}

// ptHandle is a handle the kernel serves from its node's backing file.
type ptHandle struct {
	*fileHandle
}

var _ = (gofs.FilePassthroughFder)((*ptHandle)(nil))

// PassthroughFd is asked by go-fuse when it registers the node's backing
// file with the kernel (the first passthrough open while none is
// registered).
func (h *ptHandle) PassthroughFd() (int, bool) {
	n := h.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pt.file == nil {
		return -1, false
	}
	return int(n.pt.file.Fd()), true
}

var _ = (gofs.FileReleaser)((*ptHandle)(nil))

func (h *ptHandle) Release(ctx context.Context) syscall.Errno {
	eno := h.fileHandle.Release(ctx)
	h.n.mu.Lock()
	h.n.pt.open--
	h.n.mu.Unlock()
	// go-fuse lets go of the kernel's registration of the backing file
	// only after this returns: an open arriving meanwhile is given that
	// registration, so it must find the same file here. The node lets go
	// a while later.
	time.AfterFunc(ptLinger, h.n.ptReleased)
	return eno
}

// ptLinger is how long a node keeps its backing file after its last
// passthrough handle is released.
const ptLinger = time.Second

// ptReleased counts one passthrough handle gone; with the last, the node
// gives a cached version's file back to the cache, and closes the file of
// local content that is finished (its space comes back).
func (n *fileNode) ptReleased() {
	f := n.fsys
	n.mu.Lock()
	n.pt.n--
	var file *os.File
	var rel func()
	if n.pt.n == 0 && n.pt.file != nil {
		done := n.pt.local == nil
		if l := n.pt.local; l != nil {
			f.wmu.Lock()
			done = !l.live()
			f.wmu.Unlock()
		}
		if done {
			file, rel = n.pt.file, n.pt.release
			n.pt = backing{}
		}
	}
	n.mu.Unlock()
	if file != nil {
		file.Close()
	}
	if rel != nil {
		rel()
	}
}

var _ = (gofs.NodeOnForgetter)((*fileNode)(nil))

// OnForget closes the node's backing file: the kernel no longer knows it.
func (n *fileNode) OnForget() {
	n.mu.Lock()
	f, rel := n.pt.file, n.pt.release
	if n.pt.n == 0 {
		n.pt.file, n.pt.release = nil, nil
	} else {
		f, rel = nil, nil
	}
	n.mu.Unlock()
	if f != nil {
		f.Close()
	}
	if rel != nil {
		rel()
	}
}

// passthrough makes h a passthrough handle when the node's handles may
// share a backing file (see the file comment); nil leaves h as it is. It
// runs at the end of Open, h already counted in n.opens. A writer joining
// handles of a cached version makes the version's file the node's local
// content first (localForLocked); if that fails, so does the open.
func (n *fileNode) passthrough(ctx context.Context, h *fileHandle, write bool) (gofs.FileHandle, syscall.Errno) {
	f := n.fsys
	if !f.passthroughOn() {
		return nil, 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pt.open == 0 && n.opens > 1 {
		return nil, 0 // handles without passthrough are open: this one joins them
	}
	f.wmu.Lock()
	l := n.l
	live := l != nil && l.live()
	f.wmu.Unlock()
	if write && !live && n.pt.file != nil {
		// A change to the bytes of the backing file: it becomes the
		// content (or, the file of content finished here with no handle
		// on it, is let go of).
		var err error
		if l, err = n.localForLocked(); err != nil {
			return nil, errno(f.log, "open for writing", "/"+n.path, err)
		}
		live = true
	}
	if n.pt.file != nil && n.pt.open == 0 && n.pt.local != nil && !live {
		// The lingering file of content finished here: committed, its
		// file unlinked, so it can never be content again, and no handle
		// uses it. A reader joining it would keep reading it after a
		// change through the path; this open goes through evofs.
		return nil, 0
	}
	if n.pt.file != nil {
		if !write || n.pt.local == l {
			n.pt.n++
			n.pt.open++
			return &ptHandle{h}, 0
		}
		if n.pt.open > 0 {
			// Cannot happen: a writer beside passthrough handles shares
			// their file (it is the content).
			return nil, errno(f.log, "open for writing", "/"+n.path, fmt.Errorf("the file's passthrough handles read another file than its content"))
		}
		return nil, 0
	}
	switch {
	case live:
		f.wmu.Lock()
		d := l.d
		f.wmu.Unlock()
		if d == nil {
			return nil, 0
		}
		df, ok := d.File()
		if !ok {
			return nil, 0 // a base shows through: reads and writes fill from it
		}
		// A descriptor of the node's own: the content's closes with it.
		fd, err := unix.Dup(int(df.Fd()))
		if err != nil {
			return nil, 0
		}
		n.pt.file, n.pt.local = os.NewFile(uintptr(fd), df.Name()), l
	case write:
		return nil, 0
	default:
		e := n.e
		if l != nil {
			f.wmu.Lock()
			if l.committed != nil {
				e = l.committed
			}
			f.wmu.Unlock()
		}
		if e == nil || e.File.Size == 0 {
			return nil, 0
		}
		v := cache.Version{FileID: e.File.FileID, VersionID: e.File.VersionID, Size: e.File.Size}
		file, release, ok := f.cache.Backing(ctx, v)
		if !ok {
			return nil, 0
		}
		n.pt.file, n.pt.release, n.pt.ver, n.pt.local = file, release, v, nil
	}
	n.pt.n++
	n.pt.open++
	return &ptHandle{h}, 0
}

// adoptBacking makes the node's backing file (a cached version's, or that
// of content finished here) the local content over base, so the handles
// reading it see what is written. The file of content finished here is
// unlinked, so it cannot be content again: with no handle open on it, the
// node lets go of it and starts content of its own (nil, nil).
//
// LOCKS_REQUIRED(n.mu)
func (n *fileNode) adoptBacking(p string, base *Entry) (*Local, error) {
	f := n.fsys
	if n.pt.release == nil {
		var st unix.Stat_t
		if err := unix.Fstat(int(n.pt.file.Fd()), &st); err != nil {
			return nil, fmt.Errorf("stat the backing file: %w", err)
		}
		if st.Nlink == 0 {
			if n.pt.open > 0 {
				return nil, fmt.Errorf("the backing file of open handles was removed")
			}
			n.pt.file.Close()
			n.pt.file, n.pt.local = nil, nil
			return nil, nil
		}
	}
	var from *cache.Version
	if n.pt.release != nil {
		from = &n.pt.ver
	}
	l, err := f.newLocalFrom(p, base, n.StableAttr().Ino, n.pt.file, from)
	if err != nil {
		return nil, err
	}
	if n.pt.release != nil {
		// The cache gave the file up (AdoptDirty): it is no longer its
		// to evict, nor pinned.
		n.pt.release()
		n.pt.release = nil
	}
	n.pt.local = l
	return l, nil
}

// passthroughOn reports whether the kernel takes backing files.
func (f *FS) passthroughOn() bool { return f.pt.Load() }

// probePassthrough finds out once mounted whether the kernel serves
// files from backing files (it offers FUSE_PASSTHROUGH, and takes one
// from the cache folder: that needs root, and a cache folder not itself
// on a stacked file system such as overlayfs), and logs which way reads
// and writes go.
func (f *FS) probePassthrough(srv *fuse.Server) {
	if f.opt.NoPassthrough {
		f.log.Info("passthrough off (--passthrough turns it on): every read and write goes through evofs")
		return
	}
	if err := tryBacking(srv, f.cache.Dir()); err != nil {
		f.log.Info("passthrough unavailable: every read and write goes through evofs", "why", err)
		return
	}
	f.pt.Store(true)
	f.log.Info("passthrough on: the kernel reads cached files and writes new ones itself")
}

func tryBacking(srv *fuse.Server, dir string) error {
	if srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
		return fmt.Errorf("the kernel does not offer FUSE passthrough")
	}
	probe, err := os.CreateTemp(filepath.Clean(dir), ".passthrough-probe-")
	if err != nil {
		return fmt.Errorf("make a probe file in the cache folder: %w", err)
	}
	defer os.Remove(probe.Name())
	defer probe.Close()
	id, errno := srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(probe.Fd())})
	if errno != 0 {
		return fmt.Errorf("register a backing file from the cache folder %s: %w", dir, errno)
	}
	if errno := srv.UnregisterBackingFd(id); errno != 0 {
		return fmt.Errorf("unregister the probe's backing file: %w", errno)
	}
	return nil
}

// refresh takes in what the kernel wrote to local content's file by
// passthrough (Dirty.Refresh): call it before the content's size or
// generation decides anything.
func (f *FS) refresh(l *Local) {
	f.wmu.Lock()
	d, p := l.d, l.path
	f.wmu.Unlock()
	if d == nil {
		return
	}
	gen := d.Gen()
	if err := d.Refresh(); err != nil {
		if errors.Is(err, cache.ErrRemoved) {
			return // finished meanwhile (committed or dropped): nothing to take in
		}
		f.log.Warn("take in what was written by passthrough failed", "path", "/"+p, "err", err)
		return
	}
	if d.Gen() != gen {
		f.wmu.Lock()
		l.mtime = time.Now()
		f.wmu.Unlock()
	}
}
