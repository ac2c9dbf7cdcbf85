package fs

import (
	"context"
	gosync "sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
)

var _ = (gofs.NodeOpendirHandler)((*dirNode)(nil))

// OpendirHandle reads the directory's entries from the cache once and lets
// the kernel keep them (FOPEN_CACHE_DIR): a second ls is served by the
// kernel alone. The Notifier drops the kernel's copy when a listing changes
// the directory.
func (n *dirNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if errno := n.ensureListed(ctx); errno != 0 {
		return nil, 0, errno
	}
	kids, err := n.fs.opts.Cache.Children(n.ino())
	if err != nil {
		return nil, 0, n.fs.toErrno("opendir", err)
	}
	return &dirHandle{node: n, kids: kids}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle is an open directory: a snapshot of its entries taken at open,
// which also answers the lookups of READDIRPLUS without asking the cache
// again for each name.
type dirHandle struct {
	node *dirNode      // read only
	kids []cache.Entry // read only

	mu  gosync.Mutex // protects pos
	pos int          // index of the next entry to return
}

var (
	_ = (gofs.FileReaddirenter)((*dirHandle)(nil))
	_ = (gofs.FileLookuper)((*dirHandle)(nil))
	_ = (gofs.FileSeekdirer)((*dirHandle)(nil))
	_ = (gofs.FileReleasedirer)((*dirHandle)(nil))
)

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.pos >= len(h.kids) {
		return nil, 0
	}
	k := h.kids[h.pos]
	h.pos++
	mode := uint32(syscall.S_IFREG)
	if k.IsDir {
		mode = syscall.S_IFDIR
	}
	return &fuse.DirEntry{Name: k.Name, Ino: k.Ino, Mode: mode, Off: uint64(h.pos)}, 0
}

// Lookup answers for the entry Readdirent returned last.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	h.mu.Lock()
	var e cache.Entry
	found := false
	if i := h.pos - 1; i >= 0 && i < len(h.kids) && h.kids[i].Name == name {
		e, found = h.kids[i], true
	}
	h.mu.Unlock()
	if !found {
		return h.node.Lookup(ctx, name, out)
	}
	h.node.fs.fillAttr(e, &out.Attr)
	return h.node.fs.newChild(ctx, h.node.EmbeddedInode(), e), 0
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	if off > uint64(len(h.kids)) {
		return syscall.EINVAL
	}
	h.pos = int(off)
	return 0
}

func (h *dirHandle) Releasedir(ctx context.Context, releaseFlags uint32) {}
