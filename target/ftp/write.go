package ftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// copyBufSize is the chunk an upload is written in: large, so that a fast
// link is not throttled by per-write overhead (TLS records, deadlines).
const copyBufSize = 256 << 10

// copyBufs recycles upload buffers: a tree of small files would otherwise
// allocate (and the collector clear and scan) 256 KiB per file, which was
// most of a one-shot upload's allocation.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

var errTooLong = errors.New("source yields more bytes than announced")

// countingReader feeds a STOR: it counts, refuses to go past a known size,
// and keeps the source's own error apart from the server's.
type countingReader struct {
	ctx    context.Context // a cancelled upload stops at the next read
	r      io.Reader
	limit  int64 // WriteOptions.Size; negative: unknown
	n      int64
	srcErr error // the source failed (not EOF)
	long   bool  // the source had more than limit bytes
}

func (cr *countingReader) Read(p []byte) (int, error) {
	// Closing the sockets on cancellation races with a transfer that fits
	// in the socket buffers; refusing to read makes the outcome certain.
	if err := cr.ctx.Err(); err != nil {
		return 0, err
	}
	if cr.limit >= 0 {
		if cr.n >= cr.limit {
			var one [1]byte
			k, err := cr.r.Read(one[:])
			if k > 0 {
				cr.long = true
				return 0, errTooLong
			}
			if err != nil && err != io.EOF {
				cr.srcErr = err
			}
			return 0, err
		}
		if int64(len(p)) > cr.limit-cr.n {
			p = p[:cr.limit-cr.n]
		}
	}
	k, err := cr.r.Read(p)
	cr.n += int64(k)
	if err != nil && err != io.EOF {
		cr.srcErr = err
	}
	return k, err
}

// WriteTo lets io.Copy use our larger buffer. After an empty source it
// starts TLS on the data connection itself: no Write did, and proftpd
// refuses a data connection without a handshake. (jlaffaye/ftp does this
// for STOR but not for APPE.)
func (cr *countingReader) WriteTo(w io.Writer) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	n, err := io.CopyBuffer(w, struct{ io.Reader }{cr}, *buf)
	if n == 0 && err == nil {
		if h, ok := w.(interface{ Handshake() error }); ok {
			err = h.Handshake()
		}
	}
	return n, err
}

// sizeError is the ErrShortWrite for a source that did not yield size bytes.
func (cr *countingReader) sizeError(op, rel string) error {
	if cr.long {
		return target.Errorf(op, rel, target.ErrShortWrite, "source yields more than the %d bytes announced", cr.limit)
	}
	return target.Errorf(op, rel, target.ErrShortWrite, "source yielded %d bytes, %d announced", cr.n, cr.limit)
}

// Write uploads to a temporary name in the same folder, checks the size,
// sets the time, and renames over the final name, so that the final name
// never shows a partial file. A temporary failure is retried only if r can
// be rewound (an io.Seeker); the temporary file is removed on any failure.
func (t *Target) Write(ctx context.Context, p string, r io.Reader, opts target.WriteOptions) (target.Entry, error) {
	rel, err := clean("write", p)
	if err != nil {
		return target.Entry{}, err
	}
	if rel == "" {
		return target.Entry{}, target.NewError("write", rel, target.ErrIsDir, nil)
	}
	dir, name := target.Split(rel)
	tmp := target.Join(dir, target.TempName(name, t.tempPrefix+"-"+strconv.FormatUint(t.tempSeq.Add(1), 10)))
	// A retry rewinds the source to where it was, if it can.
	seeker, _ := r.(io.Seeker)
	var start int64
	if seeker != nil {
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			seeker = nil
		}
	}
	var cr *countingReader
	again := func() bool {
		if cr == nil || cr.n == 0 {
			return true
		}
		if seeker == nil {
			return false
		}
		_, err := seeker.Seek(start, io.SeekStart)
		return err == nil
	}
	var e target.Entry
	stored := false
	err = t.doRetry(ctx, "write", rel, again, func(c *conn) error {
		cr = &countingReader{ctx: ctx, r: r, limit: opts.Size}
		stored = true
		var err error
		e, err = t.write(c, rel, tmp, cr, opts)
		return err
	})
	if err != nil && stored && !opts.Staged && !t.renameRefused.Load() {
		t.removeTemp(ctx, tmp)
	}
	return e, err
}

