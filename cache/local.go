package cache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Content the mount writes lives in plain files, data/<ino> in the cache
// directory, not in Badger blocks: a write then costs one pwrite at local
// disk speed, any file size fits (a Badger transaction has a size limit),
// and the upload streams straight from the file. Durability comes from the
// order of two steps at close and fsync: the file's bytes are written (and
// at fsync synced) before the Badger transaction that records the new size
// and queues the upload commits. After kill -9 the page cache still holds
// both; after a power loss what fsync covered is there. The file is the
// truth for content; a crash between the two steps leaves newer bytes in
// the file than the entry says, which the upload then sends.

// openFile is a local file open through the mount.
type openFile struct {
	f         *os.File
	refs      int       // open handles
	writers   int       // handles open for writing
	dirty     bool      // written since the last commit
	lastWrite time.Time // when dirty was set
	mtime     time.Time // set by utimens after the last write; zero: lastWrite
	minWrite  int64     // lowest offset written or truncated to since the last commit
}

// noWrite is minWrite when nothing was written.
const noWrite = int64(1<<63 - 1)

// openFiles tracks the open local files by inode.
type openFiles struct {
	mu sync.Mutex // protects m and every openFile's fields but f's content
	m  map[uint64]*openFile
}

func (o *openFiles) init() { o.m = make(map[uint64]*openFile) }

func (o *openFiles) get(ino uint64) *openFile {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[ino]
}

func (c *Cache) dataDir() string { return filepath.Join(c.dir, "data") }

func (c *Cache) localPath(ino uint64) string {
	return filepath.Join(c.dataDir(), strconv.FormatUint(ino, 10))
}

func (c *Cache) removeLocalFile(ino uint64) {
	if err := os.Remove(c.localPath(ino)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.WithError(err).Warn("remove a local content file")
	}
}

// Filler copies a file's server content into w; the mount passes one that
// reads through the Fetcher.
type Filler func(e Entry, w io.WriterAt) error

// OpenLocal opens file ino for a handle, first copying its server content
// into a local file unless it is local already (or trunc makes the content
// irrelevant). Every OpenLocal is matched by one Release.
func (c *Cache) OpenLocal(ino uint64, write, trunc bool, fill Filler) error {
	e, err := c.Get(ino)
	if err != nil {
		return err
	}
	if e.IsDir {
		return fmt.Errorf("open inode %d: %w", ino, ErrIsDir)
	}
	if !e.Local {
		if err := c.materialize(e, trunc, fill); err != nil {
			return err
		}
	}
	c.open.mu.Lock()
	defer c.open.mu.Unlock()
	of := c.open.m[ino]
	if of == nil {
		f, err := os.OpenFile(c.localPath(ino), os.O_RDWR, 0o600)
		if err != nil {
			return fmt.Errorf("open the local content of inode %d: %w", ino, err)
		}
		of = &openFile{f: f, minWrite: noWrite}
		c.open.m[ino] = of
	}
	of.refs++
	if write {
		of.writers++
	}
	if trunc && write {
		if err := of.f.Truncate(0); err != nil {
			return fmt.Errorf("truncate inode %d: %w", ino, err)
		}
		of.dirty, of.lastWrite, of.mtime, of.minWrite = true, time.Now(), time.Time{}, 0
	}
	return nil
}

