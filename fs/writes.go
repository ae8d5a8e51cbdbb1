package fs

// The write path, FUSE-free: local content in the cache, versions uploaded
// on close (or in the background), deletes, renames and folders. The nodes
// in write.go call these; tests can drive them without a mount.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/evofs/evofs/cache"
	"github.com/evofs/evofs/remote"
)

// WriteBack says when close returns.
type WriteBack int

const (
	// WriteBackSync: close (and fsync) return once the new version is
	// committed, so an upload failure reaches the application.
	WriteBackSync WriteBack = iota
	// WriteBackAsync: close returns once the content is durably in the
	// journal; uploads run in the background (and after a restart).
	WriteBackAsync
)

// DefaultLocalOnly are the names (path.Match patterns on the base name) of
// transient side files that stay in the cache and are never uploaded: SQLite
// journals, editor swap and lock files.
var DefaultLocalOnly = []string{
	"*-journal", "*-wal", "*-shm", // SQLite
	".*.swp", ".*.swo", ".*.swx", "4913", // vim (4913: its probe of a writable folder)
	".~lock.*#", // LibreOffice
	"~$*",       // Microsoft Office
}

// FileWriter is what writes need of the File API: remote.Client has it.
type FileWriter interface {
	UpsertFileByPath(ctx context.Context, path, versionID string) (*remote.UploadFileResponse, error)
	UpdateFile(ctx context.Context, fileID, versionID string) (*remote.UploadFileResponse, error)
	DeleteFile(ctx context.Context, fileID string) error
	RestoreFile(ctx context.Context, fileID string) (*remote.Restored, error)
}

// BlobStore moves bytes through pre-signed links: remote.Blobs has it.
type BlobStore interface {
	BlobReader
	Upload(ctx context.Context, l *remote.Link, src io.ReaderAt, size int64, o remote.UploadOptions) error
	StageBlock(ctx context.Context, l *remote.Link, off int64, src io.ReaderAt, n int64) error
	BlockSize(size int64) int64
	SingleShotMax() int64
	Copy(ctx context.Context, dst, src *remote.Link) error
}

// Local is a file whose content is in the cache: being written, waiting
// for its upload, or a transient side file.
type Local struct {
	ino uint64

	// mu serializes changes of the content with its uploads and renames:
	// a write waits while the content is being uploaded.
	mu sync.Mutex

	// GUARDED_BY(FS.wmu)
	d            *cache.Dirty // nil once finished (committed or discarded, and closed)
	base         *cache.File  // reader of the base version (nil: none)
	baseKey      versionKey
	path         string
	opens        int
	removed      bool
	transient    bool
	committed    *Entry // the version this content was last committed as
	committedGen int64  // the content generation committed (or equal to the base); -1: none
	mtime        time.Time
	failures     int
	lastErr      string
	uploading    bool
	staged       int64  // bytes staged of the upload in progress
	eager        *eager // blocks sent while the content is written (eager.go)

	// pin, for a SQLite side file ("X-wal", "X-shm") written over a
	// remote version of X, is that version: while the side file lives,
	// X shows it, whatever a refresh lists (sqlite.go).
	pin atomic.Pointer[Entry]
}

// live reports whether the content is here (not finished).
//
// LOCKS_REQUIRED(FS.wmu)
func (l *Local) live() bool { return l.d != nil }

// localIno numbers a file born here: random, so never a number the kernel
// still knows from another file.
func localIno() uint64 { return rand.Uint64() | 1<<63 }

// sqliteSideSuffixes end the names of SQLite's side files of a database
// ("X-wal" beside "X").
var sqliteSideSuffixes = []string{"-journal", "-wal", "-shm"}

// isLocalOnly reports whether the file at p is a transient side file: its
// name matches a --local-only pattern, it is not a remote file, and, for
// SQLite's side files, their database is a file beside them (SQLite's own
// rule: "trip-journal" alone is a file like any other).
func (f *FS) isLocalOnly(p string) bool {
	name := baseName(p)
	matched := false
	for _, pat := range f.opt.LocalOnly {
		if ok, _ := path.Match(pat, name); ok {
			matched = true
			break
		}
	}
	if !matched {
		return false
	}
	if it, ok := f.ws.peek(p); ok && it.Entry != nil {
		return false // a file that exists remotely is never local-only
	}
	for _, sfx := range sqliteSideSuffixes {
		if db, ok := strings.CutSuffix(name, sfx); ok && db != "" {
			it, ok := f.ws.peek(joinPath(parentPath(p), db))
			return ok && !it.Dir
		}
	}
	return true
}

// checkName refuses a name or path the service would refuse, before
// anything is created.
func checkName(p string) error {
	name := baseName(p)
	switch {
	case len(name) > remote.MaxNameBytes:
		return &refusal{errno: syscall.ENAMETOOLONG, code: remote.CodeInvalidPath,
			why: fmt.Sprintf("the name is %d bytes; the service allows %d", len(name), remote.MaxNameBytes)}
	case len(p) > remote.MaxPathBytes:
		return &refusal{errno: syscall.ENAMETOOLONG, code: remote.CodeInvalidPath,
			why: fmt.Sprintf("the path is %d bytes; the service allows %d", len(p), remote.MaxPathBytes)}
	}
	if err := remote.ValidateName(name); err != nil {
		return &refusal{errno: syscall.EINVAL, code: remote.CodeInvalidPath, why: "the service refuses such names: " + err.Error()}
	}
	return nil
}

// errViewer refuses a write by a role that may only read (found by the
// probe of writable).
var errViewer error = &refusal{errno: syscall.EACCES, code: remote.CodeInsufficientRole,
	why: "the workspace role only allows reading"}

