package cache

// Whole versions for kernel passthrough: Complete tells the fs layer a
// version is all in the cache, Backing hands out its verified block file.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
)

// Dir is the folder of the cache's block files: files made there can be
// the kernel's backing files as the cache's own are.
func (c *Cache) Dir() string { return c.blockDir }

// Complete reports whether every block of v is stored (a version of size
// 0 never is: it has no file). A File whose reads just completed its
// version can tell with File.Complete, so that the next open of the
// version can use Backing.
func (c *Cache) Complete(v Version) bool {
	if v.Size <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ve := c.versions[versionKey(v)]
	return ve != nil && ve.size == v.Size && int64(len(ve.blocks)) == c.nblocks(v.Size)
}

// Complete reports whether every block of f's version is stored.
func (f *File) Complete() bool { return f.c.Complete(f.v) }

// Backing returns v's block file when every block of v
// is stored and its bytes have passed their checksum since Open: blocks
// not yet verified this run are read and checked now (once per version
// and Open; a block that fails is dropped, to be fetched again, and
// Backing fails). While the file is handed out, v is pinned: eviction
// neither punches nor unlinks it, and the bytes of pinned versions count
// against MaxBytes, so new blocks that cannot fit beside them are not
// stored. The caller closes f and calls release once (further calls do
// nothing); release may be called after the Cache is closed. ok is false,
// with nothing to close or release, if v is not complete and verified or
// ctx ends first.
func (c *Cache) Backing(ctx context.Context, v Version) (f *os.File, release func(), ok bool) {
	if v.Size <= 0 || !c.enter() {
		return nil, nil, false
	}
	defer c.wg.Done()
	n := c.nblocks(v.Size)
	vkey := versionKey(v)
	c.mu.Lock()
	ve := c.versions[vkey]
	if ve == nil || ve.size != v.Size || int64(len(ve.blocks)) != n {
		c.mu.Unlock()
		return nil, nil, false
	}
	c.pinLocked(ve)
	var todo, all []*stored
	for _, s := range ve.blocks {
		all = append(all, s)
		if !s.verified {
			todo = append(todo, s)
		}
	}
	c.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { c.unpin(ve) }) }

	// Read-write: a writer that joins the version's passthrough readers
	// makes the file its content (AdoptDirty), and writes through it.
	f, err := os.OpenFile(c.blockPath(ve.name), os.O_RDWR, 0)
	if err != nil {
		release()
		if os.IsNotExist(err) {
			for _, s := range all {
				c.forget(s, fmt.Errorf("%w: block file %s is gone", errCorrupt, ve.name))
			}
		} else {
			c.storeFailed("open block file for passthrough", err)
		}
		return nil, nil, false
	}
	sort.Slice(todo, func(i, j int) bool { return todo[i].idx < todo[j].idx })
	if len(todo) > 0 {
		buf := c.blockBuf(int(c.bs))
		defer c.putBlockBuf(buf)
		for _, s := range todo {
			if ctx.Err() != nil {
				f.Close()
				release()
				return nil, nil, false
			}
			err := c.fault("get")
			if err == nil {
				err = verifyBlock(f, s.idx*c.bs, buf[:s.len], s.crc)
			}
			if err != nil {
				f.Close()
				release()
				c.forget(s, fmt.Errorf("verify block %d of %s for passthrough: %w", s.idx, ve.name, err))
				return nil, nil, false
			}
			c.markVerified(s)
		}
	}
	c.mu.Lock()
	ok = int64(len(ve.blocks)) == n && int64(ve.verified) == n // a reader may have dropped a block meanwhile
	c.mu.Unlock()
	if !ok {
		f.Close()
		release()
		return nil, nil, false
	}
	return f, release, true
}

// pinLocked pins ve: its blocks are not evicted until unpin.
//
// LOCKS_REQUIRED(c.mu)
func (c *Cache) pinLocked(ve *version) {
	if ve.pins == 0 {
		c.pinned += ve.alloc
	}
	ve.pins++
}

// unpin undoes one pinLocked. A version whose blocks were all dropped
// while it was pinned is dropped now, file and all.
//
// LOCKS_EXCLUDED(c.mu, c.storeMu)
func (c *Cache) unpin(ve *version) {
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	c.mu.Lock()
	ve.pins--
	if ve.pins == 0 {
		c.pinned -= ve.alloc
	}
	gone := ve.pins == 0 && len(ve.blocks) == 0 && c.versions[ve.key] == ve
	if gone {
		delete(c.versions, ve.key)
	}
	closed := c.closed
	c.mu.Unlock()
	if !gone || closed {
		return // after Close, the next Open finds the empty version
	}
	err := c.removeFile(ve.name)
	if err == nil {
		err = c.deleteKeys([][]byte{headerKey(ve.key)})
	}
	if err != nil {
		c.storeFailed("drop an emptied version", err)
	}
}

// detach takes version v out of the read cache for AdoptDirty, which has
// given its file another name: its blocks leave the index, in memory and
// in Badger, and its file leaves the blocks folder. The read cache never
// writes, punches or removes that file again; the next read of v fetches
// it into a new one. Pins handed out by Backing stay valid (their release
// finds the version gone).
//
// LOCKS_EXCLUDED(c.mu, c.storeMu)
func (c *Cache) detach(v Version) error {
	c.storeMu.Lock()
	defer c.storeMu.Unlock()
	vkey := versionKey(v)
	c.mu.Lock()
	ve := c.versions[vkey]
	if ve == nil {
		c.mu.Unlock()
		return errors.New("the version is not in the read cache")
	}
	keys := [][]byte{headerKey(vkey)}
	for _, s := range ve.blocks {
		keys = append(keys, blockKey(vkey, s.idx))
		c.lru.Remove(s.el)
		delete(c.touched, s)
		c.used -= s.alloc
		c.nstored--
	}
	if ve.pins > 0 {
		c.pinned -= ve.alloc
	}
	ve.blocks, ve.alloc, ve.verified = map[int64]*stored{}, 0, 0
	delete(c.versions, vkey)
	c.mu.Unlock()
	// Unlinked before the keys go: a crash between leaves keys without a
	// file, which the next Open drops.
	if err := c.removeFile(ve.name); err != nil {
		return err
	}
	return c.deleteKeys(keys)
}
