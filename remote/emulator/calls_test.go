package emulator_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/evofs/evofs/remote"
	"github.com/evofs/evofs/remote/emulator"
)

// TestCallsLifecycle walks one file through every call of the contract.
func TestCallsLifecycle(t *testing.T) {
	e := newEnv(t)

	// upsert by path creates the file; the link takes one Put Blob.
	up := e.upload("docs/new file.txt", "one")
	got := e.getByPath("docs/new file.txt", "")
	if got.FileID != up.FileID || got.VersionID != up.VersionID || got.Size != 3 || got.Name != "new file.txt" || got.Path != "/docs/" {
		t.Fatalf("get by path = %+v, want file %s version %s size 3 in /docs/", got, up.FileID, up.VersionID)
	}
	if got.Versions != nil || got.ETag == "" || got.CreatedBy == nil || got.ModifiedBy == nil || got.DeletedAt != nil {
		t.Fatalf("get by path metadata = %+v", got)
	}
	if s := e.download(got.Download); s != "one" {
		t.Fatalf("download = %q", s)
	}
	if got.Self != e.base+"/files/"+up.FileID {
		t.Fatalf("self = %s", got.Self)
	}

	// update by id: a second version.
	resp, b := e.call(http.MethodPut, "/files/"+up.FileID)
	wantStatus(t, resp, b, http.StatusOK)
	up2 := decode[remote.UploadFileResponse](t, b)
	if up2.FileID != up.FileID || up2.VersionID <= up.VersionID || len(up2.VersionID) < len(up.VersionID) {
		t.Fatalf("update = %+v after %+v", up2, up)
	}
	resp, b = e.putBlob(up2.Upload, "two!")
	wantStatus(t, resp, b, http.StatusCreated)

	// get by id: latest, a given version, all versions newest first.
	resp, b = e.call(http.MethodGet, "/files/"+up.FileID+"?include_versions=true")
	wantStatus(t, resp, b, http.StatusOK)
	d := decode[remote.DownloadFileResponse](t, b)
	if d.VersionID != up2.VersionID || d.Size != 4 || len(d.Versions) != 2 ||
		d.Versions[0].VersionID != up2.VersionID || d.Versions[1].VersionID != up.VersionID {
		t.Fatalf("get with versions = %+v", d)
	}
	if s := e.download(d.Versions[1].Link); s != "one" {
		t.Fatalf("old version link = %q", s)
	}
	resp, b = e.call(http.MethodGet, "/files/"+up.FileID+"?version_id="+up.VersionID)
	wantStatus(t, resp, b, http.StatusOK)
	if d := decode[remote.DownloadFileResponse](t, b); d.VersionID != up.VersionID || e.download(d.Download) != "one" {
		t.Fatalf("get version %s = %+v", up.VersionID, d)
	}
	if d := e.getByPath("docs/new file.txt", "?version_id="+up.VersionID); d.Size != 3 {
		t.Fatalf("get by path version = %+v", d)
	}

	// list.
	l := e.list("")
	if l.Total != 1 || l.Count != 1 || l.Files[0].FileID != up.FileID || l.Files[0].VersionID != up2.VersionID ||
		l.Files[0].Links.Self != e.base+"/files/"+up.FileID || l.Links.Next != nil || l.Links.Prev != nil {
		t.Fatalf("list = %+v", l)
	}

	// delete by id: gone; listed with deleted=true; get with deleted=true.
	resp, b = e.call(http.MethodDelete, "/files/"+up.FileID)
	wantStatus(t, resp, b, http.StatusNoContent)
	resp, b = e.call(http.MethodGet, "/files/"+up.FileID)
	wantProblem(t, resp, b, http.StatusGone, remote.CodeGone)
	resp, b = e.call(http.MethodGet, "/files/"+up.FileID+"?deleted=true")
	wantStatus(t, resp, b, http.StatusOK)
	if d := decode[remote.DownloadFileResponse](t, b); d.DeletedAt == nil || d.DeletedBy == nil {
		t.Fatalf("deleted file = %+v", d)
	}
	if l := e.list(""); l.Total != 0 {
		t.Fatalf("live listing after delete = %+v", l)
	}
	if l := e.list("?deleted=true"); l.Total != 1 || l.Files[0].DeletedAt == nil {
		t.Fatalf("deleted listing = %+v", l)
	}
	resp, b = e.call(http.MethodGet, "/files/path/"+esc("docs/new file.txt"))
	wantProblem(t, resp, b, http.StatusNotFound, remote.CodeNotFound)

	// restore in place: 204.
	resp, b = e.call(http.MethodPut, "/files/"+up.FileID+"?deleted=false")
	wantStatus(t, resp, b, http.StatusNoContent)
	if d := e.getByPath("docs/new file.txt", ""); d.VersionID != up2.VersionID || d.DeletedAt != nil {
		t.Fatalf("restored = %+v", d)
	}

	// delete by path.
	resp, b = e.call(http.MethodDelete, "/files/path/"+esc("docs/new file.txt"))
	wantStatus(t, resp, b, http.StatusNoContent)
	resp, b = e.call(http.MethodDelete, "/files/path/"+esc("docs/new file.txt"))
	wantProblem(t, resp, b, http.StatusNotFound, remote.CodeNotFound)

	st := e.s.Stats()
	for op, n := range map[string]int64{emulator.OpUpsertFileByPath: 1, emulator.OpUpdateFile: 1, emulator.OpRestoreFile: 1,
		emulator.OpDeleteFile: 1, emulator.OpDeleteFileByPath: 2, emulator.OpListFiles: 3} {
		if got := st.APICalls(op); got != n {
			t.Errorf("stats: %d %s calls, want %d", got, op, n)
		}
	}
	if st.APICount(emulator.OpDeleteFileByPath, 404) != 1 || st.Links.Upload != 2 {
		t.Errorf("stats = %+v", st)
	}
}

