package cache

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Errors of the write path, beside those in cache.go.
var (
	ErrExist    = errors.New("already exists")
	ErrIsDir    = errors.New("is a directory")
	ErrNotEmpty = errors.New("directory not empty")
	ErrInvalid  = errors.New("name not allowed")
)

// Every change below runs under treeMu in one transaction that also queues
// the journal operations it needs (journal.go), so the tree the mount shows
// and the operations that will bring the server there never disagree.

// pathTxn is Path inside a transaction.
func pathTxn(txn *badger.Txn, ino uint64) (string, error) {
	return pathWith(func(ino uint64) (Entry, error) { return getEntry(txn, ino) }, ino)
}

// pathWith walks from ino up to the root with get.
func pathWith(get func(uint64) (Entry, error), ino uint64) (string, error) {
	var names []string
	for depth := 0; ino != RootIno; depth++ {
		if depth > maxDepth {
			return "", fmt.Errorf("inode %d: tree deeper than %d levels", ino, maxDepth)
		}
		e, err := get(ino)
		if err != nil {
			return "", err
		}
		if e.Parent == 0 {
			return "", fmt.Errorf("inode %d was deleted: %w", ino, ErrNotFound)
		}
		names = append(names, e.Name)
		ino = e.Parent
	}
	for i, j := 0, len(names)-1; i < j; i, j = i+1, j-1 {
		names[i], names[j] = names[j], names[i]
	}
	return strings.Join(names, "/"), nil
}

func lookupTxn(txn *badger.Txn, parent uint64, name string) (Entry, error) {
	item, err := txn.Get(childKey(parent, name))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Entry{}, fmt.Errorf("%q in inode %d: %w", name, parent, ErrNotFound)
	}
	if err != nil {
		return Entry{}, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil || len(v) != 8 {
		return Entry{}, fmt.Errorf("look up %q in inode %d: bad child record", name, parent)
	}
	return getEntry(txn, beUint64(v))
}

// checkName refuses names the server could not hold, and the names of our
// own temporary files, which listings hide.
func checkName(name string) error {
	if target.ValidName(name) != nil || target.IsTempName(name) {
		return fmt.Errorf("%q: %w", name, ErrInvalid)
	}
	return nil
}

// newChild adds a new entry under parent, refusing a taken name.
func (t *tx) newChild(e Entry) (string, error) {
	parent, err := t.get(e.Parent)
	if err != nil {
		return "", err
	}
	if !parent.IsDir {
		return "", ErrNotDir
	}
	if _, err := lookupTxn(t.txn, e.Parent, e.Name); err == nil {
		return "", fmt.Errorf("%q: %w", e.Name, ErrExist)
	} else if !errors.Is(err, ErrNotFound) {
		return "", err
	}
	if err := t.txn.Set(childKey(e.Parent, e.Name), beBytes(e.Ino)); err != nil {
		return "", err
	}
	t.made = append(t.made, e)
	pp, err := t.path(e.Parent)
	if err != nil {
		return "", err
	}
	return target.Join(pp, e.Name), nil
}

// Create adds an empty local file; its upload is queued at once, so that a
// crash while it is still open does not lose it, and moves to the journal's
// end whenever it is committed.
func (c *Cache) Create(parent uint64, name string, mode os.FileMode, now time.Time) (Entry, error) {
	return c.create(parent, name, mode, now, false, false)
}

// CreateOpen is Create followed by OpenLocal, sparing a second open of
// the new local file (tar x creates thousands).
func (c *Cache) CreateOpen(parent uint64, name string, mode os.FileMode, now time.Time, write bool) (Entry, error) {
	return c.create(parent, name, mode, now, true, write)
}

func (c *Cache) create(parent uint64, name string, mode os.FileMode, now time.Time, open, write bool) (Entry, error) {
	if err := checkName(name); err != nil {
		return Entry{}, err
	}
	// The local file is made (or taken ready, spare.go) before taking the
	// tree lock: creating a file can take the disk a while, and nothing
	// else knows this inode number yet.
	ino, f, err := c.newLocalFile()
	if err != nil {
		return Entry{}, fmt.Errorf("create %q: %w", name, err)
	}
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	e := Entry{Ino: ino, Parent: parent, Name: name, Local: true, Mode: mode.Perm(), ModTime: now.UTC()}
	err = c._update(func(t *tx) error {
		p, err := t.newChild(e)
		if err != nil {
			return err
		}
		e.Dirty, e.LocalGen = true, 1
		if e, err = t.requeueUpload(e, p); err != nil {
			return err
		}
		return t.put(e)
	})
	if err != nil {
		f.Close()
		c.removeLocalFile(ino)
		return Entry{}, fmt.Errorf("create %q: %w", name, err)
	}
	if !open {
		f.Close()
		return e, nil
	}
	of := &openFile{f: f, refs: 1, minWrite: noWrite}
	if write {
		of.writers = 1
	}
	c.open.mu.Lock()
	c.open.m[ino] = of
	c.open.mu.Unlock()
	return e, nil
}

