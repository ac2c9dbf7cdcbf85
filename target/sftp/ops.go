package sftp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// clean validates a request path; the error is an *target.Error of kind
// ErrInvalidName.
func clean(op, p string) (string, error) {
	c, err := target.CleanPath(p)
	if err != nil {
		return "", target.NewError(op, p, target.ErrInvalidName, err)
	}
	return c, nil
}

// entryOf describes fi under name. SFTP version 3 carries whole seconds.
func entryOf(name string, fi fs.FileInfo) target.Entry {
	e := target.Entry{
		Name:      name,
		IsDir:     fi.IsDir(),
		ModTime:   fi.ModTime().UTC(),
		Precision: time.Second,
		Mode:      fi.Mode().Perm(),
	}
	if !e.IsDir {
		e.Size = fi.Size()
	}
	return e
}

// fail wraps err of op on p. Where the server gave no kind (SFTP v3's
// catch-all failure) or said "no such file" for what may be a type clash
// (OpenSSH reports ENOTDIR that way), a Stat of p tells what is there, and
// want picks the kind from that.
func (t *Target) fail(ctx context.Context, op, p string, err error, want func(fi fs.FileInfo, statErr error) error) error {
	if ctx.Err() != nil {
		return target.NewError(op, p, nil, ctx.Err())
	}
	var te *target.Error
	if errors.As(err, &te) {
		return err
	}
	kind := classify(err)
	if kind == nil || want != nil && kind == target.ErrNotFound {
		fi, serr := t.lookup(ctx, p)
		if want != nil {
			if k := want(fi, serr); k != nil {
				return target.NewError(op, p, k, err)
			}
		}
		if k := classify(serr); kind == nil && (k == target.ErrNotFound || k == target.ErrNotDir) {
			kind = k
		}
	}
	return target.NewError(op, p, kind, err)
}

// lookup stats p to explain a failure. Where the server gives no kind for
// the Stat either (pkg/sftp's server reports ENOTDIR as a plain failure),
// a parent that is a file makes it ErrNotDir.
func (t *Target) lookup(ctx context.Context, p string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	serr := t.do(ctx, "stat", p, true, func(c *client) (err error) {
		fi, err = c.Stat(t.ep.remotePath(p))
		return err
	})
	if serr == nil || classify(serr) != nil || p == "" {
		return fi, serr
	}
	dir, _ := target.Split(p)
	if pfi, err := t.lookup(ctx, dir); err == nil && !pfi.IsDir() {
		return nil, target.NewError("stat", p, target.ErrNotDir, serr)
	} else if errors.Is(err, target.ErrNotFound) || errors.Is(err, target.ErrNotDir) {
		return nil, err
	}
	return nil, serr
}

// Stat describes one entry, following symbolic links.
func (t *Target) Stat(ctx context.Context, p string) (target.Entry, error) {
	p, err := clean("stat", p)
	if err != nil {
		return target.Entry{}, err
	}
	var fi fs.FileInfo
	err = t.do(ctx, "stat", p, true, func(c *client) (err error) {
		fi, err = c.Stat(t.ep.remotePath(p))
		return err
	})
	if err != nil {
		return target.Entry{}, t.fail(ctx, "stat", p, err, nil)
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		return target.Entry{}, target.Errorf("stat", p, target.ErrUnsupported, "not a regular file or folder (%v)", fi.Mode().Type())
	}
	return entryOf(target.Base(p), fi), nil
}

// List returns the entries of a directory. Symbolic links are followed (a
// dangling one is left out); devices, sockets and pipes, temp files and
// names a hostile server could abuse are left out and logged.
func (t *Target) List(ctx context.Context, dir string) ([]target.Entry, error) {
	dir, err := clean("list", dir)
	if err != nil {
		return nil, err
	}
	abs := t.ep.remotePath(dir)
	var infos []fs.FileInfo
	err = t.do(ctx, "list", dir, true, func(c *client) (err error) {
		infos, err = c.ReadDirContext(ctx, abs)
		return err
	})
	if err != nil {
		return nil, t.fail(ctx, "list", dir, err, func(fi fs.FileInfo, serr error) error {
			if serr == nil && !fi.IsDir() {
				return target.ErrNotDir
			}
			return nil
		})
	}
	out := make([]target.Entry, 0, len(infos))
	for _, fi := range infos {
		name := fi.Name()
		if name == "." || name == ".." || target.IsTempName(name) {
			continue
		}
		if err := target.ValidName(name); err != nil {
			t.log.WithField("dir", dir).WithError(err).Warn("listing holds a name that cannot be used safely; leaving it out")
			continue
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			p := target.Join(dir, name)
			err := t.do(ctx, "stat", p, true, func(c *client) (err error) {
				fi, err = c.Stat(t.ep.remotePath(p))
				return err
			})
			if err != nil {
				if ctx.Err() != nil {
					return nil, target.NewError("list", dir, nil, ctx.Err())
				}
				t.log.WithField("path", p).WithError(err).Info("symbolic link leads nowhere; leaving it out")
				continue
			}
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			t.log.WithField("path", target.Join(dir, name)).Debugf("leaving out a %v", fi.Mode().Type())
			continue
		}
		out = append(out, entryOf(name, fi))
	}
	return out, nil
}

