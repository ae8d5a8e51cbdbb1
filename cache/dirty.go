package cache

// Dirty data and the upload journal: what a file being written holds that
// no remote version has yet. See the package doc, "Dirty data".

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// PageSize is the unit in which a content file is known to hold the
// content (Record.Filled). A write that covers part of a page not filled
// yet first copies the page's current content (the base version's bytes,
// or zeros) into the file; a page once filled takes writes as they come.
// 256 KiB: a small write into a big base fetches little of it, and Filled
// stays short.
const PageSize = 256 << 10

// contentFormat is Record.Format of content kept in a content file.
// Records of format 0 (before content files) keep their pages in Badger
// under pagePrefix until OpenDirty moves them into one.
const contentFormat = 1

var (
	journalPrefix = []byte{'j'}
	pagePrefix    = []byte{'d'} // format 0 only
	dirPrefix     = []byte{'l'}
	deletePrefix  = []byte{'x'}
)

// Record is a dirty file's journal entry: everything needed to serve its
// content and finish its upload after a crash. The cache keeps it; the
// caller owns the meaning of Upload, Pending, Local and DeleteAfter.
type Record struct {
	ID          uint64 `json:"-"`
	Path        string `json:"path"`                   // workspace path, no leading slash
	FileID      string `json:"file_id,omitempty"`      // the remote file this becomes a version of; "" for a new file
	BaseFileID  string `json:"base_file_id,omitempty"` // the file whose version the unwritten bytes come from
	BaseVersion string `json:"base_version,omitempty"` // the version the unwritten bytes come from; "" for none
	BaseSize    int64  `json:"base_size"`
	// BaseLimit is where the base stops showing through: truncations
	// lower it, and bytes at or past it that no write covered read as
	// zeros. INVARIANT: BaseLimit <= min(BaseSize, Size).
	BaseLimit int64 `json:"base_limit"`
	Size      int64 `json:"size"`
	// Gen counts changes of the content: every write and truncate.
	Gen uint64 `json:"gen"`

	// Format is how the content is kept: 1, in a content file; 0, a
	// record written before content files, whose pages are in Badger
	// until OpenDirty moves them into one.
	Format int `json:"format,omitempty"`
	// Filled lists the pages of the content file that hold the content,
	// as sorted, disjoint runs [from, to) of page indexes. A page not in
	// it reads from the base under BaseLimit, and as zeros past it.
	// INVARIANT: every filled page starts before Size.
	Filled [][2]int64 `json:"filled,omitempty"`
	// Direct: the content file was handed out to be written directly
	// (Dirty.File), so it is the whole content, and Refresh adopts its
	// size.
	Direct bool `json:"direct,omitempty"`
	// Boot is the machine's boot id when the content last changed, ""
	// once it has been synced since (Dirty.Sync, Cache.Sync). Content
	// reopened under another boot went through a restart of the machine
	// unsynced: its file may lack bytes the record claims, so it is
	// marked unstored.
	Boot string `json:"boot,omitempty"`

	// Expect is the version of FileID this content replaces: the latest
	// one known when the content took the file over (its base, the
	// target a rename replaced, its own last commit). A commit that finds
	// another latest version is a conflict.
	Expect string `json:"expect,omitempty"`
	// Committed is the version this content was last committed as, and
	// CommittedGen the generation it had then: after a crash, content
	// still at that generation is not uploaded again.
	Committed    string `json:"committed,omitempty"`
	CommittedGen uint64 `json:"committed_gen,omitempty"`

	// DBFileID and DBVersion name the database version a SQLite side
	// file ("X-wal") belongs to: its frames are only ever applied to that
	// version (or to local content of it, DBLocal: its journal id).
	DBFileID  string `json:"db_file_id,omitempty"`
	DBVersion string `json:"db_version,omitempty"`
	DBLocal   uint64 `json:"db_local,omitempty"`

	Local       bool     `json:"local,omitempty"`        // never uploaded (transient side files)
	Pending     bool     `json:"pending,omitempty"`      // closed, waiting for its upload
	DeleteAfter []string `json:"delete_after,omitempty"` // file ids to delete once this content is committed
	Upload      *Upload  `json:"upload,omitempty"`
	// Unstored is the range of a write that failed (see Dirty.Unstored);
	// nil when every write was stored.
	Unstored *Span `json:"unstored,omitempty"`
}