// Mkdir adds a folder and queues its creation on the server.
func (c *Cache) Mkdir(parent uint64, name string, mode os.FileMode, now time.Time) (Entry, error) {
	if err := checkName(name); err != nil {
		return Entry{}, err
	}
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	ino, err := c.nextIno()
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Ino: ino, Parent: parent, Name: name, IsDir: true, Mode: mode.Perm(), ModTime: now.UTC(), ListedAt: now, OnServer: true}
	err = c._update(func(t *tx) error {
		p, err := t.newChild(e)
		if err != nil {
			return err
		}
		if _, err := t.queue(Op{Kind: OpMkdir, Ino: ino, Path: p}); err != nil {
			return err
		}
		return t.put(e)
	})
	if err != nil {
		return Entry{}, fmt.Errorf("mkdir %q: %w", name, err)
	}
	return e, nil
}

// serverRecord is what the server held of e at the last sync.
func serverRecord(e Entry) (bool, SideState) {
	if e.Local {
		return e.Synced, e.SyncRemote
	}
	return true, SideState{Size: e.Size, ModTime: e.ModTime, Precision: e.Precision}
}

// drop removes entry e (a file, or an empty folder) from the tree: its
// queued upload is withdrawn; a file still open stays readable, without a
// parent, until its last handle is released.
func (t *tx) drop(e Entry) error {
	if err := t.unqueue(e.Upload); err != nil {
		return err
	}
	t.c.fresh.forget(e.Parent, e.Ino)
	if err := t.txn.Delete(childKey(e.Parent, e.Name)); err != nil {
		return err
	}
	if !e.IsDir && t.c.open.get(e.Ino) != nil {
		e.Parent, e.Upload = 0, 0
		return t.put(e)
	}
	if err := deleteBlocks(t.txn, e.Ino); err != nil {
		return err
	}
	delete(t.puts, e.Ino)
	t.drops = append(t.drops, e.Ino)
	if e.Local {
		t.files = append(t.files, e.Ino)
	}
	return t.txn.Delete(entryKey(e.Ino))
}

// Unlink deletes a file; the server's copy, if any, is deleted after the
// operations queued before.
func (c *Cache) Unlink(parent uint64, name string) error {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	err := c._update(func(t *tx) error {
		e, err := lookupTxn(t.txn, parent, name)
		if err != nil {
			return err
		}
		if e.IsDir {
			return ErrIsDir
		}
		if e.OnServer {
			p, err := t.path(e.Ino)
			if err != nil {
				return err
			}
			synced, rec := serverRecord(e)
			if _, err := t.queue(Op{Kind: OpRemove, Ino: e.Ino, Path: p, Synced: synced, Record: rec}); err != nil {
				return err
			}
		}
		return t.drop(e)
	})
	if err != nil {
		return fmt.Errorf("unlink %q: %w", name, err)
	}
	return nil
}

// Rmdir deletes an empty folder. The caller makes sure the folder was
// listed, so that empty means empty on the server too.
func (c *Cache) Rmdir(parent uint64, name string) error {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	err := c._update(func(t *tx) error {
		e, err := lookupTxn(t.txn, parent, name)
		if err != nil {
			return err
		}
		if !e.IsDir {
			return ErrNotDir
		}
		kids, err := children(t.txn, e.Ino)
		if err != nil {
			return err
		}
		if len(kids) > 0 {
			return ErrNotEmpty
		}
		p, err := t.path(e.Ino)
		if err != nil {
			return err
		}
		if _, err := t.queue(Op{Kind: OpRmdir, Ino: e.Ino, Path: p}); err != nil {
			return err
		}
		return t.drop(e)
	})
	if err != nil {
		return fmt.Errorf("rmdir %q: %w", name, err)
	}
	return nil
}

