package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
)

// Truncation of an open file. A write lands in data/<ino> in place, past or
// over the committed bytes; a truncation below the committed size would
// destroy them before the close that commits the change, so that a kill -9
// between `open(O_TRUNC)` and `close` left a cut file the user never closed
// while the content last closed was gone (DESIGN.md invariant 1). Instead
// the cut file gets new content: a new file in data/ holding the part kept,
// which every handle reads and writes from then on (they share the
// openFile), while data/<ino> keeps the last committed content. Commit
// records the new size and, in the same transaction, a place note naming
// the new file (p<ino>); then it renames the file over data/<ino> and
// deletes the note. A crash before the transaction leaves the new file
// behind, which the next Open deletes (recover.go); a crash after it leaves
// the note, and the next Open does the rename. So data/<ino> always holds
// the content the entry records, or its redo is noted.
//
//	p<ino>             the name in data/<xx>/ of a truncated file's committed content not yet renamed into place

const prefixPlace = 'p'

// pendingMark is in the name of every uncommitted content file,
// <ino>.trunc-<random>, which is never a bare inode number.
const pendingMark = ".trunc-"

// pendingPrefix starts the names of ino's uncommitted content files.
func pendingPrefix(ino uint64) string { return strconv.FormatUint(ino, 10) + pendingMark }

// createPending creates an uncommitted content file for ino, beside its
// local file.
func (c *Cache) createPending(ino uint64) (*os.File, error) {
	return os.CreateTemp(c.shardDir(ino), pendingPrefix(ino)+"*")
}

func placeKey(ino uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixPlace}, ino)
}

// truncateOpen sets an open file's size; of.commitMu is held. Below the
// committed size, while f is still data/<ino>, the file gets new content;
// otherwise (growing, or cutting only what no commit covers yet, or new
// content already) the cut is made in place, and a crash leaves at most
// bytes past the committed size, which recovery cuts off.
func (c *Cache) truncateOpen(ino uint64, of *openFile, size int64) error {
	c.open.mu.Lock()
	pass := of.pass
	c.open.mu.Unlock()
	if of.pending == "" && !pass {
		e, err := c.Get(ino)
		if err != nil {
			return err
		}
		if size < e.Size {
			return c.newContent(ino, of, size)
		}
	}
	of.mu.RLock()
	defer of.mu.RUnlock()
	return of.f.Truncate(size)
}

// newContent gives an open file new content: a new file holding the
// first size bytes of the current one; of.commitMu is held. Readers and
// writers wait while the bytes are copied, so none is lost to the old file.
// On a full disk the copy fails with ENOSPC and nothing changes.
func (c *Cache) newContent(ino uint64, of *openFile, size int64) error {
	tmp, err := c.createPending(ino)
	if err != nil {
		return fmt.Errorf("new content: %w", err)
	}
	of.mu.Lock()
	if err := copyPrefix(tmp, of.f, size); err != nil {
		of.mu.Unlock()
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("copy the %d bytes kept: %w", size, err)
	}
	of.f.Close()
	of.f = tmp
	of.mu.Unlock()
	c.open.mu.Lock()
	of.pending = tmp.Name()
	c.open.mu.Unlock()
	return nil
}

// copyPrefix copies the first size bytes of src into dst (with
// copy_file_range where the kernel offers it).
func copyPrefix(dst, src *os.File, size int64) error {
	if size > 0 {
		if _, err := src.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.CopyN(dst, src, size); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return dst.Truncate(size)
}

// notePlace notes, in the commit's transaction, that the file's committed
// content is the pending file until _placeContent has renamed it.
func (t *tx) notePlace(ino uint64, pending string) error {
	return t.txn.Set(placeKey(ino), []byte(filepath.Base(pending)))
}

// _placeContent renames a committed pending file over data/<ino> and drops
// its place note; c.treeMu and of.commitMu are held, so no upload starts
// between the record and the rename. For fsync (durable) the record is
// synced before the rename and the folder after it.
func (c *Cache) _placeContent(ino uint64, of *openFile, durable bool) error {
	if durable {
		if err := c.db.Sync(); err != nil {
			return fmt.Errorf("sync the journal: %w", err)
		}
	}
	if err := os.Rename(of.pending, c.localPath(ino)); err != nil {
		return fmt.Errorf("move the truncated content into place: %w", err)
	}
	c.open.mu.Lock()
	of.pending = ""
	c.open.mu.Unlock()
	if durable {
		if err := syncDir(c.shardDir(ino)); err != nil {
			return err
		}
	}
	// A note left by a failure here is harmless: its file is gone.
	if err := c.db.Update(func(txn *badger.Txn) error { return txn.Delete(placeKey(ino)) }); err != nil {
		c.log.WithError(err).Warn("drop a place note")
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// redoPlaces finishes the renames that commits recorded before a crash cut
// them short, and drops every place note. It runs in Open, before anything
// reads the local files.
func (c *Cache) redoPlaces() error {
	var keys [][]byte
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixPlace}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			keys = append(keys, k)
			if len(k) != 9 {
				continue
			}
			ino := binary.BigEndian.Uint64(k[1:])
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			name := string(v)
			if !strings.HasPrefix(name, pendingPrefix(ino)) || strings.ContainsRune(name, '/') {
				c.log.WithField("ino", ino).Warn("ignoring a damaged place note")
				continue
			}
			err = os.Rename(filepath.Join(c.shardDir(ino), name), c.localPath(ino))
			switch {
			case err == nil:
				c.log.WithField("ino", ino).Info("a truncated file committed just before a crash is moved into place")
			case !errors.Is(err, os.ErrNotExist):
				return fmt.Errorf("move the truncated content of inode %d into place: %w", ino, err)
			}
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return err
	}
	return c.db.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