// writable probes once a minute whether the caller may write: a delete of
// a file that cannot exist answers 404 to an editor and 403 to a viewer.
func (f *FS) writable(ctx context.Context) error {
	if f.opt.ReadOnly {
		return errReadOnly
	}
	f.wmu.Lock()
	known, at := f.canWrite, f.canWriteAt
	f.wmu.Unlock()
	switch {
	case known < 0 && time.Since(at) < time.Minute:
		return errViewer
	case known > 0 && time.Since(at) < time.Minute:
		return nil
	case known == 0 && time.Since(at) < 30*time.Second, f.opt.Health.Down():
		// The last probe could not tell, or the service is away: the
		// upload will tell. An open does not wait on the service.
		return nil
	}
	// The probe is an open's: it gets a few seconds, not the retries.
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := f.files.DeleteFile(pctx, "00000000-0000-0000-0000-000000000000")
	state := 1
	if errors.Is(err, remote.ErrForbidden) {
		state = -1
	} else if err != nil && !errors.Is(err, remote.ErrNotFound) && !errors.Is(err, remote.ErrGone) {
		state = 0 // unknown: let the upload tell
	}
	f.wmu.Lock()
	f.canWrite, f.canWriteAt = state, time.Now()
	f.wmu.Unlock()
	if state < 0 {
		return errViewer
	}
	return nil
}

// baseFile opens a reader of a version for local content over it.
func (f *FS) baseFile(fileID, versionID string, size int64) (*cache.File, versionKey) {
	return f.versionFile(fileID, versionID, size, false)
}

// versionFile opens a reader of a version through the cache (deleted: of
// a file in the trash); close it and call f.released with the key.
func (f *FS) versionFile(fileID, versionID string, size int64, deleted bool) (*cache.File, versionKey) {
	k := versionKey{fileID, versionID}
	f.opened(k)
	v := cache.Version{FileID: fileID, VersionID: versionID, Size: size}
	return f.cache.File(v, &versionFetcher{fsys: f, key: k, deleted: deleted}, cache.FileOptions{
		Readahead: f.opt.Readahead, Parallelism: f.opt.Parallelism}), k
}

// newLocal starts local content at p over base (nil: a new, empty file),
// journaled before it returns, and puts it in the overlay.
func (f *FS) newLocal(p string, base *Entry, ino uint64) (*Local, error) {
	return f.newLocalFrom(p, base, ino, nil, nil)
}

// newLocalFrom is newLocal; with file it makes file (the node's backing
// file, holding every byte of base) the content instead of a new one:
// cache.AdoptDirty, which takes it from the read cache when from names
// the cached version it is.
func (f *FS) newLocalFrom(p string, base *Entry, ino uint64, file *os.File, from *cache.Version) (*Local, error) {
	l := &Local{ino: ino, path: p, transient: base == nil && p != "" && f.isLocalOnly(p), committedGen: -1, mtime: time.Now()}
	// No path: the node was unlinked while open. Its content lives for
	// its open handles only, never uploaded, dropped at the last close.
	unlinked := p == ""
	if unlinked {
		l.transient, l.removed = true, true
	}
	rec := cache.Record{Path: p, Local: l.transient}
	if l.transient {
		l.pin.Store(f.sideFileRecord(p, &rec))
	}
	var br cache.BaseReader
	if base == nil && !unlinked && !l.transient {
		if w := f.claimDelete(p); w != nil {
			rec.FileID, rec.Expect = w.FileID, w.Version // a new version of the file removed here
		}
	}
	if base != nil {
		rec.FileID, rec.BaseFileID = base.File.FileID, base.File.FileID
		rec.BaseVersion, rec.BaseSize = base.File.VersionID, base.File.Size
		rec.Expect = base.File.VersionID
		if file == nil { // an adopted file holds every byte: no base to read
			l.base, l.baseKey = f.baseFile(base.File.FileID, base.File.VersionID, base.File.Size)
			br = l.base
		}
		l.committedGen = 0 // the content is the base until written
		l.mtime = base.ModTime
	}
	var d *cache.Dirty
	var err error
	if file != nil {
		d, err = f.cache.AdoptDirty(rec, file, from)
	} else {
		d, err = f.cache.NewDirty(rec, br)
	}
	if err != nil {
		f.releaseBase(l)
		return nil, err
	}
	l.d = d
	if !unlinked {
		f.ws.addLocal(l)
	}
	return l, nil
}

// releaseBase lets go of the base version's reader.
func (f *FS) releaseBase(l *Local) {
	if l.base != nil {
		l.base.Close()
		f.released(l.baseKey)
		l.base = nil
	}
}

// dirty reports whether content needs an upload.
//
// LOCKS_REQUIRED(FS.wmu)
func (l *Local) dirty() bool {
	return l.d != nil && !l.removed && !l.transient && int64(l.d.Gen()) != l.committedGen
}

// Flush is close(2) of a handle that may have written: in sync mode it
// commits a new version and returns its error; in async mode it makes the
// content durable in the journal and queues its upload.
func (f *FS) Flush(ctx context.Context, l *Local) error {
	f.refresh(l)
	f.wmu.Lock()
	dirty := l.dirty()
	f.wmu.Unlock()
	if !dirty {
		return nil
	}
	if f.opt.WriteBack == WriteBackAsync {
		if err := l.d.Update(func(r *cache.Record) { r.Pending = true }); err != nil {
			return err
		}
		if err := f.cache.Sync(); err != nil {
			return err
		}
		f.up.later(l, f.opt.Debounce)
		return nil
	}
	// The upload runs for the content, not for this one caller: an
	// interrupted close must not leave half a version behind it, nor
	// return before it (the Go runtime's preemption signals interrupt
	// FUSE requests all the time, and a close that returned early would
	// race the program's next open of the file). The caller waits while
	// the service answers; once the service is away close fails with EIO
	// and the upload goes on, retried from the journal until committed.
	done := make(chan error, 1)
	go func() {
		err := f.commit(context.WithoutCancel(ctx), l)
		if err != nil {
			f.up.retryLater(l, err)
		}
		done <- err
	}()
	actx, stop := f.away(context.WithoutCancel(ctx))
	defer stop()
	select {
	case err := <-done:
		return err
	case <-actx.Done():
		return f.awayErr(actx, fmt.Errorf("upload of %s goes on in the background: %w", l.path, actx.Err()))
	}
}