// materialize copies a server file into its local file and marks the entry
// local; its last-synced state is the server's as listed.
func (c *Cache) materialize(e Entry, empty bool, fill Filler) error {
	tmp, err := os.CreateTemp(c.dataDir(), "fill-*")
	if err != nil {
		return fmt.Errorf("copy inode %d into the cache: %w", e.Ino, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if !empty && e.Size > 0 {
		if fill == nil {
			return fmt.Errorf("inode %d has no local copy", e.Ino)
		}
		if err := fill(e, tmp); err != nil {
			return fmt.Errorf("copy inode %d into the cache: %w", e.Ino, err)
		}
	}
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	err = c._update(func(t *tx) error {
		cur, err := t.get(e.Ino)
		if err != nil {
			return err
		}
		if cur.Local {
			return nil // another open won the race
		}
		if cur.Gen != e.Gen || cur.Size != e.Size {
			return fmt.Errorf("inode %d: %w", e.Ino, ErrStale)
		}
		if err := os.Rename(tmp.Name(), c.localPath(e.Ino)); err != nil {
			return err
		}
		idxs, err := blockIndexes(t.txn, e.Ino)
		if err != nil {
			return err
		}
		for _, idx := range idxs {
			if err := t.txn.Delete(blockKey(e.Ino, idx)); err != nil {
				return err
			}
		}
		side := SideState{Size: cur.Size, ModTime: cur.ModTime, Precision: cur.Precision}
		if empty {
			cur.Size = 0
		}
		cur.Local, cur.Synced, cur.SyncLocal, cur.SyncRemote, cur.Grown = true, true, side, side, true
		return t.put(cur)
	})
	if err != nil {
		return err
	}
	c.dropContent(e.Ino)
	return nil
}

// ReadLocal reads a local file's content at off.
func (c *Cache) ReadLocal(ino uint64, p []byte, off int64) (int, error) {
	if of := c.open.get(ino); of != nil {
		n, err := of.f.ReadAt(p, off)
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return n, err
	}
	f, err := os.Open(c.localPath(ino))
	if err != nil {
		return 0, fmt.Errorf("read inode %d: %w", ino, err)
	}
	defer f.Close()
	n, err := f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// WriteLocal writes to an open local file.
func (c *Cache) WriteLocal(ino uint64, p []byte, off int64) (int, error) {
	c.open.mu.Lock()
	of := c.open.m[ino]
	if of != nil {
		of.dirty, of.lastWrite, of.mtime = true, time.Now(), time.Time{}
		of.minWrite = min(of.minWrite, off)
	}
	c.open.mu.Unlock()
	if of == nil {
		return 0, fmt.Errorf("write inode %d: not open", ino)
	}
	return of.f.WriteAt(p, off)
}

// TruncateLocal changes an open local file's size.
func (c *Cache) TruncateLocal(ino uint64, size int64) error {
	c.open.mu.Lock()
	defer c.open.mu.Unlock()
	of := c.open.m[ino]
	if of == nil {
		return fmt.Errorf("truncate inode %d: not open", ino)
	}
	of.dirty, of.lastWrite, of.mtime = true, time.Now(), time.Time{}
	of.minWrite = min(of.minWrite, size)
	return of.f.Truncate(size)
}

// OpenState returns the current size of an open local file and the mtime
// a utimens set since its last commit (zero if none, see DeferModTime).
func (c *Cache) OpenState(ino uint64) (size int64, mtime time.Time, ok bool) {
	c.open.mu.Lock()
	of := c.open.m[ino]
	if of != nil && of.dirty {
		mtime = of.mtime
	}
	c.open.mu.Unlock()
	if of == nil {
		return 0, time.Time{}, false
	}
	st, err := of.f.Stat()
	if err != nil {
		return 0, time.Time{}, false
	}
	return st.Size(), mtime, true
}

// OpenForWrite reports whether a handle may still write the file; its
// upload waits until none does.
func (c *Cache) OpenForWrite(ino uint64) bool {
	c.open.mu.Lock()
	defer c.open.mu.Unlock()
	of := c.open.m[ino]
	return of != nil && of.writers > 0
}

// Commit records what was written to an open file since the last commit:
// the new size and mtime, and the upload queued (or moved to the journal's
// end), in one transaction. durable also syncs the file before and the
// journal after, for fsync.
func (c *Cache) Commit(ino uint64, durable bool) error {
	c.open.mu.Lock()
	of := c.open.m[ino]
	var dirty bool
	var mtime time.Time
	minWrite := noWrite
	if of != nil {
		dirty, mtime, minWrite = of.dirty, of.mtime, of.minWrite
		if mtime.IsZero() {
			mtime = of.lastWrite
		}
		of.dirty, of.minWrite = false, noWrite
	}
	c.open.mu.Unlock()
	if of == nil || !dirty && !durable {
		return nil
	}
	if durable {
		if err := of.f.Sync(); err != nil {
			return fmt.Errorf("sync inode %d: %w", ino, err)
		}
	}
	if dirty {
		st, err := of.f.Stat()
		if err != nil {
			return fmt.Errorf("commit inode %d: %w", ino, err)
		}
		c.treeMu.Lock()
		err = c._update(func(t *tx) error {
			e, err := t.get(ino)
			if err != nil {
				return err
			}
			e.Size, e.ModTime, e.Precision = st.Size(), mtime.UTC(), 0
			if !e.Synced || minWrite < e.SyncLocal.Size || st.Size() < e.SyncLocal.Size {
				e.Grown = false
			}
			return t.changed(e)
		})
		c.treeMu.Unlock()
		if err != nil {
			c.open.mu.Lock()
			of.dirty, of.minWrite = true, min(of.minWrite, minWrite)
			c.open.mu.Unlock()
			return fmt.Errorf("commit inode %d: %w", ino, err)
		}
	}
	if durable {
		if err := c.db.Sync(); err != nil {
			return fmt.Errorf("sync the journal: %w", err)
		}
	}
	return nil
}

// changed marks a local file's content or mtime changed and queues its
// upload; an unlinked file (no parent) is never uploaded.
func (t *tx) changed(e Entry) error {
	e.Dirty = true
	e.LocalGen++
	if e.Parent != 0 {
		pp, err := pathTxn(t.txn, e.Parent)
		if err != nil {
			return err
		}
		if e, err = t.requeueUpload(e, target.Join(pp, e.Name)); err != nil {
			return err
		}
	}
	return t.put(e)
}

// Release ends a handle opened by OpenLocal. The last one closes the file
// and, if the file was unlinked meanwhile, deletes it.
func (c *Cache) Release(ino uint64, write bool) {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	c.open.mu.Lock()
	of := c.open.m[ino]
	last := false
	if of != nil {
		of.refs--
		if write {
			of.writers--
		}
		if of.refs <= 0 {
			delete(c.open.m, ino)
			of.f.Close()
			last = true
		}
	}
	c.open.mu.Unlock()
	if last {
		if e, err := c.Get(ino); err == nil && e.Parent == 0 && ino != RootIno {
			err := c._update(func(t *tx) error {
				t.drops = append(t.drops, ino)
				t.files = append(t.files, ino)
				return t.txn.Delete(entryKey(ino))
			})
			if err != nil {
				c.log.WithError(err).Warn("remove an unlinked file")
			}
		}
	}
	c._emit(JournalEvent{Wake: true})
}

// OpenContent opens a local file for reading, for an upload.
func (c *Cache) OpenContent(ino uint64) (*os.File, error) {
	f, err := os.Open(c.localPath(ino))
	if err != nil {
		return nil, fmt.Errorf("open the local content of inode %d: %w", ino, err)
	}
	return f, nil
}
