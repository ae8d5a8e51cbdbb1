// Package fs serves an Evo workspace through FUSE.
//
// The package has two layers. The workspace model (workspace.go) knows
// nothing of FUSE: it turns the flat listing into a snapshot tree, refreshes
// it after its TTL and reports what changed; tests drive it without a mount.
// The go-fuse nodes (node_*.go) are thin: they ask the model, read through
// the block cache and map errors to errnos in one place (errno.go).
//
// # Kernel caching
//
// Entry, attribute and negative-entry timeouts equal the listing TTL: the
// kernel asks again no sooner than the snapshot could have changed. When a
// refresh finds changes, a single worker goroutine (notify.go) tells the
// kernel to forget the changed names and the pages of files with a new
// version; notifications are never sent from inside a FUSE handler. Opening
// a file keeps the kernel's page cache when its version is the one it had at
// the previous open.
//
// # Versions
//
// Every open handle is pinned to the version that was current at open:
// every read of that handle comes from that version, whatever happens
// remotely meanwhile.
package fs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/evofs/evofs/cache"
	"github.com/evofs/evofs/remote"
	"golang.org/x/sync/singleflight"
)

// Files is what the mount needs of the File API: remote.Client has it.
type Files interface {
	Lister
	remote.FileGetter
	FileWriter
}

// BlobReader reads ranges of a blob through a self-renewing link:
// remote.Blobs has it.
type BlobReader interface {
	ReadAt(ctx context.Context, l *remote.Link, p []byte, off int64) (int, error)
	ReadAtProgress(ctx context.Context, l *remote.Link, p []byte, off int64, progress func(n int)) (int, error)
}

// Options configures a mounted workspace.
type Options struct {
	TTL      time.Duration // listing snapshot lifetime; default 30 s
	UID, GID uint32
	Umask    uint32 // default 022
	ReadOnly bool
	Logger   *slog.Logger
	// Readahead and Parallelism tune each open file's block reader.
	Readahead, Parallelism int
	// WriteBack says whether close waits for the upload (sync, the
	// default) or only for the journal (async).
	WriteBack WriteBack
	// NoEager turns off sending the full blocks of a file written front
	// to back before its close (eager.go).
	NoEager bool
	// LocalOnly are base-name patterns of transient files that are never
	// uploaded; nil means DefaultLocalOnly.
	LocalOnly []string
	// KernelReadahead is how far the kernel reads ahead of a sequential
	// reader, in bytes (see readahead.go); 0 leaves its FUSE default of
	// 128 KiB. Setting it needs root; otherwise the default stays.
	KernelReadahead int64
	// Hostname names this machine in conflict copies; default os.Hostname.
	Hostname string
	// DeleteGrace is how long an unlinked remote file waits before its
	// delete, for a save at its path to take it over (deletes.go);
	// default DefaultDeleteGrace.
	DeleteGrace time.Duration
	// Debounce is how long async write-back waits after a save for
	// another before it uploads (one version per burst); default
	// DefaultDebounce, negative for none.
	Debounce time.Duration
	// Health tells whether the service answers (remote.Client.Health):
	// a kernel request waiting on the service fails with EIO once it is
	// away, and the listing is not swept while it is. nil: never away.
	Health *remote.Health
	// NoPassthrough keeps every read and write in evofs, even where the
	// kernel could serve a file from its local backing file
	// (passthrough.go).
	NoPassthrough bool
	// FsName is the mount's source in /proc/mounts and df (the
	// workspace's name); default "evofs".
	FsName string
}

// DefaultDebounce is Options.Debounce's default.
const DefaultDebounce = 3 * time.Second

// FS is a mountable workspace.
type FS struct {
	ws     *Workspace
	files  Files
	blobs  BlobStore
	cache  *cache.Cache
	opt    Options
	log    *slog.Logger
	notify *notifier
	root   *dirNode

	linkCalls singleflight.Group

	trash     *Workspace        // the deleted files (.evo/trash)
	trashFrom map[string]string // GUARDED_BY(mu): the old paths of trash entries shown under another name, by file id
	vers      versionLists      // files' versions (.evo/versions)

	pt     atomic.Bool  // the kernel takes backing files (probePassthrough)
	reads  atomic.Int64 // read requests served (ReadRequests)
	writes atomic.Int64 // write requests served (WriteRequests)

	mu    sync.Mutex
	links map[versionKey]*versionLink // GUARDED_BY(mu): versions with open handles, and their shared link

	deleted   map[string]bool           // GUARDED_BY(mu): files this mount deleted
	ours      map[string]string         // GUARDED_BY(mu): the latest version this mount made of each file it wrote
	conflicts []Conflict                // GUARDED_BY(mu): conflict copies made by this mount, newest last
	waiting   map[string]*waitingDelete // GUARDED_BY(mu): deletes in their grace, by file id
	closing   bool                      // GUARDED_BY(mu): unmounting: no more delete timers
	families  map[string]*family        // GUARDED_BY(mu): open handles of databases and their side files (sqlite.go)
	host      string

	up         *uploader
	eagerSlots chan struct{} // one token per eager block send in flight
	// claimMu orders upserts at a path, which may return (and so claim,
	// see FS.claim) a file that content moved away from that path left
	// there to be deleted, with the deletes of such files: a file an
	// upsert returned is never deleted by the content that left it.
	// Upserts read-lock it, those deletes lock it.
	// LOCK ORDERING: Local.mu, then claimMu, then wmu.
	claimMu sync.RWMutex
	// wmu guards the fields of every Local (writes.go) and the role probe.
	// LOCK ORDERING: Local.mu, then wmu, then Workspace.mu.
	wmu        sync.Mutex
	canWrite   int       // GUARDED_BY(wmu): 1 may write, -1 may not, 0 unknown
	canWriteAt time.Time // GUARDED_BY(wmu)
}

