package fs

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/evofs/evofs/cache"
	"github.com/evofs/evofs/remote"
)

const (
	uploadWorkers = 4
	retryMin      = time.Second
	retryMax      = time.Minute
)

// uploader runs the uploads that close does not wait for: every upload in
// async mode, retries of failed ones, and those the journal held at start.
type uploader struct {
	f      *FS
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []*Local       // GUARDED_BY(mu)
	queued map[*Local]int // GUARDED_BY(mu): in queue or waiting for a retry
	// running holds the uploads in progress, true when one was asked for
	// again meanwhile: it runs again after this one (never on a second
	// worker, which would only wait for the first one's lock).
	running map[*Local]bool // GUARDED_BY(mu)
	busy    int             // GUARDED_BY(mu): uploads running
	started bool            // GUARDED_BY(mu)
	stopped bool            // GUARDED_BY(mu)
	timers  map[*Local]*time.Timer
}

func newUploader(f *FS) *uploader {
	u := &uploader{f: f, queued: map[*Local]int{}, running: map[*Local]bool{}, timers: map[*Local]*time.Timer{}}
	u.cond = sync.NewCond(&u.mu)
	u.ctx, u.cancel = context.WithCancel(context.Background())
	return u
}

func (u *uploader) start() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.started {
		return
	}
	u.started = true
	for range uploadWorkers {
		u.wg.Add(1)
		go u.work()
	}
}

// enqueue queues an upload of l (once, however often it is asked).
func (u *uploader) enqueue(l *Local) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.enqueueLocked(l)
}

// LOCKS_REQUIRED(u.mu)
func (u *uploader) enqueueLocked(l *Local) {
	if u.stopped {
		return
	}
	if t := u.timers[l]; t != nil {
		t.Stop()
		delete(u.timers, l)
	}
	if _, ok := u.running[l]; ok {
		u.running[l] = true
		return
	}
	if u.queued[l] == 1 {
		return
	}
	u.queued[l] = 1
	u.queue = append(u.queue, l)
	u.cond.Signal()
}

// retryLater schedules another try of a failed upload with backoff.
func (u *uploader) retryLater(l *Local, err error) {
	f := u.f
	f.wmu.Lock()
	l.failures++
	n := l.failures
	l.lastErr = remote.Redact(err.Error())
	f.wmu.Unlock()
	if errors.Is(err, context.Canceled) && u.ctx.Err() != nil {
		return // stopping: the journal keeps it
	}
	if errors.Is(err, cache.ErrUnstored) {
		return // only a write or truncate can fix it; the next close tries again
	}
	wait := min(retryMin<<min(n-1, 10), retryMax)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped || u.queued[l] == 1 {
		return
	}
	u.queued[l] = 2
	if t := u.timers[l]; t != nil {
		t.Stop()
	}
	u.timers[l] = time.AfterFunc(wait, func() {
		u.mu.Lock()
		delete(u.timers, l)
		if u.queued[l] == 2 {
			delete(u.queued, l)
		}
		u.mu.Unlock()
		u.enqueue(l)
	})
}

func (u *uploader) work() {
	defer u.wg.Done()
	for {
		u.mu.Lock()
		for len(u.queue) == 0 && !u.stopped {
			u.cond.Wait()
		}
		if u.stopped {
			u.mu.Unlock()
			return
		}
		l := u.queue[0]
		u.queue = u.queue[1:]
		delete(u.queued, l)
		u.running[l] = false
		u.busy++
		u.mu.Unlock()

		u.run(l)

		u.mu.Lock()
		again := u.running[l]
		delete(u.running, l)
		if again {
			u.enqueueLocked(l)
		}
		u.busy--
		u.cond.Broadcast()
		u.mu.Unlock()
	}
}

// run uploads l once; a failure is logged (one line) and retried later.
func (u *uploader) run(l *Local) {
	f := u.f
	f.wmu.Lock()
	p, opens, failures := l.path, l.opens, l.failures
	f.wmu.Unlock()
	err := f.commit(u.ctx, l)
	if err != nil {
		if u.ctx.Err() == nil && failures == 0 {
			errno(f.log, "upload", "/"+p, err)
		}
		u.retryLater(l, err)
		return
	}
	if opens == 0 {
		f.finish(l)
	}
}