// keepContent sets the content fields of r (those only Dirty changes) to
// those of from.
func (r *Record) keepContent(from Record) {
	r.ID, r.Size, r.BaseLimit, r.Gen, r.Unstored = from.ID, from.Size, from.BaseLimit, from.Gen, from.Unstored
	r.Format, r.Filled, r.Direct, r.Boot = from.Format, from.Filled, from.Direct, from.Boot
}

// Span is a byte range [From, To).
type Span struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// ErrUnstored: a write to the content failed, so the content lacks bytes
// the application meant it to have (see Dirty.Unstored).
var ErrUnstored = errors.New("a write to this file failed; it is not saved until that range is written again or truncated away")

// errRestarted is why content reopened under another boot is unstored.
var errRestarted = errors.New("the machine restarted before this content was synced, so its file may lack written bytes")

// errFileMissing is why content whose file is gone is unstored.
var errFileMissing = errors.New("its content file is missing")

// Upload is an upload in progress: the version it makes and the blocks it
// has staged, valid for content generation Gen.
type Upload struct {
	FileID    string  `json:"file_id"`
	VersionID string  `json:"version_id"`
	Gen       uint64  `json:"gen"`
	BlockSize int64   `json:"block_size,omitempty"`
	Staged    []int64 `json:"staged,omitempty"`
}

// BaseReader reads the base version (a [File] does).
type BaseReader interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
}

// Dirty is the local content of one file: its content file (the pages
// written since its base version, and those a partial write copied from
// it) over the base. Its methods are safe for concurrent use.
type Dirty struct {
	c    *Cache
	id   uint64
	base BaseReader // nil: no base

	mu       sync.RWMutex
	rec      Record   // GUARDED_BY(mu)
	f        *os.File // GUARDED_BY(mu): the content file (closed by Remove and Cache.Close)
	unsynced bool     // GUARDED_BY(mu): written since its last fsync
	gone     bool     // GUARDED_BY(mu): removed
	cause    error    // GUARDED_BY(mu): why the rec.Unstored write failed (nil after a restart)
}

// ErrRemoved is returned by a Dirty after Remove.
var ErrRemoved = errors.New("cache: dirty file removed")

// NewDirty starts dirty content for rec.Path over base (nil for a new
// file), with rec's base fields; Size and BaseLimit start at BaseSize. Its
// (empty) content file exists and the record is in the journal when it
// returns.
func (c *Cache) NewDirty(rec Record, base BaseReader) (*Dirty, error) {
	if !c.enter() {
		return nil, ErrClosed
	}
	defer c.wg.Done()
	rec.ID = c.nextID.Add(1)
	rec.Size, rec.BaseLimit = rec.BaseSize, rec.BaseSize
	rec.Format, rec.Filled, rec.Direct, rec.Boot = contentFormat, nil, false, ""
	path := c.local.path(rec.ID)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create the content file of %s: %w", rec.Path, err)
	}
	d := &Dirty{c: c, id: rec.ID, base: base, rec: rec, f: f}
	if err := c.update(func(txn *badger.Txn) error { return d.putRecord(txn) }); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("journal new dirty file %s: %w", rec.Path, err)
	}
	c.local.add(d)
	return d, nil
}

// Journal returns every record of the journal, oldest first.
func (c *Cache) Journal() ([]Record, error) {
	var out []Record
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: journalPrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			var r Record
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return fmt.Errorf("journal record %x: %w", item.Key(), err)
			}
			r.ID = binary.BigEndian.Uint64(item.Key()[1:])
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read upload journal: %w", err)
	}
	return out, nil
}

// OpenDirty reopens the dirty content of a journal record (after a
// restart) over base. A record of format 0 has its pages moved from
// Badger into a content file. Content the machine restarted under before
// it was synced (see Record.Boot), or whose file is missing, is marked
// unstored (see Unstored). Direct content is refreshed (see Refresh).
func (c *Cache) OpenDirty(rec Record, base BaseReader) (*Dirty, error) {
	if !c.enter() {
		return nil, ErrClosed
	}
	defer c.wg.Done()
	d := &Dirty{c: c, id: rec.ID, base: base, rec: rec}
	d.mu.Lock()
	defer d.mu.Unlock()
	var err error
	if rec.Format == 0 {
		err = d.migrateLocked()
	} else {
		err = d.reopenLocked()
	}
	if err != nil {
		if d.f != nil {
			d.f.Close()
		}
		return nil, fmt.Errorf("reopen dirty file %s: %w", rec.Path, err)
	}
	c.local.add(d)
	return d, nil
}

