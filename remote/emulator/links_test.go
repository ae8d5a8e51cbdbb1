package emulator_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
)

// TestLinkExpiry: an expired upload link is refused by Azurite (403
// AuthorizationFailure); a link re-issued for the same version works and
// the version commits.
func TestLinkExpiry(t *testing.T) {
	e := newEnv(t, func(c *emulator.Config) { c.LinkTTL = time.Second })
	up := e.upsert("exp.txt")
	u, err := url.Parse(up.Upload)
	if err != nil {
		t.Fatal(err)
	}
	se, err := time.Parse(time.RFC3339, u.Query().Get("se"))
	if err != nil {
		t.Fatalf("link expiry %q: %v", u.Query().Get("se"), err)
	}
	// SAS expiry has second granularity; sleep just past it.
	time.Sleep(time.Until(se) + 1100*time.Millisecond)
	resp, b := e.putBlob(up.Upload, "late")
	wantStatus(t, resp, b, http.StatusForbidden)
	if c := resp.Header.Get("x-ms-error-code"); c != "AuthorizationFailure" {
		t.Fatalf("expired link: error code %q", c)
	}
	e.s.SetLinkTTL(time.Minute)
	resp, b = e.call(http.MethodPut, "/files/"+up.FileID+"?version_id="+up.VersionID)
	wantStatus(t, resp, b, http.StatusOK)
	re := decode[struct{ Upload string }](t, b)
	resp, b = e.putBlob(re.Upload, "on time")
	wantStatus(t, resp, b, http.StatusCreated)
	if d := e.getByPath("exp.txt", ""); d.VersionID != up.VersionID || e.download(d.Download) != "on time" {
		t.Fatalf("after re-issue: %+v", d)
	}
	if st := e.s.Stats(); st.Blob[emulator.BlobOpPutBlob].Status[403] != 1 || st.Blob[emulator.BlobOpPutBlob].Status[201] != 1 {
		t.Fatalf("put_blob stats %+v", st.Blob[emulator.BlobOpPutBlob])
	}
}

// TestBlobProxy: ranges, HEAD, a read link used to write.
func TestBlobProxy(t *testing.T) {
	e := newEnv(t)
	e.upload("r.bin", "0123456789")
	d := e.getByPath("r.bin", "")
	resp, b := e.do(http.MethodGet, d.Download, "", nil, "Range", "bytes=2-4")
	wantStatus(t, resp, b, http.StatusPartialContent)
	if string(b) != "234" {
		t.Fatalf("range = %q", b)
	}
	resp, b = e.do(http.MethodHead, d.Download, "", nil)
	wantStatus(t, resp, b, http.StatusOK)
	if resp.ContentLength != 10 {
		t.Fatalf("HEAD content length %d", resp.ContentLength)
	}
	resp, b = e.putBlob(d.Download, "nope")
	wantStatus(t, resp, b, http.StatusForbidden)
	st := e.s.Stats()
	if st.Blob[emulator.BlobOpGet].Bytes != 3 || st.Blob[emulator.BlobOpHead].Count != 1 || st.Blob[emulator.BlobOpPutBlob].Status[403] != 1 {
		t.Fatalf("blob stats %+v %+v %+v", st.Blob[emulator.BlobOpGet], st.Blob[emulator.BlobOpHead], st.Blob[emulator.BlobOpPutBlob])
	}
	if st.Links.Download != 1 {
		t.Fatalf("download links %d", st.Links.Download)
	}
}

// TestPutBlobSettlesFromItsAnswer: a version committed by one Put Blob is
// settled from that answer (size, ETag, time as storage has them), and a
// second Put Blob over the same link, which the first settle cannot tell
// apart from a race, settles from storage: the newer bytes win either way.
func TestPutBlobSettlesFromItsAnswer(t *testing.T) {
	e := newEnv(t)
	etagOf := func(link string) (string, time.Time) {
		t.Helper()
		resp, b := e.do(http.MethodHead, link, "", nil)
		wantStatus(t, resp, b, http.StatusOK)
		mod, err := http.ParseTime(resp.Header.Get("Last-Modified"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Trim(resp.Header.Get("ETag"), `"`), mod
	}
	up := e.upsert("s/a.txt")
	for i, content := range []string{"hello", "hello, world!"} {
		e.s.ResetStats()
		resp, b := e.putBlob(up.Upload, content)
		wantStatus(t, resp, b, http.StatusCreated)
		if got := e.s.Stats().StorageReads; got != int64(i) {
			t.Fatalf("Put Blob %d settled with %d reads of storage, want %d", i+1, got, i)
		}
		d := e.getByPath("s/a.txt", "")
		etag, mod := etagOf(d.Download)
		if d.VersionID != up.VersionID || d.Size != int64(len(content)) || strings.Trim(d.ETag, `"`) != etag || !d.ModifiedAt.Equal(mod) {
			t.Fatalf("after Put Blob of %q: version %s size %d etag %s modified %s; want %s, %d, %s, %s",
				content, d.VersionID, d.Size, d.ETag, d.ModifiedAt, up.VersionID, len(content), etag, mod)
		}
		if got := e.download(d.Download); got != content {
			t.Fatalf("download %q, want %q", got, content)
		}
	}
}