// commit uploads the content as a new version unless it is unchanged.
// Writes wait meanwhile (they take l.mu).
func (f *FS) commit(ctx context.Context, l *Local) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.wmu.Lock()
	if !l.dirty() {
		f.wmu.Unlock()
		return nil
	}
	if err := l.d.Unstored(); err != nil {
		f.wmu.Unlock()
		return err // never a version without the bytes of a failed write
	}
	d, p, prev, eg := l.d, l.path, l.committed, l.eager
	l.uploading, l.staged, l.eager = true, 0, nil
	f.wmu.Unlock()
	defer func() {
		f.wmu.Lock()
		l.uploading = false
		f.wmu.Unlock()
	}()

	var pre *remote.UploadFileResponse
	var preStaged map[int64]bool
	f.refresh(l)
	if eg != nil {
		pre, preStaged = eg.stop(d.Record(), d.Size())
	}
	gen := int64(d.Gen())
	rec := d.Record()
	if prev == nil && rec.BaseVersion != "" && rec.FileID == rec.BaseFileID {
		changed, err := d.Changed(ctx)
		if err != nil {
			return fmt.Errorf("compare %s with version %s: %w", p, rec.BaseVersion, err)
		}
		if !changed {
			f.wmu.Lock()
			l.committedGen = gen
			f.wmu.Unlock()
			return d.Update(func(r *cache.Record) { r.Pending = false })
		}
	}
	start := time.Now()
	up, staged, done, err := f.uploadTarget(ctx, l, d, rec, gen, pre, preStaged)
	if err != nil {
		return err
	}
	rec = d.Record() // a conflict moves it
	p = rec.Path
	size := d.Size()
	if !done {
		link := remote.NewLink(up.Upload, func(ctx context.Context) (string, error) {
			u, err := f.files.UpdateFile(ctx, up.FileID, up.VersionID)
			if err != nil {
				return "", fmt.Errorf("renew upload link: %w", err)
			}
			return u.Upload, nil
		})
		err = f.blobs.Upload(ctx, link, d.Reader(ctx), size, remote.UploadOptions{
			Staged: func(off int64) bool { return staged[off] },
			OnStaged: func(off, n int64) {
				f.wmu.Lock()
				l.staged += n
				f.wmu.Unlock()
				if err := d.Update(func(r *cache.Record) {
					if r.Upload != nil {
						r.Upload.Staged = append(r.Upload.Staged, off)
					}
				}); err != nil {
					f.log.Warn("journal a staged block failed (it will be sent again after a crash)", "path", "/"+p, "err", err)
				}
			},
		})
		if err != nil {
			return fmt.Errorf("upload %s as version %s: %w", p, up.VersionID, err)
		}
	}
	e := committedEntry(p, up.FileID, up.VersionID, size)
	f.claim(up.FileID)
	for _, id := range rec.DeleteAfter {
		if id == up.FileID {
			continue
		}
		if err := f.deleteLeft(ctx, id); err != nil {
			f.log.Warn("delete the file a rename replaced failed", "path", "/"+p, "file_id", id, "code", remote.ErrorCode(err), "err", err)
		}
	}
	if err := d.Update(func(r *cache.Record) {
		r.Upload, r.Pending, r.DeleteAfter = nil, false, nil
		r.FileID, r.Expect, r.Committed, r.CommittedGen = up.FileID, up.VersionID, up.VersionID, uint64(gen)
	}); err != nil {
		f.log.Warn("journal a committed upload failed", "path", "/"+p, "err", err)
	}
	f.wmu.Lock()
	l.committed, l.committedGen, l.failures, l.lastErr = e, gen, 0, ""
	f.wmu.Unlock()
	f.ws.setPatch(p, e, false)
	f.noteOurs(up.FileID, up.VersionID)
	f.landed(p)
	f.sideFilesFollow(p, d.ID(), up.FileID, up.VersionID)
	f.log.Info("committed", "path", "/"+p, "file_id", up.FileID, "version_id", up.VersionID, "size", size,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// uploadTarget returns the version to upload into: the journal's own when
// it was started for this content (resumed where it stopped: staged holds
// the blocks already sent; done when a crash came after its commit), else
// a new version of the file (or a new file at the path).
//
// pre, when not nil, is the version eager staging made for this content,
// with the blocks it staged (preStaged).
func (f *FS) uploadTarget(ctx context.Context, l *Local, d *cache.Dirty, rec cache.Record, gen int64,
	pre *remote.UploadFileResponse, preStaged map[int64]bool) (up *remote.UploadFileResponse, staged map[int64]bool, done bool, err error) {
	staged = map[int64]bool{}
	if u := rec.Upload; u != nil && u.VersionID != "" && (pre == nil || pre.VersionID != u.VersionID) {
		// The version an earlier try (or eager staging) made: keep using
		// it; its staged blocks hold this content only if it is the same
		// generation.
		up, err = f.files.UpdateFile(ctx, u.FileID, u.VersionID)
		switch {
		case errors.Is(err, remote.ErrNoUploadInProgress) && int64(u.Gen) == gen:
			return &remote.UploadFileResponse{FileID: u.FileID, VersionID: u.VersionID}, staged, true, nil
		case err == nil:
			if int64(u.Gen) == gen {
				for _, off := range u.Staged {
					staged[off] = true
				}
			}
			pre, preStaged = up, staged
		case errors.Is(err, remote.ErrNoUploadInProgress), errors.Is(err, remote.ErrNotFound), errors.Is(err, remote.ErrGone):
			// Committed with older content, or gone: a new version.
		default:
			return nil, nil, false, fmt.Errorf("resume upload of %s: %w", rec.Path, err)
		}
	}
	// The service has no conditional upload: check as late as we can
	// whether the file got a version this content does not know of.
	theirs, conflict, err := f.checkConflict(ctx, rec, pre)
	if err != nil {
		return nil, nil, false, err
	}
	if conflict {
		// The version made for the file (if any) is never committed: ours
		// goes to a conflict copy instead.
		pre, preStaged = nil, nil
		if rec, err = f.toConflictCopy(ctx, l, d, rec, theirs); err != nil {
			return nil, nil, false, err
		}
	}
	if pre != nil {
		up, staged = pre, preStaged
	} else if up, err = f.newVersion(ctx, rec, true); err != nil {
		return nil, nil, false, err
	}
	var offs []int64
	for off := range staged {
		offs = append(offs, off)
	}
	err = d.Update(func(r *cache.Record) {
		r.FileID = up.FileID
		r.Upload = &cache.Upload{FileID: up.FileID, VersionID: up.VersionID, Gen: uint64(gen), Staged: offs}
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("journal the upload of %s: %w", rec.Path, err)
	}
	return up, staged, false, nil
}

// claim takes a file id out of the deletes other content waits to make:
// content moved away from a path leaves its old file there until it is
// committed at its new place, and an upsert at that path meanwhile makes
// a new version of that very file, which now holds this content. undo
// puts it back (for an upsert whose content will not be committed).
func (f *FS) claim(id string) (undo func()) {
	f.ws.mu.Lock()
	hidden := f.ws.ov.hiddenIDs[id]
	delete(f.ws.ov.hiddenIDs, id)
	f.ws.mu.Unlock()
	if hidden == 0 {
		return func() {}
	}
	var from []*cache.Dirty
	for _, l := range f.allLocals() {
		f.wmu.Lock()
		d := l.d
		f.wmu.Unlock()
		if d == nil || !slices.Contains(d.Record().DeleteAfter, id) {
			continue
		}
		from = append(from, d)
		if err := d.Update(func(r *cache.Record) {
			r.DeleteAfter = slices.DeleteFunc(r.DeleteAfter, func(x string) bool { return x == id })
		}); err != nil {
			f.log.Warn("journal a claimed file failed", "file_id", id, "err", err)
		}
	}
	return func() {
		f.ws.hideID(id, hidden)
		for _, d := range from {
			if err := d.Update(func(r *cache.Record) {
				if !slices.Contains(r.DeleteAfter, id) {
					r.DeleteAfter = append(r.DeleteAfter, id)
				}
			}); err != nil {
				f.log.Warn("journal a file to delete failed", "file_id", id, "err", err)
			}
		}
	}
}

// errAwaitsDeletion: an upsert named a file that content moved away from
// the path left there to be deleted, and the caller may not claim it.
var errAwaitsDeletion = errors.New("the file at this path awaits deletion")

// upsert asks for a new version at path p. The file it names may be one
// that content moved away from p left there, to be deleted once that
// content is committed at its new place: with claim, the caller's content
// takes that file over at once (undo gives it back); without, such a file
// is refused (errAwaitsDeletion). The upsert and the claim are one step
// for deleteLeft, so a file the upsert named is never deleted under the
// new content.
func (f *FS) upsert(ctx context.Context, p string, claim bool) (up *remote.UploadFileResponse, undo func(), err error) {
	f.claimMu.RLock()
	defer f.claimMu.RUnlock()
	if up, err = f.files.UpsertFileByPath(ctx, p, ""); err != nil {
		return nil, nil, err
	}
	if !claim {
		if f.ws.isHidden(up.FileID) {
			return nil, nil, errAwaitsDeletion
		}
		return up, func() {}, nil
	}
	return up, f.claim(up.FileID), nil
}

// deleteLeft deletes a file that content left at its old path when it was
// renamed (once committed at its new path, or removed), unless an upsert
// at the old path claimed it meanwhile.
func (f *FS) deleteLeft(ctx context.Context, id string) error {
	f.claimMu.Lock()
	defer f.claimMu.Unlock()
	if !f.ws.isHidden(id) {
		return nil // claimed: another content's file now
	}
	return f.deleteFile(ctx, id)
}

// newVersion asks for a new version of the content's file (update by id),
// or a new file at its path (upsert) when it has none or it was deleted;
// claim as in upsert.
func (f *FS) newVersion(ctx context.Context, rec cache.Record, claim bool) (*remote.UploadFileResponse, error) {
	if rec.FileID != "" {
		up, err := f.files.UpdateFile(ctx, rec.FileID, "")
		switch {
		case err == nil:
			return up, nil
		case errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrGone):
			f.log.Warn("the file was deleted remotely while written here; saving it again at its path", "path", "/"+rec.Path, "file_id", rec.FileID)
		default:
			return nil, fmt.Errorf("new version of %s: %w", rec.Path, err)
		}
	}
	up, _, err := f.upsert(ctx, rec.Path, claim)
	if err != nil {
		return nil, fmt.Errorf("new version at %s: %w", rec.Path, err)
	}
	return up, nil
}

// checkConflict asks the service whether the file this content replaces
// got a version this mount did not make since the content took it over
// (rec.Expect), or was deleted elsewhere. theirs is what is there now (nil:
// deleted). ours is a version this content made and did not commit yet.
func (f *FS) checkConflict(ctx context.Context, rec cache.Record, ours *remote.UploadFileResponse) (theirs *remote.DownloadFileResponse, conflict bool, err error) {
	if rec.FileID == "" || rec.Expect == "" {
		return nil, false, nil
	}
	cur, err := f.files.GetFile(ctx, rec.FileID, remote.GetOptions{})
	switch {
	case err == nil:
		if cur.VersionID == rec.Expect || (ours != nil && cur.VersionID == ours.VersionID) ||
			(rec.Upload != nil && cur.VersionID == rec.Upload.VersionID) {
			return nil, false, nil
		}
		return cur, true, nil
	case errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrGone):
		if f.deletedHere(rec.FileID) {
			return nil, false, nil // our own delete: saved again at its path
		}
		return nil, true, nil
	default:
		return nil, false, fmt.Errorf("check the latest version of %s: %w", rec.Path, err)
	}
}

