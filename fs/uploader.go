package fs

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
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
	// since is when the first save of a debounced burst came.
	since map[*Local]time.Time // GUARDED_BY(mu)
}

// maxDebounce bounds how long saves that keep coming postpone an upload.
const maxDebounce = 30 * time.Second

func newUploader(f *FS) *uploader {
	u := &uploader{f: f, queued: map[*Local]int{}, running: map[*Local]bool{}, timers: map[*Local]*time.Timer{},
		since: map[*Local]time.Time{}}
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

// later queues an upload of l once wait has passed without another save
// of it (a debounce, as sync clients do): saves that follow each other
// closely make one version of the latest content, and a file renamed or
// removed meanwhile is uploaded at its last name, or not at all.
func (u *uploader) later(l *Local, wait time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped || u.queued[l] == 1 {
		return // queued already: it uploads the latest content
	}
	now := time.Now()
	first, ok := u.since[l]
	if !ok {
		first = now
		u.since[l] = now
	}
	if wait <= 0 || now.Sub(first) >= maxDebounce {
		u.enqueueLocked(l)
		return
	}
	if t := u.timers[l]; t != nil {
		t.Stop()
	}
	u.queued[l] = 2
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		u.mu.Lock() // held by later until t is recorded
		if u.timers[l] != t {
			u.mu.Unlock()
			return // superseded
		}
		delete(u.timers, l)
		if u.queued[l] == 2 {
			delete(u.queued, l)
		}
		u.enqueueLocked(l)
		u.mu.Unlock()
	})
	u.timers[l] = t
}

// retryNow starts every upload waiting out a retry's backoff: the
// service answers again.
func (u *uploader) retryNow() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for l := range u.timers {
		if u.queued[l] == 2 {
			delete(u.queued, l)
			u.enqueueLocked(l)
		}
	}
}

// LOCKS_REQUIRED(u.mu)
func (u *uploader) enqueueLocked(l *Local) {
	if u.stopped {
		return
	}
	delete(u.since, l)
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
	if err := f.recoverDeletes(); err != nil {
		return err
	}
	recs, err := f.cache.Journal()
	if err != nil {
		return err
	}
	var wals []string
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
		if rec.Committed != "" && rec.CommittedGen == rec.Gen && rec.FileID != "" {
			// Committed before the crash and not changed since: nothing
			// to upload, nothing to keep (no handle is open on it now).
			l.committedGen = int64(rec.Gen)
			l.committed = committedEntry(rec.Path, rec.FileID, rec.Committed, d.Size())
			f.log.Debug("dropping content the last run had committed", "path", "/"+rec.Path, "version_id", rec.Committed)
			f.finish(l)
			continue
		}
		f.ws.addLocal(l)
		for _, id := range rec.DeleteAfter {
			f.ws.hideID(id, 1)
		}
		if !rec.Local {
			f.log.Info("resuming an upload left by the last run", "path", "/"+rec.Path, "size", d.Size())
			f.up.enqueue(l)
		} else if db, ok := sideOf(rec.Path); ok && strings.HasSuffix(rec.Path, "-wal") && d.Size() > walHeaderSize {
			wals = append(wals, db)
		}
	}
	if len(wals) > 0 {
		// Committed transactions a crash left in a WAL: checkpointed
		// once the mount has a listing, unless a program opens the
		// database first (then at its last close).
		go func() {
			ctx := f.up.ctx
			if _, err := f.ws.Snapshot(ctx); err != nil {
				f.log.Warn("list the workspace for the WALs the last run left failed; they are checkpointed at their database's next close", "err", err)
				return
			}
			for _, db := range wals {
				f.familyClosed(ctx, f.familyOpened(db))
			}
		}()
	}
	return nil
}

