package fs

// A rename over a file with the very same bytes (sed -i that changed
// nothing, an editor's save without a change, a tool rewriting its output
// unchanged) makes no version: the target stays as it is and the renamed
// file goes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/evofs/evofs/cache"
)

// sameBytesFetchLimit bounds what a comparison may fetch of the renamed
// file's committed version (a sync-mode temp file is committed at its
// close, before the rename): a larger one is not compared, and the rename
// makes a version as any other.
const sameBytesFetchLimit = 16 << 20

// sameBytes reports whether src holds exactly the bytes of e, the remote
// version a rename replaces. It only compares when e is whole in the read
// cache (the program read it to write src, most often) and the two are
// the same size; anything it cannot read says no.
func (f *FS) sameBytes(ctx context.Context, src Item, e *Entry) bool {
	size := e.File.Size
	target := cache.Version{FileID: e.File.FileID, VersionID: e.File.VersionID, Size: size}
	if size == 0 || !f.cache.Complete(target) {
		return false
	}
	var read func(p []byte, off int64) (int, error)
	if l := src.Local; l != nil {
		f.refresh(l)
		f.wmu.Lock()
		d, committed := l.d, l.committed
		f.wmu.Unlock()
		switch {
		case d != nil:
			if d.Size() != size {
				return false
			}
			read = func(p []byte, off int64) (int, error) { return d.ReadAt(ctx, p, off) }
		case committed != nil:
			src = Item{Entry: committed}
		default:
			return false
		}
	}
	if read == nil {
		s := src.Entry
		if s == nil || s.File.Size != size {
			return false
		}
		v := cache.Version{FileID: s.File.FileID, VersionID: s.File.VersionID, Size: size}
		if size > sameBytesFetchLimit && !f.cache.Complete(v) {
			return false
		}
		r, k := f.baseFile(v.FileID, v.VersionID, size)
		defer f.released(k)
		defer r.Close()
		read = func(p []byte, off int64) (int, error) { return r.ReadAt(ctx, p, off) }
	}
	t, k := f.baseFile(target.FileID, target.VersionID, size)
	defer f.released(k)
	defer t.Close()
	same, err := equalReaders(read, func(p []byte, off int64) (int, error) { return t.ReadAt(ctx, p, off) }, size)
	if err != nil {
		f.log.Debug("compare a renamed file with the one it replaces failed; saving it as a new version", "path", "/"+e.Path, "err", err)
		return false
	}
	return same
}

// equalReaders compares size bytes of two readers, a block at a time.
func equalReaders(a, b func(p []byte, off int64) (int, error), size int64) (bool, error) {
	const chunk = 1 << 20
	pa, pb := make([]byte, chunk), make([]byte, chunk)
	for off := int64(0); off < size; off += chunk {
		n := int(min(chunk, size-off))
		for _, r := range []struct {
			read func([]byte, int64) (int, error)
			p    []byte
		}{{a, pa[:n]}, {b, pb[:n]}} {
			got, err := r.read(r.p, off)
			if got < n {
				if err == nil || errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return false, fmt.Errorf("read at %d: %w", off, err)
			}
		}
		if !bytes.Equal(pa[:n], pb[:n]) {
			return false, nil
		}
	}
	return true, nil
}

// dropRenamed ends a rename whose source had the target's bytes: the
// source goes (its local content dropped, the remote files that stood for
// it deleted) and the target keeps its version.
func (f *FS) dropRenamed(ctx context.Context, from, to string, src Item) error {
	if l := src.Local; l != nil {
		own, left := f.discard(from, l)
		for _, id := range own {
			if id != "" {
				if err := f.deleteFile(ctx, id); err != nil {
					return fmt.Errorf("delete %s, renamed over %s with the same bytes: %w", from, to, err)
				}
			}
		}
		for _, id := range left {
			if err := f.deleteLeft(ctx, id); err != nil {
				return fmt.Errorf("delete an older name of %s: %w", from, err)
			}
		}
	} else if src.Entry != nil {
		if err := f.deleteFile(ctx, src.Entry.File.FileID); err != nil {
			return fmt.Errorf("delete %s, renamed over %s with the same bytes: %w", from, to, err)
		}
	}
	f.ws.setPatch(from, nil, false)
	f.keepFolder(parentPath(from))
	f.log.Info("renamed over the same bytes: no new version", "from", "/"+from, "path", "/"+to)
	return nil
}
