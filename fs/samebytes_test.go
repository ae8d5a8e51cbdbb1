package fs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRenameOverSameBytesMakesNoVersion: `sed -i` that changes nothing
// writes a temp file and renames it over the file: no version is made, the
// file keeps its id and bytes, and the temp file is gone; a sed that
// changes something makes exactly one version. Both write-back modes.
func TestRenameOverSameBytesMakesNoVersion(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) {
			emu := startEmu(t)
			m := mountEmu(t, emu, mountConfig{async: mode.async})
			base := strings.Repeat("easting,northing,grade\n", 2000)
			upload(t, m.Client, m.Blobs, "data/x.csv", strings.NewReader(base), int64(len(base)))
			v0, _ := remoteFile(t, m, "data/x.csv")
			dir := filepath.Join(m.Dir, "data")

			run(t, dir, "sed", "-i", "s/nomatch/changed/", "x.csv")
			waitNothingPending(t, m)
			waitSettled(t, m)
			d, b := remoteFile(t, m, "data/x.csv")
			if string(b) != base || d.FileID != v0.FileID {
				t.Fatalf("after a sed that changed nothing: %d bytes in file %s, want the %d of file %s", len(b), d.FileID, len(base), v0.FileID)
			}
			if vs := versionList(t, m, v0.FileID); len(vs) != 1 {
				t.Errorf("a sed that changed nothing: %d versions, want 1", len(vs))
			}
			if live := liveByPath(t, m); len(live) != 1 {
				t.Errorf("live files: %v, want only data/x.csv", sortedPaths(live))
			}
			if got, err := os.ReadFile(filepath.Join(dir, "x.csv")); err != nil || string(got) != base {
				t.Errorf("through the mount: %d bytes, %v", len(got), err)
			}

			run(t, dir, "sed", "-i", "s/grade/Au_ppm/", "x.csv")
			want := strings.ReplaceAll(base, "grade", "Au_ppm")
			waitNothingPending(t, m)
			poll(t, 20*time.Second, func() string { return fmt.Sprintf("versions of %s", v0.FileID) },
				func() bool { return len(versionList(t, m, v0.FileID)) == 2 })
			waitSettled(t, m)
			if d, b := remoteFile(t, m, "data/x.csv"); string(b) != want || d.FileID != v0.FileID {
				t.Errorf("after a sed that changed the file: %d bytes in file %s", len(b), d.FileID)
			}
			if vs := versionList(t, m, v0.FileID); len(vs) != 2 {
				t.Errorf("a sed that changed the file: %d versions, want 2", len(vs))
			}
		})
	}
}