type versionKey struct{ fileID, versionID string }

// versionLink is the download link of a version while handles are open on
// it (nil until the first read that misses the cache).
type versionLink struct {
	l     *remote.Link
	opens int
}

// opened and released count the open handles of a version: its link is
// kept while any is open, and forgotten with the last.
func (f *FS) opened(k versionKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.links[k] == nil {
		f.links[k] = &versionLink{}
	}
	f.links[k].opens++
}

func (f *FS) released(k versionKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v := f.links[k]; v != nil {
		if v.opens--; v.opens <= 0 {
			delete(f.links, k)
		}
	}
}

// New builds the filesystem. Nothing is listed before the first access.
func New(files Files, blobs BlobStore, c *cache.Cache, o Options) *FS {
	if o.TTL <= 0 {
		o.TTL = 30 * time.Second
	}
	if o.Readahead == 0 {
		o.Readahead = 32 // blocks: a sequential reader keeps this far ahead
	}
	if o.Parallelism == 0 {
		o.Parallelism = 4 // fetches of 16 MiB (cache.FileOptions.FetchSize)
	}
	if o.Umask == 0 {
		o.Umask = 0o022
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LocalOnly == nil {
		o.LocalOnly = DefaultLocalOnly
	}
	if o.Debounce == 0 {
		o.Debounce = DefaultDebounce
	}
	if o.DeleteGrace <= 0 {
		o.DeleteGrace = DefaultDeleteGrace
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	f := &FS{files: files, blobs: blobs, cache: c, opt: o, log: o.Logger,
		links: map[versionKey]*versionLink{}, host: cmp.Or(o.Hostname, "evofs")}
	f.notify = newNotifier(f.log)
	f.ws = NewWorkspace(files, WorkspaceOptions{TTL: o.TTL, Logger: o.Logger, OnChange: f.notify.enqueue, Health: o.Health})
	f.trash = NewWorkspace(&trashLister{Lister: files, f: f}, WorkspaceOptions{TTL: o.TTL, Logger: o.Logger, Health: o.Health,
		OnChange: func(c Change) { f.notify.enqueue(c.under(EvoDir + "/" + TrashDir)) }})
	f.root = &dirNode{fsys: f}
	f.notify.root = &f.root.Inode
	f.up = newUploader(f)
	o.Health.OnBack(f.up.retryNow)
	f.eagerSlots = make(chan struct{}, eagerSlots)
	return f
}

// deleteFile deletes a file by id, remembering that this mount did (see
// link); a file already gone counts as deleted.
func (f *FS) deleteFile(ctx context.Context, id string) error {
	f.mu.Lock()
	if f.deleted == nil {
		f.deleted = map[string]bool{}
	}
	f.deleted[id] = true
	f.mu.Unlock()
	err := f.files.DeleteFile(ctx, id)
	f.trash.Invalidate() // the next look into .evo/trash lists it
	if errors.Is(err, remote.ErrNotFound) || errors.Is(err, remote.ErrGone) {
		return nil
	}
	return err
}

// Conflict is a conflict copy this mount made: content whose file got a
// version elsewhere (or was deleted elsewhere) before it was committed.
type Conflict struct {
	Path          string    `json:"path"`
	Copy          string    `json:"copy"`
	BaseVersion   string    `json:"base_version"`
	RemoteVersion string    `json:"remote_version"`
	At            time.Time `json:"at"`
}

// maxConflicts bounds the conflicts `evofs status` shows.
const maxConflicts = 100

func (f *FS) noteConflict(c Conflict) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conflicts = append(f.conflicts, c)
	if len(f.conflicts) > maxConflicts {
		f.conflicts = f.conflicts[len(f.conflicts)-maxConflicts:]
	}
}

// Conflicts lists the conflict copies this mount made, oldest first.
func (f *FS) Conflicts() []Conflict {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Conflict{}, f.conflicts...)
}

func (f *FS) deletedHere(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deleted[id]
}

