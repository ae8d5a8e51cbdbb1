// Package cache is evofs's persistent read cache: fixed-size blocks of
// immutable file versions kept in plain sparse files with a small index in
// Badger, and a per-open-file reader ([File]) that reads through it with
// shared fetches and adaptive readahead. It knows nothing of FUSE or of
// the remote API; bytes come from a [Fetcher] (a ranged GET on one
// version) that the caller supplies.
//
// # Layout
//
// Block i of a version covers [i*BlockSize, min((i+1)*BlockSize, Size)).
// Each cached version has one sparse file in <Dir>/blocks, named by the
// hex sha256 of its version key (fileID 0x00 versionID 0x00, with 0x00
// and 0x01 inside an ID escaped), so any ID makes a safe name and two
// versions never share a file. Block i lives at offset i*BlockSize of it:
// it is written with one pwrite and read with pread straight into the
// reader's buffer; nothing is memory-mapped. Blocks are never keyed by
// path: a new version is a new file, so nothing in this package is ever
// invalidated. With Options.Dir "" (tests) the files go to a temporary
// folder that Close removes, and the index stays in memory.
//
// # Index
//
// Badger holds, per version, a header 'v' versionKey -> size, and per
// stored block an entry 'k' versionKey bigendian64(i) -> crc32c (4 bytes)
// and a use sequence number (8 bytes). One key per block rather than one
// per version: storing a block writes 17 bytes plus the key, whatever the
// version's size, where a per-version bitmap and checksum list would be
// rewritten whole for every block of a large file. Index values are far
// below Badger's value threshold, so the index lives in the LSM tree and
// compactions reclaim deleted entries: blocks need no value-log GC, and
// none runs. (Dirty pages still go to the value log, and their deleted
// ones are not reclaimed until they move out of Badger; see store.go.)
// One more key, 'm' "config", records the format and the block
// size; the block size of a cache directory is fixed when it is created.
// Opening it with [Options.BlockSize] zero adopts the stored size; opening
// it with a different non-zero size fails. Open reads the whole index
// into memory (a few dozen bytes per block).
//
// A block is indexed only after its pwrite has returned, and its entry is
// deleted only after its bytes are punched. No fsync: after an unclean
// stop the index may claim bytes that never reached the disk, which the
// checksum catches (below); bytes written but not indexed are punched at
// the next Open (a file holding more than its indexed blocks has the rest
// punched, a file of no indexed version is removed).
//
// # Verification
//
// Every read of a stored block reads the whole block and checks its
// crc32c (hardware-accelerated, about 10 GB/s: a 1 MiB block costs some
// 100 µs of CPU on top of the copy from the page cache, a few percent of
// a warm read). A block whose checksum does not match, whose file is
// short (truncated) or gone is dropped from the index, its bytes punched,
// counted in [Stats].Corrupt, logged, and fetched again by the read that
// found it. No byte is ever served unverified.
//
// # Eviction
//
// The cache holds at most [Options.MaxBytes] bytes of block files on
// disk. A block counts as every file-system block it touches (allocOf):
// for full blocks of a multiple of the file-system block size that is
// exactly their allocation; a short last block counts rounded up; a block
// size that is not such a multiple counts shared file-system blocks twice.
// The index and Badger's own files are not counted (they are small: tens
// of bytes per block). An LRU list over every stored block (no data) is
// touched on each hit; a store that would pass the bound evicts the least
// recently used blocks: a version that loses its last block has its file
// unlinked, other evicted blocks are punched (fallocate PUNCH_HOLE,
// KEEP_SIZE). Recency survives restarts coarsely: hits are written back to
// the index in batches (every 256 hits, and at Close), and Open orders
// the list by each block's last recorded use.
//
// # Passthrough
//
// [Cache.Complete] tells whether every block of a version is stored;
// [Cache.Backing] hands out the version's file, open read-only, for the
// kernel to read directly, once every block is stored and has passed its
// checksum since Open: blocks not yet verified this run (stored this run,
// or found at Open) are read and checked then, once per version and Open.
// A handed-out version is pinned until its release func is called:
// eviction skips it, and a new block that cannot fit beside the pinned
// versions is not stored.
//
// # Old formats
//
// Formats 1 and 2 stored blocks as Badger values under 'b' keys. Opening
// such a cache drops those keys (one DropPrefix), runs value-log GC at
// most twice so their space can come back, logs one line, and keeps the
// journal, dirty pages, local folders and waiting deletes ('j', 'd', 'l',
// 'x') untouched.
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
// The store fails soft: if a block file or the index cannot be read or
// written (disk full, I/O error), reads are served from the Fetcher, the
// failure is counted in [Stats].StoreErrors, and one warning is logged
// per outage. Block writes also keep a reserve free on the cache disk for
// Badger (space.go).
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
// A hit of a whole block is read (pread) straight into the reader's
// buffer; a piece of a block is read whole into a pooled buffer to be
// verified, then copied.
package cache
