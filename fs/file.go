package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fileNode is a regular file. Like dirNode it holds only its inode number.
type fileNode struct {
	gofs.Inode
	fs *filesystem // read only
}

var (
	_ = (gofs.NodeGetattrer)((*fileNode)(nil))
	_ = (gofs.NodeOpener)((*fileNode)(nil))
	_ = (gofs.NodeSetattrer)((*fileNode)(nil))
	_ = (gofs.NodeGetxattrer)((*fileNode)(nil))
	_ = (gofs.NodeListxattrer)((*fileNode)(nil))
	_ = (gofs.NodeSetxattrer)((*fileNode)(nil))
	_ = (gofs.NodeRemovexattrer)((*fileNode)(nil))
	_ = (gofs.NodeOnForgetter)((*fileNode)(nil))
)

func (n *fileNode) ino() uint64 { return n.StableAttr().Ino }

func (n *fileNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e, err := n.fs.opts.Cache.Get(n.ino())
	if err != nil {
		return n.fs.toErrno("getattr", err)
	}
	n.fs.fillAttr(e, &out.Attr)
	return 0
}

// Open hands out a read handle. The kernel keeps the file's pages across
// opens (FOPEN_KEEP_CACHE): the Notifier drops them when the content
// changes on the server.
func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	if _, err := n.fs.opts.Cache.Get(n.ino()); err != nil {
		return nil, 0, n.fs.toErrno("open", err)
	}
	return &handle{node: n}, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(attr, dest)
}

func (n *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(dest)
}

func (n *fileNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}

func (n *fileNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.EROFS
}

func (n *fileNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (n *fileNode) OnForget() { n.fs.opts.Notifier.forget(n.ino(), n.EmbeddedInode()) }

// handle is an open file. Reads take the entry's current state from the
// cache each time, so a handle opened before a remote change reads the new
// content after it (like a local file replaced in place).
type handle struct {
	node *fileNode // read only
}

var _ = (gofs.FileReader)((*handle)(nil))

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	fsys := h.node.fs
	e, err := fsys.opts.Cache.Get(h.node.ino())
	if err != nil {
		return nil, fsys.toErrno("read", err)
	}
	n, err := fsys.opts.Fetcher.ReadAt(ctx, e, dest, off)
	if err != nil {
		return nil, fsys.toErrno("read", err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}