// idle waits until nothing is queued or running, or ctx ends.
func (u *uploader) idle(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		u.mu.Lock()
		u.cond.Broadcast()
		u.mu.Unlock()
	})
	defer stop()
	u.mu.Lock()
	defer u.mu.Unlock()
	for len(u.queue) > 0 || u.busy > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		u.cond.Wait()
	}
	return nil
}

// stop cancels uploads in progress (their journal keeps their progress)
// and waits for the workers.
func (u *uploader) stop() {
	u.mu.Lock()
	u.stopped = true
	for l, t := range u.timers {
		t.Stop()
		delete(u.timers, l)
	}
	u.cond.Broadcast()
	u.mu.Unlock()
	u.cancel()
	u.wg.Wait()
}

// recover loads the journal of an earlier run: local folders, transient
// files, and content whose upload had not finished (queued again).
func (f *FS) recover() error {
	dirs, err := f.cache.LocalDirs()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		f.ws.setDir(d, true)
	}
	recs, err := f.cache.Journal()
	if err != nil {
		return err
	}
	for _, rec := range recs {
		l := &Local{ino: localIno(), path: rec.Path, transient: rec.Local, committedGen: -1, mtime: time.Now()}
		var br cache.BaseReader
		if rec.BaseVersion != "" {
			l.base, l.baseKey = f.baseFile(rec.BaseFileID, rec.BaseVersion, rec.BaseSize)
			br = l.base
		}
		d, err := f.cache.OpenDirty(rec, br)
		if err != nil {
			f.releaseBase(l)
			return err
		}
		l.d = d
		f.ws.addLocal(l)
		for _, id := range rec.DeleteAfter {
			f.ws.hideID(id, 1)
		}
		if !rec.Local {
			f.log.Info("resuming an upload left by the last run", "path", "/"+rec.Path, "size", d.Size())
			f.up.enqueue(l)
		}
	}
	return nil
}

// Shutdown runs after the kernel unmounted the folder (go-fuse does not
// pass DESTROY on): in sync mode it uploads what is still pending, for at
// most ctx; in async mode, and for whatever is left, the journal keeps it
// for the next mount. It reports how many uploads are left.
func (f *FS) Shutdown(ctx context.Context) int {
	if f.opt.WriteBack == WriteBackSync {
		f.wmu.Lock()
		var dirty []*Local
		for _, l := range f.allLocals() {
			if l.dirty() {
				dirty = append(dirty, l)
			}
		}
		f.wmu.Unlock()
		for _, l := range dirty {
			f.up.enqueue(l)
		}
		if err := f.up.idle(ctx); err != nil {
			f.log.Warn("unmount: uploads still pending; the next mount with this cache finishes them", "err", err)
		}
	}
	f.up.stop()
	if err := f.cache.Sync(); err != nil {
		f.log.Error("unmount: sync the cache failed", "err", err)
	}
	left := len(f.Pending())
	if left > 0 {
		f.log.Info("unmount: uploads left in the journal for the next mount", "count", left)
	}
	return left
}

// allLocals lists the overlay's local files.
func (f *FS) allLocals() []*Local {
	f.ws.mu.Lock()
	defer f.ws.mu.Unlock()
	out := make([]*Local, 0, len(f.ws.ov.locals))
	for _, l := range f.ws.ov.locals {
		out = append(out, l)
	}
	return out
}

// PendingUpload is one entry of `evofs status`.
type PendingUpload struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	Staged    int64  `json:"staged_bytes"`
	Uploading bool   `json:"uploading"`
	Open      bool   `json:"open"`
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// Pending lists content not yet committed, by path.
func (f *FS) Pending() []PendingUpload {
	locals := f.allLocals()
	f.wmu.Lock()
	out := []PendingUpload{} // "pending": [] in JSON when none
	for _, l := range locals {
		if !l.dirty() {
			continue
		}
		out = append(out, PendingUpload{Path: "/" + l.path, Size: l.d.Size(), Staged: l.staged,
			Uploading: l.uploading, Open: l.opens > 0, Failures: l.failures, LastError: l.lastErr})
	}
	f.wmu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// statusJSON is the value of the root's status attribute.
func (f *FS) statusJSON() []byte {
	mode := "sync"
	if f.opt.WriteBack == WriteBackAsync {
		mode = "async"
	}
	b, _ := json.Marshal(struct {
		WriteBack string          `json:"write_back"`
		Pending   []PendingUpload `json:"pending"`
	}{mode, f.Pending()})
	return b
}