// toConflictCopy moves content whose file changed elsewhere to a conflict
// copy beside it (a new file), so that it buries nobody's save; the path
// shows the other version. It returns the moved record.
func (f *FS) toConflictCopy(ctx context.Context, l *Local, d *cache.Dirty, rec cache.Record, theirs *remote.DownloadFileResponse) (cache.Record, error) {
	from := rec.Path
	cp := f.conflictName(ctx, from)
	if err := d.Update(func(r *cache.Record) {
		r.Path, r.FileID, r.Expect, r.Upload = cp, "", "", nil
	}); err != nil {
		return rec, fmt.Errorf("journal the conflict copy of %s: %w", from, err)
	}
	f.wmu.Lock()
	l.path = cp
	f.wmu.Unlock()
	f.ws.moveLocal(from, cp, l)
	f.conflicted("the file changed elsewhere since this content was based on it", from, cp, rec.Expect, theirEntry(from, theirs))
	return d.Record(), nil
}

// theirEntry is the entry of the version a conflict check found (nil:
// the file was deleted).
func theirEntry(p string, theirs *remote.DownloadFileResponse) *Entry {
	if theirs == nil {
		return nil
	}
	e := committedEntry(p, theirs.FileID, theirs.VersionID, theirs.Size)
	e.ModTime = theirs.ModifiedAt
	return e
}