// Start loads what the journal holds from an earlier run (local folders,
// transient files, unfinished uploads) and starts the uploader. Mount
// calls it; tests of the model without a mount may too.
func (f *FS) Start() error {
	if err := f.recover(); err != nil {
		return fmt.Errorf("load the upload journal: %w", err)
	}
	f.up.start()
	return nil
}

// Workspace is the model under the mount.
func (f *FS) Workspace() *Workspace { return f.ws }

// ReadRequests counts the read requests the kernel has sent evofs (reads
// served by passthrough never come).
func (f *FS) ReadRequests() int64 { return f.reads.Load() }

// WriteRequests counts the write requests the kernel has sent evofs.
func (f *FS) WriteRequests() int64 { return f.writes.Load() }

// Root is the root node to give go-fuse.
func (f *FS) Root() gofs.InodeEmbedder { return f.root }

// MountOptions are go-fuse's options for this filesystem: timeouts equal
// to the TTL, a direct mount (no fusermount needed as root).
func (f *FS) MountOptions(allowOther bool) *gofs.Options {
	ttl := f.opt.TTL
	mo := fuse.MountOptions{
		FsName:       cmp.Or(f.opt.FsName, "evofs"),
		Name:         "evofs",
		DirectMount:  true,
		AllowOther:   allowOther,
		MaxReadAhead: 1 << 20,
		MaxWrite:     1 << 20,
		// The kernel must not drop pages on its own when mtime changes: we
		// invalidate explicitly, per version.
		ExplicitDataCacheControl: true,
		// Reads answer from memory: splicing them copies into a pipe
		// first, and fails (with a log line each) once a 1 MiB read and
		// its header outgrow the largest pipe.
		DisableSplice: true,
		Logger:        slog.NewLogLogger(f.log.Handler(), slog.LevelWarn),
	}
	// A read-only mount is not mounted "ro": evofs refuses changes itself
	// (EROFS), so that SQLite can make its local-only side files (-shm)
	// beside a database it reads, as on a viewer's mount.
	if allowOther {
		// Other users act with the mounting user's Evo login: the kernel
		// holds them to the modes shown (owner, umask), as on a local disk.
		mo.Options = append(mo.Options, "default_permissions")
	}
	return &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &ttl,
		AttrTimeout:     &ttl,
		NegativeTimeout: &ttl,
		UID:             f.opt.UID,
		GID:             f.opt.GID,
	}
}

// Mount mounts f at dir and starts serving; the caller waits on the
// returned server and unmounts it.
func Mount(dir string, f *FS, allowOther bool) (*fuse.Server, error) {
	if err := f.Start(); err != nil {
		return nil, err
	}
	srv, err := gofs.Mount(dir, f.Root(), f.MountOptions(allowOther))
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	f.notify.start()
	f.probePassthrough(srv)
	if ra := f.opt.KernelReadahead; ra > 0 {
		if err := SetKernelReadahead(dir, ra); err != nil {
			f.log.Info("the kernel's readahead stays at its default of 128 KiB", "path", dir, "err", err)
		}
	}
	return srv, nil
}

// Close stops the notification worker and the uploader (call Shutdown
// first to finish uploads).
func (f *FS) Close() {
	f.notify.stop()
	f.up.stop()
	f.mu.Lock()
	f.closing = true
	for _, w := range f.waiting {
		if w.timer != nil {
			w.timer.Stop()
		}
	}
	f.mu.Unlock()
}

// link returns the shared download link of a version, getting one from the
// API the first time (one call per version actually read while open, none
// for a file whose blocks are all cached). deleted: a version of a file in
// the trash (.evo/trash), read as a deleted file.
func (f *FS) link(ctx context.Context, k versionKey, deleted bool) (*remote.Link, error) {
	f.mu.Lock()
	var l *remote.Link
	if v := f.links[k]; v != nil {
		l = v.l
	}
	f.mu.Unlock()
	if l != nil {
		return l, nil
	}
	// Parallel block fetches of one file share one call.
	v, err, _ := f.linkCalls.Do(k.fileID+"@"+k.versionID, func() (any, error) {
		d, err := f.files.GetFile(ctx, k.fileID, remote.GetOptions{VersionID: k.versionID})
		if errors.Is(err, remote.ErrGone) && (deleted || f.deletedHere(k.fileID)) {
			// Deleted by this mount while a handle is open on it (unlink,
			// or the delete after a rename's copy): POSIX lets open
			// handles read on. A file deleted elsewhere reads ENOENT.
			d, err = f.files.GetFile(ctx, k.fileID, remote.GetOptions{VersionID: k.versionID, Deleted: true})
		}
		if err != nil {
			return nil, fmt.Errorf("get download link: %w", err)
		}
		l := remote.DownloadLink(f.files, d)
		f.mu.Lock()
		if v := f.links[k]; v != nil { // else the last handle closed meanwhile
			v.l = l
		}
		f.mu.Unlock()
		return l, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*remote.Link), nil
}
