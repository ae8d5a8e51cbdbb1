// Package sqlwal performs a SQLite write-ahead-log checkpoint on bytes,
// without cgo and without a SQLite library.
//
// It implements the WAL file format documented at
// https://www.sqlite.org/fileformat2.html#walformat: the committed
// transactions of a WAL are found the way SQLite's recovery finds them
// (valid header, then frames whose salt matches the header and whose
// cumulative checksum is right, up to the last commit frame), and their
// newest page images are copied into the database content, which is then
// sized to the page count recorded by the last commit.
//
// Callers use it when no process has the database open: after Apply has
// succeeded, the WAL may be emptied (truncated to zero bytes or deleted),
// and any -shm file is stale and may be removed. Until the WAL is emptied
// a failed or interrupted Apply is harmless: SQLite reads every page the
// WAL holds from the WAL, so a later Apply or SQLite itself redoes the work.
package sqlwal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

const (
	walHeaderSize   = 32
	frameHeaderSize = 24

	// magicLE marks a WAL whose checksums read the data as little-endian
	// 32-bit words; magicBE (low bit set) as big-endian words. Every other
	// integer in the file is big-endian regardless.
	magicLE = 0x377f0682
	magicBE = 0x377f0683

	// walVersion is the only WAL format version SQLite has defined.
	walVersion = 3007000

	minPageSize = 512
	maxPageSize = 65536
)

// Frames is what a WAL holds that a checkpoint would copy: the committed
// transactions only. Frames after the last valid commit frame, and a frame
// with a bad checksum or a salt that is not the header's together with every
// frame after it, are ignored, exactly as SQLite's recovery does.
type Frames struct {
	// PageSize is the database page size from the WAL header (512..65536;
	// the WAL stores 65536 as is, unlike the database header's 1).
	PageSize int
	// DBPages is the database size in pages after the last committed
	// transaction (the last commit frame's field).
	DBPages uint32
	// Pages maps a page number to the offset in the WAL of the newest
	// committed image of that page's data (past the frame header). Pages
	// beyond DBPages are left out, as SQLite's checkpoint skips them.
	Pages map[uint32]int64
	// Commits is the number of committed transactions found.
	Commits int
	// Salt1 and Salt2 are the salts from the WAL header.
	Salt1, Salt2 uint32
}

// Read parses a WAL of the given size. A WAL that is empty, shorter than its
// header, has a bad header magic, page size or checksum, or has no committed
// frame returns (nil, nil): nothing to checkpoint. A valid header with a
// format version other than 3007000 is an error, as SQLite refuses to open
// such a database. A trailing partial frame is ignored.
func Read(wal io.ReaderAt, size int64) (*Frames, error) {
	if size < walHeaderSize {
		return nil, nil
	}
	var hdr [walHeaderSize]byte
	if err := readFull(wal, hdr[:], 0); err != nil {
		return nil, fmt.Errorf("sqlwal: read WAL header: %w", err)
	}
	be := binary.BigEndian
	var order binary.ByteOrder
	switch be.Uint32(hdr[0:]) {
	case magicLE:
		order = binary.LittleEndian
	case magicBE:
		order = binary.BigEndian
	default:
		return nil, nil
	}
	pageSize := be.Uint32(hdr[8:])
	if pageSize < minPageSize || pageSize > maxPageSize || pageSize&(pageSize-1) != 0 {
		return nil, nil
	}
	s1, s2 := checksum(order, hdr[:24], 0, 0)
	if s1 != be.Uint32(hdr[24:]) || s2 != be.Uint32(hdr[28:]) {
		return nil, nil
	}
	if v := be.Uint32(hdr[4:]); v != walVersion {
		return nil, fmt.Errorf("sqlwal: unsupported WAL format version %d (want %d)", v, walVersion)
	}
	salt1, salt2 := be.Uint32(hdr[16:]), be.Uint32(hdr[20:])

	type frame struct {
		pgno uint32
		off  int64
	}
	var (
		frameSize = int64(frameHeaderSize) + int64(pageSize)
		buf       = make([]byte, frameSize)
		pending   []frame // frames of the transaction not yet committed
		pages     = make(map[uint32]int64)
		dbPages   uint32
		commits   int
	)
	for off := int64(walHeaderSize); off+frameSize <= size; off += frameSize {
		if err := readFull(wal, buf, off); err != nil {
			return nil, fmt.Errorf("sqlwal: read WAL frame at offset %d: %w", off, err)
		}
		pgno, commit := be.Uint32(buf[0:]), be.Uint32(buf[4:])
		if pgno == 0 || be.Uint32(buf[8:]) != salt1 || be.Uint32(buf[12:]) != salt2 {
			break
		}
		s1, s2 = checksum(order, buf[:8], s1, s2)
		s1, s2 = checksum(order, buf[frameHeaderSize:], s1, s2)
		if s1 != be.Uint32(buf[16:]) || s2 != be.Uint32(buf[20:]) {
			break
		}
		pending = append(pending, frame{pgno, off + frameHeaderSize})
		if commit != 0 {
			for _, fr := range pending {
				pages[fr.pgno] = fr.off
			}
			pending = pending[:0]
			dbPages = commit
			commits++
		}
	}
	if commits == 0 {
		return nil, nil
	}
	for pgno := range pages {
		if pgno > dbPages {
			delete(pages, pgno)
		}
	}
	return &Frames{
		PageSize: int(pageSize),
		DBPages:  dbPages,
		Pages:    pages,
		Commits:  commits,
		Salt1:    salt1,
		Salt2:    salt2,
	}, nil
}

