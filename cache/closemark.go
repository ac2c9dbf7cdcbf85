package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Close marks. The kernel writes a passthrough file (openFile.pass) itself,
// so at its close the mount has nothing to do but record what it holds,
// and a Badger commit was most of the time tar x spent in each close(2).
// Instead the close writes a mark into the local file's extended
// attributes, one system call: the generation, size and mtime the commit
// will record. The commit follows when the kernel releases the handle,
// which close(2) does not wait for. (Releases committed together, 20 ms at
// a time, let the model test see stale content; each release commits.) The mark survives a kill -9 with the
// file's bytes (both are in the page cache); the next Open, finding the
// cache not closed cleanly, records what a mark newer than its entry says
// (recoverMark). Until the commit the file is still open in the cache, so
// the mount shows its size and mtime from the file, and its upload waits.
//
// A cache on a filesystem without user extended attributes commits at the
// close, as for every other file.

// closeMarkAttr is the extended attribute of a local file holding its
// close mark: generation, size and mtime in nanoseconds, 8 bytes each,
// big-endian.
const closeMarkAttr = "user.ftpsync.closed"

type closeMark struct {
	gen   uint64
	size  int64
	mtime time.Time
}

func (m closeMark) marshal() []byte {
	b := binary.BigEndian.AppendUint64(nil, m.gen)
	b = binary.BigEndian.AppendUint64(b, uint64(m.size))
	return binary.BigEndian.AppendUint64(b, uint64(m.mtime.UnixNano()))
}

func unmarshalCloseMark(b []byte) (closeMark, bool) {
	if len(b) != 24 {
		return closeMark{}, false
	}
	return closeMark{
		gen:   binary.BigEndian.Uint64(b),
		size:  int64(binary.BigEndian.Uint64(b[8:])),
		mtime: time.Unix(0, int64(binary.BigEndian.Uint64(b[16:]))).UTC(),
	}, true
}

// CommitClose is Commit for a close(2): a passthrough file is marked
// closed, and committed when its handle is released (Release); any other
// is committed now.
func (c *Cache) CommitClose(ino uint64) error {
	done, err := c.markClosed(ino)
	if done {
		return nil
	}
	if err != nil {
		c.log.WithError(err).WithField("ino", ino).Warn("no close mark; committing at the close")
	}
	return c.Commit(ino, false)
}

// markClosed writes the close mark of a passthrough file and reports
// whether it did.
func (c *Cache) markClosed(ino uint64) (bool, error) {
	if c.noMarks.Load() {
		return false, nil
	}
	of := c.open.get(ino)
	if of == nil {
		return false, nil
	}
	of.commitMu.Lock()
	defer of.commitMu.Unlock()
	c.open.mu.Lock()
	pass := of.pass && of.writers > 0 && of.pending == ""
	c.open.mu.Unlock()
	if !pass {
		return false, nil
	}
	e, err := c.Get(ino)
	if err != nil {
		return false, err
	}
	// The file's mu only around the file: openFiles.mu comes before it.
	err = func() error {
		of.mu.RLock()
		defer of.mu.RUnlock()
		if of.f == nil {
			return os.ErrClosed
		}
		st, err := of.f.Stat()
		if err != nil {
			return fmt.Errorf("close inode %d: %w", ino, err)
		}
		m := closeMark{gen: e.LocalGen + 1, size: st.Size(), mtime: st.ModTime()}
		return unix.Fsetxattr(int(of.f.Fd()), closeMarkAttr, m.marshal(), 0)
	}()
	if errors.Is(err, os.ErrClosed) {
		return false, nil
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		c.log.WithError(err).Info("the cache's disk has no user extended attributes: files are committed at close")
		c.noMarks.Store(true)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("close inode %d: mark it closed: %w", ino, err)
	}
	c.open.mu.Lock()
	of.closeDue = true
	c.open.mu.Unlock()
	return true, nil
}

// recoverMark records, after a crash, what the close mark of local file p
// (ino's, entry e) says where it is newer than the entry: the size (the
// file's, where a truncation in place made it shorter since) and mtime,
// with the file's upload queued. It returns the size the entry records
// then.
func (c *Cache) recoverMark(p string, e Entry, size int64) (int64, error) {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(p, closeMarkAttr, buf)
	if err != nil {
		return e.Size, nil // no mark (ENODATA), or none possible
	}
	m, ok := unmarshalCloseMark(buf[:n])
	if !ok || m.gen <= e.LocalGen {
		return e.Size, nil
	}
	if size < m.size {
		c.log.WithField("ino", e.Ino).WithField("size", size).WithField("closed", m.size).
			Warn("a file closed through the mount was cut in place before its commit; it keeps what is left")
		m.size = size
	}
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	err = c._update(func(t *tx) error {
		cur, err := t.get(e.Ino)
		if err != nil {
			return err
		}
		cur.Size, cur.ModTime, cur.Precision, cur.Grown = m.size, m.mtime, 0, false
		cur.LocalGen = m.gen - 1
		return t.changed(cur) // LocalGen becomes the mark's
	})
	if err != nil {
		return e.Size, fmt.Errorf("record the close of inode %d: %w", e.Ino, err)
	}
	return m.size, nil
}

// commitIfClosed commits ino if a close mark waits for its commit; Release
// calls it first. A file whose commit fails stays dirty, so that the cache
// is not marked clean and the next Open records its mark.
func (c *Cache) commitIfClosed(ino uint64) {
	of := c.open.get(ino)
	if of == nil {
		return
	}
	c.open.mu.Lock()
	due := of.closeDue
	c.open.mu.Unlock()
	if due {
		if err := c.Commit(ino, false); err != nil {
			c.log.WithError(err).WithField("ino", ino).Error("commit a closed file; the next mount records it")
		}
	}
}
