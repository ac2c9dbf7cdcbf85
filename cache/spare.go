package cache

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// Spare local files. Making a file on the cache's disk was a good part of
// each FUSE create (a tenth of the mount's CPU during tar x, all of it
// while the writer waited), so a few empty local files are made ahead, each
// under an inode number of its own, by a goroutine beside the requests:
// create takes one if there is one and otherwise makes its own. The maker
// starts with the first create, so a mount that only reads makes none. A
// spare has no entry; Close removes the ones left, and after a crash the
// recovery does (a local file no entry owns).

// spareFiles is how many spares are kept ready.
const spareFiles = 32

type spareFile struct {
	ino uint64
	f   *os.File
}

type spares struct {
	ready chan spareFile // capacity spareFiles
	want  chan struct{}  // capacity 1: a spare was taken, or none was there
	start sync.Once      // starts the maker
	off   bool           // set before the first create: make each file when needed (tests that look into data/)
}

func (s *spares) init() {
	s.ready = make(chan spareFile, spareFiles)
	s.want = make(chan struct{}, 1)
}

// newLocalFile returns a new inode number with its empty local file, open
// for reading and writing.
func (c *Cache) newLocalFile() (uint64, *os.File, error) {
	if c.spare.off {
		return c.makeLocalFile()
	}
	c.spare.start.Do(func() {
		c.stopWG.Add(1)
		go c.makeSpares()
	})
	var s spareFile
	select {
	case s = <-c.spare.ready:
	default:
	}
	select {
	case c.spare.want <- struct{}{}:
	default:
	}
	if s.f != nil {
		return s.ino, s.f, nil
	}
	return c.makeLocalFile()
}

// makeLocalFile takes an inode number and creates its local file.
func (c *Cache) makeLocalFile() (uint64, *os.File, error) {
	ino, err := c.nextIno()
	if err != nil {
		return 0, nil, err
	}
	// Inode numbers are never reused, so the file is new; a leftover of a
	// crash between creating it and committing is overwritten.
	f, err := os.OpenFile(c.localPath(ino), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		f, err = os.OpenFile(c.localPath(ino), os.O_RDWR|os.O_TRUNC, 0o600)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("create a local file: %w", err)
	}
	return ino, f, nil
}

// makeSpares keeps spareFiles spares ready until Close, then removes the
// ones left.
func (c *Cache) makeSpares() {
	defer c.stopWG.Done()
	defer c.dropSpares()
	for {
		select {
		case <-c.stop:
			return
		case <-c.spare.want:
		}
		for len(c.spare.ready) < spareFiles {
			ino, f, err := c.makeLocalFile()
			if err != nil {
				// create makes its own and reports the error; the next
				// create asks again.
				c.log.WithError(err).Debug("no spare local file")
				break
			}
			select {
			case c.spare.ready <- spareFile{ino, f}:
			default:
				c.dropSpare(spareFile{ino, f})
			}
			select {
			case <-c.stop:
				return
			default:
			}
		}
	}
}

func (c *Cache) dropSpares() {
	for {
		select {
		case s := <-c.spare.ready:
			c.dropSpare(s)
		default:
			return
		}
	}
}

func (c *Cache) dropSpare(s spareFile) {
	s.f.Close()
	c.removeLocalFile(s.ino)
}
