package cache

import (
	"fmt"
	"syscall"
)

// Free space on the cache disk.
//
// Badger writes through memory maps (the value log, the memtable's WAL,
// new tables), and a file on a full disk is extended lazily: the first
// touch of a page there raises SIGBUS, which kills the whole process
// instead of failing a write. So the cache never lets Badger near the end
// of the disk: a write of n bytes needs n plus reserveBytes free, and
// fails with ErrNoSpace (an ENOSPC) otherwise.

// reserveBytes is what stays free for Badger's own needs: memtable WAL
// entries, a memtable flush into a table and the compaction after it.
const reserveBytes = 2 * memTableSize

// ErrNoSpace is a write refused because the cache disk is (nearly) full.
// It wraps syscall.ENOSPC.
var ErrNoSpace = fmt.Errorf("no space left on the cache disk: %w", syscall.ENOSPC)

// freeBytes reports the bytes an unprivileged writer may still use on the
// cache's file system (-1: unknown, or no disk).
func (c *Cache) freeBytes() int64 {
	if c.opt.Dir == "" {
		return -1
	}
	if c.opt.testFree != nil {
		return c.opt.testFree()
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.opt.Dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// room fails with ErrNoSpace unless n more bytes fit on the cache disk with
// reserveBytes left over.
func (c *Cache) room(n int64) error {
	free := c.freeBytes()
	if free < 0 || free >= n+reserveBytes {
		return nil
	}
	return fmt.Errorf("%w: %d bytes to store, %d free, %d kept free for the store itself", ErrNoSpace, n, free, int64(reserveBytes))
}