// DB is the database content a checkpoint writes into.
type DB interface {
	io.WriterAt
	// Truncate sets the size of the content, cutting it or extending it
	// with zeros.
	Truncate(ctx context.Context, size int64) error
}

// Apply copies each committed page image into db at (pgno-1)*PageSize, in
// page order, and then sets the db's size to DBPages*PageSize (truncating or
// extending). wal must be the WAL f was read from, unchanged since. ctx is
// checked between pages. Apply on a nil *Frames does nothing.
func (f *Frames) Apply(ctx context.Context, wal io.ReaderAt, db DB) error {
	if f == nil {
		return nil
	}
	pgnos := make([]uint32, 0, len(f.Pages))
	for pgno := range f.Pages {
		pgnos = append(pgnos, pgno)
	}
	slices.Sort(pgnos)
	buf := make([]byte, f.PageSize)
	for _, pgno := range pgnos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sqlwal: checkpoint interrupted: %w", err)
		}
		off := f.Pages[pgno]
		if err := readFull(wal, buf, off); err != nil {
			return fmt.Errorf("sqlwal: read page %d from WAL offset %d: %w", pgno, off, err)
		}
		dbOff := int64(pgno-1) * int64(f.PageSize)
		if n, err := db.WriteAt(buf, dbOff); err != nil || n != len(buf) {
			if err == nil {
				err = io.ErrShortWrite
			}
			return fmt.Errorf("sqlwal: write page %d at database offset %d: %w", pgno, dbOff, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlwal: checkpoint interrupted: %w", err)
	}
	size := int64(f.DBPages) * int64(f.PageSize)
	if err := db.Truncate(ctx, size); err != nil {
		return fmt.Errorf("sqlwal: set database size to %d: %w", size, err)
	}
	return nil
}

// checksum continues SQLite's WAL checksum (s1, s2) over b, whose length is
// a multiple of 8, reading b as 32-bit words in the given byte order.
func checksum(order binary.ByteOrder, b []byte, s1, s2 uint32) (uint32, uint32) {
	for i := 0; i+8 <= len(b); i += 8 {
		s1 += order.Uint32(b[i:]) + s2
		s2 += order.Uint32(b[i+4:]) + s1
	}
	return s1, s2
}

// readFull reads len(p) bytes at off, accepting io.EOF alongside a full
// read as io.ReaderAt allows.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}
