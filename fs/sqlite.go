package fs

// SQLite databases in WAL mode (GeoPackages). Their side files ("X-wal",
// "X-shm") stay local, but the WAL can hold committed transactions: SQLite
// copies them into X (a checkpoint) only when no reader holds an older
// snapshot, and otherwise leaves them in X-wal when its last connection
// closes. So when the last handle of X and its side files closes here,
// evofs checkpoints itself (fs/sqlwal): the WAL's committed frames go into
// X's content, which is then uploaded as a new version, and the side files
// are removed, as SQLite removes them on a clean last close. A WAL's frames
// are only ever applied to the version of X they were written over; if X
// has changed since, they go into a conflict copy of that version.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/evofs/evofs/cache"
	"github.com/evofs/evofs/fs/sqlwal"
	"github.com/evofs/evofs/remote"
)

// walHeaderSize is the size of a WAL with no frames.
const walHeaderSize = 32

// sideOf returns the database a SQLite side file belongs to.
func sideOf(p string) (db string, ok bool) {
	for _, sfx := range sqliteSideSuffixes {
		if db, ok := strings.CutSuffix(p, sfx); ok && baseName(db) != "" {
			return db, true
		}
	}
	return "", false
}

// familyOf is the key of the files a database's handles count under: the
// database's path for it and its side files, the path for any other file.
func familyOf(p string) string {
	if db, ok := sideOf(p); ok {
		return db
	}
	return p
}

// family counts the open handles of a database and its side files.
type family struct {
	opens   int
	folding chan struct{} // closed when a checkpoint in progress ends
}

// familyOpened counts a handle of the file at p (waiting for a checkpoint
// of its database in progress) and returns the key to release it with.
func (f *FS) familyOpened(p string) string {
	key := familyOf(p)
	for {
		f.mu.Lock()
		if f.families == nil {
			f.families = map[string]*family{}
		}
		fam := f.families[key]
		if fam == nil {
			fam = &family{}
			f.families[key] = fam
		}
		if wait := fam.folding; wait != nil {
			f.mu.Unlock()
			<-wait
			continue
		}
		fam.opens++
		f.mu.Unlock()
		return key
	}
}

// familyClosed releases a handle; the last one of a database and its side
// files checkpoints what its WAL holds.
func (f *FS) familyClosed(ctx context.Context, key string) {
	f.mu.Lock()
	fam := f.families[key]
	if fam == nil {
		f.mu.Unlock()
		return
	}
	if fam.opens--; fam.opens > 0 {
		f.mu.Unlock()
		return
	}
	done := make(chan struct{})
	fam.folding = done
	f.mu.Unlock()
	f.checkpoint(ctx, key)
	f.mu.Lock()
	fam.folding = nil
	if fam.opens == 0 {
		delete(f.families, key)
	}
	f.mu.Unlock()
	close(done)
}

// sideFileRecord names the database version a new side file at p belongs
// to (nothing for other files), and returns that version when it is a
// remote one (the side file's pin).
func (f *FS) sideFileRecord(p string, rec *cache.Record) *Entry {
	db, ok := sideOf(p)
	if !ok {
		return nil
	}
	it, ok := f.ws.peek(db)
	switch {
	case !ok:
	case it.Local != nil:
		f.wmu.Lock()
		if d := it.Local.d; d != nil {
			r := d.Record()
			rec.DBLocal, rec.DBFileID = d.ID(), r.FileID
			rec.DBVersion = r.Expect
			if r.Committed != "" {
				rec.DBVersion = r.Committed
			}
		}
		f.wmu.Unlock()
	case it.Entry != nil:
		rec.DBFileID, rec.DBVersion = it.Entry.File.FileID, it.Entry.File.VersionID
		return it.Entry
	}
	return nil
}

