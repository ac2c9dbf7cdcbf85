package local

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"sort"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Stat describes one file or directory; links and special files are not
// found. The root's entry has the empty name.
func (t *Target) Stat(ctx context.Context, p string) (target.Entry, error) {
	rel, err := t.resolve(ctx, "stat", p)
	if err != nil {
		return target.Entry{}, err
	}
	fi, err := t.lstatFinal("stat", rel)
	if err != nil {
		return target.Entry{}, err
	}
	name := ""
	if rel != "" {
		name = target.Base(rel)
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
	fi, err := t.lstatFinal("list", rel)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, target.NewError("list", rel, target.ErrNotDir, nil)
	}
	name := rel
	if name == "" {
		name = "."
	}
	f, err := t.root.Open(name)
	if err != nil {
		return nil, t.mapErr("list", rel, err)
	}
	defer f.Close()
	var out []target.Entry
	for {
		if err := ctx.Err(); err != nil {
			return nil, target.NewError("list", rel, nil, err)
		}
		des, err := f.ReadDir(listBatch)
		for _, de := range des {
			if e, ok := t.listEntry(rel, de); ok {
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

// listEntry converts one directory entry, or says to leave it out.
func (t *Target) listEntry(dir string, de fs.DirEntry) (target.Entry, bool) {
	name := de.Name()
	log := t.log.WithField("path", target.Join(dir, name))
	if target.IsTempName(name) {
		log.Debug("list: leaving out the temp file of a write")
		return target.Entry{}, false
	}
	if err := target.ValidName(name); err != nil {
		log.WithError(err).Debug("list: leaving out a name a remote cannot hold")
		return target.Entry{}, false
	}
	fi, err := de.Info()
	if err != nil {
		// Removed since ReadDir read it, or unreadable: either way not
		// something to report.
		log.WithError(err).Debug("list: leaving out an entry that cannot be described")
		return target.Entry{}, false
	}
	if err := unsupportedType(fi); err != nil {
		log.WithError(err).Debug("list: leaving out an entry that is neither file nor directory")
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
	if err := t.root.Mkdir(rel, 0o755); err != nil {
		return t.mapErr("mkdir", rel, err)
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
	fi, err := t.lstatFinal("rmdir", rel)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return target.NewError("rmdir", rel, target.ErrNotDir, nil)
	}
	if err := t.root.Remove(rel); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Some filesystems say EEXIST where Linux says ENOTEMPTY.
			return target.NewError("rmdir", rel, target.ErrNotEmpty, err)
		}
		return t.mapErr("rmdir", rel, err)
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
	fi, err := t.lstatFinal("remove", rel)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return target.NewError("remove", rel, target.ErrIsDir, nil)
	}
	if err := t.root.Remove(rel); err != nil {
		return t.mapErr("remove", rel, err)
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
	if _, err := t.lstatFinal("rename", relFrom); err != nil {
		return err
	}
	if relFrom == relTo {
		return nil
	}
	if _, err := t.refuseLink("rename", relTo); err != nil {
		return err
	}
	if err := t.root.Rename(relFrom, relTo); err != nil {
		return t.mapErr("rename", relFrom, err)
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
	if _, err := t.lstatFinal("setmodtime", rel); err != nil {
		return err
	}
	name := rel
	if name == "" {
		name = "."
	}
	if err := t.root.Chtimes(name, time.Time{}, mtime); err != nil {
		return t.mapErr("setmodtime", rel, err)
	}
	return nil
}