// reopenLocked opens the content file of a record of this format.
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) reopenLocked() error {
	path := d.c.local.path(d.id)
	var why error
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if isNotExist(err) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if len(d.rec.Filled) > 0 {
			why = errFileMissing
		}
	}
	if err != nil {
		return fmt.Errorf("open its content file: %w", err)
	}
	d.f = f
	if boot := d.c.local.boot; why == nil && d.rec.Boot != "" && boot != "" && d.rec.Boot != boot {
		why = errRestarted
	}
	if why != nil {
		rec := d.rec
		rec.Boot = ""
		if rec.Size > 0 {
			rec.Unstored = &Span{From: 0, To: rec.Size}
			d.c.log.Warn("local content may have lost bytes; it stays local until written again or truncated", "path", "/"+rec.Path, "why", why)
		}
		if err := d.c.update(func(txn *badger.Txn) error { return putRecord(txn, d.id, rec) }); err != nil {
			return fmt.Errorf("journal its unstored range: %w", err)
		}
		d.rec, d.cause = rec, why
	}
	if d.rec.Direct {
		return d.refreshLocked()
	}
	// Past the end the file may hold bytes of writes that failed or
	// never reached the journal: give their space back.
	if st, err := f.Stat(); err == nil && st.Size() > d.rec.Size {
		if err := f.Truncate(d.rec.Size); err != nil {
			d.c.log.Warn("cut a content file to its content's size failed", "path", "/"+d.rec.Path, "err", err)
		}
	}
	return nil
}

// migrateLocked moves the pages of a format-0 record from Badger into a
// new content file: the file is written and synced, then the record says
// so, then the pages are deleted (a crash before the record migrates
// again; one after it leaves pages that Remove deletes).
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) migrateLocked() error {
	f, err := os.OpenFile(d.c.local.path(d.id), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create its content file: %w", err)
	}
	d.f = f
	var runs [][2]int64
	var keys [][]byte
	prefix := d.pagePrefix()
	err = d.c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			idx := int64(binary.BigEndian.Uint64(item.Key()[len(prefix):]))
			err := item.Value(func(v []byte) error {
				_, err := f.WriteAt(v, idx*PageSize)
				return err
			})
			if err != nil {
				return fmt.Errorf("copy page %d: %w", idx, err)
			}
			runs = addRun(runs, idx, idx+1)
			keys = append(keys, item.KeyCopy(nil))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("move its pages into a content file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync its new content file: %w", err)
	}
	rec := d.rec
	rec.Format, rec.Filled = contentFormat, cutRuns(runs, pagesFor(rec.Size))
	if err := d.c.update(func(txn *badger.Txn) error { return putRecord(txn, d.id, rec) }); err != nil {
		return fmt.Errorf("journal its content file: %w", err)
	}
	d.rec = rec
	if err := d.c.deleteDirtyKeys(keys); err != nil {
		d.c.log.Warn("delete dirty pages moved into a content file failed; they go with the content", "path", "/"+rec.Path, "err", err)
	}
	d.c.log.Info("moved local content from the cache database into a content file", "path", "/"+rec.Path, "pages", len(keys), "size", rec.Size)
	return nil
}

// deleteDirtyKeys deletes keys of dirty data in write batches.
func (c *Cache) deleteDirtyKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	c.dirtyGate.RLock()
	defer c.dirtyGate.RUnlock()
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// ID is the journal id.
func (d *Dirty) ID() uint64 { return d.id }

// Record returns a copy of the journal record.
func (d *Dirty) Record() Record {
	d.mu.RLock()
	defer d.mu.RUnlock()
	r := d.rec
	r.DeleteAfter = append([]string(nil), r.DeleteAfter...)
	r.Filled = append([][2]int64(nil), r.Filled...)
	if r.Upload != nil {
		u := *r.Upload
		u.Staged = append([]int64(nil), u.Staged...)
		r.Upload = &u
	}
	return r
}

// Size is the content's length (of direct content: as of the last
// Refresh).
func (d *Dirty) Size() int64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.rec.Size
}

// Gen is the content generation.
func (d *Dirty) Gen() uint64 {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.rec.Gen
}

