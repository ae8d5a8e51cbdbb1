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
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// PageSize is the unit of dirty data: a write that covers part of a page
// reads the page (from earlier writes or the base version), changes it and
// stores it whole, in the same transaction as the journal record.
const PageSize = 256 << 10

// maxTxnWrite bounds the bytes one WriteAt stores in one transaction (a
// longer write is split): Badger bounds a transaction's size.
const maxTxnWrite = 1 << 20

var (
	journalPrefix = []byte{'j'}
	pagePrefix    = []byte{'d'}
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

// Span is a byte range [From, To).
type Span struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// ErrUnstored: a write to the content failed, so the content lacks bytes
// the application meant it to have (see Dirty.Unstored).
var ErrUnstored = errors.New("a write to this file failed; it is not saved until that range is written again or truncated away")

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

// Dirty is the local content of one file: pages written since its base
// version, over the base. Its methods are safe for concurrent use.
type Dirty struct {
	c    *Cache
	id   uint64
	base BaseReader // nil: no base

	mu    sync.RWMutex
	rec   Record          // GUARDED_BY(mu)
	pages map[int64]int64 // GUARDED_BY(mu): stored page index -> stored length
	gone  bool            // GUARDED_BY(mu): removed
	cause error           // GUARDED_BY(mu): why the rec.Unstored write failed (nil after a restart)
}

// ErrRemoved is returned by a Dirty after Remove.
var ErrRemoved = errors.New("cache: dirty file removed")

// NewDirty starts dirty content for rec.Path over base (nil for a new
// file), with rec's base fields; Size and BaseLimit start at BaseSize. The
// record is in the journal when it returns.
func (c *Cache) NewDirty(rec Record, base BaseReader) (*Dirty, error) {
	if !c.enter() {
		return nil, ErrClosed
	}
	defer c.wg.Done()
	rec.ID = c.nextID.Add(1)
	rec.Size, rec.BaseLimit = rec.BaseSize, rec.BaseSize
	d := &Dirty{c: c, id: rec.ID, base: base, rec: rec, pages: map[int64]int64{}}
	if err := c.update(func(txn *badger.Txn) error { return d.putRecord(txn) }); err != nil {
		return nil, fmt.Errorf("journal new dirty file %s: %w", rec.Path, err)
	}
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
// restart) over base.
func (c *Cache) OpenDirty(rec Record, base BaseReader) (*Dirty, error) {
	d := &Dirty{c: c, id: rec.ID, base: base, rec: rec, pages: map[int64]int64{}}
	prefix := d.pagePrefix()
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			idx := int64(binary.BigEndian.Uint64(item.Key()[len(prefix):]))
			// ValueSize is only an estimate for values in the value log.
			if err := item.Value(func(v []byte) error { d.pages[idx] = int64(len(v)); return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reopen dirty file %s: %w", rec.Path, err)
	}
	return d, nil
}

// Sync makes every write so far durable on disk.
func (c *Cache) Sync() error {
	if err := c.db.Sync(); err != nil {
		return fmt.Errorf("sync cache: %w", err)
	}
	return nil
}

// ID is the journal id.
func (d *Dirty) ID() uint64 { return d.id }

// Record returns a copy of the journal record.
func (d *Dirty) Record() Record {
	d.mu.RLock()
	defer d.mu.RUnlock()
	r := d.rec
	r.DeleteAfter = append([]string(nil), r.DeleteAfter...)
	if r.Upload != nil {
		u := *r.Upload
		u.Staged = append([]int64(nil), u.Staged...)
		r.Upload = &u
	}
	return r
}

// Size is the content's length.
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
	d.rec.ID, d.rec.Size, d.rec.BaseLimit, d.rec.Gen, d.rec.Unstored = old.ID, old.Size, old.BaseLimit, old.Gen, old.Unstored
	if err := d.c.update(func(txn *badger.Txn) error { return d.putRecord(txn) }); err != nil {
		d.rec = old
		return fmt.Errorf("journal %s: %w", d.rec.Path, err)
	}
	return nil
}

// WriteAt writes p at off, growing the file if need be. The bytes are in
// the store (and the journal record says so) when it returns. Parts of
// pages it does not cover keep their content, read from earlier writes or
// the base.
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
	n := 0
	for n < len(p) {
		// Split on page boundaries, maxTxnWrite at a time.
		chunk := p[n:]
		start := off + int64(n)
		if lim := maxTxnWrite - start%PageSize; int64(len(chunk)) > lim {
			chunk = chunk[:lim]
		}
		if err := d.writeLocked(ctx, chunk, start); err != nil {
			err = fmt.Errorf("write %s at %d: %w", d.rec.Path, start, err)
			d.unstoredLocked(off, off+int64(len(p)), err)
			return n, err
		}
		n += len(chunk)
	}
	if u := d.rec.Unstored; u != nil && off <= u.From && off+int64(len(p)) >= u.To {
		d.setUnstoredLocked(nil, nil)
	}
	return n, nil
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

// writeLocked stores one chunk in one transaction.
//
// LOCKS_REQUIRED(d.mu)
func (d *Dirty) writeLocked(ctx context.Context, p []byte, off int64) error {
	end := off + int64(len(p))
	rec := d.rec
	rec.Size = max(rec.Size, end)
	rec.Gen++
	type put struct {
		idx  int64
		data []byte
	}
	var puts []put
	for idx := off / PageSize; idx*PageSize < end; idx++ {
		start := idx * PageSize
		lo, hi := max(off, start), min(end, start+PageSize)
		var page []byte
		if lo == start && (hi == start+PageSize || hi >= rec.Size) {
			page = p[lo-off : hi-off] // the write covers the page's content
		} else {
			old, err := d.pageLocked(ctx, idx)
			if err != nil {
				return err
			}
			page = make([]byte, max(int64(len(old)), hi-start))
			copy(page, old)
			copy(page[lo-start:], p[lo-off:hi-off])
		}
		puts = append(puts, put{idx, page})
	}
	var need int64
	for _, pt := range puts {
		need += int64(len(pt.data))
	}
	if err := d.c.room(need); err != nil {
		return err
	}
	err := d.c.update(func(txn *badger.Txn) error {
		if err := d.c.fault("put"); err != nil {
			return err
		}
		for _, pt := range puts {
			if err := txn.Set(d.pageKey(pt.idx), pt.data); err != nil {
				return err
			}
		}
		return putRecord(txn, d.id, rec)
	})
	if err != nil {
		return err
	}
	d.rec = rec
	for _, pt := range puts {
		d.pages[pt.idx] = int64(len(pt.data))
	}
	return nil
}

// pageLocked returns the current content of page idx, up to the file's
// size: the stored page, or the base bytes under BaseLimit (zeros past it).
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
// zeros there, not the base's old bytes).
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
	rec := d.rec
	rec.Gen++
	var cut []byte // the new last page, when size cuts one
	cutIdx := size / PageSize
	var drop []int64
	if size < rec.Size {
		for idx := range d.pages {
			if idx*PageSize >= size {
				drop = append(drop, idx)
			}
		}
		if ln, ok := d.pages[cutIdx]; ok && size > cutIdx*PageSize && cutIdx*PageSize+ln > size {
			old, err := d.pageLocked(ctx, cutIdx)
			if err != nil {
				return fmt.Errorf("truncate %s: %w", d.rec.Path, err)
			}
			cut = old[:size-cutIdx*PageSize]
		}
		rec.BaseLimit = min(rec.BaseLimit, size)
	}
	rec.Size = size
	clearsUnstored := rec.Unstored != nil && size <= rec.Unstored.From
	if clearsUnstored {
		rec.Unstored = nil // the failed write's range is gone
	}
	if cut != nil {
		if err := d.c.room(int64(len(cut))); err != nil {
			return fmt.Errorf("truncate %s to %d: %w", d.rec.Path, size, err)
		}
	}
	err := d.c.update(func(txn *badger.Txn) error {
		if err := d.c.fault("put"); err != nil {
			return err
		}
		for _, idx := range drop {
			if idx != cutIdx || cut == nil {
				if err := txn.Delete(d.pageKey(idx)); err != nil {
					return err
				}
			}
		}
		if cut != nil {
			if err := txn.Set(d.pageKey(cutIdx), cut); err != nil {
				return err
			}
		}
		return putRecord(txn, d.id, rec)
	})
	if err != nil {
		return fmt.Errorf("truncate %s to %d: %w", d.rec.Path, size, err)
	}
	d.rec = rec
	if clearsUnstored {
		d.cause = nil
	}
	for _, idx := range drop {
		delete(d.pages, idx)
	}
	if cut != nil {
		d.pages[cutIdx] = int64(len(cut))
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
	// Runs of pages not stored come from the base in one read each, so
	// the base's readahead sees a sequential reader.
	for pos := off; pos < end; {
		idx := pos / PageSize
		if ln, ok := d.pages[idx]; ok {
			hi := min(end, (idx+1)*PageSize)
			dst := p[pos-off : hi-off]
			if err := d.getPage(idx, ln, dst, pos-idx*PageSize); err != nil {
				return int(pos - off), err
			}
			pos = hi
			continue
		}
		hi := pos
		for hi < end {
			if _, ok := d.pages[hi/PageSize]; ok {
				break
			}
			hi = min(end, (hi/PageSize+1)*PageSize)
		}
		if err := d.readBase(ctx, p[pos-off:hi-off], pos); err != nil {
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

// getPage copies page idx (stored length ln) from off into dst; past ln
// it reads zeros.
func (d *Dirty) getPage(idx, ln int64, dst []byte, off int64) error {
	if err := d.c.fault("get"); err != nil {
		return err
	}
	err := d.c.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(d.pageKey(idx))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if int64(len(v)) != ln {
				return fmt.Errorf("%w: page %d has %d bytes, %d expected", errCorrupt, idx, len(v), ln)
			}
			n := 0
			if off < ln {
				n = copy(dst, v[off:])
			}
			clear(dst[n:])
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("read page %d of %s: %w", idx, d.rec.Path, err)
	}
	return nil
}

// Changed reports whether the content differs from the base version:
// always for a file without one; otherwise by length, and then byte for
// byte over the pages written and the range truncation hid (reading the
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
		_, written := d.pages[idx]
		if !written && start+PageSize <= r.BaseLimit {
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

// Remove deletes the content and its journal record. Later calls fail
// with ErrRemoved.
func (d *Dirty) Remove() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gone {
		return nil
	}
	d.c.dirtyGate.RLock()
	defer d.c.dirtyGate.RUnlock()
	wb := d.c.db.NewWriteBatch()
	defer wb.Cancel()
	var freed int64
	for idx, ln := range d.pages {
		if err := wb.Delete(d.pageKey(idx)); err != nil {
			return fmt.Errorf("remove dirty %s: %w", d.rec.Path, err)
		}
		freed += ln
	}
	if err := wb.Delete(journalKey(d.id)); err != nil {
		return fmt.Errorf("remove dirty %s: %w", d.rec.Path, err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("remove dirty %s: %w", d.rec.Path, err)
	}
	d.gone = true
	d.pages = nil
	d.c.addChurn(freed)
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

func (d *Dirty) pagePrefix() []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), pagePrefix...), d.id)
}

func (d *Dirty) pageKey(idx int64) []byte {
	return binary.BigEndian.AppendUint64(d.pagePrefix(), uint64(idx))
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

// addChurn did count deleted bytes towards value-log GC, which no longer
// runs (see valueThreshold in store.go).
func (c *Cache) addChurn(int64) {}

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
