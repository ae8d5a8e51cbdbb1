package fs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

// TestReadOnlyMountReadsWALGeoPackage: on a --read-only mount, sqlite3
// reads the seeded WAL GeoPackage (its -shm and -wal side files are
// local-only, made in the cache as on a viewer's mount), nothing reaches
// the service, and the database itself, a new file, a truncate and a
// side file of no database all answer EROFS.
func TestReadOnlyMountReadsWALGeoPackage(t *testing.T) {
	emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
	m := mountEmu(t, emu, mountConfig{readOnly: true})
	v0, _ := remoteFile(t, m, "vectors/geology.gpkg")
	before, err := m.Client.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	emu.ResetStats()
	dir := filepath.Join(m.Dir, "vectors")
	out := run(t, dir, "sqlite3", "geology.gpkg", "PRAGMA journal_mode;", "SELECT count(*) FROM gpkg_contents;")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "wal" || lines[1] == "0" {
		t.Fatalf("sqlite3 output:\n%s", out)
	}
	if out, err := runErr(dir, "sqlite3", "geology.gpkg", "CREATE TABLE x(a);"); err == nil || !strings.Contains(out+err.Error(), "readonly database") {
		t.Errorf("sqlite3 write on a read-only mount: %v\n%s", err, out)
	}
	for name, try := range map[string]func() error{
		"create":         func() error { _, err := os.Create(filepath.Join(dir, "x.txt")); return err },
		"open for write": func() error { _, err := os.OpenFile(filepath.Join(dir, "geology.gpkg"), os.O_RDWR, 0); return err },
		"truncate":       func() error { return os.Truncate(filepath.Join(m.Dir, "README.txt"), 0) },
		"side file of no database": func() error {
			_, err := os.Create(filepath.Join(dir, "nothing.db-shm"))
			return err
		},
		"mkdir":  func() error { return os.Mkdir(filepath.Join(m.Dir, "new"), 0o755) },
		"remove": func() error { return os.Remove(filepath.Join(m.Dir, "README.txt")) },
	} {
		if err := try(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s on a read-only mount: %v, want EROFS", name, err)
		}
	}
	st := emu.Stats()
	for _, op := range []string{emulator.OpUpsertFileByPath, emulator.OpUpdateFile, emulator.OpDeleteFile, emulator.OpDeleteFileByPath} {
		if n := st.APICalls(op); n != 0 {
			t.Errorf("%d %s calls from a read-only mount", n, op)
		}
	}
	if b := st.Blob[emulator.BlobOpPutBlob]; b != nil && b.Count > 0 {
		t.Errorf("%d blobs put", b.Count)
	}
	if v1, _ := remoteFile(t, m, "vectors/geology.gpkg"); v1.VersionID != v0.VersionID {
		t.Errorf("version %s -> %s", v0.VersionID, v1.VersionID)
	}
	after, err := m.Client.ListAll(context.Background(), remote.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("the workspace had %d files, has %d", len(before), len(after))
	}
}
