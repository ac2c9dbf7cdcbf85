package fs

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
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

// Open hands out a handle. A file opened for writing (or truncated) is
// first made local: its server content copied into the cache's local file,
// where writes then land. The kernel keeps the file's pages across opens
// (FOPEN_KEEP_CACHE): the Notifier drops them when the content changes on
// the server.
func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	write := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	trunc := flags&syscall.O_TRUNC != 0
	if n.fs.opts.ReadOnly && (write || trunc) {
		return nil, 0, syscall.EROFS
	}
	if trunc && !write {
		// Linux truncates on O_RDONLY|O_TRUNC too; no handle will commit it.
		if errno := n.truncate(ctx, 0); errno != 0 {
			return nil, 0, errno
		}
		trunc = false
	}
	e, err := n.fs.opts.Cache.Get(n.ino())
	if err != nil {
		return nil, 0, n.fs.toErrno("open", err)
	}
	n.fs.opts.Lister.Touch(e.Parent)
	if !write && !e.Local {
		return &handle{node: n}, fuse.FOPEN_KEEP_CACHE, 0
	}
	// The handle's truncation is committed with its writes at close; a
	// file served from the server is not fetched only to be cut.
	if err := n.fs.opts.Cache.OpenLocal(n.ino(), write, trunc, n.fs.fill(ctx)); err != nil {
		return nil, 0, n.fs.toErrno("open", err)
	}
	h := &handle{node: n, local: true, write: write}
	if n.fs.opts.Cache.Passthrough(n.ino()) {
		// The kernel refuses a cached open beside a passthrough one.
		return &passHandle{h}, 0, 0
	}
	return h, fuse.FOPEN_KEEP_CACHE, 0
}

// fill copies a server file into w through the Fetcher, for OpenLocal.
func (fsys *filesystem) fill(ctx context.Context) cache.Filler {
	return func(e cache.Entry, w io.WriterAt) error {
		if err := fsys.waitMoved(ctx, e.Ino); err != nil {
			return err
		}
		buf := make([]byte, cache.BlockSize)
		for off := int64(0); off < e.Size; {
			n, err := fsys.opts.Fetcher.ReadAt(ctx, e, buf, off)
			if err != nil {
				return err
			}
			if n == 0 {
				return io.ErrUnexpectedEOF
			}
			if _, err := w.WriteAt(buf[:n], off); err != nil {
				return err
			}
			off += int64(n)
		}
		return nil
	}
}

// waitMoved holds a read of server content until a rename that moved the
// file here reached the server (the Fetcher reads by the current path).
func (fsys *filesystem) waitMoved(ctx context.Context, ino uint64) error {
	if fsys.opts.Writeback == nil {
		return nil
	}
	p, err := fsys.opts.Cache.Path(ino)
	if err != nil {
		return err
	}
	return fsys.opts.Writeback.WaitMoved(ctx, p)
}

func (n *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return n.fs.getxattr(n.ino(), attr, dest)
}

func (n *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(dest)
}

func (n *fileNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if n.fs.opts.ReadOnly {
		return syscall.EROFS
	}
	return syscall.ENOTSUP
}

func (n *fileNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.fs.opts.ReadOnly {
		return syscall.EROFS
	}
	return syscall.ENOTSUP
}

// Setattr changes size (truncate), mtime and mode. Mode is kept in the cache
// and shown (the FTP target cannot set it); owners are not ours to change
// and are ignored, as on most network mounts.
//
// A size change through a handle open for writing (ftruncate, and the
// truncation of open(O_TRUNC), which the kernel sends as a setattr on the
// new handle) belongs to that handle and is committed with its writes at
// close or fsync, so that a crash before the close leaves the file as last
// closed. A truncate(2) by path is committed at once.
func (n *fileNode) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if n.fs.opts.ReadOnly {
		return syscall.EROFS
	}
	c, ino := n.fs.opts.Cache, n.ino()
	h := handleOf(f)
	byWriter := h != nil && h.write
	if size, ok := in.GetSize(); ok {
		if byWriter {
			if err := c.TruncateLocal(ino, int64(size)); err != nil {
				return n.fs.toErrno("truncate", err)
			}
		} else if errno := n.truncate(ctx, int64(size)); errno != 0 {
			return errno
		}
	}
	if mode, ok := in.GetMode(); ok {
		if _, err := c.SetMode(ino, fileMode(mode)); err != nil {
			return n.fs.toErrno("chmod", err)
		}
	}
	// On a file with writes not committed yet the mtime waits for their
	// commit (tar x sets it just before the close).
	if mt, ok := in.GetMTime(); ok && !c.DeferModTime(ino, mt, byWriter) {
		if err := c.OpenLocal(ino, false, false, n.fs.fill(ctx)); err != nil {
			return n.fs.toErrno("utimens", err)
		}
		_, err := c.SetModTime(ino, mt)
		c.Release(ino, false)
		if err != nil {
			return n.fs.toErrno("utimens", err)
		}
	}
	return n.Getattr(ctx, f, out)
}

// truncate sets the size of a file no handle of the caller's changes, and
// commits it.
func (n *fileNode) truncate(ctx context.Context, size int64) syscall.Errno {
	c, ino := n.fs.opts.Cache, n.ino()
	// To size 0, OpenLocal truncates (and does not fetch a server file).
	if err := c.OpenLocal(ino, true, size == 0, n.fs.fill(ctx)); err != nil {
		return n.fs.toErrno("truncate", err)
	}
	var err error
	if size != 0 {
		err = c.TruncateLocal(ino, size)
	}
	if err == nil {
		err = c.Commit(ino, false)
	}
	c.Release(ino, true)
	return n.fs.toErrno("truncate", err)
}

