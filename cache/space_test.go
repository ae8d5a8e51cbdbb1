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
// disk under Badger's memory maps is a SIGBUS).
func TestDirtyRefusesWritesNearAFullDisk(t *testing.T) {
	ctx := context.Background()
	var free atomic.Int64
	free.Store(1 << 40)
	c, _ := openCache(t, "disk", "", Options{testFree: free.Load})
	d, err := c.NewDirty(Record{Path: "big"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt(ctx, make([]byte, PageSize), 0); err != nil {
		t.Fatal(err)
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
	if d.Size() != PageSize {
		t.Fatalf("size %d after the failed write", d.Size())
	}
	// A write of one page still fits.
	if _, err := d.WriteAt(ctx, []byte("x"), 10); err != nil {
		t.Fatal(err)
	}
}