// Rename moves from to to, replacing a file at to. Where the server lacks
// posix-rename@openssh.com, plain SFTP rename refuses an existing target,
// so the target is removed first; the log says so, since a reader may then
// briefly find no file.
func (t *Target) Rename(ctx context.Context, from, to string) error {
	from, err := clean("rename", from)
	if err != nil {
		return err
	}
	if to, err = clean("rename", to); err != nil {
		return err
	}
	if from == "" || to == "" {
		return target.Errorf("rename", from, target.ErrPermission, "cannot rename the root folder or onto it")
	}
	err = t.do(ctx, "rename", from, false, func(c *client) error {
		return t.renameOn(c, t.ep.remotePath(from), t.ep.remotePath(to))
	})
	if err != nil {
		return t.fail(ctx, "rename", from, err, nil)
	}
	return nil
}

// renameOn renames absolute paths on c, replacing a file at newAbs.
func (t *Target) renameOn(c *client, oldAbs, newAbs string) error {
	if t.posixRename {
		return c.PosixRename(oldAbs, newAbs)
	}
	err := c.Rename(oldAbs, newAbs)
	if err == nil || !isFailure(err) {
		return err
	}
	if fi, serr := c.Lstat(newAbs); serr != nil || fi.IsDir() {
		return err
	}
	t.log.WithField("path", newAbs).Info("server has no posix-rename; removing the old file before renaming over it")
	if rerr := c.Remove(newAbs); rerr != nil {
		return fmt.Errorf("%w (and removing the old file failed: %w)", err, rerr)
	}
	return c.Rename(oldAbs, newAbs)
}

// Remove deletes a file (or a symbolic link), never a folder.
func (t *Target) Remove(ctx context.Context, p string) error {
	p, err := clean("remove", p)
	if err != nil {
		return err
	}
	abs := t.ep.remotePath(p)
	err = t.do(ctx, "remove", p, false, func(c *client) error {
		// pkg/sftp's Remove also removes an empty folder; look first.
		fi, err := c.Lstat(abs)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return target.NewError("remove", p, target.ErrIsDir, errors.New("is a folder: use rmdir"))
		}
		return c.Remove(abs)
	})
	if err != nil {
		return t.fail(ctx, "remove", p, err, nil)
	}
	return nil
}

// Mkdir creates one directory.
func (t *Target) Mkdir(ctx context.Context, p string) error {
	p, err := clean("mkdir", p)
	if err != nil {
		return err
	}
	if p == "" {
		return target.NewError("mkdir", p, target.ErrExist, nil)
	}
	err = t.do(ctx, "mkdir", p, false, func(c *client) error { return c.Mkdir(t.ep.remotePath(p)) })
	if err != nil {
		return t.fail(ctx, "mkdir", p, err, func(_ fs.FileInfo, serr error) error {
			if serr == nil {
				return target.ErrExist
			}
			return nil
		})
	}
	return nil
}

// Rmdir removes an empty directory.
func (t *Target) Rmdir(ctx context.Context, p string) error {
	p, err := clean("rmdir", p)
	if err != nil {
		return err
	}
	if p == "" {
		return target.Errorf("rmdir", p, target.ErrPermission, "cannot remove the root folder")
	}
	err = t.do(ctx, "rmdir", p, false, func(c *client) error {
		// Some servers (pkg/sftp's own) remove a file on RMDIR; look first.
		abs := t.ep.remotePath(p)
		fi, err := c.Lstat(abs)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return target.NewError("rmdir", p, target.ErrNotDir, errors.New("not a folder: use remove"))
		}
		return c.RemoveDirectory(abs)
	})
	if err != nil {
		return t.fail(ctx, "rmdir", p, err, func(fi fs.FileInfo, serr error) error {
			switch {
			case serr != nil:
				return nil
			case !fi.IsDir():
				return target.ErrNotDir
			}
			return target.ErrNotEmpty
		})
	}
	return nil
}

// SetModTime sets the modification (and access) time with SETSTAT.
func (t *Target) SetModTime(ctx context.Context, p string, mt time.Time) error {
	p, err := clean("setmodtime", p)
	if err != nil {
		return err
	}
	err = t.do(ctx, "setmodtime", p, false, func(c *client) error {
		return c.Chtimes(t.ep.remotePath(p), mt, mt)
	})
	if err != nil {
		return t.fail(ctx, "setmodtime", p, err, nil)
	}
	return nil
}