// Update changes the record's caller-owned fields (fn must not touch the
// content fields) and journals it.
func (d *Dirty) Update(fn func(*Record)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return ErrRemoved
	}
	old := d.rec
	fn(&d.rec)
	d.rec.keepContent(old)
	if err := d.c.update(func(txn *badger.Txn) error { return d.putRecord(txn) }); err != nil {
		d.rec = old
		return fmt.Errorf("journal %s: %w", d.rec.Path, err)
	}
	return nil
}

// WriteAt writes p at off, growing the file if need be. The bytes are in
// the content file (in the kernel's page cache: they outlive the process,
// and a power loss only once synced) before the journal record says so,
// and both are done when it returns. Parts of pages it does not cover
// keep their content, from earlier writes or the base.
//
// A write that fails (no room on the disk, an I/O error) returns 0 and
// marks its range unstored: some of its bytes may be in the content.
func (d *Dirty) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("write %s at %d: %w", d.rec.Path, off, errNegativeOffset)
	}
	if !d.c.enter() {
		return 0, ErrClosed
	}
	defer d.c.wg.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return 0, ErrRemoved
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := d.writeLocked(ctx, p, off); err != nil {
		err = fmt.Errorf("write %s at %d: %w", d.rec.Path, off, err)
		d.unstoredLocked(off, off+int64(len(p)), err)
		return 0, err
	}
	if u := d.rec.Unstored; u != nil && off <= u.From && off+int64(len(p)) >= u.To {
		d.setUnstoredLocked(nil, nil)
	}
	return len(p), nil
}

// Unstored returns nil, or an error (ErrUnstored, wrapping why the write
// failed when known) when a write failed and its range has not been
// written again nor truncated away since. A failed write may have stored
// part of its bytes, and its application was told it failed: such content
// must not become a version.
func (d *Dirty) Unstored() error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	u := d.rec.Unstored
	if u == nil {
		return nil
	}
	if d.cause != nil {
		return fmt.Errorf("%s: bytes %d to %d: %w (%w)", d.rec.Path, u.From, u.To, ErrUnstored, d.cause)
	}
	return fmt.Errorf("%s: bytes %d to %d: %w", d.rec.Path, u.From, u.To, ErrUnstored)
}

// unstoredLocked records a failed write of [from, to).
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) unstoredLocked(from, to int64, cause error) {
	u := &Span{From: from, To: to}
	if old := d.rec.Unstored; old != nil {
		u.From, u.To = min(u.From, old.From), max(u.To, old.To)
	}
	d.setUnstoredLocked(u, cause)
}

// setUnstoredLocked sets the unstored range and journals it (best effort:
// the content is refused for uploads in memory either way).
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) setUnstoredLocked(u *Span, cause error) {
	d.rec.Unstored, d.cause = u, cause
	if err := d.c.update(func(txn *badger.Txn) error { return d.putRecord(txn) }); err != nil {
		d.c.log.Warn("journal the range of a failed write failed", "path", "/"+d.rec.Path, "err", err)
	}
}

// writeLocked writes p at off into the content file, then journals it.
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) writeLocked(ctx context.Context, p []byte, off int64) error {
	if d.rec.Direct {
		if err := d.refreshLocked(); err != nil {
			return err
		}
	}
	end := off + int64(len(p))
	s0 := d.rec.Size
	first, last := off/PageSize, (end-1)/PageSize
	// The pages this write covers in part, that are not filled yet and
	// have content outside it, get that content first.
	var fills []int64
	for _, idx := range []int64{first, last} {
		start := idx * PageSize
		lo, hi := max(off, start), min(end, start+PageSize)
		switch {
		case len(fills) > 0 && fills[0] == idx: // first == last
		case filled(d.rec.Filled, idx), start >= s0:
		case lo == start && (hi == start+PageSize || hi >= s0): // the write covers its content
		default:
			fills = append(fills, idx)
		}
	}
	if err := d.c.room(int64(len(p)) + int64(len(fills))*PageSize); err != nil {
		return err
	}
	if err := d.c.fault("put"); err != nil {
		return err
	}
	for _, idx := range fills {
		page, err := d.pageLocked(ctx, idx)
		if err != nil {
			return err
		}
		if _, err := d.f.WriteAt(page, idx*PageSize); err != nil {
			return fmt.Errorf("fill page %d of the content file: %w", idx, err)
		}
	}
	if off > s0 {
		// The gap must read as zeros, and the file past the end may
		// hold bytes of writes that failed.
		if err := d.f.Truncate(s0); err != nil {
			return fmt.Errorf("cut the content file to its end: %w", err)
		}
	}
	if _, err := d.f.WriteAt(p, off); err != nil {
		return fmt.Errorf("write the content file: %w", err)
	}
	d.unsynced = true
	rec := d.rec
	rec.Size = max(s0, end)
	rec.Gen++
	rec.Filled = addRun(rec.Filled, first, last+1)
	rec.Boot = d.c.local.boot
	if err := d.c.update(func(txn *badger.Txn) error { return putRecord(txn, d.id, rec) }); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	d.rec = rec
	return nil
}

