package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	badger "github.com/dgraph-io/badger/v4"
)

// Content fetched from the server lives in plain sparse files, fetched/<ino>
// in the cache directory, one per inode, at the file's own offsets; Badger
// keeps only which blocks are there (the b<ino><block> keys, each holding
// the block's length and CRC-32C). A fetch then costs one pwrite per block
// and the mount serves reads by splicing from the file into /dev/fuse, with
// no copy through user space. The files are not the local files of data/:
// those are renamed into place when a file is first opened for writing, and
// a fetch still running then must not write into them.
//
// Order and crash safety: a block's bytes are written to the file before
// its presence is recorded, so after kill -9 (the page cache survives) a
// recorded block is complete. After a power loss the two may disagree; the
// recorded CRC catches that: a block loaded at Open is checked against its
// CRC the first time it is served and dropped if it does not match.

// crcTable is CRC-32C, which amd64 and arm64 compute in hardware.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// blockRecord is the value of a block key.
func blockRecord(size int, sum uint32) []byte {
	v := make([]byte, 8)
	binary.BigEndian.PutUint32(v, uint32(size))
	binary.BigEndian.PutUint32(v[4:], sum)
	return v
}

func parseBlockRecord(v []byte) (size int64, sum uint32, ok bool) {
	if len(v) != 8 {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint32(v)), binary.BigEndian.Uint32(v[4:]), true
}

func (c *Cache) fetchedDir() string { return filepath.Join(c.dir, "fetched") }

func (c *Cache) fetchedPath(ino uint64) string {
	return filepath.Join(c.fetchedDir(), strconv.FormatUint(ino, 10))
}

// dropContent is forgetContent for a caller that does not hold the inode's
// stripe; it runs after the transaction that deleted the entry or made it
// local committed, so a fetch that checks the entry afterwards writes
// nothing.
func (c *Cache) dropContent(ino uint64) {
	mu := c.stripe(ino)
	mu.Lock()
	defer mu.Unlock()
	c.forgetContent(ino)
}

// forgetContent drops a file's fetched content: its accounting and its
// file. Its block keys are deleted by the caller's transaction; the
// inode's stripe is held.
func (c *Cache) forgetContent(ino uint64) {
	c.lru.forgetFile(ino)
	if err := os.Remove(c.fetchedPath(ino)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.WithError(err).Warn("remove fetched content")
	}
}

// WriteBlock writes block idx of a file, fetched for content generation
// gen, into its fetched file and makes it readable. RecordBlocks must follow
// to make it survive a remount. If the file's remote content changed since
// (another gen) or the file is gone or local, it returns ErrStale and
// writes nothing. A full block is BlockSize bytes; only the file's last
// block may be shorter.
func (c *Cache) WriteBlock(ino, gen uint64, idx int64, data []byte) error {
	id := blockID{ino, idx}
	mu := c.stripe(ino)
	mu.Lock()
	err := c.writeBlock(ino, gen, idx, data)
	mu.Unlock()
	if err != nil {
		return fmt.Errorf("store block %d of inode %d: %w", idx, ino, err)
	}
	if c.max > 0 {
		c.evict(id)
	}
	return nil
}

