package fs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirNode is a directory. It holds no state of its own: its inode number
// (the cache's) names it, and every answer comes from the cache, listed
// from the server first if the directory was never listed.
type dirNode struct {
	gofs.Inode
	fs *filesystem // read only
}

var (
	_ = (gofs.NodeLookuper)((*dirNode)(nil))
	_ = (gofs.NodeGetattrer)((*dirNode)(nil))
	_ = (gofs.NodeStatfser)((*dirNode)(nil))
	_ = (gofs.NodeGetxattrer)((*dirNode)(nil))
	_ = (gofs.NodeListxattrer)((*dirNode)(nil))
	_ = (gofs.NodeSetxattrer)((*dirNode)(nil))
	_ = (gofs.NodeRemovexattrer)((*dirNode)(nil))
	_ = (gofs.NodeSetattrer)((*dirNode)(nil))
	_ = (gofs.NodeCreater)((*dirNode)(nil))
	_ = (gofs.NodeMkdirer)((*dirNode)(nil))
	_ = (gofs.NodeMknoder)((*dirNode)(nil))
	_ = (gofs.NodeUnlinker)((*dirNode)(nil))
	_ = (gofs.NodeRmdirer)((*dirNode)(nil))
	_ = (gofs.NodeRenamer)((*dirNode)(nil))
	_ = (gofs.NodeSymlinker)((*dirNode)(nil))
	_ = (gofs.NodeLinker)((*dirNode)(nil))
	_ = (gofs.NodeOnForgetter)((*dirNode)(nil))
)

func (n *dirNode) ino() uint64 { return n.StableAttr().Ino }

// ensureListed makes sure the cache holds a listing of this directory.
func (n *dirNode) ensureListed(ctx context.Context) syscall.Errno {
	e, err := n.fs.opts.Cache.Get(n.ino())
	if err != nil {
		return n.fs.toErrno("list", err)
	}
	return n.fs.toErrno("list", n.fs.opts.Lister.Ensure(ctx, e))
}

func (n *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if errno := n.ensureListed(ctx); errno != 0 {
		return nil, errno
	}
	e, err := n.fs.opts.Cache.Lookup(n.ino(), name)
	if err != nil {
		return nil, n.fs.toErrno("lookup", err)
	}
	n.fs.fillAttr(e, &out.Attr)
	return n.fs.newChild(ctx, n.EmbeddedInode(), e), 0
}

func (n *dirNode) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	e, err := n.fs.opts.Cache.Get(n.ino())
	if err != nil {
		return n.fs.toErrno("getattr", err)
	}
	n.fs.fillAttr(e, &out.Attr)
	return 0
}

func (n *dirNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	return n.fs.statfs(out)
}

func (n *dirNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return n.fs.getxattr(n.ino(), attr, dest)
}

func (n *dirNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(dest)
}

func (n *dirNode) OnForget() { n.fs.opts.Notifier.forget(n.ino(), n.EmbeddedInode()) }
