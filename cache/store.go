package cache

// Everything that talks to Badger about blocks: options, the logger
// adapter, index keys and values, the config record, the old-format
// upgrade and the index rebuild at Open. The block bytes themselves live in
// plain files (blockfile.go).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

const (
	// memTableSize bounds each Badger memtable: Badger holds only the
	// block index and the journal, small values.
	memTableSize = 16 << 20

	// valueThreshold: values this large or larger go to the value log.
	// Index entries and most journal records stay in the LSM tree, where
	// compactions reclaim deleted ones; the value log holds the rare large
	// record and, until OpenDirty moves them into content files, the
	// dirty pages of format 0.
	valueThreshold = 4 << 10

	// valueLogFileSize: the value log takes little now; its files are
	// sparse until written.
	valueLogFileSize = 64 << 20

	// upgradeGCRuns bounds the value-log GC passes after dropping an old
	// format's blocks.
	upgradeGCRuns = 2

	// formatVersion 3 keeps block bytes in files and only the index in
	// Badger. Formats 1 and 2 kept blocks as Badger values under 'b'
	// keys; their blocks are dropped at Open, their journal kept.
	formatVersion = 3
)

var (
	configKey = []byte("mconfig")
	// oldBlockPrefix starts every block key of formats 1 and 2.
	oldBlockPrefix = []byte{'b'}
	// versionPrefix starts a version's index header: its size.
	versionPrefix = []byte{'v'}
	// indexPrefix starts a stored block's index entry: its checksum and
	// recency.
	indexPrefix = []byte{'k'}
)