// TestRestoreMoved: a restore whose path was taken meanwhile lands at
// "name (1).ext" with 303; one whose parent folder became a file is 409.
func TestRestoreMoved(t *testing.T) {
	e := newEnv(t)
	old := e.upload("a/report.txt", "old")
	resp, b := e.call(http.MethodDelete, "/files/"+old.FileID)
	wantStatus(t, resp, b, http.StatusNoContent)
	e.upload("a/report.txt", "new")

	resp, b = e.call(http.MethodPut, "/files/"+old.FileID+"?deleted=false")
	wantStatus(t, resp, b, http.StatusSeeOther)
	d := decode[remote.DownloadFileResponse](t, b)
	if d.FileID != old.FileID || d.Name != "report (1).txt" || d.Path != "/a/" || resp.Header.Get("Location") != d.Self {
		t.Fatalf("restored at %+v, Location %q", d, resp.Header.Get("Location"))
	}
	if s := e.download(d.Download); s != "old" {
		t.Fatalf("restored content %q", s)
	}
	if s := e.download(e.getByPath("a/report (1).txt", "").Download); s != "old" {
		t.Fatalf("get restored by new path: %q", s)
	}

	// The parent folder of a deleted file is now a file: 409.
	x := e.upload("b/x.txt", "x")
	e.call(http.MethodDelete, "/files/"+x.FileID)
	e.upload("b", "a file named b")
	resp, b = e.call(http.MethodPut, "/files/"+x.FileID+"?deleted=false")
	wantProblem(t, resp, b, http.StatusConflict, remote.CodeAlreadyExists)
}