// conflicted records a conflict copy cp made of content that was based on
// version base of the file at from, which now holds theirs (nil: deleted
// elsewhere): the path shows theirs, the kernel forgets both names, one
// warning names both versions, and `evofs status` lists it.
func (f *FS) conflicted(why, from, cp, base string, theirs *Entry) {
	remoteVersion := "deleted"
	if theirs != nil {
		remoteVersion = theirs.File.VersionID
	}
	f.ws.setPatch(from, theirs, false)
	f.notify.enqueue(Change{Entries: []NameRef{{parentPath(from), baseName(from)}, {parentPath(cp), baseName(cp)}}})
	f.log.Warn("conflict: saved as a conflict copy beside the file", "why", why,
		"path", "/"+from, "copy", "/"+cp, "base_version", base, "remote_version", remoteVersion)
	f.noteConflict(Conflict{Path: "/" + from, Copy: "/" + cp, BaseVersion: base, RemoteVersion: remoteVersion, At: time.Now()})
}

// conflictName names a conflict copy the way sync clients do, keeping the
// extension so that GIS tools open it: "geology (conflicted copy
// 2026-12-05 101530 host).gpkg", with " 2", " 3"... when taken.
func (f *FS) conflictName(ctx context.Context, p string) string {
	dir, name := parentPath(p), baseName(p)
	stem, ext := name, path.Ext(name)
	if ext == name || len(ext) > 16 {
		ext = "" // ".bashrc", or no real extension
	}
	stem = strings.TrimSuffix(name, ext)
	tag := fmt.Sprintf("conflicted copy %s %s", time.Now().Format("2006-01-02 150405"), f.host)
	for i := 1; ; i++ {
		t := tag
		if i > 1 {
			t = fmt.Sprintf("%s %d", tag, i)
		}
		suffix := " (" + t + ")" + ext
		if room := remote.MaxNameBytes - len(suffix); len(stem) > room {
			stem = strings.ToValidUTF8(stem[:max(room, 1)], "")
		}
		cp := joinPath(dir, stem+suffix)
		if _, taken, err := f.ws.Stat(ctx, cp); err != nil || !taken || i > 100 {
			return cp
		}
	}
}

// landed forgets the local marks of a path's folders: a file is in them now.
func (f *FS) landed(p string) {
	for d := parentPath(p); d != ""; d = parentPath(d) {
		if !f.ws.setDir(d, false) {
			continue
		}
		if err := f.cache.SetLocalDir(d, false); err != nil {
			f.log.Warn("forget local folder failed", "path", "/"+d, "err", err)
		}
	}
}

// opened and closed count a Local's handles; the last close of clean (or
// removed) content finishes it.
func (f *FS) localOpened(l *Local) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	l.opens++
}

func (f *FS) localClosed(l *Local) {
	f.wmu.Lock()
	l.opens--
	last := l.opens <= 0
	dirty := l.dirty()
	f.wmu.Unlock()
	if !last {
		return
	}
	if dirty {
		// A failed or never flushed upload: nothing is dropped.
		if f.opt.WriteBack == WriteBackAsync {
			f.up.later(l, f.opt.Debounce)
		} else {
			f.up.enqueue(l)
		}
		return
	}
	f.finish(l)
}

// finish drops the local content of a closed file that is committed,
// unchanged or removed (transient files stay until removed).
func (f *FS) finish(l *Local) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.wmu.Lock()
	if l.d == nil || l.opens > 0 || l.dirty() || (l.transient && !l.removed) || l.uploading {
		f.wmu.Unlock()
		return
	}
	d := l.d
	l.d = nil
	p, removed := l.path, l.removed
	f.releaseBase(l)
	f.wmu.Unlock()
	if !removed {
		f.ws.dropLocal(p, l)
	}
	if err := d.Remove(); err != nil {
		f.log.Warn("drop local content failed", "path", "/"+p, "err", err)
	}
}

// Remove unlinks the file at p: its remote file is deleted, its local
// content dropped (at the last close if it is open). The folder stays
// (as a local folder until a file lands in it or it is removed).
func (f *FS) Remove(ctx context.Context, p string, it Item) error {
	if err := f.writableFor(ctx, p); err != nil {
		return err
	}
	var ids, left []string
	var version string
	if l := it.Local; l != nil {
		// After discard: an upload in flight finishes first, and the
		// version it commits is the one removed here (not one saved
		// elsewhere, which would keep the file: deletes.go).
		ids, left = f.discard(p, l)
		version = f.localVersion(l)
	} else if it.Entry != nil {
		ids = append(ids, it.Entry.File.FileID)
		version = it.Entry.File.VersionID
	}
	f.keepFolder(parentPath(p))
	f.unpin(p)
	seen := map[string]bool{}
	deferred := false
	for i, id := range append(ids, left...) {
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		var err error
		switch {
		case i >= len(ids):
			err = f.deleteLeft(ctx, id)
		case !deferred:
			// The file's own delete waits for a save at p to take it
			// over (deletes.go).
			deferred = true
			err = f.deferDelete(id, p, version)
		default:
			err = f.deleteFile(ctx, id)
		}
		if err != nil {
			return fmt.Errorf("delete %s: %w", p, err)
		}
	}
	f.ws.setPatch(p, nil, false)
	return nil
}

// localVersion is the remote version local content replaces: the one it
// was last committed as, or the one it took over.
func (f *FS) localVersion(l *Local) string {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if l.committed != nil {
		return l.committed.File.VersionID
	}
	if l.d != nil {
		return l.d.Record().Expect
	}
	return ""
}

