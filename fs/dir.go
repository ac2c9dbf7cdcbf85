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
	return getxattr(attr, dest)
}

func (n *dirNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(dest)
}

func (n *dirNode) OnForget() { n.fs.opts.Notifier.forget(n.ino(), n.EmbeddedInode()) }

// The mount is read-only until the write-back journal exists.

func (n *dirNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return syscall.EROFS
}

func (n *dirNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return syscall.EROFS
}

func (n *dirNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (n *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (n *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (n *dirNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (n *dirNode) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

func (n *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }

func (n *dirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

func (n *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (n *dirNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}