// checkpoint brings the committed transactions of db's WAL into db's
// content and queues its upload, then removes the WAL and shared memory
// (only when no handle of the family is open).
func (f *FS) checkpoint(ctx context.Context, db string) {
	walPath := db + "-wal"
	it, ok := f.ws.peek(walPath)
	if !ok || it.Local == nil {
		return
	}
	wal := it.Local
	f.refresh(wal)
	f.wmu.Lock()
	d, transient := wal.d, wal.transient
	f.wmu.Unlock()
	if d == nil || !transient {
		return
	}
	frames, err := sqlwal.Read(d.Reader(ctx), d.Size())
	if err != nil {
		f.log.Warn("read the WAL of a database failed; it stays beside it", "path", "/"+walPath, "err", err)
		return
	}
	if frames != nil {
		start := time.Now()
		target, err := f.checkpointTarget(ctx, db, d.Record())
		if err == nil {
			err = f.applyFrames(ctx, target, frames, d)
		}
		if err != nil {
			errno(f.log, "checkpoint (the WAL's transactions stay in it, and count as pending)", "/"+walPath, err)
			return
		}
		f.wmu.Lock()
		tp := target.path
		f.wmu.Unlock()
		f.log.Info("checkpointed the WAL of a closed database into it", "path", "/"+tp, "wal", "/"+walPath,
			"transactions", frames.Commits, "pages", len(frames.Pages), "took", time.Since(start).Round(time.Millisecond))
		if f.opt.WriteBack == WriteBackAsync {
			f.up.later(target, f.opt.Debounce)
		} else {
			f.up.enqueue(target)
		}
	}
	// As SQLite does on a clean last close: the WAL is empty now, and the
	// shared memory index of it stale.
	var gone []NameRef
	for _, side := range []string{walPath, db + "-shm"} {
		it, ok := f.ws.peek(side)
		if !ok || it.Local == nil {
			continue
		}
		f.wmu.Lock()
		transient := it.Local.transient
		f.wmu.Unlock()
		if !transient {
			continue
		}
		if err := f.Remove(ctx, side, it); err != nil {
			f.log.Warn("remove a side file after a checkpoint failed", "path", "/"+side, "err", err)
			continue
		}
		gone = append(gone, NameRef{parentPath(side), baseName(side)})
	}
	if len(gone) > 0 {
		f.notify.enqueue(Change{Entries: append(gone, NameRef{parentPath(db), baseName(db)})})
	}
}

// checkpointTarget is the local content a WAL's frames go into: the
// database's own, when it is (or is content of) the version the WAL was
// written over; else a conflict copy of that version.
func (f *FS) checkpointTarget(ctx context.Context, db string, walRec cache.Record) (*Local, error) {
	it, _ := f.ws.peek(db)
	if l := it.Local; l != nil {
		f.wmu.Lock()
		d := l.d
		f.wmu.Unlock()
		if d != nil {
			r := d.Record()
			v := r.Expect
			if r.Committed != "" {
				v = r.Committed
			}
			if d.ID() == walRec.DBLocal || (walRec.DBVersion != "" && r.FileID == walRec.DBFileID && v == walRec.DBVersion) {
				return l, nil
			}
		}
	}
	if e := it.Entry; e != nil && e.File.FileID == walRec.DBFileID && e.File.VersionID == walRec.DBVersion {
		if n := f.fileNodeAt(db); n != nil {
			if l, cur := n.current(); l == nil && cur != nil && cur.File.FileID == e.File.FileID && cur.File.VersionID == e.File.VersionID {
				return n.localFor(ctx)
			}
		}
		// A fresh number: a node the kernel may still hold for the
		// version must not stand for the content.
		return f.newLocal(db, e, localIno())
	}
	if walRec.DBVersion == "" || walRec.DBFileID == "" {
		return nil, errors.New("the database version this WAL was written over is unknown")
	}
	// The database changed since (a save elsewhere): the WAL's
	// transactions, over the version they belong to, go to a copy.
	meta, err := f.files.GetFile(ctx, walRec.DBFileID, remote.GetOptions{VersionID: walRec.DBVersion})
	if errors.Is(err, remote.ErrGone) {
		meta, err = f.files.GetFile(ctx, walRec.DBFileID, remote.GetOptions{VersionID: walRec.DBVersion, Deleted: true})
	}
	if err != nil {
		return nil, fmt.Errorf("the version %s the WAL was written over: %w", walRec.DBVersion, err)
	}
	base := committedEntry(db, walRec.DBFileID, walRec.DBVersion, meta.Size)
	cp := f.conflictName(ctx, db)
	l, err := f.newLocal(cp, base, localIno())
	if err != nil {
		return nil, err
	}
	if err := l.d.Update(func(r *cache.Record) { r.FileID, r.Expect = "", "" }); err != nil {
		return nil, err
	}
	f.conflicted("the database changed elsewhere since its WAL was written here; the copy holds its transactions", db, cp, walRec.DBVersion, it.Entry)
	return l, nil
}

