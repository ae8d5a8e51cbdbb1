package fs

import (
	"log/slog"
	"strings"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
)

// notifier tells the kernel what a refresh changed, from one goroutine of
// its own: notifications sent from inside a FUSE handler (where a refresh
// runs) can deadlock the kernel against us.
type notifier struct {
	log  *slog.Logger
	root *gofs.Inode

	mu      sync.Mutex
	queue   []Change // GUARDED_BY(mu)
	running bool     // GUARDED_BY(mu)
	stopped bool     // GUARDED_BY(mu)
	wake    *sync.Cond
	done    chan struct{}
}

func newNotifier(log *slog.Logger) *notifier {
	n := &notifier{log: log, done: make(chan struct{})}
	n.wake = sync.NewCond(&n.mu)
	return n
}

// enqueue never blocks: the refresh that calls it runs inside a handler.
func (n *notifier) enqueue(c Change) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running || n.stopped {
		return // not mounted: the kernel has nothing to forget
	}
	n.queue = append(n.queue, c)
	n.wake.Signal()
}

func (n *notifier) start() {
	n.mu.Lock()
	n.running = true
	n.mu.Unlock()
	go n.loop()
}

func (n *notifier) stop() {
	n.mu.Lock()
	wasRunning := n.running && !n.stopped
	n.stopped = true
	n.wake.Signal()
	n.mu.Unlock()
	if wasRunning {
		<-n.done
	}
}

func (n *notifier) loop() {
	defer close(n.done)
	for {
		n.mu.Lock()
		for len(n.queue) == 0 && !n.stopped {
			n.wake.Wait()
		}
		if n.stopped {
			n.mu.Unlock()
			return
		}
		batch := n.queue
		n.queue = nil
		n.mu.Unlock()
		for _, c := range batch {
			n.apply(c)
		}
	}
}

// apply sends the invalidations of one change, for the inodes the kernel
// knows (those in go-fuse's tree); the others it has nothing cached of.
func (n *notifier) apply(c Change) {
	for _, ref := range c.Entries {
		if dir := n.find(ref.Dir); dir != nil {
			n.check(dir.NotifyEntry(ref.Name), "entry", ref.Dir+"/"+ref.Name)
		}
	}
}

// find walks go-fuse's tree down a workspace path.
func (n *notifier) find(path string) *gofs.Inode {
	node := n.root
	if path == "" {
		return node
	}
	for _, seg := range strings.Split(path, "/") {
		if node = node.GetChild(seg); node == nil {
			return nil
		}
	}
	return node
}

func (n *notifier) check(e syscall.Errno, what, path string) {
	// ENOENT: the kernel had already forgotten it.
	if e != 0 && e != syscall.ENOENT {
		n.log.Warn("kernel cache invalidation failed", "what", what, "path", path, "errno", e.Error())
	}
}