// writableFor is writable, except for transient names, which stay local
// and so work in a workspace the caller may only read, and on a read-only
// mount.
func (f *FS) writableFor(ctx context.Context, p string) error {
	if f.isLocalOnly(p) {
		return nil
	}
	return f.writable(ctx)
}

// keepFolder makes a folder local, so that it outlives its last file
// (rm -r removes the files, then the folder).
func (f *FS) keepFolder(d string) {
	if d == "" {
		return
	}
	if !f.ws.setDir(d, true) {
		return // marked already (and so recorded)
	}
	if err := f.cache.SetLocalDir(d, true); err != nil {
		f.log.Warn("record local folder failed", "path", "/"+d, "err", err)
	}
}

// Mkdir makes a local folder (the service stores no empty folders).
func (f *FS) Mkdir(ctx context.Context, p string) error {
	if f.opt.ReadOnly {
		return errReadOnly
	}
	if err := checkName(p); err != nil {
		return err
	}
	if err := f.cache.SetLocalDir(p, true); err != nil {
		return err
	}
	f.ws.setDir(p, true)
	return nil
}

// Rmdir removes an empty folder.
func (f *FS) Rmdir(ctx context.Context, p string) error {
	if f.opt.ReadOnly {
		return errReadOnly
	}
	items, ok, err := f.ws.List(ctx, p)
	switch {
	case err != nil:
		return err
	case !ok:
		return syscall.ENOENT
	case len(items) > 0:
		return syscall.ENOTEMPTY
	}
	if err := f.cache.SetLocalDir(p, false); err != nil {
		return err
	}
	f.ws.setDir(p, false)
	f.ws.setPatch(p, nil, true)
	return nil
}

// Rename moves a file or a folder, over an existing target if need be.
func (f *FS) Rename(ctx context.Context, from, to string, src, dst Item, dstOK bool) error {
	if f.opt.ReadOnly {
		return errReadOnly
	}
	if err := checkName(to); err != nil {
		return err
	}
	if !src.Dir {
		if err := f.writableFor(ctx, to); err != nil {
			return err
		}
		return f.renameFile(ctx, from, to, src, dst, dstOK)
	}
	if to == from || strings.HasPrefix(to, from+"/") {
		return syscall.EINVAL
	}
	files, dirs, err := f.planDirRename(ctx, from, to)
	if err != nil {
		return err
	}
	if err := checkRenamed(from, to, files, dirs); err != nil {
		return err
	}
	if err := f.writable(ctx); err != nil {
		return err
	}
	return f.renameDir(ctx, from, to, files, dirs)
}

// dirMove is one file of a folder rename: its path before and after.
type dirMove struct {
	from, to string
	it       Item
}

// planDirRename lists the files under folder from (at any depth) with
// their paths under to, and the folders (to itself first).
func (f *FS) planDirRename(ctx context.Context, from, to string) (files []dirMove, dirs []string, err error) {
	dirs = append(dirs, to)
	items, _, err := f.ws.List(ctx, from)
	if err != nil {
		return nil, nil, err
	}
	for _, it := range items {
		src, dst := from+"/"+it.Name, to+"/"+it.Name
		if !it.Dir {
			files = append(files, dirMove{from: src, to: dst, it: it})
			continue
		}
		sf, sd, err := f.planDirRename(ctx, src, dst)
		if err != nil {
			return nil, nil, err
		}
		files, dirs = append(files, sf...), append(dirs, sd...)
	}
	return files, dirs, nil
}

// checkRenamed refuses a folder rename whose new paths the service would
// refuse (a path over 1024 bytes: ENAMETOOLONG), before anything moves: a
// refusal part-way would leave the folder split in two.
func checkRenamed(from, to string, files []dirMove, dirs []string) error {
	check := func(p string) error {
		err := checkName(p)
		var r *refusal
		if errors.As(err, &r) {
			return &refusal{errno: r.errno, code: r.code,
				why: fmt.Sprintf("moving /%s to /%s would put a file at /%s: %s", from, to, p, r.why)}
		}
		return err
	}
	for _, m := range files {
		if err := check(m.to); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		if err := check(d); err != nil {
			return err
		}
	}
	return nil
}

// renameDir moves every file of a folder (a copy and a delete each), one
// at a time, then its local folders. The service has no folder rename, so
// this is not atomic; a failure part-way is undone (undoDirRename).
func (f *FS) renameDir(ctx context.Context, from, to string, files []dirMove, dirs []string) error {
	toMarks, fromMarks := f.ws.localDirsUnder(to), f.ws.localDirsUnder(from)
	for i, m := range files {
		target, ok, err := f.ws.Stat(ctx, m.to)
		if err == nil {
			err = f.renameFile(ctx, m.from, m.to, m.it, target, ok)
		}
		if err != nil {
			f.undoDirRename(ctx, from, to, files[:i+1], toMarks, fromMarks)
			return fmt.Errorf("move /%s to /%s: %w", m.from, m.to, err)
		}
	}
	// The folders follow: those no file reached are kept as local folders
	// (an empty folder moves too); the old ones are gone.
	full := map[string]bool{}
	for _, m := range files {
		for d := parentPath(m.to); d != "" && !full[d]; d = parentPath(d) {
			full[d] = true
		}
	}
	for _, d := range dirs {
		if !full[d] {
			f.keepFolder(d)
		}
	}
	for _, m := range f.ws.localDirsUnder(from) {
		f.ws.setDir(m, false)
		if err := f.cache.SetLocalDir(m, false); err != nil {
			return err
		}
	}
	f.ws.setPatch(from, nil, true)
	return nil
}

