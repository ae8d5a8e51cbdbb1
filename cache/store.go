package cache

// Everything that talks to Badger: options, the logger adapter, keys, the
// config record, the index rebuild at Open, and space reclamation.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

const (
	// valueThreshold: values this large or larger go to the value log.
	// Blocks (1 MiB by default) are written there once and never copied by
	// LSM compactions; only tiny blocks (small files' only block) stay in
	// the tree, where compaction reclaims them without value-log GC. 4 KiB
	// is also the tree's block size, so an inline value never spans
	// several table blocks.
	valueThreshold = 4 << 10

	// memTableSize bounds each Badger memtable on disk. It holds pointers
	// and tiny blocks only, so it can be small; Badger allocates it whole.
	memTableSize = 16 << 20

	// gcInterval: how often maintenance runs without being woken by
	// evictions (it also catches garbage of earlier runs).
	gcInterval = 10 * time.Minute

	// gcDiscardRatio: a value-log file is rewritten once this fraction of
	// it is garbage.
	gcDiscardRatio = 0.5

	// gcPause is the least time between two value-log rewrites.
	gcPause = 100 * time.Millisecond

	// Value-log file size: MaxBytes/8 within these bounds. GC works file by
	// file and never on the file being written, so files must be small
	// next to the cache; but Badger syncs a whole file (msync) when it
	// moves on to the next, in its one writer goroutine, and every store
	// and journal write waits meanwhile: with 256 MiB files a burst of
	// writes ran at the disk's synchronous rate (≈ 300 MB/s here) instead
	// of the page cache's. Files of 1 GiB (Badger's own default) let a
	// burst that size go at memory speed; the kernel writes it back later.
	minVlogFile = 4 << 20
	maxVlogFile = 1<<30 - 1

	// maxInMemoryBlock is the default and largest block size of an
	// in-memory cache: Badger's in-memory mode holds values under 1 MiB.
	maxInMemoryBlock = 512 << 10

	// formatVersion 2 stores each block as chunks (see chunkBytes); the
	// blocks of a format-1 cache (one value each) are dropped at Open,
	// its journal kept.
	formatVersion = 2

	// chunkBytes: a block is stored as values of this size (the last one
	// shorter), all in one transaction. Badger encodes each value into a
	// buffer it allocates afresh for every write and then grows once more
	// for the checksum: one value per 4 MiB block cost three times the
	// block in cleared allocations and copies, chunks cost a fraction of
	// one chunk. A read also verifies only the chunks it touches.
	chunkBytes = 256 << 10
)

var (
	configKey = []byte("mconfig")
	// flushKey is written and dropped to make Badger flush its memtable
	// (DropPrefix is the only public call that does).
	flushKey = []byte("mflush")
	// blockPrefix starts every block key.
	blockPrefix = []byte{'b'}

	// errCorrupt: a stored block has the wrong length for its version.
	errCorrupt = errors.New("stored block has the wrong length")
)

// vlogFileSize is the size of one value-log file.
func vlogFileSize(bs, maxBytes int64) int64 {
	return min(max(maxBytes/8, minVlogFile, 4*bs), maxVlogFile)
}

// badgerOptions tunes Badger for a block cache (see the package doc).
func badgerOptions(dir string, bs, maxBytes int64, log *slog.Logger) badger.Options {
	o := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithValueThreshold(valueThreshold).
		WithMemTableSize(memTableSize).
		WithNumMemtables(3).
		WithValueLogFileSize(vlogFileSize(bs, maxBytes)).
		WithCompression(options.None). // blocks are often compressed already; values in the log never are
		WithBlockCacheSize(0).         // uncompressed tables are read straight from mmap
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true). // never serve a torn or rotten block
		WithDetectConflicts(false).    // no read-modify-write transactions
		WithMetricsEnabled(false).     // Badger's metrics are process-wide expvars
		WithSyncWrites(false)          // a lost block after a crash is just a miss
	if dir == "" {
		// In memory every value stays in the tree, Badger takes only
		// values below ValueThreshold (at most 1 MiB; one of exactly
		// that size passes its check and then panics the writer), and one
		// transaction (one block) must fit in 15% of a memtable.
		o = o.WithInMemory(true).WithDir("").WithValueDir("").
			WithValueThreshold(1 << 20).WithMemTableSize(64 << 20).
			WithChecksumVerificationMode(options.NoVerification) // nothing to rot
	}
	return o
}