// write runs one attempt of Write on c.
func (t *Target) write(c *conn, rel, tmp string, cr *countingReader, opts target.WriteOptions) (target.Entry, error) {
	if opts.Staged {
		return t.storStaged(c, rel, cr, opts)
	}
	if t.renameRefused.Load() {
		return t.storInPlace(c, rel, cr, opts)
	}
	tmpAbs := t.abs(tmp)
	if err := t.stor(c, rel, tmpAbs, cr, opts); err != nil {
		return target.Entry{}, err
	}
	if !opts.ModTime.IsZero() {
		if err := t.setTempTime(c, tmpAbs, opts); err != nil {
			return target.Entry{}, err
		}
	}
	e, described, err := t.probeStored(c, rel, tmpAbs, cr.n)
	if err != nil {
		return target.Entry{}, err
	}
	if err := t.replace(c, tmpAbs, t.abs(rel)); err != nil {
		if replyCode(err) < 500 {
			return target.Entry{}, err
		}
		if st, serr := t.stat(c, rel); serr == nil && st.IsDir {
			return target.Entry{}, kindError("write", rel, target.ErrIsDir, err)
		}
		// The server will not rename at all: store in place from now on.
		t.renameRefused.Store(true)
		t.log.WithError(err).Warnf("server %s refuses to rename files; uploads now overwrite in place, so a reader may see a partial file", t.ep.Host)
		return t.copyInPlace(c, rel, tmpAbs, cr, opts)
	}
	if described {
		return e, nil // a rename keeps size and time
	}
	return t.stat(c, rel)
}

// stor uploads cr to abs and checks the size. rel names the final path in
// errors: a missing folder or a directory in the way is reported for it.
func (t *Target) stor(c *conn, rel, abs string, cr *countingReader, opts target.WriteOptions) error {
	err := c.sc.Stor(abs, cr)
	switch {
	case cr.ctx.Err() != nil:
		return target.NewError("write", rel, nil, cr.ctx.Err())
	case cr.srcErr != nil:
		return target.NewError("write", rel, nil, fmt.Errorf("read the source: %w", cr.srcErr))
	case cr.long:
		return cr.sizeError("write", rel)
	case err != nil && refused(err):
		if t.parentMissing(c, rel) {
			return kindError("write", rel, target.ErrNotFound, err)
		}
		return err
	case err != nil:
		return err
	case opts.Size >= 0 && cr.n != opts.Size:
		return cr.sizeError("write", rel)
	}
	return nil
}

// probeStored checks the temporary file before it replaces the final name,
// and describes it when one command can: the entry then serves as Write's
// answer, since a rename keeps size and time. A data connection cut short on
// the way can look like a finished upload to both ends (the server read a
// clean end of stream and says 226 while our last bytes were lost), and only
// the stored size tells. With MLST one command gives size and time; without
// it SIZE checks and MDTM gives the time to the second (listing the parent
// instead would cost a whole directory per upload). A server with neither
// SIZE nor MDTM leaves nothing to check with and is described after the
// rename.
func (t *Target) probeStored(c *conn, rel, tmpAbs string, sent int64) (target.Entry, bool, error) {
	short := func(size int64) error {
		return target.Errorf("write", rel, target.ErrTemporary, "the server stored %d of the %d bytes sent: the transfer was cut short", size, sent)
	}
	if t.feat.mlst {
		e, err := t.statAbs(c, tmpAbs)
		if err != nil {
			return target.Entry{}, false, err
		}
		if e.Size != sent {
			return target.Entry{}, false, short(e.Size)
		}
		e.Name = target.Base(rel)
		return e, true, nil
	}
	size, err := c.sc.FileSize(tmpAbs)
	switch {
	case err == nil && size != sent:
		return target.Entry{}, false, short(size)
	case err != nil && (isConnError(err) || replyCode(err) < codeSyntax):
		return target.Entry{}, false, err
	case err != nil:
		t.log.WithError(err).Debug("no SIZE to check an upload with")
		return target.Entry{}, false, nil
	}
	if !c.sc.IsGetTimeSupported() {
		return target.Entry{}, false, nil
	}
	mtime, err := c.sc.GetTime(tmpAbs)
	if err != nil {
		if isConnError(err) || replyCode(err) < codeSyntax {
			return target.Entry{}, false, err
		}
		return target.Entry{}, false, nil
	}
	return target.Entry{Name: target.Base(rel), Size: size, ModTime: mtime, Precision: time.Second}, true, nil
}

// setTempTime sets the time on the temporary file before the rename, so
// that the final name appears with its time already right. A server that
// cannot is not an error: the Entry Write returns shows what stuck.
func (t *Target) setTempTime(c *conn, tmpAbs string, opts target.WriteOptions) error {
	if !t.feat.mfmt && (!t.writingMDTM || t.mdtmWrite.Load() == mdtmWriteRefused) {
		return nil
	}
	err := c.sc.SetTime(tmpAbs, opts.ModTime)
	switch {
	case err == nil:
		if !t.feat.mfmt {
			t.mdtmWrite.CompareAndSwap(mdtmWriteUnknown, mdtmWriteWorks)
		}
		return nil
	case replyCode(err) < 500:
		return err
	case !t.feat.mfmt:
		if t.mdtmWrite.CompareAndSwap(mdtmWriteUnknown, mdtmWriteRefused) {
			t.log.WithError(err).Warn("server has MDTM but refuses to set times with it; modification times will not be kept")
		}
	default:
		t.log.WithError(err).Warn("server refused MFMT; the modification time is not kept")
	}
	return nil
}

