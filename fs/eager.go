package fs

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/evofs/evofs/cache"
	"github.com/evofs/evofs/remote"
)

// Eager staging: a file written front to back (cp, GDAL writing a raster, a
// download) has its full blocks sent while it is still being written, as
// uncommitted blocks of the version its close will commit. Close then sends
// only what is left and the block list, so cp of a large file costs about
// one upload, not a write into the journal followed by an upload.
//
// A block is sent once the bytes before its end were all written in order
// from offset 0. A later write into a block already sent (or being sent)
// bumps the block's generation, and close sends it again: a block counts as
// staged only if its generation did not change while it was sent. The
// version is asked for at the first full block (upsert by path, or update
// by id); if the content ends up unchanged, renamed or removed, that
// version is never committed, and the store drops its blocks after a week.

const (
	eagerPerFile = 2 // blocks of one file in flight
	eagerSlots   = 8 // blocks of all files in flight (8 MiB buffers each)
)

// eager is the eager staging of one Local's content. Its goroutines never
// take Local.mu (close holds it while it waits for them).
type eager struct {
	f   *FS
	d   *cache.Dirty
	rec cache.Record // the record at the start: the version is made for its path and file id

	mu      sync.Mutex
	cond    *sync.Cond
	bs      int64
	seqEnd  int64            // GUARDED_BY(mu): [0, seqEnd) written in order
	next    int64            // GUARDED_BY(mu): offset of the next block to send
	gen     map[int64]uint64 // GUARDED_BY(mu): changes of each block handed out
	staged  map[int64]uint64 // GUARDED_BY(mu): block -> its generation when its send finished
	running int              // GUARDED_BY(mu)
	stopped bool             // GUARDED_BY(mu)
	failed  bool             // GUARDED_BY(mu): a send failed: close does the rest
	up      *remote.UploadFileResponse
	link    *remote.Link
	ctx     context.Context
	cancel  context.CancelFunc

	targetMu sync.Mutex // serializes ensureTarget
}

// noteWrite tells the eager stager of l about a write of [off, end) and
// starts sends of blocks that are complete now.
//
// LOCKS_REQUIRED(l.mu)
func (f *FS) noteWrite(l *Local, off, end int64) {
	if f.opt.NoEager {
		return
	}
	f.wmu.Lock()
	e, d, skip := l.eager, l.d, l.transient || l.removed || l.d == nil
	if e == nil && !skip && off == 0 {
		e = newEager(f, d)
		l.eager = e
	}
	f.wmu.Unlock()
	if e == nil || skip {
		return
	}
	e.note(off, end)
}

// noteTruncate: bytes past size changed.
//
// LOCKS_REQUIRED(l.mu)
func (f *FS) noteTruncate(l *Local, size int64) {
	f.wmu.Lock()
	e := l.eager
	f.wmu.Unlock()
	if e != nil {
		e.note(size, 1<<62)
	}
}

func newEager(f *FS, d *cache.Dirty) *eager {
	e := &eager{f: f, d: d, rec: d.Record(), bs: f.uploadBlockSize(), gen: map[int64]uint64{}, staged: map[int64]uint64{}}
	e.cond = sync.NewCond(&e.mu)
	e.ctx, e.cancel = context.WithCancel(f.up.ctx)
	return e
}

func (e *eager) note(off, end int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for b := off / e.bs * e.bs; b < end && b < e.next; b += e.bs {
		e.gen[b]++ // sent, or being sent, with older bytes
	}
	if off < e.seqEnd {
		// A rewrite of what was written in order: send those blocks again
		// at close; go on with the rest.
		e.seqEnd = max(e.seqEnd, end)
	} else if off == e.seqEnd {
		e.seqEnd = end
	}
	e.startLocked()
}

