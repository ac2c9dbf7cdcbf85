// Package fs is the thin adapter between kernel requests (through go-fuse)
// and the cache and sync layers: one node type per kind (dirNode, fileNode)
// plus a handle type, errors mapped in one place (toErrno), and kernel cache
// invalidation when the tree changes underneath. State, policy and locking
// live in cache/ and sync/.
//
// Writes complete in the cache at local speed (cache.Create, Commit,
// Rename, ...); the write-back runner in sync/ sends them to the server.
// With Options.ReadOnly every call that would change something fails with
// EROFS.
package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/hanwen/go-fuse/v2/splice"
	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/sync"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Options configures the filesystem. The command line fills it.
type Options struct {
	Cache    *cache.Cache
	Fetcher  *sync.Fetcher
	Lister   *sync.Lister
	Notifier *Notifier // registry of live nodes for kernel notifications
	Log      logrus.FieldLogger

	// ReadOnly refuses every change (EROFS).
	ReadOnly bool
	// Writeback, if set, lets fsync wait for the upload (FsyncUpload).
	Writeback *sync.Writeback
	// FsyncUpload makes fsync return only once the file is on the server
	// (EIO if it cannot get there); otherwise fsync is durable locally.
	FsyncUpload bool
	// ControlSocket is the status socket's path, shown on the root as the
	// extended attribute user.ftpsync.socket so that the status, flush and
	// unmount commands find it from the mount point.
	ControlSocket string

	// EntryTimeout and AttrTimeout are how long the kernel may trust names
	// and attributes without asking (default 1h): the cache tells the kernel
	// when something changed, so they can be long.
	EntryTimeout time.Duration
	AttrTimeout  time.Duration

	// Mount options.
	AllowOther bool   // let other users see the mount
	FsName     string // shown as the source in mount and df
	Debug      bool   // trace every kernel request (log level trace)
}

// FsName is the filesystem's name: the mount table shows the type
// fuse.ftpsync-mount, the type fstab lines and mount -t give.
const FsName = "ftpsync-mount"

// filesystem holds what every node shares.
type filesystem struct {
	opts Options // read only
	uid  uint32  // read only: the owner shown for every entry
	gid  uint32  // read only
}

// Mount mounts the cache's tree on dir and returns once the kernel has it.
// As root it mounts directly; otherwise through fusermount3.
func Mount(dir string, opts Options) (*fuse.Server, error) {
	if opts.Cache == nil || opts.Fetcher == nil || opts.Lister == nil || opts.Notifier == nil || opts.Log == nil {
		return nil, errors.New("fs: Options needs Cache, Fetcher, Lister, Notifier and Log")
	}
	if opts.EntryTimeout <= 0 {
		opts.EntryTimeout = time.Hour
	}
	if opts.AttrTimeout <= 0 {
		opts.AttrTimeout = time.Hour
	}
	if opts.FsName == "" {
		opts.FsName = "ftpsync-mount"
	}
	fsys := &filesystem{opts: opts, uid: uint32(os.Getuid()), gid: uint32(os.Getgid())}
	// A name found missing is re-checked soon: a listing that adds it
	// tells the kernel, but only for directories the kernel asked about.
	negative := 10 * time.Second
	mo := fuse.MountOptions{
		FsName:       opts.FsName,
		Name:         FsName,
		AllowOther:   opts.AllowOther,
		MaxReadAhead: 1 << 20,
		MaxWrite:     maxRequest(),
		Options:      []string{"default_permissions"},
		Debug:        opts.Debug,
		// open(O_TRUNC) comes to Open as a flag, not as a separate setattr
		// without the handle: the truncation is the handle's, committed at
		// its close (fileNode.Open). And the kernel asks for
		// security.capability before every write(2) unless the filesystem
		// clears privileges itself; here there are none to clear (modes
		// keep only permission bits, no setuid, and there are no security
		// xattrs), so it asks once per file.
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_HANDLE_KILLPRIV_V2,
	}
	// Read-only: mount(2) takes it as a flag, fusermount3 as an option.
	if os.Geteuid() == 0 {
		mo.DirectMount = true
		mo.DirectMountFlags = syscall.MS_NODEV | syscall.MS_NOSUID
		if opts.ReadOnly {
			mo.DirectMountFlags |= syscall.MS_RDONLY
		}
	} else if opts.ReadOnly {
		mo.Options = append(mo.Options, "ro")
	}
	root := &dirNode{fs: fsys}
	server, err := gofs.Mount(dir, root, &gofs.Options{
		MountOptions:    mo,
		EntryTimeout:    &opts.EntryTimeout,
		AttrTimeout:     &opts.AttrTimeout,
		NegativeTimeout: &negative,
		UID:             fsys.uid,
		GID:             fsys.gid,
		RootStableAttr:  &gofs.StableAttr{Ino: cache.RootIno},
	})
	if err != nil {
		return nil, err
	}
	opts.Notifier.register(cache.RootIno, root.EmbeddedInode())
	raiseReadahead(dir, opts.Log)
	return server, nil
}