// sideFilesFollow: content of a database (journal id dbLocal) was
// committed as a version: its side files belong to that version now.
func (f *FS) sideFilesFollow(db string, dbLocal uint64, fileID, versionID string) {
	for _, sfx := range sqliteSideSuffixes {
		it, ok := f.ws.peek(db + sfx)
		if !ok || it.Local == nil {
			continue
		}
		f.wmu.Lock()
		d := it.Local.d
		f.wmu.Unlock()
		if d == nil || d.Record().DBLocal != dbLocal {
			continue
		}
		if e, ok := f.ws.peek(db); ok && e.Entry != nil && e.Entry.File.VersionID == versionID {
			it.Local.pin.Store(e.Entry)
		}
		if err := d.Update(func(r *cache.Record) { r.DBFileID, r.DBVersion = fileID, versionID }); err != nil {
			f.log.Warn("journal the database version of a side file failed", "path", "/"+db+sfx, "err", err)
		}
	}
}

// unpin lets a database's path show what the listing says again (it was
// removed here).
func (f *FS) unpin(db string) {
	for _, sfx := range sqliteSideSuffixes {
		if it, ok := f.ws.peek(db + sfx); ok && it.Local != nil {
			it.Local.pin.Store(nil)
		}
	}
}

// fileNodeAt finds the kernel's node of a file path, if go-fuse has it.
func (f *FS) fileNodeAt(p string) *fileNode {
	ch := f.notify.find(p)
	if ch == nil {
		return nil
	}
	n, _ := ch.Operations().(*fileNode)
	return n
}

// applyFrames writes a WAL's committed pages into local content, durably
// journaled as closed content waiting for its upload.
func (f *FS) applyFrames(ctx context.Context, l *Local, frames *sqlwal.Frames, wal *cache.Dirty) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.wmu.Lock()
	d := l.d
	if l.eager != nil {
		l.eager.abandon() // its blocks may be written over
		l.eager = nil
	}
	f.wmu.Unlock()
	if d == nil {
		return errors.New("the database's local content was dropped meanwhile")
	}
	w := &runWriter{ctx: ctx, d: d}
	if err := frames.Apply(ctx, wal.Reader(ctx), w); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	f.wmu.Lock()
	l.mtime = time.Now()
	f.wmu.Unlock()
	if err := d.Update(func(r *cache.Record) { r.Pending = true }); err != nil {
		return err
	}
	return f.cache.Sync()
}

// runWriter gathers the page writes of a checkpoint into runs of up to
// 1 MiB (each write into the cache is a transaction).
type runWriter struct {
	ctx context.Context
	d   *cache.Dirty
	off int64
	buf []byte
}

func (w *runWriter) WriteAt(p []byte, off int64) (int, error) {
	if len(w.buf) > 0 && (off != w.off+int64(len(w.buf)) || len(w.buf)+len(p) > 1<<20) {
		if err := w.flush(); err != nil {
			return 0, err
		}
	}
	if len(w.buf) == 0 {
		w.off = off
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *runWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.d.WriteAt(w.ctx, w.buf, w.off)
	w.buf = w.buf[:0]
	return err
}

func (w *runWriter) Truncate(ctx context.Context, size int64) error {
	if err := w.flush(); err != nil {
		return err
	}
	return w.d.Truncate(ctx, size)
}
