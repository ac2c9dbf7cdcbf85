package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// copyBuf is the buffer size for writes; large enough that a 100 MiB copy
// checks its context a few hundred times, not millions.
const copyBuf = 256 << 10

// copyBufs recycles write buffers, so that a download of many small files
// does not allocate 256 KiB for each.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}

// maxName is the longest file name common local filesystems accept, in bytes.
const maxName = 255

// openRegular opens the regular file name in dir (rel below the root)
// with flag, refusing directories, links and special files, including one
// swapped in while we opened it.
func (t *Target) openRegular(op, rel string, dir int, name string, flag int) (*os.File, error) {
	before, err := t.lstatIn(op, rel, dir, name)
	if err != nil {
		return nil, err
	}
	if before.IsDir() {
		return nil, target.NewError(op, rel, target.ErrIsDir, nil)
	}
	// O_NOFOLLOW refuses a link swapped in since the lstat, and O_NONBLOCK
	// keeps a FIFO swapped in from blocking the open.
	fd, err := openat(dir, name, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, t.mapErr(op, rel, err)
	}
	opened, err := fstat(fd, name)
	switch {
	case err != nil:
		unix.Close(fd)
		return nil, t.mapErr(op, rel, err)
	case opened.IsDir():
		unix.Close(fd)
		return nil, target.NewError(op, rel, target.ErrIsDir, nil)
	case !opened.Mode().IsRegular():
		unix.Close(fd)
		return nil, target.Errorf(op, rel, target.ErrNotFound, "%s changed into a special file while being opened", rel)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, t.mapErr(op, rel, wrapSys("fcntl", rel, err))
	}
	return newFile(fd, rel), nil
}

// Open streams the file from offset; length < 0 reads to the end. The
// reader checks ctx on every Read and closes the file on Close.
func (t *Target) Open(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	rel, err := t.resolve(ctx, "read", p)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, target.Errorf("read", rel, nil, "negative offset %d", offset)
	}
	if rel == "" {
		return nil, target.NewError("read", rel, target.ErrIsDir, nil)
	}
	dir, name, err := t.parentOf("read", rel)
	if err != nil {
		return nil, err
	}
	f, err := t.openRegular("read", rel, dir, name, os.O_RDONLY)
	unix.Close(dir)
	if err != nil {
		return nil, err
	}
	n := length
	if n < 0 {
		n = int64(^uint64(0)>>1) - offset
	}
	return &fileReader{ctx: ctx, rel: rel, f: f, sr: io.NewSectionReader(f, offset, n)}, nil
}

// fileReader is the reader Open returns.
type fileReader struct {
	ctx context.Context
	rel string
	f   *os.File
	sr  *io.SectionReader
}

func (r *fileReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, target.NewError("read", r.rel, nil, err)
	}
	n, err := r.sr.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = target.NewError("read", r.rel, nil, err)
	}
	return n, err
}

func (r *fileReader) Close() error { return r.f.Close() }

// Write stores r under p atomically: it writes a temp file beside p,
// fsyncs it, gives it the old file's permissions (0644 for a new file) and
// opts.ModTime, and renames it over p. On any failure the temp file is
// removed and p is untouched.
func (t *Target) Write(ctx context.Context, p string, r io.Reader, opts target.WriteOptions) (target.Entry, error) {
	rel, err := t.resolve(ctx, "write", p)
	if err != nil {
		return target.Entry{}, err
	}
	if rel == "" {
		return target.Entry{}, target.NewError("write", rel, target.ErrIsDir, nil)
	}
	dir, name, err := t.parentOf("write", rel)
	if err != nil {
		return target.Entry{}, err
	}
	defer unix.Close(dir)
	old, err := t.refuseLink("write", rel, dir, name)
	if err != nil {
		return target.Entry{}, err
	}
	mode := os.FileMode(0o644)
	if old != nil {
		if old.IsDir() {
			return target.Entry{}, target.NewError("write", rel, target.ErrIsDir, nil)
		}
		mode = old.Mode().Perm()
	}
	f, tmp, err := t.createTemp(rel, dir, name)
	if err != nil {
		return target.Entry{}, err
	}
	if err := t.fillTemp(ctx, f, dir, tmp, rel, r, opts, mode); err != nil {
		if rerr := unix.Unlinkat(dir, tmp, 0); rerr != nil && !errors.Is(rerr, unix.ENOENT) {
			parent, _ := target.Split(rel)
			t.log.WithError(rerr).WithField("path", target.Join(parent, tmp)).Warn("write: cannot remove temp file")
		}
		return target.Entry{}, err
	}
	if err := unix.Renameat(dir, tmp, dir, name); err != nil {
		_ = unix.Unlinkat(dir, tmp, 0)
		return target.Entry{}, t.mapErr("write", rel, wrapSys("renameat", rel, err))
	}
	t.syncDir(rel, dir)
	return t.statIn("write", rel, dir, name)
}