// badgerLogger routes Badger's log through slog, one level quieter than
// Badger's own: its Info lines (table counts at open, compaction chatter)
// become Debug, and its Debug lines are dropped.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) logf(lvl slog.Level, format string, args ...any) {
	if !l.log.Enabled(context.Background(), lvl) {
		return
	}
	l.log.Log(context.Background(), lvl, "badger: "+strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (l badgerLogger) Errorf(f string, a ...any)   { l.logf(slog.LevelError, f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.logf(slog.LevelWarn, f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.logf(slog.LevelDebug, f, a...) }
func (l badgerLogger) Debugf(string, ...any)       {}

// versionPrefix is the key prefix of every block of v:
// 'b' fileID 0 versionID 0.
func versionPrefix(v Version) []byte {
	b := make([]byte, 0, len(blockPrefix)+len(v.FileID)+len(v.VersionID)+2+8)
	b = append(b, blockPrefix...)
	b = appendID(b, v.FileID)
	b = append(b, 0)
	b = appendID(b, v.VersionID)
	return append(b, 0)
}

// appendID appends id with 0x00 and 0x01 escaped (as 0x01 0x02 and
// 0x01 0x01), so the 0x00 separators are unambiguous for any ID.
func appendID(b []byte, id string) []byte {
	for i := 0; i < len(id); i++ {
		switch c := id[i]; c {
		case 0:
			b = append(b, 1, 2)
		case 1:
			b = append(b, 1, 1)
		default:
			b = append(b, c)
		}
	}
	return b
}

// chunkKey is the key of chunk i of the block stored under key.
func chunkKey(key []byte, i int64) []byte {
	k := make([]byte, len(key)+2)
	copy(k, key)
	binary.BigEndian.PutUint16(k[len(key):], uint16(i))
	return k
}

// chunks is how many chunks a block of n bytes is stored as.
func (c *Cache) chunks(n int64) int64 { return max(1, (n+c.chunk-1)/c.chunk) }

// blockKey is the key of block idx under a version prefix.
func blockKey(prefix []byte, idx int64) []byte {
	k := make([]byte, len(prefix)+8)
	copy(k, prefix)
	binary.BigEndian.PutUint64(k[len(prefix):], uint64(idx))
	return k
}

// readConfig returns the block size and format recorded in db, or 0 for a
// new cache.
func readConfig(db *badger.DB) (bs int64, format byte, err error) {
	err = db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(configKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 9 || v[0] < 1 || v[0] > formatVersion {
				return fmt.Errorf("unknown cache format (record %x); this evofs writes format %d", v, formatVersion)
			}
			format, bs = v[0], int64(binary.BigEndian.Uint64(v[1:]))
			if bs <= 0 {
				return fmt.Errorf("cache config records block size %d", bs)
			}
			return nil
		})
	})
	if err != nil {
		return 0, 0, fmt.Errorf("read cache config: %w", err)
	}
	return bs, format, nil
}

// upgrade drops the read blocks of an older format (they are only a
// cache; the journal and local folders stay) and records this format.
func upgrade(db *badger.DB, bs int64) error {
	if err := db.DropPrefix(blockPrefix); err != nil {
		return fmt.Errorf("drop blocks of an older cache format: %w", err)
	}
	return writeConfig(db, bs)
}

