package ftp

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	jftp "github.com/jlaffaye/ftp"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// abortWait bounds the wait for the server's reply after we close a data
// connection early. A server that does not answer by then costs us the
// connection, not the rest of a 1 GiB file.
const abortWait = 3 * time.Second

// Open streams a file with REST + RETR from offset: one RETR per Open.
//
// The reader holds a pooled connection until Close, so a caller that keeps
// readers open while it calls other methods must allow for the pool size
// (Options.Connections): with all connections held by open readers, other
// calls wait for a Close or for their context. ctx governs the whole
// transfer: when it ends, the next Read fails.
func (t *Target) Open(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	rel, err := clean("read", p)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, target.Errorf("read", rel, nil, "negative offset %d", offset)
	}
	if length == 0 {
		e, err := t.Stat(ctx, rel)
		if err == nil && e.IsDir {
			err = target.NewError("read", rel, target.ErrIsDir, nil)
		}
		if err != nil {
			return nil, err
		}
		return io.NopCloser(eofReader{}), nil
	}
	delay := retryFirst
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, target.NewError("read", rel, nil, err)
		}
		r, err := t.open(ctx, rel, offset, length)
		err = wrapErr(ctx, "read", rel, err)
		if err == nil || attempt >= retryAttempts || !errors.Is(err, target.ErrTemporary) || ctx.Err() != nil {
			return r, err
		}
		if sleepCtx(ctx, delay) != nil {
			return nil, target.NewError("read", rel, nil, ctx.Err())
		}
		delay = min(4*delay, retryMax)
	}
}

func (t *Target) open(ctx context.Context, rel string, offset, length int64) (io.ReadCloser, error) {
	c, err := t.pool.get(ctx)
	if err != nil {
		return nil, err
	}
	c.begin(ctx)
	if rel == "" {
		err = target.NewError("read", rel, target.ErrIsDir, nil)
	} else {
		var resp *jftp.Response
		resp, err = c.sc.RetrFrom(t.abs(rel), uint64(offset))
		if err == nil {
			return &reader{t: t, c: c, ctx: ctx, rel: rel, resp: resp, left: length}, nil
		}
		if refused(err) {
			err = t.disambiguate(c, "read", rel, err, func(e target.Entry) error {
				if e.IsDir {
					return target.ErrIsDir
				}
				return nil
			})
		}
	}
	if isConnError(err) {
		c.markDead()
	}
	c.end()
	t.pool.put(c)
	return nil, err
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// reader is an open RETR. It is not safe for concurrent use, like any
// io.Reader.
type reader struct {
	t    *Target
	c    *conn
	ctx  context.Context
	rel  string
	resp *jftp.Response
	left int64 // bytes still wanted; negative: to the end
	eof  bool  // the server closed the data connection: the file is done
	err  error // a failed transfer: the connection is in doubt
	done bool  // closed
}

func (r *reader) Read(p []byte) (int, error) {
	switch {
	case r.done:
		return 0, os.ErrClosed
	case r.err != nil:
		return 0, r.err
	case r.eof || r.left == 0:
		return 0, io.EOF
	}
	if r.left > 0 && int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.resp.Read(p)
	if r.left > 0 {
		r.left -= int64(n)
	}
	switch {
	case err == io.EOF:
		r.eof = true
	case err != nil:
		r.err = wrapErr(r.ctx, "read", r.rel, err)
		return n, r.err
	}
	return n, err
}

// Close ends the transfer. After the whole file it reads the 226 reply and
// reports a transfer the server says failed. Before the end it closes the
// data connection and waits a little for the 426 (or 226) that follows;
// the connection is then checked with NOOP before reuse, in case a server
// sends one reply more. A server that does not answer costs the connection.
func (r *reader) Close() error {
	if r.done {
		return nil
	}
	r.done = true
	c := r.c
	var err error
	switch {
	case r.err != nil:
		// The transfer broke: waiting for the server's verdict could take
		// a whole timeout, and the connection is discarded anyway.
		c.kill()
		_ = r.resp.Close()
	case r.eof:
		if err = r.resp.Close(); err != nil {
			err = wrapErr(r.ctx, "read", r.rel, err)
		}
	default:
		c.ctl.timeout.Store(int64(min(r.t.timeout, abortWait)))
		cerr := r.resp.Close()
		c.ctl.timeout.Store(int64(r.t.timeout))
		switch replyCode(cerr) {
		case 0, codeAborted, codeFileBusy, codeLocalError, codeCantOpenData:
			if cerr != nil && isConnError(cerr) {
				c.markDead()
			}
		default:
			c.markDead()
		}
		c.checkFirst = true
	}
	if isConnError(err) {
		c.markDead()
	}
	c.end()
	r.t.pool.put(c)
	return err
}
