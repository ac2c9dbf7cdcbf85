package fs

import (
	"context"
	"os"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The directory operations that change the tree. Each one completes in the
// cache (one transaction that also queues what the server must be told) and
// returns without waiting for the network. A directory is listed before it
// is changed, so that names the server holds are known.

func fileMode(m uint32) os.FileMode { return os.FileMode(m & 0o7777).Perm() }

func (n *dirNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	if n.fs.opts.ReadOnly {
		return nil, nil, 0, syscall.EROFS
	}
	if errno := n.ensureListed(ctx); errno != 0 {
		return nil, nil, 0, errno
	}
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	e, err := n.fs.opts.Cache.CreateOpen(n.ino(), name, fileMode(mode), time.Now(), write)
	if err != nil {
		return nil, nil, 0, n.fs.toErrno("create", err)
	}
	n.fs.fillAttr(e, &out.Attr)
	child := n.fs.newChild(ctx, n.EmbeddedInode(), e)
	h := &handle{node: child.Operations().(*fileNode), local: true, write: write}
	if write {
		return child, &passHandle{h}, 0, 0
	}
	return child, h, fuse.FOPEN_KEEP_CACHE, 0
}

// Mknod makes regular files only (what mkfifo and device nodes need cannot
// live on an FTP server).
func (n *dirNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.fs.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	if mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, syscall.EPERM
	}
	if errno := n.ensureListed(ctx); errno != 0 {
		return nil, errno
	}
	e, err := n.fs.opts.Cache.Create(n.ino(), name, fileMode(mode), time.Now())
	if err != nil {
		return nil, n.fs.toErrno("mknod", err)
	}
	n.fs.fillAttr(e, &out.Attr)
	return n.fs.newChild(ctx, n.EmbeddedInode(), e), 0
}

func (n *dirNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.fs.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	if errno := n.ensureListed(ctx); errno != 0 {
		return nil, errno
	}
	e, err := n.fs.opts.Cache.Mkdir(n.ino(), name, fileMode(mode), time.Now())
	if err != nil {
		return nil, n.fs.toErrno("mkdir", err)
	}
	n.fs.fillAttr(e, &out.Attr)
	return n.fs.newChild(ctx, n.EmbeddedInode(), e), 0
}

func (n *dirNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if n.fs.opts.ReadOnly {
		return syscall.EROFS
	}
	if errno := n.ensureListed(ctx); errno != 0 {
		return errno
	}
	return n.fs.toErrno("unlink", n.fs.opts.Cache.Unlink(n.ino(), name))
}

// Rmdir lists the folder first: empty in the cache must mean empty on the
// server, or the server's files would be left behind unseen.
func (n *dirNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	if n.fs.opts.ReadOnly {
		return syscall.EROFS
	}
	if errno := n.ensureListed(ctx); errno != 0 {
		return errno
	}
	c := n.fs.opts.Cache
	e, err := c.Lookup(n.ino(), name)
	if err != nil {
		return n.fs.toErrno("rmdir", err)
	}
	if e.IsDir {
		if err := n.fs.opts.Lister.Ensure(ctx, e); err != nil {
			return n.fs.toErrno("rmdir", err)
		}
	}
	return n.fs.toErrno("rmdir", c.Rmdir(n.ino(), name))
}

// Rename moves within the mount; RENAME_EXCHANGE has no FTP equivalent.
func (n *dirNode) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if n.fs.opts.ReadOnly {
		return syscall.EROFS
	}
	const renameNoReplace, renameExchange = 1, 2
	if flags&renameExchange != 0 {
		return syscall.EINVAL
	}
	np, ok := newParent.(*dirNode)
	if !ok {
		return syscall.EXDEV
	}
	if errno := n.ensureListed(ctx); errno != 0 {
		return errno
	}
	if errno := np.ensureListed(ctx); errno != 0 {
		return errno
	}
	err := n.fs.opts.Cache.Rename(n.ino(), name, np.ino(), newName, flags&renameNoReplace != 0)
	return n.fs.toErrno("rename", err)
}

// Setattr keeps a folder's mode and mtime in the cache.
func (n *dirNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fs.opts.ReadOnly {
		return syscall.EROFS
	}
	c := n.fs.opts.Cache
	if mode, ok := in.GetMode(); ok {
		if _, err := c.SetMode(n.ino(), fileMode(mode)); err != nil {
			return n.fs.toErrno("chmod", err)
		}
	}
	if mt, ok := in.GetMTime(); ok {
		if _, err := c.SetModTime(n.ino(), mt); err != nil {
			return n.fs.toErrno("utimens", err)
		}
	}
	return n.Getattr(ctx, f, out)
}

func (n *dirNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if n.fs.opts.ReadOnly {
		return syscall.EROFS
	}
	return syscall.ENOTSUP
}

func (n *dirNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.fs.opts.ReadOnly {
		return syscall.EROFS
	}
	return syscall.ENOTSUP
}

// Symlinks and hard links have no FTP equivalent.
func (n *dirNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.fs.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	return nil, syscall.EPERM
}

func (n *dirNode) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if n.fs.opts.ReadOnly {
		return nil, syscall.EROFS
	}
	return nil, syscall.EPERM
}
