package sftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/pkg/sftp"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// smallRead is the largest read fetched whole at Open with one ReadAt (which
// pkg/sftp splits into concurrent requests); longer reads stream through
// WriteTo, which keeps many requests in flight. The split keeps a short
// ranged read in a big file from reading megabytes ahead.
const smallRead = 4 << 20

// Open streams a file from offset.
func (t *Target) Open(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	p, err := clean("read", p)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, target.Errorf("read", p, nil, "negative offset %d", offset)
	}
	abs := t.ep.remotePath(p)
	var f *sftp.File
	var size int64
	err = t.do(ctx, "read", p, true, func(c *client) error {
		fh, err := c.Open(abs)
		if err != nil {
			return err
		}
		fi, err := fh.Stat()
		if err == nil && fi.IsDir() {
			err = target.NewError("read", p, target.ErrIsDir, errors.New("is a folder"))
		}
		if err == nil {
			err = ctx.Err() // do may have returned already: nobody would close fh
		}
		if err != nil {
			_ = fh.Close()
			return err
		}
		f, size = fh, fi.Size()
		return nil
	})
	if err != nil {
		return nil, t.fail(ctx, "read", p, err, nil)
	}
	want := max(size-offset, 0)
	if length >= 0 {
		want = min(want, length)
	}
	if want > smallRead {
		return t.stream(ctx, p, f, offset, length), nil
	}
	buf := make([]byte, want)
	var n int
	err = t.do(ctx, "read", p, true, func(*client) (err error) {
		n, err = f.ReadAt(buf, offset)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return err
	})
	go f.Close() // a detached ReadAt may still hold f; Close waits for it
	if err != nil {
		return nil, t.fail(ctx, "read", p, err, nil)
	}
	return io.NopCloser(bytes.NewReader(buf[:n])), nil
}

// errLimit stops WriteTo once a ranged read has its bytes.
var errLimit = errors.New("read limit reached")

// limitWriter passes on at most n bytes, then fails with errLimit.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(b []byte) (int, error) {
	if l.n <= 0 {
		return 0, errLimit
	}
	short := int64(len(b)) > l.n
	if short {
		b = b[:l.n]
	}
	n, err := l.w.Write(b)
	l.n -= int64(n)
	if err == nil && short {
		err = errLimit
	}
	return n, err
}

// streamReader is a file being fetched by WriteTo into a pipe.
type streamReader struct {
	pr   *io.PipeReader
	stop func() bool   // ends the context watch
	done chan struct{} // closed once the fetch has ended and f is closed
}

func (r *streamReader) Read(b []byte) (int, error) { return r.pr.Read(b) }

// Close aborts the fetch and waits for its requests to end, which the
// keepalive bounds in time.
func (r *streamReader) Close() error {
	r.stop()
	_ = r.pr.Close()
	<-r.done
	return nil
}

// stream fetches f from offset (length bytes, or to the end if negative)
// with pkg/sftp's concurrent reads, and closes f when done.
func (t *Target) stream(ctx context.Context, p string, f *sftp.File, offset, length int64) io.ReadCloser {
	pr, pw := io.Pipe()
	r := &streamReader{pr: pr, done: make(chan struct{})}
	r.stop = context.AfterFunc(ctx, func() { _ = pw.CloseWithError(target.NewError("read", p, nil, ctx.Err())) })
	go func() {
		defer close(r.done)
		var w io.Writer = pw
		if length >= 0 {
			w = &limitWriter{w: pw, n: length}
		}
		_, err := f.Seek(offset, io.SeekStart)
		if err == nil {
			_, err = f.WriteTo(w)
		}
		_ = f.Close()
		if err == nil || errors.Is(err, errLimit) {
			_ = pw.Close()
			return
		}
		_ = pw.CloseWithError(target.NewError("read", p, classify(err), err))
	}()
	return r
}

// errOverSize stops an upload whose source yields more than its Size.
var errOverSize = errors.New("source yields more bytes than its size")

// uploadSource feeds an upload: it stops at ctx's end and counts bytes
// against the promised size, reading at most one byte past it.
type uploadSource struct {
	ctx  context.Context
	r    io.Reader
	size int64 // -1: unknown
	n    int64
}

func (s *uploadSource) Read(b []byte) (int, error) {
	if err := s.ctx.Err(); err != nil {
		return 0, err
	}
	if s.size >= 0 {
		b = b[:min(int64(len(b)), s.size+1-s.n)]
	}
	n, err := s.r.Read(b)
	s.n += int64(n)
	if s.size >= 0 && s.n > s.size {
		return n, errOverSize
	}
	return n, err
}