// badgerOptions: Badger holds the block index and the upload journal,
// small values in the LSM tree (see valueThreshold).
func badgerOptions(dir string, log *slog.Logger) badger.Options {
	o := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(memTableSize).
		WithValueThreshold(valueThreshold).
		WithNumMemtables(2).
		WithValueLogFileSize(valueLogFileSize).
		WithCompression(options.None).
		WithBlockCacheSize(0). // uncompressed tables are read straight from mmap
		WithChecksumVerificationMode(options.OnBlockRead).
		WithDetectConflicts(false). // no read-modify-write transactions
		WithMetricsEnabled(false).  // Badger's metrics are process-wide expvars
		WithSyncWrites(false)       // see the package doc, "Crashes"
	if dir == "" {
		// In memory every value stays in the tree, and Badger takes
		// only values below ValueThreshold.
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

// versionKey identifies v: fileID 0x00 versionID 0x00, with 0x00 and 0x01
// inside an ID escaped, so two versions never share it.
func versionKey(v Version) string {
	b := make([]byte, 0, len(v.FileID)+len(v.VersionID)+2)
	b = appendID(b, v.FileID)
	b = append(b, 0)
	b = appendID(b, v.VersionID)
	return string(append(b, 0))
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

// headerKey is the Badger key of a version's header.
func headerKey(vkey string) []byte {
	return append(append(make([]byte, 0, 1+len(vkey)), versionPrefix...), vkey...)
}

// blockKey is the Badger key of block idx of a version's index, and the
// key of its fetch in the in-flight map.
func blockKey(vkey string, idx int64) []byte {
	k := make([]byte, 0, 1+len(vkey)+8)
	k = append(append(k, indexPrefix...), vkey...)
	return binary.BigEndian.AppendUint64(k, uint64(idx))
}

// splitBlockKey is blockKey's inverse.
func splitBlockKey(k []byte) (vkey string, idx int64, ok bool) {
	if len(k) < len(indexPrefix)+2+8 {
		return "", 0, false
	}
	return string(k[len(indexPrefix) : len(k)-8]), int64(binary.BigEndian.Uint64(k[len(k)-8:])), true
}

// indexValue encodes a block's index entry: crc32c, then its use sequence
// number (recency; bigger is more recent).
func indexValue(crc uint32, seq uint64) []byte {
	v := binary.BigEndian.AppendUint32(make([]byte, 0, 12), crc)
	return binary.BigEndian.AppendUint64(v, seq)
}

func parseIndexValue(v []byte) (crc uint32, seq uint64, ok bool) {
	if len(v) != 12 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(v), binary.BigEndian.Uint64(v[4:]), true
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

// upgrade drops the blocks of an older format (they are only a cache; the
// journal, dirty pages and local folders stay), gives Badger a bounded
// chance to reclaim their value-log space, and records this format.
func upgrade(db *badger.DB, bs int64, log *slog.Logger) error {
	if err := db.DropPrefix(oldBlockPrefix); err != nil {
		return fmt.Errorf("drop blocks of an older cache format: %w", err)
	}
	for range upgradeGCRuns {
		if err := db.RunValueLogGC(0.5); err != nil {
			break // ErrNoRewrite, in-memory mode, or a real failure: the space comes back another time or not
		}
	}
	if err := writeConfig(db, bs); err != nil {
		return err
	}
	log.Info("cache: old block format cleared; pending uploads kept")
	return nil
}

// writeConfig records the format and block size of a cache.
func writeConfig(db *badger.DB, bs int64) error {
	v := make([]byte, 9)
	v[0] = formatVersion
	binary.BigEndian.PutUint64(v[1:], uint64(bs))
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(configKey, v) }); err != nil {
		return fmt.Errorf("write cache config: %w", err)
	}
	return nil
}

// openDB opens Badger and settles the block size: a new cache records bs;
// an existing one keeps its own, which o.BlockSize must match if set.
func openDB(o Options, bs int64) (*badger.DB, int64, error) {
	db, err := badger.Open(badgerOptions(o.Dir, o.Logger))
	if err != nil {
		return nil, 0, fmt.Errorf("open block index in %q: %w", o.Dir, err)
	}
	stored, format, err := readConfig(db)
	switch {
	case err == nil && stored == 0:
		err = writeConfig(db, bs)
	case err == nil && stored > maxBlockSize:
		err = fmt.Errorf("it records block size %d, more than this evofs supports (%d)", stored, maxBlockSize)
	case err == nil && stored != bs && o.BlockSize != 0:
		err = fmt.Errorf("it was created with block size %d, not %d (remove it or use that size)", stored, o.BlockSize)
	default:
		bs = stored
		if err == nil && format < formatVersion {
			err = upgrade(db, bs, o.Logger)
		}
	}
	if err != nil {
		db.Close()
		return nil, 0, fmt.Errorf("open block cache in %q: %w", o.Dir, err)
	}
	return db, bs, nil
}

// indexRec is one block entry read back at Open.
type indexRec struct {
	idx int64
	crc uint32
	seq uint64
}

// loadIndex reads every version header and block entry. Entries that make
// no sense (a block without its header, past its version's end, or
// unreadable) are returned as stale keys to delete.
func (c *Cache) loadIndex() (sizes map[string]int64, blocks map[string][]indexRec, stale [][]byte, err error) {
	sizes = map[string]int64{}
	blocks = map[string][]indexRec{}
	err = c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: versionPrefix, PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.KeyCopy(nil)
			err := item.Value(func(v []byte) error {
				if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < 0 {
					stale = append(stale, k)
					return nil
				}
				sizes[string(k[len(versionPrefix):])] = int64(binary.BigEndian.Uint64(v))
				return nil
			})
			if err != nil {
				it.Close()
				return err
			}
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: indexPrefix, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.KeyCopy(nil)
			vkey, idx, ok := splitBlockKey(k)
			size, known := sizes[vkey]
			if !ok || !known || idx < 0 || idx*c.bs >= size {
				stale = append(stale, k)
				continue
			}
			err := item.Value(func(v []byte) error {
				crc, seq, ok := parseIndexValue(v)
				if !ok {
					stale = append(stale, k)
					return nil
				}
				blocks[vkey] = append(blocks[vkey], indexRec{idx: idx, crc: crc, seq: seq})
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read the block index: %w", err)
	}
	for vkey := range sizes {
		if len(blocks[vkey]) == 0 { // emptied by a crash between a block's delete and its header's
			stale = append(stale, headerKey(vkey))
			delete(sizes, vkey)
		}
	}
	return sizes, blocks, stale, nil
}

// deleteKeys deletes index keys in one batch.
func (c *Cache) deleteKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return nil
	}
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("delete %d index entries: %w", len(keys), err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("delete %d index entries: %w", len(keys), err)
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
