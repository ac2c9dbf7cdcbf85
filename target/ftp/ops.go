package ftp

import (
	"bytes"
	"context"
	"errors"
	"path"
	"strings"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Retries: only ErrTemporary is retried (a dropped connection, a 421 or
// 45x reply), never a 5xx refusal, which would only be refused again.
const (
	retryAttempts = 3
	retryFirst    = 100 * time.Millisecond
	retryMax      = time.Second
)

// clean validates a request path before anything is sent to the server.
func clean(op, p string) (string, error) {
	rel, err := target.CleanPath(p)
	if err != nil {
		return "", target.NewError(op, p, target.ErrInvalidName, err)
	}
	return rel, nil
}

// abs is the path to send for a target-relative path.
func (t *Target) abs(rel string) string { return t.ep.RemotePath(rel) }

// do runs fn on a pooled connection, retrying temporary failures.
func (t *Target) do(ctx context.Context, op, p string, fn func(c *conn) error) error {
	return t.doRetry(ctx, op, p, nil, fn)
}

// doRetry is do with a veto: again is asked before each retry (a Write
// retries only if it can rewind its source).
func (t *Target) doRetry(ctx context.Context, op, p string, again func() bool, fn func(c *conn) error) error {
	delay := retryFirst
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return target.NewError(op, p, nil, err)
		}
		err := wrapErr(ctx, op, p, t.once(ctx, fn))
		if err == nil || attempt >= retryAttempts || !errors.Is(err, target.ErrTemporary) ||
			ctx.Err() != nil || (again != nil && !again()) {
			return err
		}
		t.log.WithError(err).WithField("attempt", attempt).Debug("temporary failure; retrying")
		if sleepCtx(ctx, delay) != nil {
			return target.NewError(op, p, nil, ctx.Err())
		}
		delay = min(4*delay, retryMax)
	}
}

// once runs fn on one connection; a connection left in doubt is discarded.
func (t *Target) once(ctx context.Context, fn func(c *conn) error) error {
	c, err := t.pool.get(ctx)
	if err != nil {
		return err
	}
	c.begin(ctx)
	err = fn(c)
	if isConnError(err) {
		c.markDead()
	}
	c.end()
	t.pool.put(c)
	return err
}

// Stat describes one entry: with MLST where the server has it, otherwise
// from a listing of the parent.
func (t *Target) Stat(ctx context.Context, p string) (target.Entry, error) {
	rel, err := clean("stat", p)
	if err != nil {
		return target.Entry{}, err
	}
	var e target.Entry
	err = t.do(ctx, "stat", rel, func(c *conn) error {
		var err error
		e, err = t.stat(c, rel)
		return err
	})
	return e, err
}

func (t *Target) stat(c *conn, rel string) (target.Entry, error) {
	if rel == "" && !t.feat.mlst {
		return target.Entry{IsDir: true, Precision: time.Minute}, nil
	}
	e, err := t.statAbs(c, t.abs(rel))
	if err != nil {
		return target.Entry{}, err
	}
	if rel == "" && !e.IsDir {
		return target.Entry{}, target.Errorf("stat", rel, target.ErrNotDir, "the root %s is no longer a folder", t.ep.Root)
	}
	e.Name = target.Base(rel)
	if rel == "" {
		e.Name = ""
	}
	return e, nil
}

// statAbs describes the entry at an absolute remote path. Its Name is left
// for the caller to set.
func (t *Target) statAbs(c *conn, abs string) (target.Entry, error) {
	if !t.feat.mlst {
		dir, name := path.Split(abs)
		if name == "" {
			return target.Entry{IsDir: true, Precision: time.Minute}, nil
		}
		es, err := t.listAbs(c, path.Clean(dir), dir)
		if err != nil {
			if replyCode(err) == codeFileUnavail {
				return target.Entry{}, target.NewError("stat", abs, target.ErrNotFound, err)
			}
			return target.Entry{}, err
		}
		for _, e := range es {
			if e.Name == name {
				return e, nil
			}
		}
		return target.Entry{}, target.NewError("stat", abs, target.ErrNotFound, nil)
	}
	c.trans.start()
	_, err := c.sc.GetEntry(abs)
	text := c.trans.stop()
	if err != nil {
		if replyCode(err) == codeFileUnavail {
			kind := classify550(err)
			if kind == nil || kind == target.ErrNotDir {
				kind = target.ErrNotFound
			}
			return target.Entry{}, target.NewError("stat", abs, kind, err)
		}
		return target.Entry{}, err
	}
	for _, line := range replyLines(text, 250) {
		line = strings.TrimLeft(line, " ")
		if line == "" {
			continue
		}
		e, _, _, err := parseMLSTLine(line)
		if err != nil {
			return target.Entry{}, target.Errorf("stat", abs, target.ErrUnsupported, "MLST reply %.100q: %v", line, err)
		}
		return e, nil
	}
	return target.Entry{}, target.Errorf("stat", abs, nil, "MLST reply holds no entry")
}

