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
// directory (in a subfolder of data/, shards.go), not in Badger blocks: a write then costs one pwrite at local
// disk speed, any file size fits (a Badger transaction has a size limit),
// and the upload streams straight from the file. Durability comes from the
// order of two steps at close and fsync: the file's bytes are written (and
// at fsync synced) before the Badger transaction that records the new size
// and queues the upload commits. After kill -9 the page cache still holds
// both; after a power loss what fsync covered is there. Writes land in the
// file in place, so a crash between the two steps leaves bytes past the size
// the entry records; the next Open cuts them off (recover.go). A truncation
// below the committed size is not made in place: the file gets new content
// that replaces data/<ino> only at commit (truncate.go), so a crash before
// the close leaves the content last closed.

// openFile is a local file open through the mount, shared by all its
// handles, so that they see one content.
type openFile struct {
	// commitMu serialises Commit and TruncateLocal of the file, so that a
	// truncation never starts new content while a commit moves the previous
	// one into place.
	commitMu sync.Mutex
	// mu is held shared while f is read, written or looked at, and
	// exclusively while it is replaced or closed, so that no read or write
	// lands in a file closed under it.
	mu sync.RWMutex
	f  *os.File // nil once the last handle is released
	// pending is the path of f while f holds a truncation's content not yet
	// committed (a new file in data/ that Commit moves over data/<ino>); ""
	// while f is data/<ino>. Written with commitMu and openFiles.mu held,
	// read with either.
	pending string
	// fromServer, while pending holds the first content of a file that was
	// served from the server (opened with O_TRUNC, its old content never
	// fetched), is the server's state at that open: the commit makes the
	// file local with it as the last-synced state. Guarded like pending.
	fromServer *Entry

	// pass is set once the kernel may read and write f itself (FUSE
	// passthrough, for a file created through the mount and still open):
	// no write reaches the cache, so every commit of a handle that may
	// write records what f holds, with f's mtime, and f is never given new
	// content (a truncation is made in place). It stays set until the last
	// handle is released. Guarded by openFiles.mu.
	pass bool

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
	mu sync.Mutex // protects m, and the fields of every openFile from refs on
	m  map[uint64]*openFile
	// unclean is set when a file was released with changes not committed
	// (its commit failed): Close then leaves no clean mark, so that the
	// next Open cuts its local file back to the recorded size.
	unclean bool
}

func (o *openFiles) init() { o.m = make(map[uint64]*openFile) }

func (o *openFiles) get(ino uint64) *openFile {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[ino]
}

func (c *Cache) dataDir() string { return filepath.Join(c.dir, "data") }

