package fs

// Deferred deletes. GDAL and QGIS often save a file by unlinking it and
// creating it again, or by deleting it and renaming a freshly written copy
// onto its name (a shapefile repack). Deleting the remote file at once would
// send it, with all its versions, to the trash and give the path a new file
// id. So an unlink of a remote file hides it at once and deletes it only
// after a short grace, kept in the journal; a file created or renamed at its
// path meanwhile takes it over, and becomes a new version of it.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/evofs/evofs/cache"
	"github.com/evofs/evofs/remote"
)

// DefaultDeleteGrace is how long a removed remote file waits before its
// delete (Options.DeleteGrace).
const DefaultDeleteGrace = 5 * time.Second

// waitingDelete is a delete in its grace period.
type waitingDelete struct {
	d     cache.Delete
	timer *time.Timer
	tries int
}

// deferDelete hides the remote file id (removed from path p, whose latest
// known version is version) and deletes it once the grace ends, unless
// new content at p claims it first.
func (f *FS) deferDelete(id, p, version string) error {
	d := cache.Delete{FileID: id, Path: p, Version: version, At: time.Now()}
	if err := f.cache.PutDelete(d); err != nil {
		return err
	}
	f.ws.hideID(id, 1)
	f.schedule(d, f.opt.DeleteGrace, 0)
	return nil
}

// schedule arms the timer of a waiting delete.
func (f *FS) schedule(d cache.Delete, after time.Duration, tries int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.waiting == nil {
		f.waiting = map[string]*waitingDelete{}
	}
	if old := f.waiting[d.FileID]; old != nil && old.timer != nil {
		old.timer.Stop()
	}
	w := &waitingDelete{d: d, tries: tries}
	if !f.closing {
		w.timer = time.AfterFunc(after, func() { f.carryOut(f.up.ctx, d.FileID) })
	}
	f.waiting[d.FileID] = w
}

// claimDelete takes over the file waiting to be deleted at p, if any: the
// content being saved there becomes a new version of it.
func (f *FS) claimDelete(p string) *cache.Delete {
	f.mu.Lock()
	var w *waitingDelete
	for _, x := range f.waiting {
		if x.d.Path == p {
			w = x
			break
		}
	}
	if w != nil {
		if w.timer != nil {
			w.timer.Stop()
		}
		delete(f.waiting, w.d.FileID)
	}
	f.mu.Unlock()
	if w == nil {
		return nil
	}
	f.ws.hideID(w.d.FileID, -1)
	if err := f.cache.DropDelete(w.d.FileID); err != nil {
		f.log.Warn("journal a claimed delete failed", "path", "/"+p, "file_id", w.d.FileID, "err", err)
	}
	f.log.Debug("a removed file is saved again at its path: a new version of it", "path", "/"+p, "file_id", w.d.FileID)
	return &w.d
}

// carryOut deletes a file whose grace ended (unless claimed meanwhile);
// a failure is retried with backoff, and the journal keeps it.
//
// A file that got a version elsewhere since it was removed here is not
// deleted: the other save wins, as a conflict copy does for content (one
// GET before the DELETE; the API has no conditional delete, so the window
// left is that round trip).
func (f *FS) carryOut(ctx context.Context, id string) {
	f.mu.Lock()
	w := f.waiting[id]
	f.mu.Unlock()
	if w == nil {
		return // claimed
	}
	err := f.checkDelete(ctx, w)
	if err == nil {
		f.claimMu.Lock() // an upsert at the path names this file, or not, as one step
		f.mu.Lock()
		w = f.waiting[id]
		f.mu.Unlock()
		if w == nil {
			f.claimMu.Unlock()
			return // claimed
		}
		err = f.deleteFile(ctx, id)
		f.claimMu.Unlock()
	}
	if errors.Is(err, errSavedElsewhere) {
		f.keepRemoved(w, err)
		return
	}
	if err != nil {
		if ctx.Err() != nil {
			return // stopping: the journal keeps it
		}
		if w.tries == 0 {
			errno(f.log, "delete", "/"+w.d.Path, err)
		}
		f.schedule(w.d, min(retryMin<<min(w.tries, 10), retryMax), w.tries+1)
		return
	}
	f.mu.Lock()
	if f.waiting[id] == w {
		delete(f.waiting, id)
	}
	f.mu.Unlock()
	if err := f.cache.DropDelete(id); err != nil {
		f.log.Warn("journal a carried out delete failed", "path", "/"+w.d.Path, "file_id", id, "err", err)
	}
	// Hidden until a listing started after the delete no longer has it.
	if it, ok := f.ws.peek(w.d.Path); !ok || (it.Entry != nil && it.Entry.File.FileID == id) {
		f.ws.setPatch(w.d.Path, nil, false)
	}
	f.ws.hideID(id, -1)
	f.log.Info("deleted", "path", "/"+w.d.Path, "file_id", id, "waited", time.Since(w.d.At).Round(time.Millisecond))
}

