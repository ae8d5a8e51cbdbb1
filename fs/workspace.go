package fs

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/evofs/evofs/remote"
	"golang.org/x/sync/singleflight"
)

// Lister lists every file of the workspace: remote.Client does.
type Lister interface {
	ListAll(ctx context.Context, o remote.ListOptions) ([]remote.ListFile, error)
}

// Entry is a file or a folder of a snapshot. Entries are immutable once the
// snapshot that holds them is published.
type Entry struct {
	Path     string // workspace path without leading slash; "" for the root
	Name     string
	Ino      uint64
	Dir      bool
	File     remote.ListFile // files only
	Children []*Entry        // folders only, sorted by name
	ModTime  time.Time       // folders: the newest of their files
}

// Size is the file's size in bytes (0 for folders).
func (e *Entry) Size() int64 {
	if e.Dir {
		return 0
	}
	return e.File.Size
}

// Child finds a child by name (binary search: Children are sorted).
func (e *Entry) Child(name string) *Entry {
	i := sort.Search(len(e.Children), func(i int) bool { return e.Children[i].Name >= name })
	if i < len(e.Children) && e.Children[i].Name == name {
		return e.Children[i]
	}
	return nil
}

// Snapshot is the folder tree built from one listing sweep.
type Snapshot struct {
	Taken  time.Time
	Root   *Entry
	byPath map[string]*Entry
	byID   map[string]*Entry
	Files  int
}

// Lookup finds the entry at a workspace path ("" is the root).
func (s *Snapshot) Lookup(path string) *Entry { return s.byPath[path] }

// ByID finds a file by its id.
func (s *Snapshot) ByID(fileID string) *Entry { return s.byID[fileID] }

// Change is what a refresh found different from the snapshot before it;
// the FUSE layer turns it into kernel cache invalidations.
type Change struct {
	// Entries whose name in their folder appeared, vanished or now names
	// something else (another file, or a new version: a new inode):
	// (folder path, name).
	Entries []NameRef
}

// NameRef names an entry of a folder.
type NameRef struct{ Dir, Name string }

func (c Change) empty() bool { return len(c.Entries) == 0 }

// Workspace is the FUSE-free model of the mounted workspace: a snapshot of
// the listing, refreshed on the first access after its TTL ends. Lookups and
// readdirs between refreshes cost no API call.
type Workspace struct {
	lister   Lister
	ttl      time.Duration
	now      func() time.Time
	log      *slog.Logger
	onChange func(Change) // may be nil; called outside any lock

	sweep    singleflight.Group
	health   *remote.Health
	staleFor time.Duration

	mu   sync.Mutex
	snap *Snapshot // GUARDED_BY(mu)
	// After a failed sweep the next waits retryAt (1 s, doubling to a
	// minute while sweeps keep failing); the last snapshot answers
	// meanwhile.
	retryAt time.Time     // GUARDED_BY(mu)
	backoff time.Duration // GUARDED_BY(mu)
	// sweeping is when the sweep in flight started (zero: none).
	sweeping time.Time // GUARDED_BY(mu)
	ov       overlay   // GUARDED_BY(mu): local changes over the snapshot (overlay.go)
}

// WorkspaceOptions configures NewWorkspace.
type WorkspaceOptions struct {
	TTL      time.Duration // how long a snapshot answers; default 30 s
	Now      func() time.Time
	Logger   *slog.Logger
	OnChange func(Change)
	// Health: while the service is away the last snapshot answers at
	// once and no sweep is started.
	Health *remote.Health
	// StaleWait is how long a caller waits for a sweep when an older
	// snapshot exists: past it the older one answers while the sweep goes
	// on. Default DefaultStaleWait.
	StaleWait time.Duration
}

// DefaultStaleWait is WorkspaceOptions.StaleWait's default: long enough
// for a sweep of a healthy service (tens of milliseconds for thousands
// of files), short enough that a slow one is not felt.
const DefaultStaleWait = time.Second