// copyInPlace finishes a write whose rename the server refused: the data
// is in the temporary file, so it is stored again under the final name
// (rewinding the source if it can, else from a local spool of the
// temporary file) and the temporary file is removed.
func (t *Target) copyInPlace(c *conn, rel, tmpAbs string, cr *countingReader, opts target.WriteOptions) (target.Entry, error) {
	defer func() { _ = c.sc.Delete(tmpAbs) }()
	var src io.Reader
	if s, ok := cr.r.(io.Seeker); ok {
		if _, err := s.Seek(-cr.n, io.SeekCurrent); err != nil {
			return target.Entry{}, target.NewError("write", rel, nil, fmt.Errorf("rewind the source: %w", err))
		}
		src = cr.r
	} else {
		spool, err := os.CreateTemp("", "ftpsync-spool-")
		if err != nil {
			return target.Entry{}, target.NewError("write", rel, nil, fmt.Errorf("spool for an in-place upload: %w", err))
		}
		defer func() { spool.Close(); os.Remove(spool.Name()) }()
		resp, err := c.sc.Retr(tmpAbs)
		if err != nil {
			return target.Entry{}, err
		}
		buf := copyBufs.Get().(*[]byte)
		_, cerr := io.CopyBuffer(spool, resp, *buf)
		copyBufs.Put(buf)
		if err := errors.Join(cerr, resp.Close()); err != nil {
			return target.Entry{}, err
		}
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return target.Entry{}, target.NewError("write", rel, nil, err)
		}
		src = spool
	}
	return t.storInPlace(c, rel, &countingReader{ctx: cr.ctx, r: src, limit: opts.Size}, opts)
}

// storInPlace stores straight under the final name, for servers that refuse
// renames. A failed transfer leaves a partial file there; nothing better is
// possible on such a server.
func (t *Target) storInPlace(c *conn, rel string, cr *countingReader, opts target.WriteOptions) (target.Entry, error) {
	if _, err := t.storStaged(c, rel, cr, opts); err != nil {
		return target.Entry{}, err
	}
	return t.stat(c, rel)
}

// storStaged stores straight under the final name inside a folder the
// caller keeps out of sight and checks with a listing before it renames
// the folder into place (WriteOptions.Staged): STOR and the time, two
// commands where an atomic write needs five.
func (t *Target) storStaged(c *conn, rel string, cr *countingReader, opts target.WriteOptions) (target.Entry, error) {
	abs := t.abs(rel)
	if err := t.stor(c, rel, abs, cr, opts); err != nil {
		return target.Entry{}, err
	}
	e := target.Entry{Name: target.Base(rel), Size: cr.n, Precision: time.Second}
	if !opts.ModTime.IsZero() {
		if err := t.setTempTime(c, abs, opts); err != nil {
			return target.Entry{}, err
		}
		e.ModTime = opts.ModTime.UTC().Truncate(time.Second)
	}
	return e, nil
}

// removeTemp deletes a temporary file after a failed Write, on a context
// of its own: the caller's may be the reason for the failure. When the
// failure was a cancelled transfer, the server may not have created the file
// yet when the DELE arrives on another connection, so a "not found" is tried
// again a few times before it is believed.
func (t *Target) removeTemp(ctx context.Context, tmp string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.timeout)
	defer cancel()
	for wait := 50 * time.Millisecond; ; wait *= 3 {
		err := t.do(ctx, "remove", tmp, func(c *conn) error { return c.sc.Delete(t.abs(tmp)) })
		if err == nil {
			return
		}
		if replyCode(err) != codeFileUnavail {
			t.log.WithError(err).WithField("path", tmp).Warn("could not remove the temporary file of a failed upload")
			return
		}
		if wait > time.Second {
			return // never created
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}

// Append adds r's content at the end of a file with APPE. It is retried
// after a temporary failure only if nothing was sent yet.
func (t *Target) Append(ctx context.Context, p string, r io.Reader) (target.Entry, error) {
	rel, err := clean("append", p)
	if err != nil {
		return target.Entry{}, err
	}
	if rel == "" {
		return target.Entry{}, target.NewError("append", rel, target.ErrIsDir, nil)
	}
	var cr *countingReader
	var e target.Entry
	err = t.doRetry(ctx, "append", rel, func() bool { return cr == nil || cr.n == 0 }, func(c *conn) error {
		cr = &countingReader{ctx: ctx, r: r, limit: -1}
		err := c.sc.Append(t.abs(rel), cr)
		switch {
		case ctx.Err() != nil:
			return target.NewError("append", rel, nil, ctx.Err())
		case cr.srcErr != nil:
			return target.NewError("append", rel, nil, fmt.Errorf("read the source: %w", cr.srcErr))
		case err != nil && refused(err):
			if t.parentMissing(c, rel) {
				return kindError("append", rel, target.ErrNotFound, err)
			}
			return t.disambiguate(c, "append", rel, err, func(e target.Entry) error {
				if e.IsDir {
					return target.ErrIsDir
				}
				return nil
			})
		case err != nil:
			return err
		}
		e, err = t.stat(c, rel)
		return err
	})
	return e, err
}