// List returns the entries of a directory.
func (t *Target) List(ctx context.Context, dir string) ([]target.Entry, error) {
	rel, err := clean("list", dir)
	if err != nil {
		return nil, err
	}
	var es []target.Entry
	err = t.do(ctx, "list", rel, func(c *conn) error {
		var err error
		es, err = t.listAbs(c, t.abs(rel), rel)
		if err != nil && refused(err) {
			return t.disambiguate(c, "list", rel, err, func(e target.Entry) error {
				if !e.IsDir {
					return target.ErrNotDir
				}
				return nil
			})
		}
		return err
	})
	return es, err
}

// listAbs lists a directory, reading the raw bytes the data connection
// delivered: jlaffaye/ftp's own parser drops precision. MLSD takes the path
// (RFC 3659: a pathname, never globbed or taken for an option); LIST is
// given none after a change into the directory, since servers glob its
// argument and read a leading dash as options. The change costs a command
// and a round trip per listing, which MLSD servers are spared.
func (t *Target) listAbs(c *conn, abs, logDir string) ([]target.Entry, error) {
	mlsd := c.sc.IsTimePreciseInList() && !t.listHidden
	arg := abs
	if !mlsd {
		if err := c.sc.ChangeDir(abs); err != nil {
			return nil, err
		}
		arg = ""
	}
	var buf bytes.Buffer
	c.capture = &buf
	_, err := c.sc.List(arg)
	c.capture = nil
	if err != nil {
		return nil, err
	}
	if b := buf.Bytes(); len(b) > 0 && b[len(b)-1] != '\n' {
		// Every listing line ends with CRLF; a listing that stops
		// mid-line lost its end on a data connection cut short, and the
		// entries it left out must not look deleted.
		return nil, target.Errorf("list", logDir, target.ErrTemporary, "the listing ended mid-line after %d bytes: the transfer was cut short", len(b))
	}
	es, problems := parseListing(buf.Bytes(), mlsd, time.Now(), time.UTC)
	for _, p := range problems {
		t.log.WithField("dir", "/"+logDir).Warn("listing: " + p)
	}
	if mlsd && len(es) == 1 && !es[0].IsDir && es[0].Name == path.Base(abs) {
		// Some servers answer MLSD of a file with the file's own line,
		// which looks like a folder holding a file of its name.
		e, err := t.statAbs(c, abs)
		if err != nil {
			return nil, err
		}
		if !e.IsDir {
			return nil, kindError("list", logDir, target.ErrNotDir, errors.New("a file, not a folder"))
		}
	}
	return es, nil
}

// disambiguate decides the kind of a refusal (5xx) by looking at the path
// instead of trusting the reply text: missing is ErrNotFound; otherwise
// check may name a kind for what is there (nil keeps the reply's own kind).
func (t *Target) disambiguate(c *conn, op, rel string, err error, check func(e target.Entry) error) error {
	e, serr := t.stat(c, rel)
	switch {
	case serr != nil && errors.Is(serr, target.ErrNotFound):
		return kindError(op, rel, target.ErrNotFound, err)
	case serr != nil:
		if isConnError(serr) {
			return serr
		}
		return err
	}
	if check != nil {
		if kind := check(e); kind != nil {
			return kindError(op, rel, kind, err)
		}
	}
	return err
}

// parentMissing reports whether the parent directory of rel is gone, so
// that a refused create is ErrNotFound.
func (t *Target) parentMissing(c *conn, rel string) bool {
	dir, _ := target.Split(rel)
	if dir == "" {
		return false
	}
	_, err := t.stat(c, dir)
	return errors.Is(err, target.ErrNotFound)
}

// Rename moves from to to, replacing a file at to.
func (t *Target) Rename(ctx context.Context, from, to string) error {
	src, err := clean("rename", from)
	if err != nil {
		return err
	}
	dst, err := clean("rename", to)
	if err != nil {
		return err
	}
	if src == "" || dst == "" {
		return target.Errorf("rename", from, target.ErrInvalidName, "cannot rename the root")
	}
	return t.do(ctx, "rename", src, func(c *conn) error {
		err := t.replace(c, t.abs(src), t.abs(dst))
		if err == nil || !refused(err) {
			return err
		}
		if err := t.disambiguate(c, "rename", src, err, nil); errors.Is(err, target.ErrNotFound) {
			return err
		}
		if t.parentMissing(c, dst) {
			return kindError("rename", dst, target.ErrNotFound, err)
		}
		return err
	})
}

// replace renames fromAbs over toAbs. Some servers refuse to rename over an
// existing file; then the file at toAbs is deleted first (not atomic, but
// the best such a server allows).
func (t *Target) replace(c *conn, fromAbs, toAbs string) error {
	err := c.sc.Rename(fromAbs, toAbs)
	if err == nil || !refused(err) {
		return err
	}
	e, serr := t.statAbs(c, toAbs)
	if serr != nil || e.IsDir {
		return err
	}
	if derr := c.sc.Delete(toAbs); derr != nil {
		return err
	}
	t.log.WithField("path", toAbs).Debug("server refused to rename over a file; deleted it first")
	return c.sc.Rename(fromAbs, toAbs)
}