// pageLocked returns the current content of page idx, up to the file's
// size: the file's bytes, or the base bytes under BaseLimit (zeros past
// it).
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) pageLocked(ctx context.Context, idx int64) ([]byte, error) {
	start := idx * PageSize
	n := max(0, min(PageSize, d.rec.Size-start))
	if n == 0 {
		return nil, nil
	}
	buf := make([]byte, n)
	if _, err := d.readLocked(ctx, buf, start); err != nil {
		return nil, err
	}
	return buf, nil
}

// Truncate sets the length: bytes past size are gone (a later growth reads
// zeros there, not the base's old bytes). Shrinking gives the file's space
// past size back.
func (d *Dirty) Truncate(ctx context.Context, size int64) error {
	if size < 0 {
		return fmt.Errorf("truncate %s to %d: %w", d.rec.Path, size, errNegativeOffset)
	}
	if !d.c.enter() {
		return ErrClosed
	}
	defer d.c.wg.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return ErrRemoved
	}
	if err := d.truncateLocked(size); err != nil {
		return fmt.Errorf("truncate %s to %d: %w", d.rec.Path, size, err)
	}
	return nil
}

// truncateLocked is Truncate under d.mu. Shrinking journals first and
// cuts the file after (a crash between leaves bytes past the end, which
// are never read); growing cuts the file at the old end first, so the new
// range reads as zeros.
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) truncateLocked(size int64) error {
	if d.rec.Direct {
		if err := d.refreshLocked(); err != nil {
			return err
		}
	}
	rec := d.rec
	rec.Gen++
	s0 := rec.Size
	if size < s0 {
		rec.Filled = cutRuns(rec.Filled, pagesFor(size))
		rec.BaseLimit = min(rec.BaseLimit, size)
	}
	if size > s0 {
		if err := d.c.fault("put"); err != nil {
			return err
		}
		if err := d.f.Truncate(s0); err != nil {
			return fmt.Errorf("cut the content file to its end: %w", err)
		}
		if rec.Direct {
			if err := d.f.Truncate(size); err != nil {
				return fmt.Errorf("grow the content file: %w", err)
			}
		}
	}
	rec.Size = size
	rec.Boot = d.c.local.boot
	clearsUnstored := rec.Unstored != nil && size <= rec.Unstored.From
	if clearsUnstored {
		rec.Unstored = nil // the failed write's range is gone
	}
	err := d.c.update(func(txn *badger.Txn) error {
		if err := d.c.fault("put"); err != nil {
			return err
		}
		return putRecord(txn, d.id, rec)
	})
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	d.rec = rec
	d.unsynced = true
	if clearsUnstored {
		d.cause = nil
	}
	if size < s0 {
		if err := d.f.Truncate(size); err != nil {
			if rec.Direct { // the file is the content
				return fmt.Errorf("cut the content file: %w", err)
			}
			d.c.log.Warn("cut a content file failed; its space comes back when the content goes", "path", "/"+rec.Path, "err", err)
		}
	}
	return nil
}

// ReadAt reads the content with io.ReaderAt semantics.
func (d *Dirty) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if !d.c.enter() {
		return 0, ErrClosed
	}
	defer d.c.wg.Done()
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.gone {
		return 0, ErrRemoved
	}
	return d.readLocked(ctx, p, off)
}