// NewWorkspace makes a model over lister. It lists nothing until asked.
func NewWorkspace(lister Lister, o WorkspaceOptions) *Workspace {
	if o.TTL <= 0 {
		o.TTL = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StaleWait <= 0 {
		o.StaleWait = DefaultStaleWait
	}
	w := &Workspace{lister: lister, ttl: o.TTL, now: o.Now, log: o.Logger, onChange: o.OnChange, ov: newOverlay(),
		health: o.Health, staleFor: o.StaleWait}
	o.Health.OnBack(func() { // the service is back: the next access sweeps
		w.mu.Lock()
		w.backoff, w.retryAt = 0, time.Time{}
		w.mu.Unlock()
	})
	return w
}

// Snapshot returns a snapshot younger than the TTL, sweeping the listing if
// the current one is older (one sweep however many callers wait for it).
// Browsing never waits long on the service: when an older snapshot exists
// it answers if the sweep takes longer than StaleWait (the sweep goes on),
// at once while the service is away or a failed sweep's backoff runs, and
// when a sweep fails. Without any snapshot the caller waits for the sweep
// until the service is away (errServiceAway) or it is interrupted.
func (w *Workspace) Snapshot(ctx context.Context) (*Snapshot, error) {
	w.mu.Lock()
	cur, retryAt, sweeping := w.snap, w.retryAt, w.sweeping
	w.mu.Unlock()
	if cur != nil && w.now().Sub(cur.Taken) < w.ttl {
		return cur, nil
	}
	if cur != nil && (w.now().Before(retryAt) || w.health.Down()) {
		return cur, nil
	}
	wait := w.staleFor
	if !sweeping.IsZero() {
		wait -= w.now().Sub(sweeping) // callers share one wait per sweep
		if wait <= 0 && cur != nil {
			return cur, nil
		}
	}
	ch := w.sweep.DoChan("sweep", func() (any, error) {
		// Someone may have swept since we looked.
		if s := w.Current(); s != nil && s != cur && w.now().Sub(s.Taken) < w.ttl {
			return s, nil
		}
		// The sweep runs for everyone: it must not die with one caller.
		w.mu.Lock()
		w.sweeping = w.now()
		w.mu.Unlock()
		defer func() {
			w.mu.Lock()
			w.sweeping = time.Time{}
			w.mu.Unlock()
		}()
		return w.refresh(context.WithoutCancel(ctx))
	})
	var stale <-chan time.Time
	if cur != nil {
		t := time.NewTimer(max(wait, 0))
		defer t.Stop()
		stale = t.C
	}
	actx, done := awayCtx(ctx, w.health)
	defer done()
	select {
	case <-actx.Done():
		if cur != nil {
			return cur, nil
		}
		return nil, awayErr(actx, w.health, actx.Err())
	case <-stale:
		return cur, nil
	case r := <-ch:
		if r.Err != nil {
			if cur != nil {
				return cur, nil
			}
			return nil, r.Err
		}
		return r.Val.(*Snapshot), nil
	}
}

// Current returns the last snapshot without refreshing it (nil before the
// first sweep).
func (w *Workspace) Current() *Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.snap
}

// Invalidate makes the next access sweep the listing again.
func (w *Workspace) Invalidate() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.snap != nil {
		stale := *w.snap
		stale.Taken = time.Time{}
		w.snap = &stale
	}
}

func (w *Workspace) refresh(ctx context.Context) (*Snapshot, error) {
	taken := w.now()
	w.mu.Lock()
	seq := w.ov.seq // changes completed before the listing starts are in it
	w.mu.Unlock()
	files, err := w.lister.ListAll(ctx, remote.ListOptions{})
	if err != nil {
		w.mu.Lock()
		w.backoff = min(max(2*w.backoff, time.Second), time.Minute)
		w.retryAt = w.now().Add(w.backoff)
		first := w.backoff == time.Second
		w.mu.Unlock()
		if first { // one line per outage, not one per retry
			w.log.Error("list workspace failed; the last listing answers meanwhile", "code", remote.ErrorCode(err), "err", err)
		}
		return nil, fmt.Errorf("list workspace: %w", err)
	}
	next := buildSnapshot(files, taken, w.log)
	w.mu.Lock()
	w.backoff, w.retryAt = 0, time.Time{}
	prev := w.snap
	w.snap = next
	w.ov.expire(seq)
	w.mu.Unlock()
	if prev != nil && w.onChange != nil {
		if c := diff(prev, next); !c.empty() {
			w.onChange(c)
		}
	}
	return next, nil
}

