package cache

// Content files: where a Dirty's bytes live. See the package doc, "Dirty
// data".

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// localStore is the folder of content files, <Dir>/local (a temporary
// folder, removed at Close, for an in-memory cache), and the Dirties whose
// files are open.
type localStore struct {
	dir  string
	temp bool   // dir was made for this Cache: removed at Close
	boot string // this boot's id ("" when unknown): see Record.Boot

	mu   sync.Mutex
	live map[*Dirty]struct{} // GUARDED_BY(mu): open content files
}

// bootIDFile names the running kernel's boot: it changes at every boot, so
// a record written under another one lived through a restart of the
// machine (a power loss, unless evofs synced before it).
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// directMtime is the modification time a content file handed to the
// kernel (Dirty.File) is set to after each Refresh: any write the kernel
// makes moves it to the present, which the next Refresh sees however
// coarse the file system's timestamps are.
var directMtime = time.Unix(1, 0)

// openLocal makes the content folder and removes content files no journal
// record owns (a crash between a record's delete and its file's unlink, or
// between a file's creation and its record's). It runs in Open, before any
// Dirty can exist.
func (c *Cache) openLocal() error {
	ls := &localStore{live: map[*Dirty]struct{}{}}
	if b, err := os.ReadFile(bootIDFile); err == nil {
		ls.boot = strings.TrimSpace(string(b))
	}
	if c.opt.Dir == "" {
		dir, err := os.MkdirTemp("", "evofs-local-")
		if err != nil {
			return fmt.Errorf("make a folder for local content: %w", err)
		}
		ls.dir, ls.temp = dir, true
		c.local = ls
		return nil
	}
	ls.dir = filepath.Join(c.opt.Dir, "local")
	if err := os.MkdirAll(ls.dir, 0o700); err != nil {
		return fmt.Errorf("make the local content folder: %w", err)
	}
	c.local = ls
	recs, err := c.Journal()
	if err != nil {
		return err
	}
	owned := map[uint64]bool{}
	for _, r := range recs {
		owned[r.ID] = true
	}
	ents, err := os.ReadDir(ls.dir)
	if err != nil {
		return fmt.Errorf("list the local content folder: %w", err)
	}
	for _, e := range ents {
		id, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil || owned[id] {
			continue
		}
		if err := os.Remove(filepath.Join(ls.dir, e.Name())); err != nil {
			c.log.Warn("remove a content file no journal record owns failed", "file", e.Name(), "err", err)
		} else {
			c.log.Info("removed a content file no journal record owns", "file", e.Name())
		}
	}
	return nil
}

// closeLocal closes every open content file, and removes the folder of an
// in-memory cache. It runs in Close, once no call is in progress.
func (c *Cache) closeLocal() error {
	ls := c.local
	ls.mu.Lock()
	live := make([]*Dirty, 0, len(ls.live))
	for d := range ls.live {
		live = append(live, d)
	}
	clear(ls.live)
	ls.mu.Unlock()
	for _, d := range live {
		d.mu.Lock()
		if d.f != nil {
			d.f.Close()
		}
		d.mu.Unlock()
	}
	if ls.temp {
		if err := os.RemoveAll(ls.dir); err != nil {
			return fmt.Errorf("remove the local content folder: %w", err)
		}
	}
	return nil
}

func (ls *localStore) path(id uint64) string {
	return filepath.Join(ls.dir, strconv.FormatUint(id, 10))
}

func (ls *localStore) add(d *Dirty) {
	ls.mu.Lock()
	ls.live[d] = struct{}{}
	ls.mu.Unlock()
}

func (ls *localStore) drop(d *Dirty) {
	ls.mu.Lock()
	delete(ls.live, d)
	ls.mu.Unlock()
}

// Sync makes every write so far durable on disk: it fsyncs the content
// file of every Dirty written since its last sync, journals that they are
// synced, and syncs Badger.
func (c *Cache) Sync() error {
	if !c.enter() {
		return ErrClosed
	}
	defer c.wg.Done()
	c.local.mu.Lock()
	live := make([]*Dirty, 0, len(c.local.live))
	for d := range c.local.live {
		live = append(live, d)
	}
	c.local.mu.Unlock()
	var errs []error
	for _, d := range live {
		d.mu.Lock()
		if !d.gone {
			errs = append(errs, d.syncLocked())
		}
		d.mu.Unlock()
	}
	if err := c.db.Sync(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sync cache: %w", err)
	}
	return nil
}

// Page runs: Record.Filled lists the pages of the content file that hold
// the content, as sorted, disjoint, non-adjacent runs [from, to) of page
// indexes. The functions below never modify their argument (a Record
// copy may share it).

// runAt reports whether page idx is filled, and the first page index past
// idx where that changes (maxRun when it never does).
func runAt(runs [][2]int64, idx int64) (bool, int64) {
	i := sort.Search(len(runs), func(i int) bool { return runs[i][1] > idx })
	if i == len(runs) {
		return false, maxRun
	}
	if runs[i][0] <= idx {
		return true, runs[i][1]
	}
	return false, runs[i][0]
}

const maxRun = int64(1) << 62

func filled(runs [][2]int64, idx int64) bool {
	f, _ := runAt(runs, idx)
	return f
}

// addRun returns runs with [from, to) filled.
func addRun(runs [][2]int64, from, to int64) [][2]int64 {
	if from >= to {
		return runs
	}
	out := make([][2]int64, 0, len(runs)+1)
	i := 0
	for ; i < len(runs) && runs[i][1] < from; i++ {
		out = append(out, runs[i])
	}
	for ; i < len(runs) && runs[i][0] <= to; i++ {
		from, to = min(from, runs[i][0]), max(to, runs[i][1])
	}
	out = append(out, [2]int64{from, to})
	return append(out, runs[i:]...)
}

// cutRuns returns runs without the pages at or past n.
func cutRuns(runs [][2]int64, n int64) [][2]int64 {
	out := make([][2]int64, 0, len(runs))
	for _, r := range runs {
		if r[0] >= n {
			break
		}
		out = append(out, [2]int64{r[0], min(r[1], n)})
	}
	return out
}

// pagesFor is the number of pages that hold size bytes.
func pagesFor(size int64) int64 { return (size + PageSize - 1) / PageSize }

// preadFull fills dst from f at off; bytes past the file's end read as
// zeros (content files are sparse, and may be shorter than their content).
func preadFull(f *os.File, dst []byte, off int64) error {
	n, err := f.ReadAt(dst, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	clear(dst[n:])
	return nil
}

// zeroRange makes [off, off+n) of f read as zeros: a hole punched, or
// zeros written where the file system cannot punch one.
func zeroRange(f *os.File, off, n int64) error {
	if n <= 0 {
		return nil
	}
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("punch a hole: %w", err)
	}
	zeros := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

// setMtime sets f's modification (and access) time.
func setMtime(f *os.File, t time.Time) error {
	tv := unix.NsecToTimeval(t.UnixNano())
	if err := unix.Futimes(int(f.Fd()), []unix.Timeval{tv, tv}); err != nil {
		return fmt.Errorf("set the content file's time: %w", err)
	}
	return nil
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
