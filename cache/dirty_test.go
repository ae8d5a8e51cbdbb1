package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// bytesBase is a base version held in memory; it counts reads.
type bytesBase struct {
	b     []byte
	reads int
}

func (s *bytesBase) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	s.reads++
	if off >= int64(len(s.b)) {
		return 0, io.EOF
	}
	n := copy(p, s.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// readDirty reads the whole content.
func readDirty(t *testing.T, d *Dirty) []byte {
	t.Helper()
	out := make([]byte, d.Size()+10)
	n, err := d.ReadAt(context.Background(), out, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("ReadAt: %v", err)
	}
	return out[:n]
}

// TestDirtyMatchesModel applies a seeded random mix of writes (page-
// straddling, past the end) and truncates (down and up) to a file over a
// base, checking every step against a byte-slice model, then reopens it
// from the journal and checks again.
func TestDirtyMatchesModel(t *testing.T) {
	for _, kind := range stores {
		for _, baseSize := range []int{0, 1, PageSize - 1, 3*PageSize + 17} {
			t.Run(kind, func(t *testing.T) {
				dir := t.TempDir()
				ctx := context.Background()
				r := rand.New(rand.NewPCG(uint64(baseSize), 7))
				base := &bytesBase{b: randBytes(r, baseSize)}
				c, _ := openCache(t, kind, dir, Options{})
				rec := Record{Path: "a/b.bin", FileID: "f1", BaseVersion: "v1", BaseSize: int64(baseSize)}
				var b BaseReader = base
				if baseSize == 0 {
					rec.BaseVersion, b = "", nil
				}
				d, err := c.NewDirty(rec, b)
				if err != nil {
					t.Fatal(err)
				}
				model := append([]byte(nil), base.b...)
				for step := 0; step < 200; step++ {
					switch op := r.IntN(10); {
					case op < 7:
						off := r.IntN(len(model) + PageSize)
						p := randBytes(r, 1+r.IntN(2*PageSize))
						if _, err := d.WriteAt(ctx, p, int64(off)); err != nil {
							t.Fatalf("step %d: write: %v", step, err)
						}
						if end := off + len(p); end > len(model) {
							model = append(model, make([]byte, end-len(model))...)
						}
						copy(model[off:], p)
					default:
						size := r.IntN(len(model) + PageSize)
						if err := d.Truncate(ctx, int64(size)); err != nil {
							t.Fatalf("step %d: truncate: %v", step, err)
						}
						if size < len(model) {
							model = model[:size]
						} else {
							model = append(model, make([]byte, size-len(model))...)
						}
					}
					if step%20 == 0 || step == 199 {
						if got := readDirty(t, d); !bytes.Equal(got, model) {
							t.Fatalf("step %d: content differs from the model (len %d vs %d)", step, len(got), len(model))
						}
					}
				}
				if kind == "mem" {
					return
				}
				// Reopen from the journal after a restart.
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				c2, _ := openCache(t, kind, dir, Options{})
				recs, err := c2.Journal()
				if err != nil || len(recs) != 1 || recs[0].Path != "a/b.bin" || recs[0].Size != int64(len(model)) {
					t.Fatalf("journal after reopen: %+v, %v", recs, err)
				}
				d2, err := c2.OpenDirty(recs[0], b)
				if err != nil {
					t.Fatal(err)
				}
				if got := readDirty(t, d2); !bytes.Equal(got, model) {
					t.Fatal("reopened content differs from the model")
				}
				d3, err := c2.NewDirty(Record{Path: "new"}, nil)
				if err != nil || d3.ID() <= d2.ID() {
					t.Fatalf("new id %d after reopen must pass %d (%v)", d3.ID(), d2.ID(), err)
				}
			})
		}
	}
}

func TestDirtyChanged(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	baseBytes := randBytes(r, 2*PageSize+100)
	cases := []struct {
		name string
		do   func(d *Dirty) error
		want bool
	}{
		{"nothing written", func(d *Dirty) error { return nil }, false},
		{"same bytes rewritten", func(d *Dirty) error {
			_, err := d.WriteAt(ctx, baseBytes[PageSize-5:PageSize+9], PageSize-5)
			return err
		}, false},
		{"one byte changed", func(d *Dirty) error {
			_, err := d.WriteAt(ctx, []byte{baseBytes[7] + 1}, 7)
			return err
		}, true},
		{"grown", func(d *Dirty) error { return d.Truncate(ctx, int64(len(baseBytes))+1) }, true},
		{"cut and regrown with zeros", func(d *Dirty) error {
			if err := d.Truncate(ctx, 10); err != nil {
				return err
			}
			return d.Truncate(ctx, int64(len(baseBytes)))
		}, true},
		{"cut and rewritten as it was", func(d *Dirty) error {
			if err := d.Truncate(ctx, PageSize+3); err != nil {
				return err
			}
			_, err := d.WriteAt(ctx, baseBytes[PageSize+3:], PageSize+3)
			return err
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := openCache(t, "mem", "", Options{})
			d, err := c.NewDirty(Record{Path: "x", FileID: "f", BaseVersion: "1", BaseSize: int64(len(baseBytes))}, &bytesBase{b: baseBytes})
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.do(d); err != nil {
				t.Fatal(err)
			}
			if got, err := d.Changed(ctx); err != nil || got != tc.want {
				t.Fatalf("Changed = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	t.Run("new file", func(t *testing.T) {
		c, _ := openCache(t, "mem", "", Options{})
		d, _ := c.NewDirty(Record{Path: "x"}, nil)
		if got, _ := d.Changed(ctx); !got {
			t.Fatal("a new file (even empty) is a change")
		}
	})
}

// TestDirtyFullPageWritesSkipTheBase: a write covering whole pages never
// reads the base (cp over an existing file fetches nothing).
func TestDirtyFullPageWritesSkipTheBase(t *testing.T) {
	ctx := context.Background()
	base := &bytesBase{b: make([]byte, 4*PageSize)}
	c, _ := openCache(t, "mem", "", Options{})
	d, _ := c.NewDirty(Record{Path: "x", FileID: "f", BaseVersion: "1", BaseSize: 4 * PageSize}, base)
	if err := d.Truncate(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < 4*PageSize; off += 128 << 10 {
		if _, err := d.WriteAt(ctx, bytes.Repeat([]byte{1}, 128<<10), off); err != nil {
			t.Fatal(err)
		}
	}
	if base.reads != 0 {
		t.Fatalf("sequential writes after O_TRUNC read the base %d times", base.reads)
	}
}

func TestDirtyRemoveAndUpdate(t *testing.T) {
	ctx := context.Background()
	c, _ := openCache(t, "disk", "", Options{})
	d, _ := c.NewDirty(Record{Path: "x"}, nil)
	if _, err := d.WriteAt(ctx, []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Update(func(r *Record) {
		r.Pending = true
		r.Size = 99 // content fields are not the caller's: ignored
		r.Upload = &Upload{FileID: "f", VersionID: "7", Gen: 1, Staged: []int64{0}}
	}); err != nil {
		t.Fatal(err)
	}
	recs, _ := c.Journal()
	if len(recs) != 1 || !recs[0].Pending || recs[0].Size != 5 || recs[0].Upload.VersionID != "7" {
		t.Fatalf("journal: %+v", recs)
	}
	if err := d.Remove(); err != nil {
		t.Fatal(err)
	}
	if recs, _ := c.Journal(); len(recs) != 0 {
		t.Fatalf("journal after remove: %+v", recs)
	}
	if _, err := d.WriteAt(ctx, []byte("x"), 0); !errors.Is(err, ErrRemoved) {
		t.Fatalf("write after remove: %v", err)
	}
	if err := c.SetLocalDir("a/b", true); err != nil {
		t.Fatal(err)
	}
	if dirs, _ := c.LocalDirs(); len(dirs) != 1 || dirs[0] != "a/b" {
		t.Fatalf("local dirs: %v", dirs)
	}
}

// TestDirtyWriteFailureKeepsContent: a store failure fails the write and
// leaves the content as it was (ENOSPC reaches the writer, nothing half done).
func TestDirtyWriteFailureKeepsContent(t *testing.T) {
	ctx := context.Background()
	var failPut bool
	c, _ := openCache(t, "mem", "", Options{testFault: func(op string) error {
		if op == "put" && failPut {
			return errors.New("no space left on device")
		}
		return nil
	}})
	d, _ := c.NewDirty(Record{Path: "x"}, nil)
	if _, err := d.WriteAt(ctx, []byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	failPut = true
	if _, err := d.WriteAt(ctx, []byte("HELLO world"), 0); err == nil {
		t.Fatal("write succeeded while the store fails")
	}
	if got := string(readDirty(t, d)); got != "hello" || d.Size() != 5 {
		t.Fatalf("after a failed write: %q (size %d)", got, d.Size())
	}
}