// writeConfig records the format and block size of a new cache.
func writeConfig(db *badger.DB, bs int64) error {
	v := make([]byte, 9)
	v[0] = formatVersion
	binary.BigEndian.PutUint64(v[1:], uint64(bs))
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(configKey, v) }); err != nil {
		return fmt.Errorf("write cache config: %w", err)
	}
	return nil
}

// rebuild loads the LRU index from a keys-only scan, oldest commit first,
// and evicts down to MaxBytes if the bound shrank since the last run.
//
// LOCKS_EXCLUDED(c.mu, c.storeMu); called by Open before the cache is shared.
func (c *Cache) rebuild() error {
	type rec struct {
		key  []byte
		ver  uint64
		size int64
	}
	var recs []rec
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: blockPrefix})
		defer it.Close()
		// A block's chunks are adjacent keys: its key and a chunk index.
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) < len(blockPrefix)+2 {
				continue
			}
			key, size := k[:len(k)-2], c.sizeHint(item.ValueSize())
			if n := len(recs); n > 0 && bytes.Equal(recs[n-1].key, key) {
				recs[n-1].size += size
				recs[n-1].ver = max(recs[n-1].ver, item.Version())
				continue
			}
			recs = append(recs, rec{bytes.Clone(key), item.Version(), size})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan cached blocks: %w", err)
	}
	slices.SortFunc(recs, func(a, b rec) int { return cmp.Compare(a.ver, b.ver) })
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	c.mu.Lock()
	for _, r := range recs {
		c.addLocked(r.key, r.size)
	}
	victims := c.evictLocked(nil)
	c.mu.Unlock()
	return c.deleteLocked(victims)
}

// sizeHint turns Badger's estimate of a value's size into a chunk size.
// For values in the value log the estimate can be off by a byte or two
// (Badger guesses its entry-header length); a full chunk is snapped to its
// size exactly, and a short last block is corrected at its first hit.
func (c *Cache) sizeHint(est int64) int64 {
	if est > c.chunk-16 {
		return c.chunk
	}
	return max(est, 0)
}