// errSavedElsewhere: a removed file got a version elsewhere meanwhile.
var errSavedElsewhere = errors.New("saved elsewhere since it was removed here")

// checkDelete asks the service whether the file is still at the version it
// had when it was removed here.
func (f *FS) checkDelete(ctx context.Context, w *waitingDelete) error {
	if w.d.Version == "" {
		return nil
	}
	d, err := f.files.GetFile(ctx, w.d.FileID, remote.GetOptions{})
	switch {
	case errors.Is(err, remote.ErrNotFound), errors.Is(err, remote.ErrGone):
		return nil // deleted already: the DELETE says so too
	case err != nil:
		return fmt.Errorf("check %s before deleting it: %w", w.d.Path, err)
	case d.VersionID != w.d.Version && !f.isOurs(w.d.FileID, d.VersionID):
		return fmt.Errorf("%w (version %s, removed at %s)", errSavedElsewhere, d.VersionID, w.d.Version)
	}
	return nil
}

// noteOurs records the latest version this mount made of a file: a later
// check that finds it there knows it is not another client's save.
func (f *FS) noteOurs(fileID, versionID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ours == nil {
		f.ours = map[string]string{}
	}
	f.ours[fileID] = versionID
}

func (f *FS) isOurs(fileID, versionID string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ours[fileID] == versionID
}

// keepRemoved gives up a delete because another save came first: the file
// shows again (at its path as the service lists it) from the next sweep.
func (f *FS) keepRemoved(w *waitingDelete, why error) {
	f.mu.Lock()
	if f.waiting[w.d.FileID] == w {
		delete(f.waiting, w.d.FileID)
	}
	f.mu.Unlock()
	if err := f.cache.DropDelete(w.d.FileID); err != nil {
		f.log.Warn("journal a given-up delete failed", "path", "/"+w.d.Path, "file_id", w.d.FileID, "err", err)
	}
	f.ws.hideID(w.d.FileID, -1)
	f.ws.Invalidate()
	f.log.Warn("not deleted: the file was saved elsewhere after it was removed here; it shows again",
		"path", "/"+w.d.Path, "file_id", w.d.FileID, "why", why)
}

// flushDeletes carries out every waiting delete now (unmount), for at most
// ctx; what is left stays in the journal for the next mount.
func (f *FS) flushDeletes(ctx context.Context) {
	f.mu.Lock()
	f.closing = true
	var ids []string
	for id, w := range f.waiting {
		if w.timer != nil {
			w.timer.Stop()
		}
		ids = append(ids, id)
	}
	f.mu.Unlock()
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		w := f.waiting[id]
		if w != nil {
			w.tries = 1 // already logged, or not worth a line at unmount
		}
		f.mu.Unlock()
		f.carryOut(ctx, id)
	}
}

// recoverDeletes schedules the deletes an earlier run left waiting, with a
// fresh grace (the content that could claim them is in the journal too).
func (f *FS) recoverDeletes() error {
	ds, err := f.cache.Deletes()
	if err != nil {
		return err
	}
	for _, d := range ds {
		f.ws.hideID(d.FileID, 1)
		f.schedule(d, f.opt.DeleteGrace, 0)
	}
	return nil
}
