package fs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	evofs "github.com/evofs/evofs/fs"
	"github.com/evofs/evofs/remote"
)

// craftedEntries are listing entries the service should never send: names
// with '/', NUL, "." or "..", and folders that climb out with "..". Their
// ids are ids of nothing: following one would show in the proxy's log.
func craftedEntries() []remote.ListFile {
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	mk := func(folder, name string) remote.ListFile {
		return remote.ListFile{Path: folder, Name: name, Size: 5, VersionID: "1", CreatedAt: at, ModifiedAt: at}
	}
	out := []remote.ListFile{
		mk("/docs/", "evil/name.txt"),
		mk("/docs/", ".."),
		mk("/docs/", "."),
		mk("/docs/", "bad\x00name.txt"),
		mk("/docs/../../etc/", "passwd"),
		mk("/../", "escape.txt"),
		mk("/docs/./", "dotted.txt"),
	}
	for i := range out {
		out[i].FileID = fmt.Sprintf("00000000-0000-4000-8000-%012d", 900+i)
	}
	return out
}

type sliceLister struct{ files []remote.ListFile }

func (l sliceLister) ListAll(context.Context, remote.ListOptions) ([]remote.ListFile, error) {
	return append([]remote.ListFile(nil), l.files...), nil
}

func names(items []evofs.Item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Name)
	}
	return out
}

// TestBadListingEntriesSkippedInTheModel: the FUSE-free model skips each
// crafted entry with a warning naming it, and the folders list the good
// files only.
func TestBadListingEntriesSkippedInTheModel(t *testing.T) {
	at := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	good := []remote.ListFile{
		{FileID: "00000000-0000-4000-8000-000000000001", Path: "/docs/", Name: "one.txt", Size: 3, VersionID: "1", ModifiedAt: at},
		{FileID: "00000000-0000-4000-8000-000000000002", Path: "/docs/", Name: "two.txt", Size: 3, VersionID: "1", ModifiedAt: at},
		{FileID: "00000000-0000-4000-8000-000000000003", Path: "/", Name: "top.txt", Size: 3, VersionID: "1", ModifiedAt: at},
	}
	bad := craftedEntries()
	logs := &lockedWriter{w: &bytes.Buffer{}}
	w := evofs.NewWorkspace(sliceLister{append(append([]remote.ListFile(nil), bad...), good...)},
		evofs.WorkspaceOptions{Logger: slogTo(logs)})
	ctx := context.Background()
	for dir, want := range map[string]string{"": "[docs top.txt]", "docs": "[one.txt two.txt]"} {
		items, ok, err := w.List(ctx, dir)
		if err != nil || !ok || fmt.Sprint(names(items)) != want {
			t.Errorf("list %q: %v (ok %v, err %v), want %s", dir, names(items), ok, err, want)
		}
	}
	for _, p := range []string{"etc", "etc/passwd", "escape.txt", "docs/evil", "docs/evil/name.txt", "..", "docs/..",
		"docs/bad", "docs/dotted.txt", "../escape.txt"} {
		if it, ok, err := w.Stat(ctx, p); ok || err != nil {
			t.Errorf("stat %q: found %+v (err %v): a crafted entry was followed", p, it, err)
		}
	}
	checkSkipWarnings(t, logs.String(), bad)
}

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// checkSkipWarnings wants one warning per crafted entry, naming its id.
func checkSkipWarnings(t *testing.T, logs string, bad []remote.ListFile) {
	t.Helper()
	for _, f := range bad {
		n := 0
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "file_id="+f.FileID) && strings.Contains(l, "skipping") {
				n++
			}
		}
		if n < 1 {
			t.Errorf("no warning for the entry %q in %q (%s):\n%s", f.Name, f.Path, f.FileID, logs)
		}
	}
}

// listingProxy stands in front of the emulator's File API and adds extra
// entries to every first page of the listing. It records the paths asked
// for.
type listingProxy struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newListingProxy(t *testing.T, target string, extra []remote.ListFile) *listingProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &listingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	director := rp.Director
	rp.Director = func(r *http.Request) {
		director(r)
		r.Header.Del("Accept-Encoding")
	}
	rp.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/files") || resp.StatusCode != http.StatusOK {
			return nil
		}
		if off, _ := strconv.Atoi(r.URL.Query().Get("offset")); off != 0 {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		var page remote.ListFilesResponse
		if err := json.Unmarshal(body, &page); err != nil {
			return err
		}
		page.Files = append(page.Files, extra...)
		page.Count, page.Total = len(page.Files), page.Total+len(extra)
		out, err := json.Marshal(page)
		if err != nil {
			return err
		}
		resp.Body = io.NopCloser(bytes.NewReader(out))
		resp.ContentLength = int64(len(out))
		resp.Header.Set("Content-Length", strconv.Itoa(len(out)))
		return nil
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen = append(p.seen, r.URL.Path)
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *listingProxy) asked(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, x := range p.seen {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

// TestBadListingEntriesSkippedByTheMount serves crafted entries in the
// listing a real mount gets: each is skipped with a warning, nothing
// outside the workspace appears, no call names them, and the good files
// list and read fine.
func TestBadListingEntriesSkippedByTheMount(t *testing.T) {
	emu := startEmu(t)
	bad := craftedEntries()
	proxy := newListingProxy(t, emu.URL(), bad)
	m := mountEmu(t, emu, mountConfig{hub: proxy.URL})
	want := map[string][]byte{"docs/one.txt": []byte("one\n"), "docs/two.txt": randomBytes(71, 300<<10), "top.txt": []byte("top\n")}
	for p, b := range want {
		upload(t, m.Client, m.Blobs, p, bytes.NewReader(b), int64(len(b)))
	}
	got := run(t, m.Dir, "ls", "-R1", ".")
	wantLs := ".:\ndocs\ntop.txt\n\n./docs:\none.txt\ntwo.txt\n"
	if got != wantLs {
		t.Fatalf("ls -R:\n%s\nwant:\n%s", got, wantLs)
	}
	for p, b := range want {
		if sha256File(t, filepath.Join(m.Dir, p)) != sum(b) {
			t.Errorf("%s reads other bytes", p)
		}
	}
	for _, p := range []string{"etc", "escape.txt", "docs/evil", "docs/dotted.txt", "docs/bad"} {
		if _, err := os.Lstat(filepath.Join(m.Dir, p)); !os.IsNotExist(err) {
			t.Errorf("lstat %s: %v, want ENOENT", p, err)
		}
	}
	for _, f := range bad {
		if proxy.asked(f.FileID) {
			t.Errorf("a call named the skipped file %s (%q in %q)", f.FileID, f.Name, f.Path)
		}
	}
	checkSkipWarnings(t, m.Logs.String(), bad)
}