// get copies stored block bytes [off, off+len(dst)) into dst, checking the
// value has length blen. Errors: badger.ErrKeyNotFound, errCorrupt, or a
// store failure.
func (c *Cache) get(key []byte, blen int64, dst []byte, off int64) error {
	if err := c.fault("get"); err != nil {
		return err
	}
	if len(dst) == 0 {
		return nil
	}
	last := c.chunks(blen) - 1
	return c.db.View(func(txn *badger.Txn) error {
		for i := off / c.chunk; i <= (off+int64(len(dst))-1)/c.chunk; i++ {
			item, err := txn.Get(chunkKey(key, i))
			if err != nil {
				return err
			}
			want := c.chunk
			if i == last {
				want = blen - last*c.chunk
			}
			// Copy inside the transaction: val is only valid until it ends.
			err = item.Value(func(val []byte) error {
				if int64(len(val)) != want {
					return fmt.Errorf("%w: chunk %d has %d bytes stored, %d expected", errCorrupt, i, len(val), want)
				}
				lo := max(off, i*c.chunk)
				copy(dst[lo-off:], val[lo-i*c.chunk:])
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// put stores one block.
//
// LOCKS_REQUIRED(c.storeMu)
func (c *Cache) put(key, data []byte) error {
	if err := c.fault("put"); err != nil {
		return err
	}
	if err := c.room(int64(len(data))); err != nil {
		return err
	}
	return c.db.Update(func(txn *badger.Txn) error {
		for i := range c.chunks(int64(len(data))) {
			if err := txn.Set(chunkKey(key, i), data[i*c.chunk:min(int64(len(data)), (i+1)*c.chunk)]); err != nil {
				return err
			}
		}
		return nil
	})
}

// deleteLocked deletes blocks (their chunks, by each entry's size) in one
// batch. A failure leaves the blocks on disk but out of the index; the
// next Open finds and counts them again.
//
// LOCKS_REQUIRED(c.storeMu)
func (c *Cache) deleteLocked(blocks []lruEntry) error {
	if len(blocks) == 0 {
		return nil
	}
	err := c.fault("delete")
	if err == nil {
		wb := c.db.NewWriteBatch()
		defer wb.Cancel()
	del:
		for _, b := range blocks {
			for i := range c.chunks(b.size) {
				if err = wb.Delete(chunkKey([]byte(b.key), i)); err != nil {
					break del
				}
			}
		}
		if err == nil {
			err = wb.Flush()
		}
	}
	if err != nil {
		return fmt.Errorf("delete %d evicted blocks: %w", len(blocks), err)
	}
	return nil
}

// fault returns the error a test injects for op, if any.
func (c *Cache) fault(op string) error {
	if c.opt.testFault == nil {
		return nil
	}
	return c.opt.testFault(op)
}

// maintain runs reclaim when evictions pile up (kick) and on a ticker,
// until Close.
func (c *Cache) maintain(kick <-chan struct{}) {
	t := time.NewTicker(gcInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		if err := c.reclaim(); err != nil && c.ctx.Err() == nil {
			c.storeFailed("reclaim space", err)
		}
	}
}

// reclaim makes Badger count the value-log garbage that evictions left
// (flush the memtable, compact) and then collects it.
//
// LOCKS_EXCLUDED(c.mu, c.storeMu)
func (c *Cache) reclaim() error {
	c.reclaimMu.Lock()
	defer c.reclaimMu.Unlock()
	c.mu.Lock()
	churn := c.churn
	c.churn = 0
	c.mu.Unlock()
	if churn > 0 {
		if err := c.compact(); err != nil {
			return err
		}
	}
	for c.ctx.Err() == nil {
		// A rewrite copies what is live of a value-log file (at most
		// half of it) to the end of the log before the file goes.
		if c.room(vlogFileSize(c.bs, c.max)/2) != nil {
			return nil
		}
		start := time.Now()
		err := c.valueLogGC()
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("value log GC: %w", err)
		}
		c.stats.gcRuns.Add(1)
		// Give writes at least as much time as the rewrite took before
		// the next one: maintenance never has the store to itself.
		select {
		case <-c.ctx.Done():
		case <-time.After(max(gcPause, time.Since(start))):
		}
	}
	return nil
}

// valueLogGC rewrites one value-log file. Badger's GC reads the DB's max
// version (DB.MaxVersion) unsynchronized with the memtable's writer
// (badger v4.9.6): a word read that can only be stale, which makes
// compaction keep a few more versions while the rewrite runs, never fewer.
// Holding every write off for the rewrite (up to half a value-log file of
// copying) would stall writes to the mount for seconds, so that is done
// only in race-detector builds, where the report would fail the tests.
//
// LOCKS_EXCLUDED(c.mu, c.storeMu)
func (c *Cache) valueLogGC() error {
	if gcHoldsWrites {
		c.storeMu.Lock()
		defer c.storeMu.Unlock()
		c.dirtyGate.Lock()
		defer c.dirtyGate.Unlock()
	}
	return c.db.RunValueLogGC(gcDiscardRatio)
}

// compact flushes the memtable and flattens the tree, so compaction sees
// the deletes of evicted blocks and records their value-log space as
// discardable. Writes of blocks wait meanwhile (Badger blocks writes during
// DropPrefix; holding storeMu keeps ours out of its way).
//
// LOCKS_EXCLUDED(c.mu, c.storeMu)
func (c *Cache) compact() error {
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	c.dirtyGate.Lock()
	defer c.dirtyGate.Unlock()
	if err := c.db.Update(func(txn *badger.Txn) error { return txn.Set(flushKey, nil) }); err != nil {
		return fmt.Errorf("write flush marker: %w", err)
	}
	if err := c.db.DropPrefix(flushKey); err != nil {
		return fmt.Errorf("flush memtable: %w", err)
	}
	if err := c.db.Flatten(1); err != nil {
		return fmt.Errorf("flatten: %w", err)
	}
	return nil
}
