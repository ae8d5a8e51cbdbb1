// Package cache is evofs's persistent read cache: fixed-size blocks of
// immutable file versions kept in Badger, and a per-open-file reader
// ([File]) that reads through it with shared fetches and adaptive
// readahead. It knows nothing of FUSE or of the remote API; bytes come from
// a [Fetcher] (a ranged GET on one version) that the caller supplies.
//
// # Keys
//
// Block i of a version covers [i*BlockSize, min((i+1)*BlockSize, Size)).
// It is stored under
//
//	'b' fileID 0x00 versionID 0x00 bigendian64(i)
//
// (0x00 and 0x01 inside an ID are escaped, so two versions never share a
// key). Blocks are never keyed by path: a new version is a new key, so
// nothing in this package is ever invalidated. One small metadata key,
// 'm' "config", records the format and the block size; the block size of a
// cache directory is fixed when it is created. Opening it with
// [Options.BlockSize] zero adopts the stored size; opening it with a
// different non-zero size fails.
//
// # Eviction
//
// The cache holds at most [Options.MaxBytes] bytes of block data (keys and
// Badger's own overhead are not counted). An in-memory LRU list over every
// stored key (key and size, no data) is touched on each hit; a store that
// would pass the bound deletes the least recently used blocks in one
// WriteBatch. The list is not persisted: Open rebuilds it with a keys-only
// iteration ordered by each key's Badger commit version, so after a restart
// recency is "most recently written", and hits of the previous run are
// forgotten. Sizes read back at Open are Badger's estimate (exact for full
// blocks, within a few bytes for a short last block) and become exact at
// the block's first hit.
//
// # Disk space
//
// Blocks of 4 KiB or more live in Badger's value log, so they are written
// once and never rewritten by LSM compactions; smaller ones stay in the LSM
// tree. A deleted value-log entry is only reclaimed by value-log GC, and
// Badger's GC only sees garbage that a compaction has counted. The pointer
// entries of a block cache are so small that the memtable would almost
// never be flushed and the garbage never counted (measured: 400 MiB of
// value log for 16 MiB of live blocks). So a maintenance goroutine, woken
// when evictions since its last run pass MaxBytes/8 and every 10 minutes,
// flushes the memtable (DropPrefix of a marker key, which also compacts L0),
// flattens the tree, and then runs RunValueLogGC(0.5) until it has nothing
// to do (measured: the value log stays at the live size). Close stops it.
//
// # Concurrency
//
// All readers of one block share one fetch: the first registers it in an
// in-flight map and the others wait on its channel. The fetch runs on its
// own context, detached from the reader that started it, so an interrupted
// reader (FUSE cancels a request on any signal to the client) never aborts
// a download others wait for; a reader's context only bounds its own wait.
// Close of the cache cancels fetches. A fetch's error goes to every waiter
// and nothing is stored, so the next read tries again.
//
// # Readahead
//
// A [File] tracks its reader. A read that starts within one block of where
// the previous one ended is sequential; a read anywhere else closes the
// window, so random readers fetch only the blocks they touch. Once a
// block's worth of bytes has been read sequentially the window opens at
// one fetch ([FileOptions.FetchSize], 16 MiB by default, at most half of
// [FileOptions.Readahead]), and each sequential read that enters a new
// block doubles it, up to Readahead blocks.
//
// Readahead fetches whole runs of consecutive blocks with one Fetcher call
// (one ranged GET): fewer, larger requests cost the store less per byte.
// A run is only shorter at the version's end or when blocks in it are
// already stored or in flight. Through a [ProgressFetcher] each block of a
// run goes to its readers as soon as its bytes are in. The read that
// opens or moves the window starts the next run itself when its slots are
// free, so the reader's next read finds it in flight; otherwise a worker
// starts runs in block order, at most [FileOptions.Parallelism] at a time
// per file and 16 per cache, never past the version's end, and stops when
// the File is closed. A run's slots are given back when its bytes are in;
// its blocks are then stored while the next runs fetch.
//
// # Failure
//
// The store fails soft: if Badger cannot read or write (disk full, I/O
// error), reads are served from the Fetcher, the failure is counted in
// [Stats].StoreErrors, and one warning is logged per outage. A stored
// block whose length is not what its version implies is deleted and
// fetched again; Badger verifies value checksums on every read. The cache
// never returns bytes it has not verified this way.
//
// # Dirty data
//
// A [Dirty] is the content of a file being written: a journal record
// ('j' bigendian64(id), JSON [Record]) in Badger, and a sparse content
// file <Dir>/local/<id> (in a temporary folder, removed at Close, for an
// in-memory cache). Writes go to the file with pwrite; the record lists
// the file's "filled" pages (256 KiB, [PageSize]) as runs. A byte of a
// filled page reads from the file; of another page, from the base version
// under BaseLimit and as zeros past it. A write covering part of a page
// not filled yet first copies the page's current content into the file;
// a filled page takes writes as they come. Truncation cuts the file (its
// space comes back) and the filled pages; growth reads zeros.
//
// Order: bytes are in the file before the record claims them (one Badger
// transaction per write or truncate), so a process killed at any point
// (the kernel's page cache survives it) reopens with every acknowledged
// write, and at worst bytes of an unacknowledged one. The file past the
// end is never read, and is cut back before the end moves past it. A
// power loss keeps what was synced: [Dirty.Sync] and [Cache.Sync] fsync
// the content files written since their last sync, then sync Badger. A
// record remembers the boot it was last changed under while unsynced, and
// content reopened under another boot is marked unstored (it may lack
// bytes its record claims) rather than uploaded. [Dirty.Remove] deletes
// the record, then unlinks the file; Open removes files no record owns.
//
// [Dirty.File] hands the file out (for FUSE passthrough) when no base
// shows through; the file is then the whole content, and [Dirty.Refresh]
// adopts writes made to it directly. Records of the format before content
// files (pages in Badger under 'd') are moved into a content file by
// [Cache.OpenDirty].
//
// # Memory
//
// No file is ever held in memory: the only block buffers are those of
// fetches in flight or fetched and not yet stored, and each handle's last
// block. Readahead takes a run's bytes from a 32 MiB budget per cache
// before fetching it and gives them back once its blocks are stored, so a
// store that lags behind the network stalls readahead instead of growing
// memory. Demand fetches (one block per waiting reader) come on top, and a
// handle's last block may keep its run's buffer (at most 16 MiB) alive.
// Hits are copied straight from Badger into the reader's buffer.
package cache