func (n *fileNode) OnForget() { n.fs.opts.Notifier.forget(n.ino(), n.EmbeddedInode()) }

// handle is an open file. A handle on a file served from the server reads
// the entry's current state from the cache each time, so a handle opened
// before a remote change reads the new content after it (like a local file
// replaced in place). A local handle reads and writes the local file.
type handle struct {
	node  *fileNode // read only
	local bool      // read only: opened through Cache.OpenLocal
	write bool      // read only: may write
}

var (
	_ = (gofs.FileReader)((*handle)(nil))
	_ = (gofs.FileWriter)((*handle)(nil))
	_ = (gofs.FileFlusher)((*handle)(nil))
	_ = (gofs.FileFsyncer)((*handle)(nil))
	_ = (gofs.FileReleaser)((*handle)(nil))
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	fsys, ino := h.node.fs, h.node.ino()
	e, err := fsys.opts.Cache.Get(ino)
	if err != nil {
		return nil, fsys.toErrno("read", err)
	}
	var n int
	if h.local || e.Local {
		n, err = fsys.opts.Cache.ReadLocal(ino, dest, off)
	} else if err = fsys.waitMoved(ctx, ino); err == nil {
		var span *cache.Span
		span, n, err = fsys.opts.Fetcher.Span(ctx, e, off, len(dest))
		if span != nil {
			return newSpanResult(span, off, n), 0
		}
		if err == nil || errors.Is(err, cache.ErrStale) {
			n, err = fsys.opts.Fetcher.ReadAt(ctx, e, dest, off)
		}
	}
	if err != nil {
		return nil, fsys.toErrno("read", err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// spanResult answers a read from the cache's fetched file: go-fuse splices
// the bytes from the file into /dev/fuse, so they are not copied through
// this process. The span keeps the blocks from eviction until go-fuse is
// done with them.
type spanResult struct {
	fuse.ReadResult // ReadResultFd: Bytes and Size, for when splice fails
	span            *cache.Span
	off             int64
	n               int
}

func newSpanResult(span *cache.Span, off int64, n int) *spanResult {
	fd := span.File().Fd()
	return &spanResult{ReadResult: fuse.ReadResultFd(fd, off, n), span: span, off: off, n: n}
}

// Seekable is what go-fuse's splice path asks for.
func (r *spanResult) Seekable() (fd uintptr, off int64, sz int) {
	return r.span.File().Fd(), r.off, r.n
}

func (r *spanResult) Done() { r.span.Release() }

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.write {
		return 0, syscall.EBADF
	}
	n, err := h.node.fs.opts.Cache.WriteLocal(h.node.ino(), data, off)
	if err != nil {
		return uint32(n), h.node.fs.toErrno("write", err)
	}
	return uint32(n), 0
}

// Flush runs at every close(2): what was written is committed with its
// upload queued, so a closed file survives a crash.
func (h *handle) Flush(ctx context.Context) syscall.Errno {
	if !h.write {
		return 0
	}
	return h.node.fs.toErrno("close", h.node.fs.opts.Cache.Commit(h.node.ino(), false))
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	if !h.write {
		return 0
	}
	fsys, ino := h.node.fs, h.node.ino()
	if err := fsys.opts.Cache.Commit(ino, true); err != nil {
		return fsys.toErrno("fsync", err)
	}
	if fsys.opts.FsyncUpload && fsys.opts.Writeback != nil {
		ctx, cancel := context.WithTimeout(ctx, fsyncUploadTimeout)
		defer cancel()
		if err := fsys.opts.Writeback.FlushFile(ctx, ino); err != nil {
			fsys.opts.Log.WithError(err).Warn("fsync: the file did not reach the server")
			return syscall.EIO
		}
	}
	return 0
}

// fsyncUploadTimeout bounds how long fsync waits for the server with
// --fsync=upload before it reports EIO (the upload stays queued).
const fsyncUploadTimeout = 2 * time.Minute

// passHandle is a handle whose reads and writes the kernel makes itself,
// on the cache's local file (FUSE passthrough: go-fuse registers the file
// PassthroughFd returns, once per inode while it is open). The mount
// gives one to each file it creates for writing (tar x, cp, an editor's
// save): their writes then cost no request to the mount at all. Every
// other open of the file until its last close gets one too. go-fuse uses
// passthrough only where the kernel allows it (root, Linux 6.9 or later,
// a cache on a local disk); elsewhere a passHandle works as a handle.
type passHandle struct{ *handle }

var _ = (gofs.FilePassthroughFder)((*passHandle)(nil))

func (h *passHandle) PassthroughFd() (int, bool) {
	return h.node.fs.opts.Cache.PassthroughFd(h.node.ino())
}

// handleOf returns the handle behind a file handle the kernel gave back,
// nil for none of ours.
func handleOf(f gofs.FileHandle) *handle {
	switch h := f.(type) {
	case *handle:
		return h
	case *passHandle:
		return h.handle
	}
	return nil
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	if h.local {
		h.node.fs.opts.Cache.Release(h.node.ino(), h.write)
	}
	return 0
}
