package fs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	evofs "github.com/evofs/evofs/fs"
	"github.com/evofs/evofs/remote"
)

// TestKernelReadahead: a mount asked for 1 MiB of kernel readahead gets it,
// one not asked keeps the kernel's 128 KiB, and a large file reads back
// whole through either, with nothing logged.
func TestKernelReadahead(t *testing.T) {
	emu := startEmu(t)
	content := randomBytes(21, 24<<20+12345)
	upload(t, newClient(t, emu), remote.NewBlobs(remote.BlobConfig{}), "big.bin", bytes.NewReader(content), int64(len(content)))
	cases := []struct {
		name string
		set  int64
		want int64
	}{
		{"asked for 1 MiB", 1 << 20, 1 << 20},
		{"left alone", 0, 128 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mountEmu(t, emu, mountConfig{kernelReadahead: tc.set})
			got, err := evofs.KernelReadahead(m.Dir)
			if err != nil || got != tc.want {
				t.Fatalf("kernel readahead %d (%v), want %d", got, err, tc.want)
			}
			b, err := os.ReadFile(filepath.Join(m.Dir, "big.bin"))
			if err != nil || sum(b) != sum(content) {
				t.Fatalf("read back: %d bytes (%v), want %d with sha256 %s", len(b), err, len(content), sum(content))
			}
			// go-fuse logs through evofs's logger; a splice of a 1 MiB
			// read would fail with a line per read.
			if l := m.Logs.String(); strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
				t.Fatalf("the read logged:\n%s", l)
			}
		})
	}
}