// readLocked is ReadAt under d.mu (read or write).
func (d *Dirty) readLocked(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errNegativeOffset
	}
	size := d.rec.Size
	if off >= size {
		return 0, io.EOF
	}
	end := min(off+int64(len(p)), size)
	// Each run of filled pages is one read of the file; each run of
	// others one read of the base, so its readahead sees a sequential
	// reader.
	for pos := off; pos < end; {
		isFilled, until := runAt(d.rec.Filled, pos/PageSize)
		hi := end
		if until < maxRun {
			hi = min(end, until*PageSize)
		}
		dst := p[pos-off : hi-off]
		if isFilled {
			if err := d.c.fault("get"); err != nil {
				return int(pos - off), err
			}
			if err := preadFull(d.f, dst, pos); err != nil {
				return int(pos - off), fmt.Errorf("read the content file of %s at %d: %w", d.rec.Path, pos, err)
			}
		} else if err := d.readBase(ctx, dst, pos); err != nil {
			return int(pos - off), err
		}
		pos = hi
	}
	n := int(end - off)
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readBase fills dst with the base's bytes at off under BaseLimit, and
// zeros past it.
func (d *Dirty) readBase(ctx context.Context, dst []byte, off int64) error {
	n := max(0, min(int64(len(dst)), d.rec.BaseLimit-off))
	clear(dst[n:])
	if n == 0 {
		return nil
	}
	if d.base == nil {
		return fmt.Errorf("read %s at %d: no base version for %d bytes", d.rec.Path, off, n)
	}
	got, err := d.base.ReadAt(ctx, dst[:n], off)
	if int64(got) == n {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read base %s of %s at %d: %w", d.rec.BaseVersion, d.rec.Path, off, err)
}

// Changed reports whether the content differs from the base version:
// always for a file without one; otherwise by length, and then byte for
// byte over the pages filled and the range truncation hid (reading the
// base where it must).
func (d *Dirty) Changed(ctx context.Context) (bool, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.gone {
		return false, ErrRemoved
	}
	r := d.rec
	if r.BaseVersion == "" || d.base == nil || r.Size != r.BaseSize {
		return true, nil
	}
	mine := make([]byte, PageSize)
	theirs := make([]byte, PageSize)
	for idx := int64(0); idx*PageSize < r.Size; idx++ {
		start := idx * PageSize
		if !filled(r.Filled, idx) && start+PageSize <= r.BaseLimit {
			continue // the base shows through
		}
		n := min(PageSize, r.Size-start)
		if _, err := d.readLocked(ctx, mine[:n], start); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		if got, err := d.base.ReadAt(ctx, theirs[:n], start); int64(got) != n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return false, fmt.Errorf("compare %s with its base: %w", r.Path, err)
		}
		if !bytes.Equal(mine[:n], theirs[:n]) {
			return true, nil
		}
	}
	return false, nil
}

// Sync makes the content durable on disk: it fsyncs the content file,
// journals that the content is synced (see Record.Boot) and syncs Badger.
// Of direct content it syncs what the last Refresh saw.
func (d *Dirty) Sync() error {
	if !d.c.enter() {
		return ErrClosed
	}
	defer d.c.wg.Done()
	d.mu.Lock()
	err := ErrRemoved
	if !d.gone {
		err = d.syncLocked()
	}
	d.mu.Unlock()
	if err == nil {
		err = d.c.db.Sync()
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", d.rec.Path, err)
	}
	return nil
}

// syncLocked fsyncs the content file if it was written since, and
// journals (without a sync) that the content is synced.
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) syncLocked() error {
	if !d.unsynced && !d.rec.Direct && d.rec.Boot == "" {
		return nil
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("fsync the content file of %s: %w", d.rec.Path, err)
	}
	d.unsynced = false
	if d.rec.Boot == "" {
		return nil
	}
	rec := d.rec
	rec.Boot = ""
	if err := d.c.update(func(txn *badger.Txn) error { return putRecord(txn, d.id, rec) }); err != nil {
		return fmt.Errorf("journal that %s is synced: %w", d.rec.Path, err)
	}
	d.rec = rec
	return nil
}

// File returns the content file, to be handed to the kernel as a FUSE
// passthrough backing file, when the content is wholly in it (no base
// shows through: BaseLimit is 0, a new file or one emptied); ok is false
// otherwise, or when the file could not be made the exact content. From
// then on the content is direct (Record.Direct): the file is the content,
// pages it has no bytes for read as zeros, and writes to it that do not
// come through WriteAt (the kernel's) are taken in by Refresh, which the
// caller must call before it reads Size or Gen for a decision (getattr,
// flush, commit, Sync). WriteAt and Truncate still work, and refresh
// first themselves.
func (d *Dirty) File() (*os.File, bool) {
	if !d.c.enter() {
		return nil, false
	}
	defer d.c.wg.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone || d.rec.BaseLimit != 0 {
		return nil, false
	}
	if !d.rec.Direct {
		if err := d.makeDirectLocked(); err != nil {
			d.c.log.Warn("hand a content file to the kernel failed", "path", "/"+d.rec.Path, "err", err)
			return nil, false
		}
	}
	return d.f, true
}

