package local

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Stat describes one file or directory; links and special files are not
// found. The root's entry has the empty name.
func (t *Target) Stat(ctx context.Context, p string) (target.Entry, error) {
	rel, err := t.resolve(ctx, "stat", p)
	if err != nil {
		return target.Entry{}, err
	}
	if rel == "" {
		fd, err := t.openDir("stat", "", dirFlags)
		if err != nil {
			return target.Entry{}, err
		}
		defer unix.Close(fd)
		fi, err := fstat(fd, ".")
		if err != nil {
			return target.Entry{}, t.mapErr("stat", rel, err)
		}
		return entry("", fi), nil
	}
	dir, name, err := t.parentOf("stat", rel)
	if err != nil {
		return target.Entry{}, err
	}
	defer unix.Close(dir)
	return t.statIn("stat", rel, dir, name)
}

// statIn is Stat of name in dir, rel being its path below the root.
func (t *Target) statIn(op, rel string, dir int, name string) (target.Entry, error) {
	fi, err := t.lstatIn(op, rel, dir, name)
	if err != nil {
		return target.Entry{}, err
	}
	return entry(name, fi), nil
}

// listBatch bounds how many names are read between two context checks.
const listBatch = 1024

// List returns the regular files and directories in dir, sorted by name.
// Temp files of unfinished writes, names a remote could not hold, links and
// special files are left out and logged at debug level.
func (t *Target) List(ctx context.Context, dir string) ([]target.Entry, error) {
	rel, err := t.resolve(ctx, "list", dir)
	if err != nil {
		return nil, err
	}
	fd, err := t.openDir("list", rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	f := newFile(fd, rel)
	defer f.Close()
	var out []target.Entry
	for {
		if err := ctx.Err(); err != nil {
			return nil, target.NewError("list", rel, nil, err)
		}
		des, err := f.ReadDir(listBatch)
		for _, de := range des {
			if e, ok := t.listEntry(rel, fd, de); ok {
				out = append(out, e)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, t.mapErr("list", rel, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// listEntry converts one entry of the directory dirFD (dir below the
// root), or says to leave it out.
func (t *Target) listEntry(dir string, dirFD int, de fs.DirEntry) (target.Entry, bool) {
	name := de.Name()
	if target.IsTempName(name) {
		t.log.WithField("path", target.Join(dir, name)).Debug("list: leaving out the temp file of a write")
		return target.Entry{}, false
	}
	if err := target.ValidName(name); err != nil {
		t.log.WithField("path", target.Join(dir, name)).WithError(err).Debug("list: leaving out a name a remote cannot hold")
		return target.Entry{}, false
	}
	fi, err := lstatAt(dirFD, name)
	if err != nil {
		// Removed since ReadDir read it, or unreadable: either way not
		// something to report.
		t.log.WithField("path", target.Join(dir, name)).WithError(err).Debug("list: leaving out an entry that cannot be described")
		return target.Entry{}, false
	}
	if err := unsupportedType(fi); err != nil {
		t.log.WithField("path", target.Join(dir, name)).WithError(err).Debug("list: leaving out an entry that is neither file nor directory")
		return target.Entry{}, false
	}
	return entry(name, fi), true
}

// Mkdir creates one directory with mode 0755 (less the umask).
func (t *Target) Mkdir(ctx context.Context, p string) error {
	rel, err := t.resolve(ctx, "mkdir", p)
	if err != nil {
		return err
	}
	if rel == "" {
		return target.NewError("mkdir", rel, target.ErrExist, nil)
	}
	dir, name, err := t.parentOf("mkdir", rel)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	if err := unix.Mkdirat(dir, name, 0o755); err != nil {
		return t.mapErr("mkdir", rel, wrapSys("mkdirat", rel, err))
	}
	return nil
}

// Rmdir removes an empty directory; never the root.
func (t *Target) Rmdir(ctx context.Context, p string) error {
	rel, err := t.resolve(ctx, "rmdir", p)
	if err != nil {
		return err
	}
	if rel == "" {
		return target.Errorf("rmdir", rel, target.ErrPermission, "refusing to remove the root folder %s", t.abs)
	}
	dir, name, err := t.parentOf("rmdir", rel)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	fi, err := t.lstatIn("rmdir", rel, dir, name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return target.NewError("rmdir", rel, target.ErrNotDir, nil)
	}
	if err := unix.Unlinkat(dir, name, unix.AT_REMOVEDIR); err != nil {
		if errors.Is(err, unix.EEXIST) {
			// Some filesystems say EEXIST where Linux says ENOTEMPTY.
			return target.NewError("rmdir", rel, target.ErrNotEmpty, err)
		}
		return t.mapErr("rmdir", rel, wrapSys("unlinkat", rel, err))
	}
	return nil
}

// Remove deletes a file; a directory is refused with ErrIsDir so that a
// caller's mistake never removes a tree.
func (t *Target) Remove(ctx context.Context, p string) error {
	rel, err := t.resolve(ctx, "remove", p)
	if err != nil {
		return err
	}
	if rel == "" {
		return target.NewError("remove", rel, target.ErrIsDir, nil)
	}
	dir, name, err := t.parentOf("remove", rel)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	fi, err := t.lstatIn("remove", rel, dir, name)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return target.NewError("remove", rel, target.ErrIsDir, nil)
	}
	if err := unix.Unlinkat(dir, name, 0); err != nil {
		return t.mapErr("remove", rel, wrapSys("unlinkat", rel, err))
	}
	return nil
}

// Rename moves a file or directory, replacing a file at to as rename(2)
// does. The root cannot be moved, and a link at to is not replaced.
func (t *Target) Rename(ctx context.Context, from, to string) error {
	relFrom, err := t.resolve(ctx, "rename", from)
	if err != nil {
		return err
	}
	relTo, err := t.resolve(ctx, "rename", to)
	if err != nil {
		return err
	}
	if relFrom == "" || relTo == "" {
		return target.Errorf("rename", relFrom, target.ErrPermission, "cannot rename %q to %q: one of them is the root folder", relFrom, relTo)
	}
	fromDir, fromName, err := t.parentOf("rename", relFrom)
	if err != nil {
		return err
	}
	defer unix.Close(fromDir)
	toDir, toName, err := t.parentOf("rename", relTo)
	if err != nil {
		return err
	}
	defer unix.Close(toDir)
	if _, err := t.lstatIn("rename", relFrom, fromDir, fromName); err != nil {
		return err
	}
	if relFrom == relTo {
		return nil
	}
	if _, err := t.refuseLink("rename", relTo, toDir, toName); err != nil {
		return err
	}
	if err := unix.Renameat(fromDir, fromName, toDir, toName); err != nil {
		return t.mapErr("rename", relFrom, wrapSys("renameat", relFrom, err))
	}
	return nil
}

// SetModTime sets the modification time of a file or directory and leaves
// its access time alone.
func (t *Target) SetModTime(ctx context.Context, p string, mtime time.Time) error {
	rel, err := t.resolve(ctx, "setmodtime", p)
	if err != nil {
		return err
	}
	dir, name := -1, "."
	if rel == "" {
		dir, err = t.openDir("setmodtime", "", dirFlags)
	} else {
		dir, name, err = t.parentOf("setmodtime", rel)
	}
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	if _, err := t.lstatIn("setmodtime", rel, dir, name); err != nil {
		return err
	}
	if err := setMtime(dir, name, mtime); err != nil {
		return t.mapErr("setmodtime", rel, err)
	}
	return nil
}

// setMtime sets name's modification time in dir, leaving its access time
// and never following a link.
func setMtime(dir int, name string, mtime time.Time) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())}}
	return wrapSys("utimensat", name, unix.UtimesNanoAt(dir, name, ts, unix.AT_SYMLINK_NOFOLLOW))
}