// TestPendingVersion: a version is invisible until its blob is committed,
// through the proxy or straight in Azurite.
func TestPendingVersion(t *testing.T) {
	e := newEnv(t)
	v1 := e.upload("p.txt", "first")
	v2 := e.upsert("p.txt")
	if v2.FileID != v1.FileID {
		t.Fatalf("upsert of an existing path made a new file: %+v", v2)
	}
	// Before the commit readers see v1.
	if d := e.getByPath("p.txt", "?include_versions=true"); d.VersionID != v1.VersionID || len(d.Versions) != 1 || e.download(d.Download) != "first" {
		t.Fatalf("before commit: %+v", d)
	}
	if l := e.list(""); l.Files[0].VersionID != v1.VersionID {
		t.Fatalf("listed before commit: %+v", l.Files[0])
	}
	resp, b := e.call(http.MethodGet, "/files/"+v1.FileID+"?version_id="+v2.VersionID)
	wantProblem(t, resp, b, http.StatusNotFound, remote.CodeNotFound)
	// Put Block twice with the same id, then Put Block List.
	blk := "YmxvY2stMDAwMDA="
	for range 2 {
		resp, b = e.do(http.MethodPut, v2.Upload+"&comp=block&blockid="+url.QueryEscape(blk), "", []byte("second"))
		wantStatus(t, resp, b, http.StatusCreated)
	}
	if d := e.getByPath("p.txt", ""); d.VersionID != v1.VersionID {
		t.Fatalf("after Put Block only: %+v", d)
	}
	resp, b = e.do(http.MethodPut, v2.Upload+"&comp=blocklist", "",
		[]byte(`<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>`+blk+`</Latest></BlockList>`))
	wantStatus(t, resp, b, http.StatusCreated)
	if d := e.getByPath("p.txt", ""); d.VersionID != v2.VersionID || d.Size != 6 || e.download(d.Download) != "second" {
		t.Fatalf("after commit: %+v", d)
	}
	st := e.s.Stats()
	if st.BlocksRestaged != 1 || st.Blob[emulator.BlobOpPutBlock].Count != 2 || st.Blob[emulator.BlobOpPutBlock].Bytes != 12 ||
		st.Blob[emulator.BlobOpPutBlockList].Status[201] != 1 {
		t.Fatalf("block stats: restaged %d, put_block %+v, put_block_list %+v", st.BlocksRestaged, st.Blob[emulator.BlobOpPutBlock], st.Blob[emulator.BlobOpPutBlockList])
	}
	if g := st.Blob[emulator.BlobOpGet]; g == nil || g.Bytes != int64(len("first")+len("second")) {
		t.Fatalf("blob get stats = %+v", g)
	}

	// A new file with nothing committed is neither listed nor gettable;
	// committed straight in Azurite (bypassing the proxy) it is seen.
	n := e.upsert("new/n.txt")
	resp, b = e.call(http.MethodGet, "/files/path/new/n.txt")
	wantProblem(t, resp, b, http.StatusNotFound, remote.CodeNotFound)
	resp, b = e.call(http.MethodGet, "/files/"+n.FileID)
	wantProblem(t, resp, b, http.StatusNotFound, remote.CodeNotFound)
	if l := e.list(""); l.Total != 1 {
		t.Fatalf("pending file listed: %+v", l)
	}
	direct := strings.Replace(n.Upload, e.s.URL()+"/devstoreaccount1", os.Getenv("EVOFS_AZURITE_URL"), 1)
	resp, b = e.putBlob(direct, "direct")
	wantStatus(t, resp, b, http.StatusCreated)
	if l := e.list(""); l.Total != 2 {
		t.Fatalf("file committed in Azurite not listed: %+v", l)
	}
	if d := e.getByPath("new/n.txt", ""); d.VersionID != n.VersionID || d.Size != 6 {
		t.Fatalf("file committed in Azurite: %+v", d)
	}
}

// TestReissueLink: version_id re-issues a link for a pending version, and is
// refused once the upload completed.
func TestReissueLink(t *testing.T) {
	e := newEnv(t)
	up := e.upsert("r.txt")
	for _, rel := range []string{"/files/path/r.txt?version_id=" + up.VersionID, "/files/" + up.FileID + "?version_id=" + up.VersionID} {
		resp, b := e.call(http.MethodPut, rel)
		wantStatus(t, resp, b, http.StatusOK)
		re := decode[remote.UploadFileResponse](t, b)
		if re.VersionID != up.VersionID || re.FileID != up.FileID || blobPath(re.Upload) != blobPath(up.Upload) {
			t.Fatalf("re-issued %+v for %+v", re, up)
		}
	}
	resp, b := e.putBlob(up.Upload, "done")
	wantStatus(t, resp, b, http.StatusCreated)
	resp, b = e.call(http.MethodPut, "/files/path/r.txt?version_id="+up.VersionID)
	wantProblem(t, resp, b, http.StatusBadRequest, remote.CodeNoUploadInProgress)
	if st := e.s.Stats(); st.Links.UploadReissued != 2 || st.Links.Upload != 1 {
		t.Fatalf("link stats = %+v", st.Links)
	}
}

func blobPath(link string) string {
	u, _ := url.Parse(link)
	return u.Path
}

// TestSeedFolder: each regular file of the seed folder is a committed file.
func TestSeedFolder(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"top.txt": "top", "sub/deeper/x y.csv": "a,b\n1,2\n"}
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t, func(c *emulator.Config) { c.Seed = dir })
	if l := e.list(""); l.Total != len(files) {
		t.Fatalf("seeded listing = %+v", l)
	}
	for p, c := range files {
		d := e.getByPath(p, "")
		if d.Size != int64(len(c)) || e.download(d.Download) != c {
			t.Errorf("seeded %s = %+v", p, d)
		}
	}
}
