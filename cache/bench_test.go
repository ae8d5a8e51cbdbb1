package cache

import (
	"context"
	"fmt"
	"testing"
)

// memSource is a zero-latency Fetcher over a byte slice.
type memSource []byte

func (m memSource) FetchAt(_ context.Context, p []byte, off int64) (int, error) {
	return copy(p, m[off:]), nil
}

// BenchmarkSequentialRead reads a 64 MiB version in 128 KiB reads (the
// kernel's usual FUSE read size) through an on-disk cache with default
// block size and readahead. cold: every iteration is a new version, so
// every block is fetched and stored; warm: every block is a hit.
func BenchmarkSequentialRead(b *testing.B) {
	const size = 64 << 20
	src := make(memSource, size)
	newSource(size, 0).fill(src, 0)
	for _, mode := range []string{"cold", "warm"} {
		b.Run(mode, func(b *testing.B) {
			c, _ := openCache(b, "disk", "", Options{MaxBytes: 256 << 20})
			buf := make([]byte, 128<<10)
			read := func(v Version) {
				f := c.File(v, src, FileOptions{})
				defer f.Close()
				for off := int64(0); off < size; off += int64(len(buf)) {
					if _, err := f.ReadAt(context.Background(), buf, off); err != nil {
						b.Fatal(err)
					}
				}
			}
			warm := Version{FileID: "bench", VersionID: "warm", Size: size}
			if mode == "warm" {
				read(warm)
				quiesce(b, c)
			}
			before := c.Stats().Fetches
			b.SetBytes(size)
			n := 0
			for b.Loop() {
				v := warm
				if mode == "cold" {
					v.VersionID = fmt.Sprint(n)
				}
				read(v)
				n++
			}
			b.ReportMetric(float64(c.Stats().Fetches-before)/float64(n), "fetches/op")
		})
	}
}

// BenchmarkDirtyWrite writes a 256 MiB new file into the journal in 1 MiB
// writes (the FUSE write size evofs asks for), as cp into the mount does.
func BenchmarkDirtyWrite(b *testing.B) {
	const size, chunk = 256 << 20, 1 << 20
	c, _ := openCache(b, "disk", "", Options{MaxBytes: 1 << 30})
	buf := make([]byte, chunk)
	newSource(chunk, 1).fill(buf, 0)
	b.SetBytes(size)
	n := 0
	for b.Loop() {
		d, err := c.NewDirty(Record{Path: fmt.Sprintf("bench/%d.bin", n)}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for off := int64(0); off < size; off += chunk {
			if _, err := d.WriteAt(context.Background(), buf, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := d.Remove(); err != nil {
			b.Fatal(err)
		}
		n++
	}
}
