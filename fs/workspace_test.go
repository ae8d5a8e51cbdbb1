package fs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evofs/evofs/remote"
)

type fakeLister struct {
	mu      sync.Mutex
	files   []remote.ListFile
	err     error
	calls   atomic.Int32
	gate    chan struct{} // if non-nil, ListAll waits on it
	entered chan struct{} // if non-nil, ListAll sends on it first
}

func (l *fakeLister) ListAll(ctx context.Context, _ remote.ListOptions) ([]remote.ListFile, error) {
	l.calls.Add(1)
	if l.entered != nil {
		l.entered <- struct{}{}
	}
	if l.gate != nil {
		<-l.gate
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]remote.ListFile(nil), l.files...), l.err
}

func lf(id, folder, name, version string) remote.ListFile {
	return remote.ListFile{FileID: id, Path: folder, Name: name, VersionID: version, Size: int64(len(name)),
		ModifiedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func TestBuildSnapshot(t *testing.T) {
	files := []remote.ListFile{
		lf("1", "/", "top.txt", "1"),
		lf("2", "/A/B/", "deep.tif", "1"),
		lf("3", "/A/", "b.csv", "1"),
		lf("4", "/A/", "..", "1"),            // never followed
		lf("5", "/A/../etc/", "passwd", "1"), // never followed
		lf("6", "/", "bad\x00name", "1"),
		lf("7", "/", "A", "1"), // a file where a folder is: the folder wins
		lf("8", "/A/", "a.csv", "1"),
	}
	s := buildSnapshot(files, time.Now(), discard())
	cases := []struct {
		path string
		dir  bool
		kids []string
	}{
		{"", true, []string{"A", "top.txt"}},
		{"A", true, []string{"B", "a.csv", "b.csv"}},
		{"A/B", true, []string{"deep.tif"}},
		{"A/B/deep.tif", false, nil},
		{"top.txt", false, nil},
	}
	for _, tc := range cases {
		e := s.Lookup(tc.path)
		if e == nil || e.Dir != tc.dir {
			t.Fatalf("%q: got %+v", tc.path, e)
		}
		var kids []string
		for _, c := range e.Children {
			kids = append(kids, c.Name)
		}
		if fmt.Sprint(kids) != fmt.Sprint(tc.kids) {
			t.Errorf("%q children %v, want %v", tc.path, kids, tc.kids)
		}
	}
	for _, id := range []string{"4", "5", "6", "7"} {
		if s.ByID(id) != nil {
			t.Errorf("file %s should have been skipped", id)
		}
	}
	if s.Files != 4 {
		t.Errorf("Files = %d, want 4", s.Files)
	}
	if s.Lookup("A/B/deep.tif").Ino != fileIno("2", "1") || s.Root.Ino != rootIno || s.Lookup("A").Ino == s.Lookup("A/B").Ino {
		t.Error("inode numbers not derived from identity")
	}
}

type clock struct{ t atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *clock) advance(d time.Duration) { c.t.Add(int64(d)) }

func TestWorkspaceTTLAndChanges(t *testing.T) {
	l := &fakeLister{files: []remote.ListFile{lf("1", "/", "a.txt", "1"), lf("2", "/d/", "b.txt", "1")}}
	var clk clock
	var changes []Change
	w := NewWorkspace(l, WorkspaceOptions{TTL: 10 * time.Second, Now: clk.now, Logger: discard(),
		OnChange: func(c Change) { changes = append(changes, c) }})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := w.Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if l.calls.Load() != 1 {
		t.Fatalf("%d sweeps inside the TTL, want 1", l.calls.Load())
	}
	l.mu.Lock()
	l.files = []remote.ListFile{lf("1", "/", "a.txt", "2"), lf("3", "/", "c.txt", "1")}
	l.mu.Unlock()
	clk.advance(11 * time.Second)
	s, err := w.Snapshot(ctx)
	if err != nil || l.calls.Load() != 2 {
		t.Fatalf("after the TTL: err %v, %d sweeps", err, l.calls.Load())
	}
	if s.Lookup("a.txt").File.VersionID != "2" || s.Lookup("d") != nil || s.Lookup("c.txt") == nil {
		t.Fatal("refreshed snapshot does not show the remote changes")
	}
	if len(changes) != 1 {
		t.Fatalf("%d change reports, want 1", len(changes))
	}
	c := changes[0]
	got := map[NameRef]bool{}
	for _, e := range c.Entries {
		got[e] = true
	}
	for _, want := range []NameRef{{"", "d"}, {"d", "b.txt"}, {"", "c.txt"}, {"", "a.txt"}} {
		if !got[want] {
			t.Errorf("entry change %v missing from %v", want, c.Entries)
		}
	}
}

func TestWorkspaceOneSweepForManyAndStaleOnError(t *testing.T) {
	l := &fakeLister{files: []remote.ListFile{lf("1", "/", "a.txt", "1")}, gate: make(chan struct{}), entered: make(chan struct{}, 8)}
	var clk clock
	w := NewWorkspace(l, WorkspaceOptions{TTL: time.Second, Now: clk.now, Logger: discard()})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.Snapshot(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	<-l.entered
	close(l.gate)
	wg.Wait()
	if l.calls.Load() != 1 {
		t.Fatalf("%d sweeps for 8 concurrent callers, want 1", l.calls.Load())
	}
	// The service goes away: the old snapshot keeps answering.
	l.mu.Lock()
	l.err = errors.New("connection refused")
	l.mu.Unlock()
	clk.advance(2 * time.Second)
	s, err := w.Snapshot(context.Background())
	if err != nil || s.Lookup("a.txt") == nil {
		t.Fatalf("stale snapshot not served when the sweep failed: %v", err)
	}
	// With no snapshot at all, the error shows.
	w2 := NewWorkspace(l, WorkspaceOptions{Logger: discard()})
	if _, err := w2.Snapshot(context.Background()); err == nil {
		t.Fatal("first sweep failed but no error")
	}
}