// Shutdown runs after the kernel unmounted the folder (go-fuse does not
// pass DESTROY on): in sync mode it uploads what is still pending, for at
// most ctx; in async mode, and for whatever is left, the journal keeps it
// for the next mount. It reports how many uploads are left.
func (f *FS) Shutdown(ctx context.Context) int {
	if f.opt.WriteBack == WriteBackSync {
		f.uploadPending(ctx)
	}
	f.flushDeletes(ctx)
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

// uploadPending uploads every pending local content, for at most ctx: it
// retries while the service is away or a round made progress, and leaves
// to the journal what the service keeps refusing.
func (f *FS) uploadPending(ctx context.Context) {
	dirty := func() []*Local {
		f.wmu.Lock()
		defer f.wmu.Unlock()
		var out []*Local
		for _, l := range f.allLocals() {
			if l.dirty() {
				out = append(out, l)
			}
		}
		return out
	}
	wait := time.Second
	for left := dirty(); len(left) > 0; {
		for _, l := range left {
			f.up.enqueue(l)
		}
		if err := f.up.idle(ctx); err != nil {
			f.log.Warn("unmount: uploads still pending; the next mount with this cache finishes them", "err", err)
			return
		}
		now := dirty()
		if len(now) == 0 {
			return
		}
		if len(now) >= len(left) && !f.opt.Health.Down() {
			f.log.Warn("unmount: the service refuses some uploads; the next mount with this cache tries them again", "count", len(now))
			return
		}
		left = now
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.log.Warn("unmount: uploads still pending; the next mount with this cache finishes them", "err", ctx.Err())
			return
		case <-t.C:
		}
		wait = min(2*wait, 30*time.Second)
	}
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
	// Checkpoint: a database's WAL, which may hold committed transactions;
	// they go into the database at its last close (sqlite.go).
	Checkpoint bool `json:"checkpoint,omitempty"`
}

// Pending lists content not yet committed, by path.
func (f *FS) Pending() []PendingUpload {
	locals := f.allLocals()
	for _, l := range locals {
		f.refresh(l)
	}
	f.wmu.Lock()
	out := []PendingUpload{} // "pending": [] in JSON when none
	for _, l := range locals {
		if l.transient && !l.removed && l.d != nil && strings.HasSuffix(l.path, "-wal") && l.d.Size() > walHeaderSize {
			out = append(out, PendingUpload{Path: "/" + l.path, Size: l.d.Size(), Open: l.opens > 0, Checkpoint: true})
			continue
		}
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

// Settled reports whether the mount has nothing left to do: no handle
// open (its release may still be on its way from the kernel, and the last
// one of a database checkpoints it), no upload pending, no delete waiting.
func (f *FS) Settled() bool {
	f.mu.Lock()
	busy := len(f.families) > 0 || len(f.waiting) > 0
	f.mu.Unlock()
	return !busy && len(f.Pending()) == 0
}

// statusJSON is the value of the root's status attribute.
// statusXattrMax bounds StatusXattr's value, under the kernel's 64 KiB.
const statusXattrMax = 60 << 10

func (f *FS) statusJSON() []byte {
	mode := "sync"
	if f.opt.WriteBack == WriteBackAsync {
		mode = "async"
	}
	var away string // since when the service does not answer
	if t := f.opt.Health.DownSince(); !t.IsZero() {
		away = t.UTC().Format(time.RFC3339)
	}
	pending, conflicts := f.Pending(), f.Conflicts()
	type status struct {
		WriteBack        string          `json:"write_back"`
		UnreachableSince string          `json:"unreachable_since,omitempty"`
		PendingTotal     int             `json:"pending_total"`
		Pending          []PendingUpload `json:"pending"`
		Conflicts        []Conflict      `json:"conflicts,omitempty"`
	}
	st := status{mode, away, len(pending), pending, conflicts}
	b, _ := json.Marshal(st)
	// An extended attribute holds at most 64 KiB (XATTR_SIZE_MAX): past
	// that the kernel answers E2BIG. Hundreds of pending uploads are
	// shown by the first ones that fit; pending_total counts them all.
	for len(b) > statusXattrMax && len(st.Pending) > 0 {
		st.Pending = st.Pending[:len(st.Pending)*statusXattrMax/len(b)*9/10]
		b, _ = json.Marshal(st)
	}
	for len(b) > statusXattrMax && len(st.Conflicts) > 0 {
		st.Conflicts = st.Conflicts[:len(st.Conflicts)/2]
		b, _ = json.Marshal(st)
	}
	return b
}
