package cache

import (
	"fmt"
	"os"
	"strconv"

	badger "github.com/dgraph-io/badger/v4"
	"golang.org/x/sys/unix"
)

// AdoptDirty starts dirty content for rec.Path (with rec's base fields, as
// NewDirty) whose bytes are file's: a file the kernel already serves to
// open handles of the file by passthrough, holding every byte of the
// content. The file itself becomes the content (it is linked into the
// content folder under the new record's id), so what is written to the
// content is what those handles read. When from is not nil, file is that
// version's file in the read cache, which gives it up first: the version
// leaves the index (to be fetched again when next read elsewhere) and its
// file leaves the blocks folder, never to be written, punched or removed
// by the read cache again. The content is direct (see File) and wholly
// local: Size is the file's size, BaseLimit 0.
func (c *Cache) AdoptDirty(rec Record, file *os.File, from *Version) (*Dirty, error) {
	if !c.enter() {
		return nil, ErrClosed
	}
	defer c.wg.Done()
	rec.ID = c.nextID.Add(1)
	path := c.local.path(rec.ID)
	// Link first: once the read cache has let go, the file must already
	// have a name of the content's.
	proc := "/proc/self/fd/" + strconv.Itoa(int(file.Fd()))
	if err := unix.Linkat(unix.AT_FDCWD, proc, unix.AT_FDCWD, path, unix.AT_SYMLINK_FOLLOW); err != nil {
		return nil, fmt.Errorf("make the passthrough file of %s its content: link: %w", rec.Path, err)
	}
	if from != nil {
		if err := c.detach(*from); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("take version %s of %s out of the read cache: %w", from.VersionID, rec.Path, err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("open the content file of %s: %w", rec.Path, err)
	}
	st, err := f.Stat()
	if err == nil {
		err = setMtime(f, directMtime)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("adopt the content file of %s: %w", rec.Path, err)
	}
	size := st.Size()
	rec.Size, rec.BaseLimit = size, 0
	rec.Format, rec.Direct, rec.Boot = contentFormat, true, c.local.boot
	rec.Filled = nil
	if n := pagesFor(size); n > 0 {
		rec.Filled = [][2]int64{{0, n}}
	}
	d := &Dirty{c: c, id: rec.ID, rec: rec, f: f, unsynced: true}
	if err := c.update(func(txn *badger.Txn) error { return d.putRecord(txn) }); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("journal adopted content of %s: %w", rec.Path, err)
	}
	c.local.add(d)
	return d, nil
}
