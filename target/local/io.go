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
	"time"
	"unicode/utf8"

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

// openRegular opens the regular file rel with flag, refusing directories,
// links and special files, including one swapped in while we opened it.
func (t *Target) openRegular(op, rel string, flag int) (*os.File, fs.FileInfo, error) {
	before, err := t.lstatFinal(op, rel)
	if err != nil {
		return nil, nil, err
	}
	if before.IsDir() {
		return nil, nil, target.NewError(op, rel, target.ErrIsDir, nil)
	}
	f, err := t.root.OpenFile(rel, flag, 0)
	if err != nil {
		return nil, nil, t.mapErr(op, rel, err)
	}
	opened, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, t.mapErr(op, rel, err)
	}
	// os.Root follows links inside the root. What we opened must be the
	// regular file that was at rel just before or just after opening (a
	// concurrent Write may replace it); anything else came through a link.
	if !os.SameFile(opened, before) {
		after, err := t.root.Lstat(rel)
		if err != nil || !after.Mode().IsRegular() || !os.SameFile(opened, after) {
			_ = f.Close()
			return nil, nil, target.Errorf(op, rel, target.ErrNotFound, "%s changed into a link or special file while being opened", rel)
		}
	}
	return f, opened, nil
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
	f, _, err := t.openRegular("read", rel, os.O_RDONLY)
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
	old, err := t.refuseLink("write", rel)
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
	f, tmp, err := t.createTemp(rel)
	if err != nil {
		return target.Entry{}, err
	}
	if err := t.fillTemp(ctx, f, tmp, rel, r, opts, mode); err != nil {
		if rerr := t.root.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			t.log.WithError(rerr).WithField("path", tmp).Warn("write: cannot remove temp file")
		}
		return target.Entry{}, err
	}
	if err := t.root.Rename(tmp, rel); err != nil {
		_ = t.root.Remove(tmp)
		return target.Entry{}, t.mapErr("write", rel, err)
	}
	t.syncDir(rel)
	return t.Stat(context.WithoutCancel(ctx), rel)
}

// createTemp creates an empty temp file beside rel, readable only by us
// until fillTemp sets the final mode.
func (t *Target) createTemp(rel string) (*os.File, string, error) {
	dir, name := target.Split(rel)
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
		tmp := target.Join(dir, tmpName)
		f, err := t.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue // left by another process with the same random part
		}
		if err != nil {
			return nil, "", t.mapErr("write", rel, err)
		}
		return f, tmp, nil
	}
	return nil, "", target.Errorf("write", rel, target.ErrExist, "no free temp name beside %s", rel)
}

// fillTemp copies r into f, checks the size, sets mode and time and makes
// it all durable. It always closes f.
func (t *Target) fillTemp(ctx context.Context, f *os.File, tmp, rel string, r io.Reader, opts target.WriteOptions, mode os.FileMode) error {
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
		if err := t.root.Chtimes(tmp, time.Time{}, opts.ModTime); err != nil {
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

// syncDir makes a rename in rel's directory durable. A failure is logged,
// not returned: the data itself is already on disk.
func (t *Target) syncDir(rel string) {
	dir, _ := target.Split(rel)
	if dir == "" {
		dir = "."
	}
	d, err := t.root.Open(dir)
	if err == nil {
		err = d.Sync()
		_ = d.Close()
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
	f, _, err := t.openRegular("append", rel, os.O_WRONLY|os.O_APPEND)
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
	return t.Stat(context.WithoutCancel(ctx), rel)
}