// Remove deletes a file.
func (t *Target) Remove(ctx context.Context, p string) error {
	rel, err := clean("remove", p)
	if err != nil {
		return err
	}
	return t.do(ctx, "remove", rel, func(c *conn) error {
		err := c.sc.Delete(t.abs(rel))
		if err == nil || !refused(err) {
			return err
		}
		return t.disambiguate(c, "remove", rel, err, func(e target.Entry) error {
			if e.IsDir {
				return target.ErrIsDir
			}
			return nil
		})
	})
}

// Mkdir creates one directory.
func (t *Target) Mkdir(ctx context.Context, p string) error {
	rel, err := clean("mkdir", p)
	if err != nil {
		return err
	}
	return t.do(ctx, "mkdir", rel, func(c *conn) error {
		err := c.sc.MakeDir(t.abs(rel))
		if err == nil || !refused(err) {
			return err
		}
		if _, serr := t.stat(c, rel); serr == nil {
			return kindError("mkdir", rel, target.ErrExist, err)
		}
		if t.parentMissing(c, rel) {
			return kindError("mkdir", rel, target.ErrNotFound, err)
		}
		return err
	})
}

// Rmdir removes an empty directory.
func (t *Target) Rmdir(ctx context.Context, p string) error {
	rel, err := clean("rmdir", p)
	if err != nil {
		return err
	}
	return t.do(ctx, "rmdir", rel, func(c *conn) error {
		err := c.sc.RemoveDir(t.abs(rel))
		if err == nil || !refused(err) {
			return err
		}
		return t.disambiguate(c, "rmdir", rel, err, func(e target.Entry) error {
			if !e.IsDir {
				return target.ErrNotDir
			}
			if es, lerr := t.listAbs(c, t.abs(rel), rel); lerr == nil && len(es) > 0 {
				return target.ErrNotEmpty
			}
			return nil
		})
	})
}

// SetModTime sets a file's modification time with MFMT, or with vsftpd's
// "MDTM time path" where the server has MDTM but no MFMT.
func (t *Target) SetModTime(ctx context.Context, p string, mt time.Time) error {
	rel, err := clean("setmodtime", p)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return target.NewError("setmodtime", rel, nil, err)
	}
	if !t.Features().CanSetModTime() {
		return target.NewError("setmodtime", rel, target.ErrUnsupported, nil)
	}
	return t.do(ctx, "setmodtime", rel, func(c *conn) error {
		return t.setModTime(c, rel, t.abs(rel), mt)
	})
}

// setModTime sets the time of abs (rel names it in errors). A refused
// MDTM-write on an existing file means the server does not have it: we
// remember that and stop trying.
func (t *Target) setModTime(c *conn, rel, abs string, mt time.Time) error {
	if !t.feat.mfmt && t.mdtmWrite.Load() == mdtmWriteRefused {
		return target.NewError("setmodtime", rel, target.ErrUnsupported, nil)
	}
	err := c.sc.SetTime(abs, mt)
	if err == nil {
		if !t.feat.mfmt {
			t.mdtmWrite.CompareAndSwap(mdtmWriteUnknown, mdtmWriteWorks)
		}
		return nil
	}
	if !refused(err) {
		return err
	}
	if _, serr := t.statAbs(c, abs); serr != nil {
		if errors.Is(serr, target.ErrNotFound) {
			return kindError("setmodtime", rel, target.ErrNotFound, err)
		}
		return err
	}
	if !t.feat.mfmt && t.mdtmWrite.CompareAndSwap(mdtmWriteUnknown, mdtmWriteRefused) {
		t.log.WithError(err).Warn("server has MDTM but refuses to set times with it; modification times will not be kept")
	}
	return kindError("setmodtime", rel, target.ErrUnsupported, err)
}

// RefineModTime asks MDTM for a file's time to the second. Callers use it
// where a LIST line gave only minutes or days (Entry.Precision > time.Second).
func (t *Target) RefineModTime(ctx context.Context, p string) (time.Time, error) {
	rel, err := clean("mdtm", p)
	if err != nil {
		return time.Time{}, err
	}
	if !t.feat.mdtm {
		return time.Time{}, target.NewError("mdtm", rel, target.ErrUnsupported, nil)
	}
	var mt time.Time
	err = t.do(ctx, "mdtm", rel, func(c *conn) error {
		var err error
		mt, err = c.sc.GetTime(t.abs(rel))
		if err != nil && refused(err) {
			return t.disambiguate(c, "mdtm", rel, err, func(e target.Entry) error {
				if e.IsDir {
					return target.ErrIsDir
				}
				return nil
			})
		}
		return err
	})
	return mt.UTC(), err
}