// raiseReadahead lets the kernel read ahead 4 MiB instead of its default
// 128 KiB, so that a sequential read reaches the cache in large requests.
// Only root may; elsewhere reads are slower but correct.
func raiseReadahead(dir string, log logrus.FieldLogger) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return
	}
	dev := st.Dev
	major := (dev>>8)&0xfff | (dev>>32)&^0xfff
	minor := dev&0xff | (dev>>12)&^0xff
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	if err := os.WriteFile(p, []byte("4096"), 0o644); err != nil {
		log.WithError(err).Debug("kernel readahead stays at its default")
	}
}

// toErrno is the one place errors become errno values. It must change
// together with the sentinel errors of cache, sync and target.
func (fsys *filesystem) toErrno(op string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, cache.ErrNotFound), errors.Is(err, target.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, cache.ErrNotDir), errors.Is(err, target.ErrNotDir):
		return syscall.ENOTDIR
	case errors.Is(err, target.ErrPermission):
		return syscall.EACCES
	case errors.Is(err, cache.ErrExist):
		return syscall.EEXIST
	case errors.Is(err, cache.ErrIsDir):
		return syscall.EISDIR
	case errors.Is(err, cache.ErrNotEmpty):
		return syscall.ENOTEMPTY
	case errors.Is(err, cache.ErrInvalid):
		return syscall.EINVAL
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// The disk under the cache is full: the writer must know.
		return syscall.ENOSPC
	}
	fsys.opts.Log.WithError(err).WithField("op", op).Warn("request failed; answering EIO")
	return syscall.EIO
}