// startLocked starts sends of complete blocks within the limits.
//
// LOCKS_REQUIRED(e.mu)
func (e *eager) startLocked() {
	for !e.stopped && !e.failed && e.running < eagerPerFile && e.next+e.bs <= e.seqEnd {
		select {
		case e.f.eagerSlots <- struct{}{}:
		default:
			return // all slots busy: the next write tries again
		}
		off := e.next
		e.next += e.bs
		e.running++
		g := e.gen[off]
		go e.send(off, g)
	}
}

// send stages the block at off, recording it if its bytes did not change
// meanwhile.
func (e *eager) send(off int64, g uint64) {
	defer func() { <-e.f.eagerSlots }()
	err := e.sendBlock(off)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.running--
	if err != nil {
		if e.ctx.Err() == nil {
			e.f.log.Debug("sending a block ahead failed; close sends it", "path", "/"+e.rec.Path, "offset", off, "err", err)
		}
		e.failed = true
	} else if e.gen[off] == g {
		e.staged[off] = g
	}
	e.startLocked()
	e.cond.Broadcast()
}

func (e *eager) sendBlock(off int64) error {
	if err := e.ensureTarget(); err != nil {
		return err
	}
	buf := make([]byte, e.bs)
	n, err := e.d.ReadAt(e.ctx, buf, off)
	if int64(n) != e.bs {
		return fmt.Errorf("read block at %d: %d bytes: %w", off, n, err)
	}
	return e.f.blobs.StageBlock(e.ctx, e.link, off, bytes.NewReader(buf), e.bs)
}

// ensureTarget asks for the version the sends go to, once.
func (e *eager) ensureTarget() error {
	e.targetMu.Lock()
	defer e.targetMu.Unlock()
	if e.link != nil {
		return nil
	}
	// Not a file left at this path to be deleted: this content may yet
	// be renamed or removed before close, and would leave it claimed by
	// nothing. Close asks (and claims) then.
	up, err := e.f.newVersion(e.ctx, e.rec, false)
	if err != nil {
		return err
	}
	e.up, e.link = up, e.f.uploadLink(up)
	// Journal the version, so that a crash before close does not leave a
	// second version behind: the next try uses this one. Only while the
	// content is still for this path and file (a rename starts afresh).
	err = e.d.Update(func(r *cache.Record) {
		if r.Path == e.rec.Path && r.FileID == e.rec.FileID && r.Upload == nil && e.ctx.Err() == nil {
			r.FileID = up.FileID
			r.Upload = &cache.Upload{FileID: up.FileID, VersionID: up.VersionID}
		}
	})
	if err != nil {
		e.f.log.Warn("journal the version of a file being written failed", "path", "/"+e.rec.Path, "err", err)
	}
	return nil
}

// stop ends sending and waits for sends in flight. It returns the version
// (nil if it is not for rec's path and file) and the blocks staged with
// their current bytes.
func (e *eager) stop(rec cache.Record, size int64) (*remote.UploadFileResponse, map[int64]bool) {
	e.mu.Lock()
	e.stopped = true
	for e.running > 0 {
		e.cond.Wait()
	}
	defer e.mu.Unlock()
	e.targetMu.Lock()
	defer e.targetMu.Unlock()
	if e.up == nil || rec.Path != e.rec.Path || (rec.FileID != e.rec.FileID && rec.FileID != e.up.FileID) {
		return nil, nil
	}
	staged := map[int64]bool{}
	if size <= e.f.blobs.SingleShotMax() || e.f.blobs.BlockSize(size) != e.bs {
		return e.up, staged // one Put Blob, or other blocks: the version still serves
	}
	for off, g := range e.staged {
		if e.gen[off] == g && off+e.bs <= size {
			staged[off] = true
		}
	}
	return e.up, staged
}

// abandon stops sending for content that will not be committed as this
// version (removed or moved).
func (e *eager) abandon() {
	e.cancel()
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
}

// uploadBlockSize is the block size of uploads of ordinary sizes.
func (f *FS) uploadBlockSize() int64 { return f.blobs.BlockSize(0) }