// undoDirRename moves back what a folder rename that failed part-way had
// moved, newest first: a moved remote file is restored in place (its id
// and history come back) and its copy deleted; local content moves back;
// a copy whose original was not deleted yet is deleted. Folder marks the
// moves made at either end are dropped, so no empty folder is left behind,
// and those there before are kept (an empty target folder stays).
// A step the service refuses too is logged and left as the service has
// it. Then the snapshot is dropped and the kernel told to forget every
// name the rename touched: both folders show what the service holds, on
// the next access.
func (f *FS) undoDirRename(ctx context.Context, from, to string, moved []dirMove, toMarks, fromMarks []string) {
	ctx = context.WithoutCancel(ctx) // an interrupted rename is undone all the same
	names := []NameRef{{parentPath(from), baseName(from)}, {parentPath(to), baseName(to)}}
	for i := len(moved) - 1; i >= 0; i-- {
		m := moved[i]
		names = append(names, NameRef{parentPath(m.from), baseName(m.from)}, NameRef{parentPath(m.to), baseName(m.to)})
		at, there := f.ws.peek(m.to)
		_, left := f.ws.peek(m.from)
		if err := f.moveBack(ctx, m, at, there, left); err != nil {
			f.log.Error("rename failed part-way and a moved file could not be moved back; it stays where the service has it",
				"path", "/"+m.to, "from", "/"+m.from, "code", remote.ErrorCode(err), "err", err)
		}
	}
	keep := map[string]bool{}
	for _, d := range append(toMarks, fromMarks...) {
		keep[d] = true
	}
	for _, d := range append(f.ws.localDirsUnder(to), f.ws.localDirsUnder(from)...) {
		if !keep[d] {
			f.ws.setDir(d, false)
			if err := f.cache.SetLocalDir(d, false); err != nil {
				f.log.Warn("forget local folder failed", "path", "/"+d, "err", err)
			}
		}
	}
	for d := range keep {
		f.keepFolder(d) // an empty folder a file landed in meanwhile
	}
	f.ws.Invalidate()
	f.notify.enqueue(Change{Entries: names})
}

// moveBack undoes one file's move of a failed folder rename; at is what
// m.to holds (if there), left whether m.from still holds the original.
func (f *FS) moveBack(ctx context.Context, m dirMove, at Item, there, left bool) error {
	switch {
	case !there:
		return nil // it never got there
	case at.Local != nil:
		if left {
			return nil
		}
		return f.renameFile(ctx, m.to, m.from, at, Item{}, false)
	case at.Entry == nil:
		return nil
	}
	copyID := at.Entry.File.FileID
	if !left && m.it.Local == nil && m.it.Entry != nil {
		// The original was deleted: restore it, then drop the copy (in
		// that order: a failure keeps two, never none).
		r, err := f.files.RestoreFile(ctx, m.it.Entry.File.FileID)
		if err != nil {
			return fmt.Errorf("restore %s: %w", m.from, err)
		}
		f.mu.Lock()
		delete(f.deleted, m.it.Entry.File.FileID)
		f.mu.Unlock()
		if !r.Moved {
			f.ws.setPatch(m.from, m.it.Entry, false)
		}
		left = true
	}
	if !left {
		return nil // nothing to put back: leave the copy
	}
	if err := f.deleteFile(ctx, copyID); err != nil {
		return fmt.Errorf("delete the copy at %s: %w", m.to, err)
	}
	f.ws.setPatch(m.to, nil, false)
	return nil
}

// renameFile moves one file. Local content moves with its journal record
// (and, taking the target's file id, becomes a new version of the file it
// replaces); a remote version is copied on the store's side into a new
// version at the target, and the old file deleted once that is committed.
func (f *FS) renameFile(ctx context.Context, from, to string, src, dst Item, dstOK bool) error {
	var targetID, targetVersion string
	if dstOK && dst.Local == nil && dst.Entry != nil && !f.isLocalOnly(to) && f.sameBytes(ctx, src, dst.Entry) {
		return f.dropRenamed(ctx, from, to, src)
	}
	if dstOK {
		f.unpin(to)
		if l := dst.Local; l != nil {
			own, left := f.discard(to, l) // an upload in flight lands first
			targetVersion = f.localVersion(l)
			for i, id := range append(own, left...) {
				if id != "" && targetID == "" {
					targetID = id // the replaced content's file gets the new version
				} else if id != "" && id != targetID {
					// Older names of the replaced content: gone with it.
					del := f.deleteFile
					if i >= len(own) {
						del = f.deleteLeft
					}
					if err := del(ctx, id); err != nil {
						return fmt.Errorf("delete %s, replaced by %s: %w", id, from, err)
					}
				}
			}
		} else if dst.Entry != nil {
			targetID, targetVersion = dst.Entry.File.FileID, dst.Entry.File.VersionID
		}
	}
	if targetID == "" && !f.isLocalOnly(to) {
		// A file removed at the target moments ago (delete, then rename
		// a new copy onto its name): this becomes its new version.
		if w := f.claimDelete(to); w != nil {
			targetID, targetVersion = w.FileID, w.Version
		}
	}
	if l := src.Local; l != nil {
		return f.moveLocal(ctx, from, to, l, targetID, targetVersion)
	}
	if src.Entry == nil {
		return fmt.Errorf("rename %s: neither local content nor a remote version: %w", from, syscall.ENOENT)
	}
	if err := f.copyVersion(ctx, src.Entry, to, targetID, targetVersion); err != nil {
		return err
	}
	if err := f.deleteFile(ctx, src.Entry.File.FileID); err != nil {
		return fmt.Errorf("delete %s after copying it to %s: %w", from, to, err)
	}
	f.ws.setPatch(from, nil, false)
	f.keepFolder(parentPath(from))
	return nil
}

// discard drops local content that is removed or replaced: at once, or
// at its last close. It returns the remote files that stood for it, to be
// deleted or replaced by the caller: its own (the version it was committed
// as, the file it is a version of) and those left at the names it was
// renamed from (to delete with deleteLeft).
func (f *FS) discard(p string, l *Local) (ids, left []string) {
	l.mu.Lock() // an upload in progress finishes first
	f.wmu.Lock()
	if l.committed != nil {
		ids = append(ids, l.committed.File.FileID)
	}
	if l.d != nil {
		rec := l.d.Record()
		ids = append(ids, rec.FileID)
		left = append(left, rec.DeleteAfter...)
	}
	l.removed = true
	if l.eager != nil {
		l.eager.abandon()
		l.eager = nil
	}
	f.wmu.Unlock()
	l.mu.Unlock()
	f.ws.dropLocal(p, l)
	f.finish(l)
	return ids, left
}