// writeBlock does WriteBlock's work under the inode's stripe, which
// replaceContent and removals also hold: a block of old content is never
// written after they dropped the old blocks.
func (c *Cache) writeBlock(ino, gen uint64, idx int64, data []byte) error {
	var e Entry
	err := c.db.View(func(txn *badger.Txn) error {
		var err error
		e, err = getEntry(txn, ino)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return ErrStale
	}
	if err != nil {
		return err
	}
	if e.IsDir || e.Local || e.Gen != gen {
		return ErrStale
	}
	if want := min(int64(BlockSize), e.Size-idx*BlockSize); want != int64(len(data)) {
		return fmt.Errorf("block holds %d bytes, want %d: %w", len(data), max(want, 0), ErrStale)
	}
	f, err := c.lru.file(c, ino)
	if err != nil {
		return err
	}
	_, err = f.f.WriteAt(data, idx*BlockSize)
	c.lru.unref(f)
	if err != nil {
		return err
	}
	c.lru.add(blockID{ino, idx}, int64(len(data)), 0, true)
	return nil
}

// Checksum is the CRC-32C RecordBlocks records for a block's bytes.
func Checksum(data []byte) uint32 { return crc32.Checksum(data, crcTable) }

// RecordBlocks records in Badger, in one transaction, that blocks
// WriteBlock wrote are present, with their checksums (sums[i] is
// Checksum of block idxs[i]), except those evicted or dropped meanwhile.
// It runs after the writes, off the read path, and so does the checksum.
func (c *Cache) RecordBlocks(ino uint64, idxs []int64, sums []uint32) error {
	mu := c.stripe(ino)
	mu.Lock()
	defer mu.Unlock()
	err := c.db.Update(func(txn *badger.Txn) error {
		for i, idx := range idxs {
			size, ok := c.lru.record(blockID{ino, idx}, sums[i])
			if !ok {
				continue
			}
			if err := txn.Set(blockKey(ino, idx), blockRecord(int(size), sums[i])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %d blocks of inode %d: %w", len(idxs), ino, err)
	}
	return nil
}

// PutBlock writes and records a block: WriteBlock then RecordBlocks.
func (c *Cache) PutBlock(ino, gen uint64, idx int64, data []byte) error {
	if err := c.WriteBlock(ino, gen, idx, data); err != nil {
		return err
	}
	return c.RecordBlocks(ino, []int64{idx}, []uint32{Checksum(data)})
}

// Span is a range of a file's fetched content, held present (not evicted)
// until Release. A reader hands File's descriptor to the kernel.
type Span struct {
	c     *Cache
	f     *fetchedFile
	items []*lruItem
}

// File returns the open fetched file; valid until Release.
func (s *Span) File() *os.File { return s.f.f }

// Release lets go of the span's blocks; those evicted while it held them
// are freed now.
func (s *Span) Release() {
	free := s.c.lru.unpin(s.items)
	s.c.lru.unref(s.f)
	s.c.free(free)
}

// Pin holds the blocks covering [off, end) of file ino present and returns
// them as a Span, or false if any is not cached. Blocks loaded at Open are
// checked against their CRC on first use.
func (c *Cache) Pin(ino uint64, off, end int64) (*Span, bool) {
	if end <= off {
		return nil, false
	}
	items, unverified, f, err := c.lru.pin(c, ino, off/BlockSize, (end-1)/BlockSize)
	if err != nil {
		c.log.WithError(err).Warn("open fetched content")
		return nil, false
	}
	if f == nil {
		return nil, false
	}
	s := &Span{c: c, f: f, items: items}
	for _, it := range unverified {
		if !c.verify(f.f, it) {
			s.Release()
			return nil, false
		}
	}
	return s, true
}

// verify checks a block loaded at Open against its recorded CRC and drops
// it if it does not match (a power loss between write and record).
func (c *Cache) verify(f *os.File, it lruItem) bool {
	buf := make([]byte, it.size)
	n, err := f.ReadAt(buf, it.id.idx*BlockSize)
	if err == nil && int64(n) == it.size && crc32.Checksum(buf, crcTable) == it.crc {
		c.lru.verified(it.id)
		return true
	}
	c.log.WithFields(map[string]any{"ino": it.id.ino, "block": it.id.idx}).Warn("cached block does not match its checksum; fetching it again")
	c.lru.forget(it.id)
	mu := c.stripe(it.id.ino)
	mu.Lock()
	defer mu.Unlock()
	if err := c.db.Update(func(txn *badger.Txn) error { return txn.Delete(blockKey(it.id.ino, it.id.idx)) }); err != nil {
		c.log.WithError(err).Warn("drop a damaged cached block")
	}
	return false
}

// Fallocate modes (linux/falloc.h); the syscall package does not name them.
const (
	fallocKeepSize  = 0x1
	fallocPunchHole = 0x2
)

// punch frees an evicted block's space in its fetched file, unless the
// block was fetched again meanwhile; the inode's stripe is held.
func (c *Cache) punch(id blockID) {
	if c.lru.has(id) {
		return
	}
	f, err := os.OpenFile(c.fetchedPath(id.ino), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		c.log.WithError(err).Warn("evict cached content")
		return
	}
	defer f.Close()
	err = syscall.Fallocate(int(f.Fd()), fallocPunchHole|fallocKeepSize, id.idx*BlockSize, BlockSize)
	if err != nil {
		c.log.WithError(err).Warn("evict cached content")
	}
}

// Has reports whether block idx of file ino is cached.
func (c *Cache) Has(ino uint64, idx int64) bool { return c.lru.has(blockID{ino, idx}) }