// makeDirectLocked makes the content file the exact content (nothing past
// the end, zeros wherever no page is filled), and journals the content as
// direct.
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) makeDirectLocked() error {
	rec := d.rec
	if err := d.f.Truncate(rec.Size); err != nil {
		return fmt.Errorf("cut the content file to its size: %w", err)
	}
	n := pagesFor(rec.Size)
	for idx := int64(0); idx < n; {
		isFilled, until := runAt(rec.Filled, idx)
		until = min(until, n)
		if !isFilled {
			if err := zeroRange(d.f, idx*PageSize, min(until*PageSize, rec.Size)-idx*PageSize); err != nil {
				return fmt.Errorf("clear unwritten pages: %w", err)
			}
		}
		idx = until
	}
	rec.Filled = nil
	if n > 0 {
		rec.Filled = [][2]int64{{0, n}}
	}
	rec.Direct = true
	rec.Boot = d.c.local.boot
	if err := setMtime(d.f, directMtime); err != nil {
		return err
	}
	if err := d.c.update(func(txn *badger.Txn) error { return putRecord(txn, d.id, rec) }); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	d.rec = rec
	d.unsynced = true
	return nil
}

// Refresh takes in writes to direct content that did not come through
// WriteAt (see File): when the content file's size or modification time
// moved since the last Refresh, the content becomes the file (Size its
// size, every page filled) at a new Gen, journaled. Changes are told by
// the file's time, which each Refresh sets to a fixed past instant, so
// even writes within one tick of the file system's clock are seen. A
// write racing Refresh is either in this Gen (its bytes are read from
// the file) or moves the time again. Refresh of content that is not
// direct does nothing.
func (d *Dirty) Refresh() error {
	if !d.c.enter() {
		return ErrClosed
	}
	defer d.c.wg.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return ErrRemoved
	}
	if !d.rec.Direct {
		return nil
	}
	if err := d.refreshLocked(); err != nil {
		return fmt.Errorf("refresh %s: %w", d.rec.Path, err)
	}
	return nil
}

// refreshLocked is Refresh of direct content.
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) refreshLocked() error {
	st, err := d.f.Stat()
	if err != nil {
		return fmt.Errorf("stat the content file: %w", err)
	}
	if st.Size() == d.rec.Size && st.ModTime().Equal(directMtime) {
		return nil
	}
	// Reset the time first, and take the size after: a write after the
	// reset moves the time again.
	if err := setMtime(d.f, directMtime); err != nil {
		return err
	}
	if st, err = d.f.Stat(); err != nil {
		return fmt.Errorf("stat the content file: %w", err)
	}
	rec := d.rec
	rec.Size = st.Size()
	rec.Gen++
	rec.Filled = nil
	if n := pagesFor(rec.Size); n > 0 {
		rec.Filled = [][2]int64{{0, n}}
	}
	rec.BaseLimit = 0
	rec.Boot = d.c.local.boot
	clearsUnstored := rec.Unstored != nil && rec.Size <= rec.Unstored.From
	if clearsUnstored {
		rec.Unstored = nil
	}
	if err := d.c.update(func(txn *badger.Txn) error { return putRecord(txn, d.id, rec) }); err != nil {
		// Leave the change for the next Refresh to see.
		if err2 := setMtime(d.f, time.Now()); err2 != nil {
			d.c.log.Warn("a change of a content file may go unseen", "path", "/"+rec.Path, "err", err2)
		}
		return fmt.Errorf("journal: %w", err)
	}
	d.rec = rec
	d.unsynced = true
	if clearsUnstored {
		d.cause = nil
	}
	return nil
}