// buildSnapshot makes the folder tree from a flat listing. Names the kernel
// cannot show (with '/', NUL, "." or "..") are skipped with a warning, never
// followed; a file whose path is also a folder's gives way to the folder;
// of two files listed at one path the one modified last is kept.
func buildSnapshot(files []remote.ListFile, taken time.Time, log *slog.Logger) *Snapshot {
	byPath := make(map[string]*remote.ListFile, len(files))
	folders := map[string]bool{"": true}
	for i := range files {
		f := &files[i]
		folder, ok := cleanFolder(f.Path)
		if !ok || remote.ValidateName(f.Name) != nil {
			log.Warn("skipping listed file with a name the mount cannot show", "file_id", f.FileID,
				"path", fmt.Sprintf("%q", f.Path), "name", fmt.Sprintf("%q", f.Name))
			continue
		}
		p := joinPath(folder, f.Name)
		if old := byPath[p]; old != nil {
			log.Warn("two listed files share a path; keeping the newer", "path", p,
				"file_ids", []string{old.FileID, f.FileID})
			if !f.ModifiedAt.After(old.ModifiedAt) {
				continue
			}
		}
		byPath[p] = f
		for d := folder; !folders[d]; d = parentPath(d) {
			folders[d] = true
		}
	}
	s := &Snapshot{
		Taken:  taken,
		byPath: make(map[string]*Entry, len(byPath)+len(folders)),
		byID:   make(map[string]*Entry, len(byPath)),
	}
	for d := range folders {
		s.byPath[d] = &Entry{Path: d, Name: baseName(d), Dir: true, Ino: dirIno(d)}
	}
	s.Root = s.byPath[""]
	s.Root.Ino = rootIno
	for p, f := range byPath {
		if folders[p] {
			log.Warn("skipping listed file whose path is also a folder", "path", p, "file_id", f.FileID)
			continue
		}
		e := &Entry{Path: p, Name: f.Name, Ino: fileIno(f.FileID, f.VersionID), File: *f, ModTime: f.ModifiedAt}
		s.byPath[p] = e
		s.byID[f.FileID] = e
	}
	for p, e := range s.byPath {
		if p != "" {
			parent := s.byPath[parentPath(p)]
			parent.Children = append(parent.Children, e)
		}
	}
	for _, e := range s.byPath {
		if e.Dir {
			sort.Slice(e.Children, func(i, j int) bool { return e.Children[i].Name < e.Children[j].Name })
		}
	}
	s.Files = len(s.byID)
	stampFolders(s.Root)
	return s
}

// stampFolders gives each folder the newest time of what is in it.
func stampFolders(e *Entry) time.Time {
	for _, c := range e.Children {
		t := c.ModTime
		if c.Dir {
			t = stampFolders(c)
		}
		if t.After(e.ModTime) {
			e.ModTime = t
		}
	}
	return e.ModTime
}

// diff finds what the kernel must forget between two snapshots.
func diff(prev, next *Snapshot) Change {
	var c Change
	for p, old := range prev.byPath {
		if p == "" {
			continue
		}
		cur := next.byPath[p]
		if cur == nil || cur.Ino != old.Ino {
			c.Entries = append(c.Entries, NameRef{parentPath(p), old.Name})
		}
	}
	for p, e := range next.byPath {
		if p != "" && prev.byPath[p] == nil {
			c.Entries = append(c.Entries, NameRef{parentPath(p), e.Name})
		}
	}
	return c
}

// cleanFolder turns a listing's folder ("/", "/A/B/") into a workspace path
// ("", "A/B"), refusing segments the mount cannot show.
func cleanFolder(folder string) (string, bool) {
	f := strings.Trim(folder, "/")
	if f == "" {
		return "", true
	}
	for _, seg := range strings.Split(f, "/") {
		if remote.ValidateName(seg) != nil {
			return "", false
		}
	}
	return f, true
}

func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }
