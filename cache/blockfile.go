package cache

// Block bytes on disk: one sparse file per cached version in <Dir>/blocks,
// written with pwrite, read with pread, holes punched on eviction. See the
// package doc, "Layout".

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// blocksDirName is the folder of block files inside Options.Dir.
const blocksDirName = "blocks"

// castagnoli is the crc32c table (hardware-accelerated on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt: a stored block's bytes are not what the index recorded
// (checksum mismatch, short file, missing file).
var errCorrupt = errors.New("stored block failed verification")

// fileName is the name of a version's block file: the hex sha256 of its
// version key, so any id makes a safe name of fixed length.
func fileName(vkey string) string {
	h := sha256.Sum256([]byte(vkey))
	return hex.EncodeToString(h[:])
}

// blockPath is the path of a version's block file.
func (c *Cache) blockPath(name string) string { return filepath.Join(c.blockDir, name) }

// allocOf is what block idx of length n is counted as on disk: every
// file-system block it touches, so a short last block counts whole and a
// block size that is not a multiple of the file-system block counts the
// blocks it shares with its neighbours twice (an overestimate).
func (c *Cache) allocOf(idx, n int64) int64 {
	start, end := idx*c.bs, idx*c.bs+n
	lo := start / c.fsBlock * c.fsBlock
	hi := (end + c.fsBlock - 1) / c.fsBlock * c.fsBlock
	return hi - lo
}

// fsBlockSize is the file-system block size of dir (4096 if unknown).
func fsBlockSize(dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Bsize <= 0 {
		return 4096
	}
	return int64(st.Bsize)
}

// writeBlock writes data as block idx of the file name with one pwrite.
// A failed write punches what it may have left.
func (c *Cache) writeBlock(name string, idx int64, data []byte) error {
	if err := c.fault("put"); err != nil {
		return err
	}
	if err := c.room(int64(len(data))); err != nil {
		return err
	}
	f, err := os.OpenFile(c.blockPath(name), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open block file: %w", err)
	}
	_, err = f.WriteAt(data, idx*c.bs)
	if err != nil {
		punch(f, idx*c.bs, int64(len(data))) // best effort: the bytes are not recorded anyway
		f.Close()
		return fmt.Errorf("write block %d: %w", idx, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close block file after writing block %d: %w", idx, err)
	}
	return nil
}

// readBlockFile reads block idx (n bytes, checksum crc) of the file name
// and copies its bytes [off, off+len(dst)) into dst. The whole block is
// read and verified, straight into dst when dst is the whole block. A
// missing file, a short read or a checksum mismatch is errCorrupt.
func (c *Cache) readBlockFile(name string, idx, n int64, crc uint32, dst []byte, off int64) error {
	if err := c.fault("get"); err != nil {
		return err
	}
	f, err := os.Open(c.blockPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: block file %s is gone", errCorrupt, name)
	}
	if err != nil {
		return fmt.Errorf("open block file: %w", err)
	}
	defer f.Close()
	whole, direct := dst, off == 0 && int64(len(dst)) == n
	if !direct {
		whole = c.blockBuf(int(n))
		defer c.putBlockBuf(whole)
	}
	if err := verifyBlock(f, idx*c.bs, whole, crc); err != nil {
		return fmt.Errorf("block %d of %s: %w", idx, name, err)
	}
	if !direct {
		copy(dst, whole[off:])
	}
	return nil
}

// verifyBlock reads len(buf) bytes at off of f into buf and checks their
// crc32c.
func verifyBlock(f *os.File, off int64, buf []byte, crc uint32) error {
	got, err := f.ReadAt(buf, off)
	switch {
	case got < len(buf) && (err == nil || errors.Is(err, io.EOF)):
		return fmt.Errorf("%w: %d of %d bytes on disk (file truncated)", errCorrupt, got, len(buf))
	case err != nil && !(errors.Is(err, io.EOF) && got == len(buf)):
		return fmt.Errorf("read: %w", err)
	}
	if sum := crc32.Checksum(buf, castagnoli); sum != crc {
		return fmt.Errorf("%w: crc32c %08x, index says %08x", errCorrupt, sum, crc)
	}
	return nil
}

// punch frees [off, off+n) of f, keeping its size.
func punch(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err != nil {
		return fmt.Errorf("punch bytes %d-%d of %s: %w", off, off+n, filepath.Base(f.Name()), err)
	}
	return nil
}

// punchRanges punches [off, off+n) pairs of the file name; a missing file
// has nothing to punch.
func (c *Cache) punchRanges(name string, ranges [][2]int64) error {
	if len(ranges) == 0 {
		return nil
	}
	f, err := os.OpenFile(c.blockPath(name), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open block file to punch: %w", err)
	}
	defer f.Close()
	for _, r := range ranges {
		if err := punch(f, r[0], r[1]); err != nil {
			return err
		}
	}
	return nil
}

// removeFile unlinks the file name; a missing one is fine.
func (c *Cache) removeFile(name string) error {
	if err := os.Remove(c.blockPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove block file: %w", err)
	}
	return nil
}

// allocated is st_blocks*512 of the file name (0 if it is missing).
func (c *Cache) allocated(name string) (int64, bool, error) {
	var st unix.Stat_t
	err := unix.Stat(c.blockPath(name), &st)
	if errors.Is(err, unix.ENOENT) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("stat block file: %w", err)
	}
	return st.Blocks * 512, true, nil
}