// check reports a source that did not yield exactly its size.
func (s *uploadSource) check(err error) error {
	if errors.Is(err, errOverSize) || err == nil && s.size >= 0 && s.n != s.size {
		return fmt.Errorf("%w: expected %d bytes, got %d", target.ErrShortWrite, s.size, s.n)
	}
	return err
}

// Write uploads to a temporary name in the same folder, sets the time,
// then renames it over path, so that readers never see a partial file.
func (t *Target) Write(ctx context.Context, p string, r io.Reader, opts target.WriteOptions) (target.Entry, error) {
	p, err := clean("write", p)
	if err != nil {
		return target.Entry{}, err
	}
	if p == "" {
		return target.Entry{}, target.NewError("write", p, target.ErrIsDir, nil)
	}
	tmpAbs, abs := t.ep.remotePath(t.tempName(p)), t.ep.remotePath(p)
	var e target.Entry
	err = t.do(ctx, "write", p, false, func(c *client) error {
		// A replaced file keeps its permission bits (an executable
		// script stays executable); a new one gets the server's default.
		var perm fs.FileMode
		if fi, err := c.Lstat(abs); err == nil && fi.Mode().IsRegular() {
			perm = fi.Mode().Perm()
		}
		f, err := c.OpenFile(tmpAbs, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return err
		}
		err = t.upload(ctx, c, f, tmpAbs, abs, r, opts, perm)
		if err != nil {
			if rerr := c.Remove(tmpAbs); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				t.log.WithField("path", tmpAbs).WithError(rerr).Warn("could not remove the temp file of a failed upload")
			}
			return err
		}
		fi, err := c.Stat(abs)
		if err != nil {
			return fmt.Errorf("stat after upload: %w", err)
		}
		e = entryOf(target.Base(p), fi)
		return nil
	})
	if err != nil {
		return target.Entry{}, t.fail(ctx, "write", p, err, func(fi fs.FileInfo, serr error) error {
			if serr == nil && fi.IsDir() {
				return target.ErrIsDir
			}
			return nil
		})
	}
	return e, nil
}

// upload writes r into the open temp file f, checks the size, sets the
// time (and perm, if not 0) and renames the temp file over abs. It closes f.
func (t *Target) upload(ctx context.Context, c *client, f *sftp.File, tmpAbs, abs string, r io.Reader, opts target.WriteOptions, perm fs.FileMode) error {
	src := &uploadSource{ctx: ctx, r: r, size: opts.Size}
	_, err := f.ReadFromWithConcurrency(src, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err = src.check(err); err != nil {
		return err
	}
	if perm != 0 {
		if err := c.Chmod(tmpAbs, perm); err != nil {
			t.log.WithField("path", abs).WithError(err).Warn("server refused to keep the permission bits of the replaced file")
		}
	}
	if !opts.ModTime.IsZero() {
		if err := c.Chtimes(tmpAbs, opts.ModTime, opts.ModTime); err != nil {
			t.log.WithField("path", abs).WithError(err).Warn("server refused to set the modification time")
		}
	}
	// The last moment to cancel: after the rename the new file is in place.
	if err := ctx.Err(); err != nil {
		return err
	}
	return t.renameOn(c, tmpAbs, abs)
}

// Append adds r at the end of an existing file.
func (t *Target) Append(ctx context.Context, p string, r io.Reader) (target.Entry, error) {
	p, err := clean("append", p)
	if err != nil {
		return target.Entry{}, err
	}
	if p == "" {
		return target.Entry{}, target.NewError("append", p, target.ErrIsDir, nil)
	}
	abs := t.ep.remotePath(p)
	var e target.Entry
	err = t.do(ctx, "append", p, false, func(c *client) error {
		f, err := c.OpenFile(abs, os.O_WRONLY)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil && fi.IsDir() {
			err = target.NewError("append", p, target.ErrIsDir, errors.New("is a folder"))
		}
		if err == nil {
			_, err = f.Seek(fi.Size(), io.SeekStart)
		}
		if err == nil {
			_, err = f.ReadFromWithConcurrency(&uploadSource{ctx: ctx, r: r, size: -1}, 0)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if fi, err = c.Stat(abs); err != nil {
			return fmt.Errorf("stat after append: %w", err)
		}
		e = entryOf(target.Base(p), fi)
		return nil
	})
	if err != nil {
		return target.Entry{}, t.fail(ctx, "append", p, err, nil)
	}
	return e, nil
}