// moveLocal moves local content from one path to another. Its remote
// identity at the old path is deleted once the content is committed at the
// new one (and hidden meanwhile).
func (f *FS) moveLocal(ctx context.Context, from, to string, l *Local, targetID, targetVersion string) error {
	l.mu.Lock() // an upload in progress finishes first
	f.wmu.Lock()
	live, committed := l.d != nil, l.committed
	f.wmu.Unlock()
	if !live {
		l.mu.Unlock()
		if committed == nil {
			return fmt.Errorf("rename %s: its content was dropped: %w", from, syscall.ENOENT)
		}
		// Finished meanwhile: it is a remote version now.
		return f.renameFile(ctx, from, to, Item{Entry: committed}, Item{}, false)
	}
	old := l.d.Record().FileID
	if committed != nil {
		old = committed.File.FileID
	}
	transient := f.isLocalOnly(to)
	err := l.d.Update(func(r *cache.Record) {
		r.Path = to
		if r.FileID != targetID {
			r.Expect = targetVersion
		}
		r.FileID = targetID
		if old != "" && old != targetID {
			r.DeleteAfter = append(r.DeleteAfter, old)
		}
		r.Upload = nil // a new upload, to the new place
		r.Local = transient
	})
	if err != nil {
		l.mu.Unlock()
		return err
	}
	f.wmu.Lock()
	if l.eager != nil {
		l.eager.abandon() // its version is for the old place
		l.eager = nil
	}
	l.path = to
	wasTransient := l.transient
	wasSaved := !l.dirty() // closed (saved) since its last write, if open at all
	l.transient = transient
	l.committed = nil
	if !transient && (wasTransient || old != targetID || targetID == "") {
		l.committedGen = -1 // it must be uploaded at its new place
	}
	// Saved content moves now (its handles may only wait for their
	// release); content still being written moves at its close.
	queue := l.dirty() && (l.opens == 0 || (wasSaved && !wasTransient))
	f.wmu.Unlock()
	l.mu.Unlock()
	if old != "" && old != targetID {
		f.ws.hideID(old, 1)
	}
	f.ws.setPatch(from, nil, false) // also over a version committed there before
	f.ws.moveLocal(from, to, l)
	// The old path is gone, including the version this content was
	// committed as there (a patch would show it until the next listing).
	f.ws.setPatch(from, nil, false)
	f.keepFolder(parentPath(from))
	if !queue {
		return nil // the last close uploads it
	}
	if f.opt.WriteBack == WriteBackAsync {
		f.up.later(l, f.opt.Debounce)
		return nil
	}
	if err := f.commit(ctx, l); err != nil {
		f.up.retryLater(l, err)
		return err
	}
	f.finish(l) // unless it is still open
	return nil
}

// uploadLink is a self-renewing link to an unfinished version.
func (f *FS) uploadLink(up *remote.UploadFileResponse) *remote.Link {
	return remote.NewLink(up.Upload, func(ctx context.Context) (string, error) {
		u, err := f.files.UpdateFile(ctx, up.FileID, up.VersionID)
		if err != nil {
			return "", fmt.Errorf("renew upload link: %w", err)
		}
		return u.Upload, nil
	})
}

// copyVersion makes version e the content of a new version at p (of
// targetID when it names the file there): Copy Blob on the store's side,
// or streamed through the cache where the store refuses.
func (f *FS) copyVersion(ctx context.Context, e *Entry, p, targetID, targetVersion string) error {
	var up *remote.UploadFileResponse
	var err error
	if targetID != "" && targetVersion != "" {
		// The target may have got a version elsewhere since this mount
		// listed it: then the copy goes beside it, as a conflict copy.
		theirs, conflict, err := f.checkConflict(ctx, cache.Record{Path: p, FileID: targetID, Expect: targetVersion}, nil)
		if err != nil {
			return err
		}
		switch {
		case conflict && theirs == nil:
			// Deleted elsewhere: nothing there to bury; the renamed file
			// lands at its name as a new file.
			targetID = ""
		case conflict:
			from := p
			p, targetID = f.conflictName(ctx, from), ""
			f.conflicted("the file changed elsewhere since this mount listed it; the renamed file is the copy", from, p, targetVersion, theirEntry(from, theirs))
		}
	}
	if targetID != "" {
		up, err = f.files.UpdateFile(ctx, targetID, "")
		if errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrGone) {
			up, err = nil, nil
		}
		if err != nil {
			return fmt.Errorf("new version of %s: %w", p, err)
		}
	}
	undo := func() {}
	if up == nil {
		if up, undo, err = f.upsert(ctx, p, true); err != nil {
			return fmt.Errorf("new version at %s: %w", p, err)
		}
	}
	dl, err := f.files.GetFile(ctx, e.File.FileID, remote.GetOptions{VersionID: e.File.VersionID})
	if err != nil {
		undo()
		return fmt.Errorf("read link of %s: %w", e.Path, err)
	}
	dst := f.uploadLink(up)
	err = f.blobs.Copy(ctx, dst, remote.DownloadLink(f.files, dl))
	if errors.Is(err, remote.ErrCopyUnsupported) {
		f.log.Debug("the store refused a server-side copy; streaming it", "from", "/"+e.Path, "to", "/"+p)
		src, key := f.baseFile(e.File.FileID, e.File.VersionID, e.File.Size)
		err = f.blobs.Upload(ctx, dst, ctxReaderAt{ctx, src}, e.File.Size, remote.UploadOptions{})
		src.Close()
		f.released(key)
	}
	if err != nil {
		undo()
		return fmt.Errorf("copy %s to %s: %w", e.Path, p, err)
	}
	f.claim(up.FileID)
	f.ws.setPatch(p, committedEntry(p, up.FileID, up.VersionID, e.File.Size), false)
	f.noteOurs(up.FileID, up.VersionID)
	f.landed(p)
	return nil
}

// ctxReaderAt is a cache.File as an io.ReaderAt.
type ctxReaderAt struct {
	ctx context.Context
	f   *cache.File
}

func (r ctxReaderAt) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(r.ctx, p, off) }
