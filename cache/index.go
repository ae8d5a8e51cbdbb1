package cache

// The block index in memory (versions, stored blocks, the LRU list), its
// persistence in Badger, storing fetched blocks and evicting old ones.

import (
	"cmp"
	"container/list"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
)

// touchedFlush: once this many stored blocks have been used since their
// index entry was written, the next store writes their recency out.
const touchedFlush = 256

// version is a version with blocks in the cache.
type version struct {
	key    string // versionKey
	name   string // its block file's name
	size   int64
	blocks map[int64]*stored // GUARDED_BY(Cache.mu)
	alloc  int64             // GUARDED_BY(Cache.mu): sum of blocks' alloc
	// verified counts blocks whose bytes passed their checksum since
	// Open; with every block stored and verified, Backing hands out the
	// file without reading it again.
	verified int // GUARDED_BY(Cache.mu)
	pins     int // GUARDED_BY(Cache.mu): Backing files handed out and not released
}

// stored is one stored block: its bytes are in its version's file (they
// were written before this entry was made).
type stored struct {
	ver      *version
	idx      int64
	len      int64
	alloc    int64  // disk bytes counted for it (allocOf)
	crc      uint32 // crc32c of its bytes
	seq      uint64 // GUARDED_BY(Cache.mu): last use; bigger is more recent
	verified bool   // GUARDED_BY(Cache.mu): its bytes passed the checksum since Open
	el       *list.Element
}

// nblocks is how many blocks a version of size bytes has.
func (c *Cache) nblocks(size int64) int64 { return (size + c.bs - 1) / c.bs }

// storedLocked returns b's entry if b is stored (for a version of b's
// size).
//
// LOCKS_REQUIRED(c.mu)
func (c *Cache) storedLocked(b block) *stored {
	ve := c.versions[b.vkey]
	if ve == nil || ve.size != b.v.Size {
		return nil
	}
	return ve.blocks[b.idx]
}

// touchLocked makes s the most recently used block.
//
// LOCKS_REQUIRED(c.mu)
func (c *Cache) touchLocked(s *stored) {
	c.lru.MoveToFront(s.el)
	c.seq++
	s.seq = c.seq
	c.touched[s] = struct{}{}
}

// markVerified records that s's bytes passed their checksum.
//
// LOCKS_EXCLUDED(c.mu)
func (c *Cache) markVerified(s *stored) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.verified && s.ver.blocks[s.idx] == s {
		s.verified = true
		s.ver.verified++
	}
}

// current reports whether s is still in the index.
//
// LOCKS_REQUIRED(c.mu)
func (c *Cache) current(s *stored) bool {
	return c.versions[s.ver.key] == s.ver && s.ver.blocks[s.idx] == s
}

// store writes a fetched block to its version's file, then records it in
// the index, takes its fetch out of the in-flight map, and evicts least
// recently used blocks past MaxBytes. A block that cannot fit next to the
// pinned versions is not stored. A store failure is absorbed: the block's
// readers already have it.
//
// LOCKS_EXCLUDED(c.mu, c.storeMu)
func (c *Cache) store(b block, data []byte) {
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	alloc := c.allocOf(b.idx, b.len)
	c.mu.Lock()
	ve := c.versions[b.vkey]
	ok := alloc+c.pinned <= c.max && (ve == nil || ve.size == b.v.Size) && int64(len(data)) == b.len
	var seq uint64
	if ok {
		c.seq++
		seq = c.seq
	}
	c.mu.Unlock()
	var err error
	var crc uint32
	name := fileName(b.vkey)
	if ok {
		crc = crc32.Checksum(data, castagnoli)
		// Bytes first, then the index entry: the index never claims a
		// block whose bytes were not written (see the package doc).
		err = c.writeBlock(name, b.idx, data)
		if err == nil {
			err = c.record(b, ve == nil, crc, seq)
			if err != nil {
				c.punchRanges(name, [][2]int64{{b.idx * c.bs, b.len}}) // best effort: not indexed, so not counted
			}
		}
	}
	c.mu.Lock()
	delete(c.inflight, string(b.key))
	var victims []*stored
	if ok && err == nil {
		s := c.addLocked(b.vkey, name, b.v.Size, b.idx, b.len, alloc, crc, seq)
		victims = c.evictLocked(s)
	}
	flush := len(c.touched) >= touchedFlush
	c.mu.Unlock()
	if err != nil {
		c.storeFailed("store block", err)
		return
	}
	if err := c.dropBlocks(victims); err != nil {
		c.storeFailed("evict", err)
		return
	}
	if flush {
		if err := c.flushTouched(touchedFlush); err != nil {
			c.storeFailed("record recency", err)
			return
		}
	}
	c.storeRecovered()
}