// fillAttr fills kernel attributes from a cache entry; a file open through
// the mount shows its local file's current size, and an mtime set while it
// has writes not committed yet.
func (fsys *filesystem) fillAttr(e cache.Entry, a *fuse.Attr) {
	if !e.IsDir {
		// An open file's size is its handle's (a server file rewritten
		// with O_TRUNC is local only from its close).
		if n, mt, ok := fsys.opts.Cache.OpenState(e.Ino); ok {
			e.Size = n
			if !mt.IsZero() {
				e.ModTime = mt
			}
		}
	}
	a.Ino = e.Ino
	perm := uint32(e.Mode.Perm())
	if e.IsDir {
		if perm == 0 {
			perm = 0o755
		}
		a.Mode = syscall.S_IFDIR | perm
		a.Nlink = 2
		a.Size = 4096
	} else {
		if perm == 0 {
			perm = 0o644
		}
		a.Mode = syscall.S_IFREG | perm
		a.Nlink = 1
		a.Size = uint64(e.Size)
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = 4096
	mt := e.ModTime
	if mt.IsZero() {
		mt = time.Unix(0, 0)
	}
	a.SetTimes(&mt, &mt, &mt)
	a.Uid, a.Gid = fsys.uid, fsys.gid
}

// newChild makes (or finds) the kernel inode for a cache entry.
func (fsys *filesystem) newChild(ctx context.Context, parent *gofs.Inode, e cache.Entry) *gofs.Inode {
	var node gofs.InodeEmbedder
	mode := uint32(syscall.S_IFREG)
	if e.IsDir {
		node, mode = &dirNode{fs: fsys}, syscall.S_IFDIR
	} else {
		node = &fileNode{fs: fsys}
	}
	in := parent.NewInode(ctx, node, gofs.StableAttr{Mode: mode, Ino: e.Ino})
	fsys.opts.Notifier.register(e.Ino, in)
	return in
}

// Extended attributes answer at once from the cache, never the server.
const (
	stateXattr  = "user.ftpsync.state"
	socketXattr = "user.ftpsync.socket"
)

func (fsys *filesystem) getxattr(ino uint64, attr string, dest []byte) (uint32, syscall.Errno) {
	switch {
	case attr == socketXattr && ino == cache.RootIno && fsys.opts.ControlSocket != "":
		return copyXattr(dest, fsys.opts.ControlSocket)
	case strings.HasPrefix(attr, "security."), strings.HasPrefix(attr, "system.posix_acl_"):
		// No security labels and no ACLs here (FTP has neither, and the
		// mount does not ask the kernel to handle ACLs). ENOTSUP, unlike
		// ENODATA, lets ls -l and libselinux stop asking for this mount
		// after the first file, which saves a kernel round trip per file;
		// other names still work (ENOSYS would make the kernel stop sending
		// any getxattr, hiding user.ftpsync.state).
		return 0, syscall.ENOTSUP
	case attr != stateXattr:
		return 0, syscall.ENODATA
	}
	e, err := fsys.opts.Cache.Get(ino)
	if err != nil {
		return 0, fsys.toErrno("getxattr", err)
	}
	return copyXattr(dest, fsys.syncState(e))
}

// syncState is user.ftpsync.state: error (the last upload attempt failed;
// it is retried), conflict (part of an unresolved conflict, see status),
// uploading, pending (a change waits to be uploaded) or clean.
func (fsys *filesystem) syncState(e cache.Entry) string {
	var uploading, failed bool
	if wb := fsys.opts.Writeback; wb != nil && !e.IsDir {
		uploading, failed = wb.FileState(e.Ino)
	}
	if failed {
		return "error"
	}
	if in, err := fsys.opts.Cache.InConflict(e.Ino); err == nil && in {
		return "conflict"
	}
	switch {
	case uploading:
		return "uploading"
	case e.Dirty || e.Upload != 0:
		return "pending"
	}
	return "clean"
}

func listxattr(dest []byte) (uint32, syscall.Errno) {
	return copyXattr(dest, stateXattr+"\x00")
}

// copyXattr follows getxattr(2): an empty buffer asks for the size.
func copyXattr(dest []byte, v string) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return 0, syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// statfs reports the cache's space.
func (fsys *filesystem) statfs(out *fuse.StatfsOut) syscall.Errno {
	u, err := fsys.opts.Cache.Usage()
	if err != nil {
		return fsys.toErrno("statfs", err)
	}
	const bs = 4096
	out.Bsize, out.Frsize = bs, bs
	out.Blocks = uint64(u.Total) / bs
	out.Bfree = uint64(u.Free) / bs
	out.Bavail = out.Bfree
	out.NameLen = 255
	return 0
}

// maxRequest is the largest read or write the kernel sends: 1 MiB, less
// what lets a read's reply (header, data and a spare page) fit one pipe of
// the system's largest size (/proc/sys/fs/pipe-max-size, 1 MiB by default).
// go-fuse splices cached content from the cache file into /dev/fuse through
// such a pipe; a bigger reply would be copied through this process instead.
func maxRequest() int {
	page := os.Getpagesize()
	n := min(1<<20, splice.MaxPipeSize()-2*page)
	return max(n-n%page, 128<<10)
}
