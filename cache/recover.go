package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Recovery of the local files after a crash. Close leaves a clean mark when
// no file was open; Open takes it away, so that after a kill -9 (or any exit
// without Close) the next Open finds none and puts data/ back in line with
// the records before anything reads it:
//
//   - bytes past a file's recorded size were written by a handle that never
//     closed (an append, a new file being written): they are cut off, so the
//     mount shows, and the upload sends, the file as last closed;
//   - a truncation's uncommitted content (<ino>.trunc-*) and a copy from the
//     server cut short (fill-*) are deleted;
//   - the file of an entry unlinked while open, or of no entry at all, is
//     deleted with the entry.
//
// Commits the crash cut between their record and their rename are finished
// first, on every Open (redoPlaces). A clean Open costs one failed stat.

const cleanMark = "clean"

// markClean leaves the clean mark, unless a file is still open or one was
// released with changes its commit did not record.
func (c *Cache) markClean() {
	c.open.mu.Lock()
	clean := len(c.open.m) == 0 && !c.open.unclean
	c.open.mu.Unlock()
	if !clean {
		return
	}
	if err := os.WriteFile(filepath.Join(c.dir, cleanMark), nil, 0o600); err != nil {
		c.log.WithError(err).Warn("write the cache's clean mark; the next open checks every local file")
	}
}

// recoverLocal runs in Open: it finishes noted renames and, unless the last
// Close left the clean mark, checks every local file.
func (c *Cache) recoverLocal() error {
	if err := c.redoPlaces(); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(c.dir, cleanMark))
	if err == nil {
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the cache's clean mark: %w", err)
	}
	var temps, cut, gone int
	for shard := range uint64(dataShards) {
		t, cu, g, err := c.recoverShard(c.shardDir(shard))
		if err != nil {
			return err
		}
		temps, cut, gone = temps+t, cut+cu, gone+g
	}
	log := c.log.WithField("temporary", temps).WithField("cut", cut).WithField("removed", gone)
	if temps+cut+gone == 0 {
		// A new cache, or a crash that left nothing half done.
		log.Debug("the cache was not closed: local files checked against their records")
	} else {
		log.Info("the cache was not closed: local files checked against their records")
	}
	return nil
}

// recoverShard checks the local files of one subfolder of data/: it
// removes temporary files and files no entry owns, and cuts each local
// file back to its recorded size.
func (c *Cache) recoverShard(dir string) (temps, cut, gone int, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("check the local files: %w", err)
	}
	for _, d := range ents {
		ino, perr := strconv.ParseUint(d.Name(), 10, 64)
		p := filepath.Join(dir, d.Name())
		if perr != nil || c.shardDir(ino) != dir {
			if err := os.Remove(p); err != nil {
				return temps, cut, gone, fmt.Errorf("remove %s: %w", p, err)
			}
			temps++
			continue
		}
		e, err := c.Get(ino)
		switch {
		case errors.Is(err, ErrNotFound) || err == nil && !e.Local:
			if err := os.Remove(p); err != nil {
				return temps, cut, gone, fmt.Errorf("remove %s: %w", p, err)
			}
			gone++
		case err != nil:
			return temps, cut, gone, err
		case e.Parent == 0 && ino != RootIno:
			c.treeMu.Lock()
			err := c._forgetUnlinked(ino)
			c.treeMu.Unlock()
			if err != nil {
				return temps, cut, gone, err
			}
			gone++
		default:
			fi, err := os.Stat(p)
			if err != nil {
				return temps, cut, gone, fmt.Errorf("check %s: %w", p, err)
			}
			switch {
			case fi.Size() > e.Size:
				if err := os.Truncate(p, e.Size); err != nil {
					return temps, cut, gone, fmt.Errorf("cut %s back to its recorded size: %w", p, err)
				}
				cut++
			case fi.Size() < e.Size:
				c.log.WithField("ino", ino).WithField("size", fi.Size()).WithField("recorded", e.Size).
					Warn("a local file is shorter than its record")
			}
		}
	}
	return temps, cut, gone, nil
}

// _forgetUnlinked deletes an entry unlinked while open, and its local file,
// once its last handle is gone (or a crash took it); c.treeMu is held.
func (c *Cache) _forgetUnlinked(ino uint64) error {
	err := c._update(func(t *tx) error {
		t.drops = append(t.drops, ino)
		t.files = append(t.files, ino)
		return t.txn.Delete(entryKey(ino))
	})
	if err != nil {
		return fmt.Errorf("remove the unlinked inode %d: %w", ino, err)
	}
	return nil
}