// Remove deletes the content: its journal record (and any pages of a
// format-0 record left in Badger), then its content file, whose space
// comes back (once the kernel lets go of it, for a file handed out by
// File). A crash between leaves a file no record owns, which the next
// Open removes. Later calls fail with ErrRemoved.
func (d *Dirty) Remove() error {
	if !d.c.enter() {
		return ErrClosed
	}
	defer d.c.wg.Done()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return nil
	}
	keys := [][]byte{journalKey(d.id)}
	prefix := d.pagePrefix()
	err := d.c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err == nil {
		err = d.c.deleteDirtyKeys(keys)
	}
	if err != nil {
		return fmt.Errorf("remove dirty %s: %w", d.rec.Path, err)
	}
	d.gone = true
	d.c.local.drop(d)
	d.f.Close()
	if err := os.Remove(d.c.local.path(d.id)); err != nil && !isNotExist(err) {
		d.c.log.Warn("remove a content file failed; the next start removes it", "path", "/"+d.rec.Path, "err", err)
	}
	return nil
}

// putRecord journals d.rec.
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) putRecord(txn *badger.Txn) error { return putRecord(txn, d.id, d.rec) }

func putRecord(txn *badger.Txn, id uint64, rec Record) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return txn.Set(journalKey(id), v)
}

func journalKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), journalPrefix...), id)
}

// pagePrefix is the key prefix of the Badger pages of a format-0 record.
func (d *Dirty) pagePrefix() []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), pagePrefix...), d.id)
}

// LocalDirs lists the folders made on the mount that no file has reached
// yet (kept across remounts).
func (c *Cache) LocalDirs() ([]string, error) {
	var out []string
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: dirPrefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			out = append(out, string(it.Item().Key()[len(dirPrefix):]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read local folders: %w", err)
	}
	return out, nil
}

// SetLocalDir records (on) or forgets (off) a local folder.
func (c *Cache) SetLocalDir(path string, on bool) error {
	k := append(append([]byte(nil), dirPrefix...), path...)
	err := c.update(func(txn *badger.Txn) error {
		if on {
			return txn.Set(k, nil)
		}
		return txn.Delete(k)
	})
	if err != nil {
		return fmt.Errorf("record local folder %s: %w", path, err)
	}
	return nil
}

// Delete is a remote file this mount removed whose delete waits a short
// grace: a file created (or renamed) at its path meanwhile becomes a new
// version of it instead (the unlink-then-create saves of GDAL and QGIS).
type Delete struct {
	FileID  string    `json:"file_id"`
	Path    string    `json:"path"`
	Version string    `json:"version"` // the latest version when it was removed
	At      time.Time `json:"at"`      // when it was removed
}

// Deletes lists the deletes waiting in the journal.
func (c *Cache) Deletes() ([]Delete, error) {
	var out []Delete
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: deletePrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var d Delete
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &d) }); err != nil {
				return fmt.Errorf("delete record %q: %w", it.Item().Key(), err)
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read waiting deletes: %w", err)
	}
	return out, nil
}

// PutDelete journals a waiting delete.
func (c *Cache) PutDelete(d Delete) error {
	v, err := json.Marshal(d)
	if err != nil {
		return err
	}
	k := append(append([]byte(nil), deletePrefix...), d.FileID...)
	if err := c.update(func(txn *badger.Txn) error { return txn.Set(k, v) }); err != nil {
		return fmt.Errorf("journal the delete of %s: %w", d.Path, err)
	}
	return nil
}

// DropDelete forgets a waiting delete (carried out, or claimed by new
// content at its path).
func (c *Cache) DropDelete(fileID string) error {
	k := append(append([]byte(nil), deletePrefix...), fileID...)
	if err := c.update(func(txn *badger.Txn) error { return txn.Delete(k) }); err != nil {
		return fmt.Errorf("forget the delete of %s: %w", fileID, err)
	}
	return nil
}

// update runs a write transaction of dirty data or the journal, outside
// compaction.
func (c *Cache) update(fn func(txn *badger.Txn) error) error {
	c.dirtyGate.RLock()
	defer c.dirtyGate.RUnlock()
	return c.db.Update(fn)
}

// initJournal sets the next journal id past the highest recorded.
func (c *Cache) initJournal() error {
	return c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: journalPrefix, Reverse: true})
		defer it.Close()
		// Reverse iteration seeks to the last key <= the seek key.
		it.Seek(append(append([]byte(nil), journalPrefix...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		if it.ValidForPrefix(journalPrefix) {
			c.nextID.Store(binary.BigEndian.Uint64(it.Item().Key()[1:]))
		}
		return nil
	})
}