// record writes block b's index entry, and its version's header if the
// version is new.
//
// LOCKS_REQUIRED(c.storeMu)
func (c *Cache) record(b block, newVersion bool, crc uint32, seq uint64) error {
	err := c.db.Update(func(txn *badger.Txn) error {
		if newVersion {
			if err := txn.Set(headerKey(b.vkey), binary.BigEndian.AppendUint64(nil, uint64(b.v.Size))); err != nil {
				return err
			}
		}
		return txn.Set(b.key, indexValue(crc, seq))
	})
	if err != nil {
		return fmt.Errorf("index block %d: %w", b.idx, err)
	}
	return nil
}

// flushTouched writes the recency of blocks used since their entry was
// last written, all of them if limit is 0, else at most limit.
//
// LOCKS_REQUIRED(c.storeMu)
func (c *Cache) flushTouched(limit int) error {
	type ent struct {
		key []byte
		val []byte
	}
	var ents []ent
	c.mu.Lock()
	for s := range c.touched {
		if limit > 0 && len(ents) >= limit {
			break
		}
		delete(c.touched, s)
		if c.current(s) {
			ents = append(ents, ent{blockKey(s.ver.key, s.idx), indexValue(s.crc, s.seq)})
		}
	}
	c.mu.Unlock()
	if len(ents) == 0 {
		return nil
	}
	// Under storeMu, so no eviction can delete these keys meanwhile.
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	for _, e := range ents {
		if err := wb.Set(e.key, e.val); err != nil {
			return fmt.Errorf("write the recency of %d blocks: %w", len(ents), err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write the recency of %d blocks: %w", len(ents), err)
	}
	return nil
}

// forget drops s after a failed read of its bytes, unless it was dropped
// meanwhile (then an eviction raced the read, and there is nothing to
// count). A block that failed verification is counted in Stats.Corrupt;
// any other failure is a store failure. Either way its bytes are punched
// and its index entry deleted, and the caller fetches it again.
//
// LOCKS_EXCLUDED(c.mu, c.storeMu)
func (c *Cache) forget(s *stored, err error) {
	corrupt := errors.Is(err, errCorrupt)
	if !corrupt {
		c.storeFailed("read block", err)
	}
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	c.mu.Lock()
	cur := c.current(s)
	if cur {
		c.removeLocked(s)
	}
	c.mu.Unlock()
	if !cur {
		return
	}
	if corrupt {
		c.stats.corrupt.Add(1)
		msg, _, _ := strings.Cut(err.Error(), "\n")
		c.log.Warn("dropping a cached block that failed verification; fetching it again", "err", msg)
	}
	if err := c.dropBlocks([]*stored{s}); err != nil {
		c.storeFailed("drop damaged block", err)
	}
}

// addLocked records a stored block at the front of the LRU list.
//
// LOCKS_REQUIRED(c.mu)
func (c *Cache) addLocked(vkey, name string, size, idx, n, alloc int64, crc uint32, seq uint64) *stored {
	ve := c.versions[vkey]
	if ve == nil {
		ve = &version{key: vkey, name: name, size: size, blocks: make(map[int64]*stored)}
		c.versions[vkey] = ve
	}
	s := &stored{ver: ve, idx: idx, len: n, alloc: alloc, crc: crc, seq: seq}
	s.el = c.lru.PushFront(s)
	ve.blocks[idx] = s
	ve.alloc += alloc
	if ve.pins > 0 {
		c.pinned += alloc
	}
	c.used += alloc
	c.nstored++
	return s
}

// removeLocked drops s from the index in memory. A version left without
// blocks and pins is dropped too (dropBlocks then removes its file).
//
// LOCKS_REQUIRED(c.mu)
func (c *Cache) removeLocked(s *stored) {
	ve := s.ver
	c.lru.Remove(s.el)
	delete(ve.blocks, s.idx)
	delete(c.touched, s)
	ve.alloc -= s.alloc
	if ve.pins > 0 {
		c.pinned -= s.alloc
	}
	if s.verified {
		ve.verified--
	}
	c.used -= s.alloc
	c.nstored--
	if len(ve.blocks) == 0 && ve.pins == 0 {
		delete(c.versions, ve.key)
	}
}

// evictLocked removes least recently used blocks, other than keep and
// those of pinned versions, until the cache fits MaxBytes, and returns
// them for dropBlocks.
//
// LOCKS_REQUIRED(c.mu)
func (c *Cache) evictLocked(keep *stored) []*stored {
	var victims []*stored
	for el := c.lru.Back(); el != nil && c.used > c.max; {
		s := el.Value.(*stored)
		el = el.Prev()
		if s == keep || s.ver.pins > 0 {
			continue
		}
		c.removeLocked(s)
		victims = append(victims, s)
		c.stats.evictions.Add(1)
		c.stats.evictedBytes.Add(s.alloc)
	}
	return victims
}

// dropBlocks frees the disk space of blocks removeLocked took out of the
// index: it unlinks the file of a version dropped whole and punches the
// blocks of others, then deletes their index entries. Punching before
// deleting: an entry outliving its bytes (a crash between) fails its
// checksum and is fetched again. A failure leaves the blocks' bytes and
// entries on disk, out of the index in memory: the next Open finds them
// again.
//
// LOCKS_REQUIRED(c.storeMu)
func (c *Cache) dropBlocks(blocks []*stored) error {
	if len(blocks) == 0 {
		return nil
	}
	if err := c.fault("delete"); err != nil {
		return fmt.Errorf("drop %d blocks: %w", len(blocks), err)
	}
	byVersion := map[*version][]*stored{}
	var order []*version
	for _, s := range blocks {
		if byVersion[s.ver] == nil {
			order = append(order, s.ver)
		}
		byVersion[s.ver] = append(byVersion[s.ver], s)
	}
	var keys [][]byte
	var errs []error
	for _, ve := range order {
		c.mu.Lock()
		gone := c.versions[ve.key] != ve
		c.mu.Unlock()
		var err error
		if gone {
			err = c.removeFile(ve.name)
			keys = append(keys, headerKey(ve.key))
		} else {
			var ranges [][2]int64
			for _, s := range byVersion[ve] {
				ranges = append(ranges, [2]int64{s.idx * c.bs, s.len})
			}
			err = c.punchRanges(ve.name, ranges)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, s := range byVersion[ve] {
			keys = append(keys, blockKey(ve.key, s.idx))
		}
	}
	if err := c.deleteKeys(keys); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("drop %d blocks: %w", len(blocks), err)
	}
	return nil
}

// rebuild loads the index from Badger, checks it against the block files
// (a missing file drops its blocks; a file holding more than its indexed
// blocks, as a crash between a write and its index entry leaves, has the
// rest punched; a file of no indexed version is removed), orders the LRU
// list by last use and evicts down to MaxBytes if the bound shrank.
//
// LOCKS_EXCLUDED(c.mu, c.storeMu); called by Open before the cache is shared.
func (c *Cache) rebuild() error {
	sizes, recs, stale, err := c.loadIndex()
	if err != nil {
		return err
	}
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	known := map[string]bool{}
	var all []*stored
	for vkey, size := range sizes {
		name := fileName(vkey)
		onDisk, exists, err := c.allocated(name)
		if err != nil {
			return err
		}
		if !exists {
			stale = append(stale, headerKey(vkey))
			for _, r := range recs[vkey] {
				stale = append(stale, blockKey(vkey, r.idx))
			}
			continue
		}
		known[name] = true
		c.mu.Lock()
		var counted int64
		present := map[int64]bool{}
		for _, r := range recs[vkey] {
			n := min(c.bs, size-r.idx*c.bs)
			s := c.addLocked(vkey, name, size, r.idx, n, c.allocOf(r.idx, n), r.crc, r.seq)
			all = append(all, s)
			counted += s.alloc
			present[r.idx] = true
			c.seq = max(c.seq, r.seq)
		}
		c.mu.Unlock()
		if onDisk > counted {
			var ranges [][2]int64
			for i := range c.nblocks(size) {
				if !present[i] {
					ranges = append(ranges, [2]int64{i * c.bs, min(c.bs, size-i*c.bs)})
				}
			}
			if err := c.punchRanges(name, ranges); err != nil {
				return err
			}
		}
	}
	es, err := os.ReadDir(c.blockDir)
	if err != nil {
		return fmt.Errorf("list block files: %w", err)
	}
	for _, e := range es {
		if !known[e.Name()] && e.Type().IsRegular() {
			if err := c.removeFile(e.Name()); err != nil {
				return err
			}
		}
	}
	// Oldest first to the front: the most recently used ends up there.
	slices.SortFunc(all, func(a, b *stored) int { return cmp.Compare(a.seq, b.seq) })
	c.mu.Lock()
	for _, s := range all {
		c.lru.MoveToFront(s.el)
	}
	victims := c.evictLocked(nil)
	c.mu.Unlock()
	if err := c.deleteKeys(stale); err != nil {
		return err
	}
	return c.dropBlocks(victims)
}
