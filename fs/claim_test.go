package fs_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdProxy stands in front of the emulator's File API and holds the
// first request whose path ends with a given suffix until released.
type holdProxy struct {
	*httptest.Server
	suffix  string
	arrived chan struct{} // closed when the held request comes
	release chan struct{} // close to let it through
	once    sync.Once
}

func newHoldProxy(t *testing.T, target, method, suffix string) *holdProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{suffix: suffix, arrived: make(chan struct{}), release: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(u)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == method && strings.HasSuffix(r.URL.Path, suffix) {
			held := false
			p.once.Do(func() { held = true })
			if held {
				close(p.arrived)
				<-p.release
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		select {
		case <-p.release:
		default:
			close(p.release)
		}
		p.Close()
	})
	return p
}

// TestWriteUpsertClaimsFileAwaitingDeletionDuringAnotherUpload: content
// renamed from p to q leaves its old file at p to be deleted once it is
// committed at q. New content saved at p meanwhile becomes a new version
// of that very file (semantics.md); the upload at q, already under way
// when that happened, must not delete it afterwards. Found by TestFsx
// (EVOFS_FSX_UNLINK_OPEN=1 EVOFS_FSX_SEED=1796214415373095143, async): a
// later rename of p failed with ENOENT (the file was gone, 410).
func TestWriteUpsertClaimsFileAwaitingDeletionDuringAnotherUpload(t *testing.T) {
	emu := startEmu(t)
	// The upload at q waits at its upsert until the save at p is done.
	proxy := newHoldProxy(t, emu.URL(), http.MethodPut, "/files/path/d/q")
	m := mountEmu(t, emu, mountConfig{hub: proxy.URL})
	p, q := filepath.Join(m.Dir, "d", "p"), filepath.Join(m.Dir, "d", "q")
	if err := os.Mkdir(filepath.Join(m.Dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("first content of p\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Content over p's file, still open, moved to q: p's file awaits
	// deletion until this content is committed at q.
	moved, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := moved.WriteAt([]byte("MOVED"), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p, q); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- moved.Close() }() // commits at q: held at its upsert
	select {
	case <-proxy.arrived:
	case <-time.After(time.Minute):
		t.Fatal("the upload at q never asked for its version")
	}
	// New content at p: a new version of p's old file.
	newP := []byte("new content of p\n")
	if err := os.WriteFile(p, newP, 0o644); err != nil {
		t.Fatal(err)
	}
	close(proxy.release)
	if err := <-closed; err != nil {
		t.Fatalf("close of the content moved to q: %v", err)
	}
	if _, b := remoteFile(t, m, "d/p"); !bytes.Equal(b, newP) {
		t.Errorf("the remote d/p has %q, want %q", b, newP)
	}
	if _, b := remoteFile(t, m, "d/q"); string(b) != "MOVED content of p\n" {
		t.Errorf("the remote d/q has %q", b)
	}
	if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, newP) {
		t.Errorf("read d/p through the mount: %q, %v", b, err)
	}
	// A rename of p needs its file (the copy reads it).
	if err := os.Rename(p, filepath.Join(m.Dir, "d", "r")); err != nil {
		t.Errorf("rename d/p: %v", err)
	}
}
