package fs_test

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/evofs/evofs/remote/emulator"
)

// qgisEditScript adds features to a GeoPackage layer the way a QGIS user
// does (start editing, add, save edits) through PyQGIS, offscreen: argv
// is the GeoPackage, the layer, a name prefix and a count. It prints the
// layer's feature count after the save.
const qgisEditScript = `
import sys
from qgis.core import (QgsApplication, QgsVectorLayer, QgsFeature, QgsGeometry, QgsPointXY)
QgsApplication.setPrefixPath('/usr', True)
app = QgsApplication([], False)
app.initQgis()
db, name, prefix, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
layer = QgsVectorLayer(db + '|layername=' + name, name, 'ogr')
if not layer.isValid():
    sys.exit('layer not valid: ' + db)
layer.startEditing()
for i in range(n):
    f = QgsFeature(layer.fields())
    f.setAttribute('hole_id', '%s%03d' % (prefix, i))
    f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(320100 + i, 6250100 + i)))
    layer.addFeature(f)
if not layer.commitChanges():
    sys.exit('commit failed: ' + '; '.join(layer.commitErrors()))
print(layer.featureCount())
del layer
app.exitQgis()
`

// qgisEdit runs qgisEditScript and returns what it printed.
func qgisEdit(t *testing.T, db, layer, prefix string, n int) string {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "-c", qgisEditScript, db, layer, prefix, itoa(n))
	cmd.Dir = t.TempDir()
	cmd.Env = append(cmd.Environ(), "QT_QPA_PLATFORM=offscreen", "XDG_RUNTIME_DIR="+t.TempDir(), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("QGIS editing %s: %v\n%s", db, err, stderr)
	}
	return strings.TrimSpace(string(out))
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestQGISEditsGeoPackageWhileAReaderHoldsIt is the desktop workflow of
// issue 14 with the real program: QGIS (PyQGIS 3.22 from Debian) adds 100
// features to the seeded WAL-mode GeoPackage and saves its edits while
// another process holds a read transaction on it, so SQLite cannot
// checkpoint and the rows sit in -wal. Once the last handle closes, the
// service has one GeoPackage with all 125 rows that passes
// integrity_check, in the same file, with no side file uploaded; a second
// mount reads the rows.
func TestQGISEditsGeoPackageWhileAReaderHoldsIt(t *testing.T) {
	for _, mode := range saveModes {
		t.Run(mode.name, func(t *testing.T) {
			emu := startEmu(t, func(c *emulator.Config) { c.Seed = seedDir(t) })
			m := mountEmu(t, emu, mountConfig{async: mode.async})
			g0, _ := remoteFile(t, m, gpkgPath)
			db := filepath.Join(m.Dir, gpkgPath)
			r := holdReadTx(t, db)
			if r.first != "25\n" {
				t.Fatalf("the reader counted %q", r.first)
			}
			if got := qgisEdit(t, db, "collars", "Q", 100); got != "125" {
				t.Fatalf("QGIS counts %q features after its save, want 125", got)
			}
			if got := r.end(t); got != "25\n" {
				t.Errorf("the reader's snapshot counted %q at its end", got)
			}
			waitSettled(t, m)
			out := gpkgCheck(t, m, gpkgPath, "PRAGMA integrity_check;", "SELECT count(*) FROM collars;",
				"SELECT count(*) FROM collars WHERE hole_id LIKE 'Q%';")
			if out != "ok\n125\n100\n" {
				t.Errorf("the service's GeoPackage, alone: %q, want ok, 125 rows, 100 of QGIS's", out)
			}
			d, _ := remoteFile(t, m, gpkgPath)
			if d.FileID != g0.FileID {
				t.Errorf("%s is file %s now, was %s", gpkgPath, d.FileID, g0.FileID)
			}
			t.Logf("%s: %d versions", mode.name, len(versionList(t, m, g0.FileID)))
			noSideFilesRemotely(t, m)
			other := mountEmu(t, emu, mountConfig{})
			if out := run(t, t.TempDir(), "ogrinfo", "-ro", "-so", filepath.Join(other.Dir, gpkgPath), "collars"); !strings.Contains(out, "Feature Count: 125") {
				t.Errorf("a second mount's ogrinfo:\n%s", out)
			}
		})
	}
}