func (c *Cache) localPath(ino uint64) string {
	return filepath.Join(c.shardDir(ino), strconv.FormatUint(ino, 10))
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
// into a local file unless it is local already. Every OpenLocal is matched
// by one Release. trunc (with write) also truncates the file to size 0,
// like TruncateLocal, for the handle to commit at its close (O_TRUNC); a
// server file is then not copied: the handle gets empty new content and
// the entry stays a server file until that commit (openFromServerTruncated).
func (c *Cache) OpenLocal(ino uint64, write, trunc bool, fill Filler) error {
	for try := 0; ; try++ {
		e, err := c.Get(ino)
		if err != nil {
			return err
		}
		if e.IsDir {
			return fmt.Errorf("open inode %d: %w", ino, ErrIsDir)
		}
		if !e.Local && trunc && write {
			done, err := c.openFromServerTruncated(e)
			if done || err != nil {
				return err
			}
			// Another handle holds it (its own truncated content, or the
			// file is local now): join that below and truncate it.
		} else if !e.Local {
			err := c.materialize(e, fill)
			if errors.Is(err, ErrStale) && try < 3 {
				continue // the server's version changed while it was copied
			}
			if err != nil {
				return err
			}
		}
		c.open.mu.Lock()
		// A listing may have given the local copy up for the server's new
		// version since (under open.mu, see _revertLocal): copy that.
		if c.open.m[ino] != nil || c.isLocal(ino) || try >= 3 {
			break
		}
		c.open.mu.Unlock()
	}
	of := c.open.m[ino]
	if of == nil {
		f, err := os.OpenFile(c.localPath(ino), os.O_RDWR, 0o600)
		if err != nil {
			c.open.mu.Unlock()
			return fmt.Errorf("open the local content of inode %d: %w", ino, err)
		}
		of = &openFile{f: f, minWrite: noWrite}
		c.open.m[ino] = of
	}
	of.refs++
	if write {
		of.writers++
	}
	c.open.mu.Unlock()
	if trunc && write {
		if err := c.TruncateLocal(ino, 0); err != nil {
			c.Release(ino, write)
			return err
		}
	}
	return nil
}

// materialize copies a server file into its local file and marks the entry
// local; its last-synced state is the server's as listed.
func (c *Cache) materialize(e Entry, fill Filler) error {
	tmp, err := os.CreateTemp(c.shardDir(e.Ino), "fill-*")
	if err != nil {
		return fmt.Errorf("copy inode %d into the cache: %w", e.Ino, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if e.Size > 0 {
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
		if err := deleteBlocks(t.txn, e.Ino); err != nil {
			return err
		}
		side := SideState{Size: cur.Size, ModTime: cur.ModTime, Precision: cur.Precision}
		cur.Local, cur.Synced, cur.SyncLocal, cur.SyncRemote, cur.Grown = true, true, side, side, true
		return t.put(cur)
	})
	if err != nil {
		return err
	}
	c.dropContent(e.Ino)
	return nil
}

// openFromServerTruncated opens a file served from the server with
// O_TRUNC: its old content is not fetched, only to be thrown away (nor can
// it be, where the server deleted the file meanwhile). The handle gets
// empty new content (truncate.go) and the entry stays a server file until
// the commit at close makes it local; a crash before then leaves it as it
// was. It reports false if another handle holds the file, or it became
// local meanwhile (the caller opens it as such).
func (c *Cache) openFromServerTruncated(e Entry) (bool, error) {
	c.open.mu.Lock()
	defer c.open.mu.Unlock()
	if of := c.open.m[e.Ino]; of != nil || c.isLocal(e.Ino) {
		return false, nil
	}
	tmp, err := c.createPending(e.Ino)
	if err != nil {
		return false, fmt.Errorf("open inode %d: %w", e.Ino, err)
	}
	from := e
	c.open.m[e.Ino] = &openFile{f: tmp, pending: tmp.Name(), fromServer: &from, refs: 1, writers: 1,
		dirty: true, lastWrite: time.Now(), minWrite: 0}
	return true, nil
}

// isLocal reports whether ino's content is in its local file now.
func (c *Cache) isLocal(ino uint64) bool {
	e, err := c.Get(ino)
	return err == nil && e.Local
}

// ReadLocal reads a local file's content at off.
func (c *Cache) ReadLocal(ino uint64, p []byte, off int64) (int, error) {
	if of := c.open.get(ino); of != nil {
		of.mu.RLock()
		if of.f != nil {
			n, err := of.f.ReadAt(p, off)
			of.mu.RUnlock()
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return n, err
		}
		of.mu.RUnlock()
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
	of.mu.RLock()
	defer of.mu.RUnlock()
	if of.f == nil {
		return 0, fmt.Errorf("write inode %d: not open", ino)
	}
	return of.f.WriteAt(p, off)
}

// TruncateLocal changes an open local file's size, for every handle at
// once; like a write, the change is recorded at the next Commit.
func (c *Cache) TruncateLocal(ino uint64, size int64) error {
	of := c.open.get(ino)
	if of == nil {
		return fmt.Errorf("truncate inode %d: not open", ino)
	}
	of.commitMu.Lock()
	defer of.commitMu.Unlock()
	if err := c.truncateOpen(ino, of, size); err != nil {
		return fmt.Errorf("truncate inode %d: %w", ino, err)
	}
	c.open.mu.Lock()
	of.dirty, of.lastWrite, of.mtime = true, time.Now(), time.Time{}
	of.minWrite = min(of.minWrite, size)
	c.open.mu.Unlock()
	return nil
}

// OpenState returns the current size of an open local file and the mtime
// a utimens set since its last commit (zero if none, see DeferModTime).
func (c *Cache) OpenState(ino uint64) (size int64, mtime time.Time, ok bool) {
	c.open.mu.Lock()
	of := c.open.m[ino]
	pass := of != nil && of.pass
	if of != nil && of.dirty {
		mtime = of.mtime
	}
	c.open.mu.Unlock()
	if of == nil {
		return 0, time.Time{}, false
	}
	of.mu.RLock()
	defer of.mu.RUnlock()
	if of.f == nil {
		return 0, time.Time{}, false
	}
	st, err := of.f.Stat()
	if err != nil {
		return 0, time.Time{}, false
	}
	if pass {
		mtime = st.ModTime()
	}
	return st.Size(), mtime, true
}

// PassthroughFd returns the local file of ino, open through the mount, for
// the kernel to read and write itself (FUSE passthrough), and marks it so
// (openFile.pass). The mount asks only for a file it has just created for
// writing: its truncations are then made in place, a crash-safety that
// only content committed before matters for, and a new file has none yet.
func (c *Cache) PassthroughFd(ino uint64) (int, bool) {
	c.open.mu.Lock()
	defer c.open.mu.Unlock()
	of := c.open.m[ino]
	if of == nil {
		return 0, false
	}
	of.mu.RLock()
	defer of.mu.RUnlock()
	if of.f == nil || of.pending != "" {
		return 0, false
	}
	of.pass = true
	return int(of.f.Fd()), true
}

// Passthrough reports whether ino is open for the kernel to read and write
// itself: every handle opened on it until the last is released must be too
// (the kernel refuses to mix them).
func (c *Cache) Passthrough(ino uint64) bool {
	c.open.mu.Lock()
	defer c.open.mu.Unlock()
	of := c.open.m[ino]
	return of != nil && of.pass
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
// end), in one transaction; a truncation's new content then replaces the
// old (truncate.go). durable also syncs the file before and the journal
// after, for fsync.
func (c *Cache) Commit(ino uint64, durable bool) error {
	of := c.open.get(ino)
	if of == nil {
		return nil
	}
	of.commitMu.Lock()
	defer of.commitMu.Unlock()
	c.open.mu.Lock()
	dirty, mtime, minWrite := of.dirty, of.mtime, of.minWrite
	if mtime.IsZero() {
		mtime = of.lastWrite
	}
	of.dirty, of.minWrite = false, noWrite
	pending, fromServer, pass := of.pending, of.fromServer, of.pass && of.writers > 0
	c.open.mu.Unlock()
	if pass {
		// The kernel wrote f without telling the cache: anywhere, at any
		// time.
		dirty, minWrite = true, 0
	}
	dirty = dirty || pending != ""
	if !dirty && !durable {
		return nil
	}
	of.mu.RLock()
	var err error
	if durable {
		if err = of.f.Sync(); err != nil {
			err = fmt.Errorf("sync inode %d: %w", ino, err)
		}
	}
	var st os.FileInfo
	if err == nil && dirty {
		if st, err = of.f.Stat(); err != nil {
			err = fmt.Errorf("commit inode %d: %w", ino, err)
		}
	}
	of.mu.RUnlock()
	if err == nil && pass {
		mtime = st.ModTime()
	}
	if err == nil && dirty {
		c.treeMu.Lock()
		err = c._record(ino, st.Size(), mtime, minWrite, pending, fromServer)
		if err == nil && pending != "" {
			err = c._placeContent(ino, of, durable)
		}
		if err == nil && fromServer != nil {
			c.open.mu.Lock()
			of.fromServer = nil
			c.open.mu.Unlock()
			c.dropContent(ino)
		}
		c.treeMu.Unlock()
		if err != nil {
			err = fmt.Errorf("commit inode %d: %w", ino, err)
		}
	}
	if err != nil {
		if dirty {
			c.open.mu.Lock()
			of.dirty, of.minWrite = true, min(of.minWrite, minWrite)
			c.open.mu.Unlock()
		}
		return err
	}
	if durable {
		if err := c.db.Sync(); err != nil {
			return fmt.Errorf("sync the journal: %w", err)
		}
	}
	return nil
}

// _record is Commit's transaction: the file's new size and mtime, its
// upload queued, and the place note of new content; c.treeMu is held.
func (c *Cache) _record(ino uint64, size int64, mtime time.Time, minWrite int64, pending string, fromServer *Entry) error {
	return c._update(func(t *tx) error { return t.record(ino, size, mtime, minWrite, pending, fromServer) })
}

// record is _record within t.
func (t *tx) record(ino uint64, size int64, mtime time.Time, minWrite int64, pending string, fromServer *Entry) error {
	e, err := t.get(ino)
	if err != nil {
		return err
	}
	if fromServer != nil && !e.Local {
		// A server file rewritten from nothing becomes local; what the
		// server held at the open is its last-synced state, so that a
		// change made there since is a conflict at upload.
		if err := deleteBlocks(t.txn, ino); err != nil {
			return err
		}
		side := SideState{Size: fromServer.Size, ModTime: fromServer.ModTime, Precision: fromServer.Precision}
		e.Local, e.Synced, e.SyncLocal, e.SyncRemote, e.Seen = true, true, side, side, fromServer.Seen
	}
	e.Size, e.ModTime, e.Precision = size, mtime.UTC(), 0
	if !e.Synced || minWrite < e.SyncLocal.Size || size < e.SyncLocal.Size {
		e.Grown = false
	}
	if pending != "" {
		if err := t.notePlace(ino, pending); err != nil {
			return err
		}
	}
	return t.changed(e)
}

// changed marks a local file's content or mtime changed and queues its
// upload; an unlinked file (no parent) is never uploaded.
func (t *tx) changed(e Entry) error {
	e.Dirty = true
	e.LocalGen++
	if e.Parent != 0 {
		pp, err := t.path(e.Parent)
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
// and, if the file was unlinked meanwhile, deletes it. A truncation not
// committed by then (its commit failed) is dropped with its new content.
func (c *Cache) Release(ino uint64, write bool) {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	c.open.mu.Lock()
	of := c.open.m[ino]
	last, pending := false, ""
	if of != nil {
		of.refs--
		if write {
			of.writers--
		}
		if of.refs <= 0 {
			delete(c.open.m, ino)
			last, pending = true, of.pending
			c.open.unclean = c.open.unclean || of.dirty || pending != ""
			of.mu.Lock()
			of.f.Close()
			of.f = nil
			of.mu.Unlock()
		}
	}
	c.open.mu.Unlock()
	if pending != "" {
		c.log.WithField("ino", ino).Warn("a truncation whose commit failed is dropped; the file keeps its content as last closed")
		if err := os.Remove(pending); err != nil {
			c.log.WithError(err).Warn("remove a truncated file's uncommitted content")
		}
	}
	if last {
		if e, err := c.Get(ino); err == nil && e.Parent == 0 && ino != RootIno {
			if err := c._forgetUnlinked(ino); err != nil {
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

// ReleaseAll ends every handle still open once the kernel has let the
// mount go: a close it never reported would keep the uploads of the file
// waiting for a writer that is gone. What the handles wrote is committed
// first.
func (c *Cache) ReleaseAll() {
	type handles struct {
		ino           uint64
		refs, writers int
	}
	var all []handles
	c.open.mu.Lock()
	for ino, of := range c.open.m {
		all = append(all, handles{ino, of.refs, of.writers})
	}
	c.open.mu.Unlock()
	for _, h := range all {
		c.log.WithField("ino", h.ino).Warn("a file was still open when the mount went away; committing and closing it")
		if err := c.Commit(h.ino, false); err != nil {
			c.log.WithError(err).Warn("commit a file left open")
		}
		for i := range h.refs {
			c.Release(h.ino, i < h.writers)
		}
	}
}