// Rename moves an entry, replacing what newName names unless noReplace.
// Something already on the server is moved there with one rename; a file
// not uploaded yet just has its queued upload moved to the new name.
func (c *Cache) Rename(parent uint64, name string, newParent uint64, newName string, noReplace bool) error {
	if err := checkName(newName); err != nil {
		return err
	}
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	err := c._update(func(t *tx) error {
		src, err := lookupTxn(t.txn, parent, name)
		if err != nil {
			return err
		}
		np, err := t.get(newParent)
		if err != nil {
			return err
		}
		if !np.IsDir {
			return ErrNotDir
		}
		from, err := t.path(src.Ino)
		if err != nil {
			return err
		}
		pp, err := t.path(newParent)
		if err != nil {
			return err
		}
		to := target.Join(pp, newName)
		if src.IsDir && (to == from || strings.HasPrefix(to, from+"/")) {
			return ErrInvalid
		}
		dst, err := lookupTxn(t.txn, newParent, newName)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if exists && dst.Ino == src.Ino {
			return nil
		}
		inherit := false
		if exists {
			if err := t.checkReplace(src, dst, noReplace); err != nil {
				return err
			}
			if dst.IsDir {
				if _, err := t.queue(Op{Kind: OpRmdir, Ino: dst.Ino, Path: to}); err != nil {
					return err
				}
			} else if dst.OnServer && !src.OnServer {
				// The server's copy at the new name becomes this file's: its
				// upload replaces it, and a delete before then removes it.
				inherit = true
				src.Synced, src.SyncRemote = serverRecord(dst)
				src.Grown = false
			}
			if err := t.drop(dst); err != nil {
				return err
			}
		}
		if src.OnServer {
			if _, err := t.queue(Op{Kind: OpRename, Ino: src.Ino, Path: from, To: to}); err != nil {
				return err
			}
		}
		t.c.fresh.forget(parent, newParent)
		if err := t.txn.Delete(childKey(parent, name)); err != nil {
			return err
		}
		src.Parent, src.Name = newParent, newName
		if inherit {
			src.OnServer = true
		}
		if err := t.txn.Set(childKey(newParent, newName), beBytes(src.Ino)); err != nil {
			return err
		}
		if src.Upload != 0 {
			if src, err = t.requeueUpload(src, to); err != nil {
				return err
			}
		}
		return t.put(src)
	})
	if err != nil {
		return fmt.Errorf("rename %q to %q: %w", name, newName, err)
	}
	return nil
}

func (t *tx) checkReplace(src, dst Entry, noReplace bool) error {
	switch {
	case noReplace:
		return ErrExist
	case src.IsDir && !dst.IsDir:
		return ErrNotDir
	case !src.IsDir && dst.IsDir:
		return ErrIsDir
	case dst.IsDir:
		kids, err := children(t.txn, dst.Ino)
		if err != nil {
			return err
		}
		if len(kids) > 0 {
			return ErrNotEmpty
		}
	}
	return nil
}

// SetMode keeps permission bits locally (the FTP server cannot take them).
func (c *Cache) SetMode(ino uint64, mode os.FileMode) (Entry, error) {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	var e Entry
	err := c._update(func(t *tx) error {
		var err error
		if e, err = t.get(ino); err != nil {
			return err
		}
		e.Mode = mode.Perm()
		return t.put(e)
	})
	return e, err
}

// DeferModTime notes mtime on a file open with writes not committed yet and
// reports whether it did. The commit at close (or fsync) then records it
// with the content, in the transaction that queues the upload, rather than
// in one of its own now: tar x sets each file's mtime just before closing
// it. Until then the mount shows it (OpenState). A passthrough file gets it
// at once; byWriter says the request came through a handle that may write.
func (c *Cache) DeferModTime(ino uint64, mtime time.Time, byWriter bool) bool {
	c.open.mu.Lock()
	defer c.open.mu.Unlock()
	of := c.open.m[ino]
	switch {
	case of != nil && of.pass:
		// The kernel writes a passthrough file itself, so its commits take
		// the local file's mtime (openFile.pass): set that, while open.mu
		// keeps the last handle from going. A commit still comes where the
		// request came through a handle that may write (its close
		// commits); otherwise the caller records it now.
		if err := os.Chtimes(c.localPath(ino), mtime, mtime); err != nil {
			c.log.WithError(err).WithField("ino", ino).Warn("set the mtime of a local file")
			return false
		}
		return byWriter
	case of == nil || !of.dirty:
		return false
	}
	of.mtime = mtime
	return true
}

// SetModTime sets a local file's mtime and queues its upload, which sets
// it on the server. A file open with unsaved writes keeps it too.
func (c *Cache) SetModTime(ino uint64, mtime time.Time) (Entry, error) {
	c.open.mu.Lock()
	if of := c.open.m[ino]; of != nil {
		of.mtime = mtime
	}
	c.open.mu.Unlock()
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	var e Entry
	err := c._update(func(t *tx) error {
		var err error
		if e, err = t.get(ino); err != nil {
			return err
		}
		e.ModTime = mtime.UTC()
		if e.IsDir || !e.Local {
			return t.put(e)
		}
		e.Precision = 0
		err = t.changed(e)
		e = t.puts[ino]
		return err
	})
	return e, err
}