// createTemp creates an empty temp file in dir beside name (rel below the
// root), readable only by us until fillTemp sets the final mode.
func (t *Target) createTemp(rel string, dir int, name string) (*os.File, string, error) {
	for range 5 {
		unique := t.tmpBase + strconv.FormatUint(t.tmpSeq.Add(1), 36)
		tmpName := target.TempName(name, unique)
		if len(tmpName) > maxName {
			// Keep the temp name within the filesystem's limit; the cut
			// part of the name only helps humans recognize the file.
			cut := maxName - len(target.TempName("", unique))
			for cut > 0 && !utf8.RuneStart(name[cut]) {
				cut--
			}
			tmpName = target.TempName(name[:cut], unique)
		}
		fd, err := openat(dir, tmpName, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue // left by another process with the same random part
		}
		if err != nil {
			return nil, "", t.mapErr("write", rel, err)
		}
		return newFile(fd, tmpName), tmpName, nil
	}
	return nil, "", target.Errorf("write", rel, target.ErrExist, "no free temp name beside %s", rel)
}

// fillTemp copies r into f (tmp in dir), checks the size, sets mode and
// time and makes it all durable. It always closes f.
func (t *Target) fillTemp(ctx context.Context, f *os.File, dir int, tmp, rel string, r io.Reader, opts target.WriteOptions, mode os.FileMode) error {
	defer f.Close()
	n, srcErr, dstErr := copyCtx(ctx, f, r, opts.Size)
	if srcErr != nil {
		return target.NewError("write", rel, nil, srcErr)
	}
	if dstErr != nil {
		return t.mapErr("write", rel, dstErr)
	}
	if opts.Size >= 0 && n != opts.Size {
		return target.Errorf("write", rel, target.ErrShortWrite, "source gave %d bytes, %d expected", n, opts.Size)
	}
	if err := f.Chmod(mode); err != nil {
		return t.mapErr("write", rel, err)
	}
	if !opts.ModTime.IsZero() {
		// Set before the rename, so that the file appears under its
		// final name with its final time.
		if err := setMtime(dir, tmp, opts.ModTime); err != nil {
			return t.mapErr("write", rel, err)
		}
	}
	if err := f.Sync(); err != nil {
		return t.mapErr("write", rel, err)
	}
	if err := f.Close(); err != nil {
		return t.mapErr("write", rel, err)
	}
	return nil
}

// copyCtx copies r to w until EOF, checking ctx between buffers. With
// size >= 0 it reads at most size+1 bytes: enough to tell a source that
// grew without draining an endless one. It returns the error of the source
// (or ctx) apart from that of w, because only the latter says something
// about the target.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader, size int64) (n int64, srcErr, dstErr error) {
	if size >= 0 {
		r = io.LimitReader(r, size+1)
	}
	pb := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(pb)
	buf := *pb
	for {
		if err := ctx.Err(); err != nil {
			return n, err, nil
		}
		m, err := r.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return n, nil, werr
			}
			n += int64(m)
		}
		if errors.Is(err, io.EOF) {
			return n, nil, nil
		}
		if err != nil {
			return n, fmt.Errorf("read source after %d bytes: %w", n, err), nil
		}
	}
}

// syncDir makes a rename in dir (the folder of rel) durable. A failure is
// logged, not returned: the data itself is already on disk.
func (t *Target) syncDir(rel string, dir int) {
	fd, err := openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err == nil {
		err = wrapSys("fsync", rel, unix.Fsync(fd))
		unix.Close(fd)
	}
	if err != nil {
		t.log.WithError(err).WithField("path", rel).Debug("write: cannot fsync the directory")
	}
}

// Append adds r's content at the end of an existing regular file and
// fsyncs it. Unlike Write it is not atomic: a failure may leave part of the
// data appended.
func (t *Target) Append(ctx context.Context, p string, r io.Reader) (target.Entry, error) {
	rel, err := t.resolve(ctx, "append", p)
	if err != nil {
		return target.Entry{}, err
	}
	if rel == "" {
		return target.Entry{}, target.NewError("append", rel, target.ErrIsDir, nil)
	}
	dir, name, err := t.parentOf("append", rel)
	if err != nil {
		return target.Entry{}, err
	}
	defer unix.Close(dir)
	f, err := t.openRegular("append", rel, dir, name, os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return target.Entry{}, err
	}
	defer f.Close()
	if _, srcErr, dstErr := copyCtx(ctx, f, r, -1); srcErr != nil {
		return target.Entry{}, target.NewError("append", rel, nil, srcErr)
	} else if dstErr != nil {
		return target.Entry{}, t.mapErr("append", rel, dstErr)
	}
	if err := f.Sync(); err != nil {
		return target.Entry{}, t.mapErr("append", rel, err)
	}
	if err := f.Close(); err != nil {
		return target.Entry{}, t.mapErr("append", rel, err)
	}
	return t.statIn("append", rel, dir, name)
}
