package cache

import (
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestDirtyRefusesWritesNearAFullDisk: a dirty write that would leave less
// than the reserve free fails with ENOSPC before Badger sees it (a full
// disk under Badger's memory maps is a SIGBUS), the content remembers the
// failed range until it is written again or truncated away, and the
// reopened journal remembers it too.
func TestDirtyRefusesWritesNearAFullDisk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var free atomic.Int64
	free.Store(1 << 40)
	c, _ := openCache(t, "disk", dir, Options{testFree: free.Load})
	d, err := c.NewDirty(Record{Path: "big"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(ctx, make([]byte, PageSize), 0); err != nil {
		t.Fatal(err)
	}
	if d.Unstored() != nil {
		t.Fatal("unstored after a good write")
	}
	free.Store(reserveBytes + PageSize + 1)
	_, err = d.WriteAt(ctx, make([]byte, 2*PageSize), PageSize)
	if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrNoSpace) {
		t.Fatalf("write near a full disk: %v", err)
	}
	var eno syscall.Errno
	if !errors.As(err, &eno) || eno != syscall.ENOSPC {
		t.Fatalf("not an ENOSPC errno: %v", err)
	}
	if u := d.Unstored(); !errors.Is(u, ErrUnstored) || !errors.Is(u, syscall.ENOSPC) {
		t.Fatalf("Unstored after a failed write: %v", u)
	}
	if d.Size() != PageSize {
		t.Fatalf("size %d after the failed write", d.Size())
	}
	// A small write elsewhere (one page) fits, and does not clear the failed range.
	if _, err := d.WriteAt(ctx, []byte("x"), 10); err != nil {
		t.Fatal(err)
	}
	if d.Unstored() == nil {
		t.Fatal("a write elsewhere cleared the failed range")
	}
	// The journal keeps the range across a restart.
	recs, err := c.Journal()
	if err != nil || len(recs) != 1 || recs[0].Unstored == nil || *recs[0].Unstored != (Span{PageSize, 3 * PageSize}) {
		t.Fatalf("journal: %+v, %v", recs, err)
	}
	d2, err := c.OpenDirty(recs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if u := d2.Unstored(); !errors.Is(u, ErrUnstored) {
		t.Fatalf("reopened: %v", u)
	}
	// Writing the range again (room is back) clears it.
	free.Store(1 << 40)
	if _, err := d.WriteAt(ctx, make([]byte, 2*PageSize), PageSize); err != nil {
		t.Fatal(err)
	}
	if u := d.Unstored(); u != nil {
		t.Fatalf("after writing the range again: %v", u)
	}
	// So does a truncate below it.
	free.Store(0)
	if _, err := d.WriteAt(ctx, []byte("more"), 4*PageSize); err == nil {
		t.Fatal("write with no room succeeded")
	}
	if err := d.Truncate(ctx, 3*PageSize); err != nil {
		t.Fatalf("truncate (stores nothing): %v", err)
	}
	if u := d.Unstored(); u != nil {
		t.Fatalf("after truncating the range away: %v", u)
	}
}
