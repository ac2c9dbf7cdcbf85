package fs

import (
	gosync "sync"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
)

// Notifier tells the kernel to drop names, attributes and pages it cached
// when a listing finds that the server's tree changed. Notifications go out
// from one goroutine of their own: the kernel may hold the directory's lock
// for the very request whose listing found the change, so sending from
// there could deadlock.
type Notifier struct {
	log logrus.FieldLogger // read only

	mu      gosync.Mutex           // protects the following
	inodes  map[uint64]*gofs.Inode // live kernel inodes by cache inode number
	pending []cache.Change         // not yet sent
	closed  bool

	wake chan struct{} // capacity 1: pending grew or closed was set
	done chan struct{} // closed when the sending goroutine ends

	// queued counts the changes ever queued, delivered those sent; sentC
	// is closed and replaced after each batch (Sync waits on it). All
	// under mu.
	queued, delivered uint64
	sentC             chan struct{}

	// sent, if set before the first change, is called after each batch has
	// gone to the kernel; tests wait on it instead of polling.
	sent func()
}

// NewNotifier starts the sending goroutine; Close stops it.
func NewNotifier(log logrus.FieldLogger) *Notifier {
	n := &Notifier{log: log, inodes: make(map[uint64]*gofs.Inode), wake: make(chan struct{}, 1), done: make(chan struct{}),
		sentC: make(chan struct{})}
	go n.loop()
	return n
}

// Changed queues changes for the kernel. It never blocks; it is the
// sync.ListOptions.OnChange hook.
func (n *Notifier) Changed(changes []cache.Change) {
	n.mu.Lock()
	if !n.closed {
		n.pending = append(n.pending, changes...)
		n.queued += uint64(len(changes))
	}
	n.mu.Unlock()
	n.signal()
}

// Sync waits until the changes queued before it have gone to the kernel,
// so that a command that changed the tree (refresh) returns only once the
// kernel shows the change. It gives up after timeout.
func (n *Notifier) Sync(timeout time.Duration) {
	deadline := time.After(timeout)
	n.mu.Lock()
	want := n.queued
	for n.delivered < want && !n.closed {
		ch := n.sentC
		n.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return
		case <-n.done:
			return
		}
		n.mu.Lock()
	}
	n.mu.Unlock()
}

// Close stops sending; queued changes are dropped (the kernel goes away).
func (n *Notifier) Close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.signal()
	<-n.done
}

func (n *Notifier) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *Notifier) register(ino uint64, in *gofs.Inode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.inodes[ino] = in
}

// forget drops a kernel inode the kernel forgot, unless a newer one for the
// same number replaced it meanwhile.
func (n *Notifier) forget(ino uint64, in *gofs.Inode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.inodes[ino] == in {
		delete(n.inodes, ino)
	}
}

func (n *Notifier) loop() {
	defer close(n.done)
	for range n.wake {
		n.mu.Lock()
		batch, closed := n.pending, n.closed
		n.pending = nil
		n.mu.Unlock()
		if closed {
			return
		}
		dirs := make(map[uint64]bool)
		for _, c := range batch {
			n.send(c)
			if c.Kind == cache.ChangeAdded || c.Kind == cache.ChangeRemoved {
				dirs[c.Parent] = true
			}
		}
		// The kernel keeps directory listings (FOPEN_CACHE_DIR) in the
		// directory's pages; drop them where names came or went.
		for ino := range dirs {
			n.mu.Lock()
			in := n.inodes[ino]
			n.mu.Unlock()
			if in != nil {
				in.NotifyContent(0, 0)
			}
		}
		n.mu.Lock()
		n.delivered += uint64(len(batch))
		close(n.sentC)
		n.sentC = make(chan struct{})
		n.mu.Unlock()
		if n.sent != nil {
			n.sent()
		}
	}
}

// send tells the kernel about one change. Errors (typically ENOENT: the
// kernel never looked at that name) mean there is nothing to drop.
func (n *Notifier) send(c cache.Change) {
	n.mu.Lock()
	parent, child := n.inodes[c.Parent], n.inodes[c.Ino]
	n.mu.Unlock()
	if parent != nil {
		parent.NotifyEntry(c.Name)
	}
	if child == nil {
		return
	}
	switch c.Kind {
	case cache.ChangeContent:
		child.NotifyContent(0, 0) // attributes and every page
	case cache.ChangeAttr:
		child.NotifyContent(-1, 0) // attributes only
	}
	n.log.WithFields(logrus.Fields{"name": c.Name, "ino": c.Ino, "kind": c.Kind}).Debug("told the kernel about a remote change")
}
