package cache

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	badger "github.com/dgraph-io/badger/v4"
)

// blockID names one cached block.
type blockID struct {
	ino uint64
	idx int64
}

type lruItem struct {
	id       blockID
	size     int64
	crc      uint32 // CRC-32C of the block's bytes
	verified bool   // written by this process or checked against crc
	recorded bool   // its Badger key was written
	pins     int    // readers holding it; its space is freed only at 0
	evicted  bool   // out of the accounting; freed when the last pin goes
}

// fetchedFile is an open fetched file shared by writers and readers; it is
// closed when the last user lets go of it and it is idle or dropped.
type fetchedFile struct {
	ino     uint64
	f       *os.File
	refs    int
	dropped bool // removed from lru.fds; close at refs 0
}

// maxIdleFiles bounds the fetched files kept open while nobody uses them.
const maxIdleFiles = 32

// lru accounts for cached content and orders it by last use. It is memory
// only: at Open it is rebuilt from the block keys, oldest write first, which
// approximates use order without writing on every read.
type lru struct {
	mu    sync.Mutex // protects the following
	order *list.List // of *lruItem; front is the most recently used
	items map[blockID]*list.Element
	files map[uint64]map[int64]struct{} // blocks per inode
	total int64                         // bytes in order
	fds   map[uint64]*fetchedFile       // open fetched files
}

func (l *lru) init() {
	l.order = list.New()
	l.items = make(map[blockID]*list.Element)
	l.files = make(map[uint64]map[int64]struct{})
	l.fds = make(map[uint64]*fetchedFile)
}

func (l *lru) used() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// add records a stored block as the most recently used.
func (l *lru) add(id blockID, size int64, crc uint32, verified bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.items[id]; ok {
		it := el.Value.(*lruItem)
		l.total += size - it.size
		it.size, it.crc, it.verified, it.recorded = size, crc, verified, false
		l.order.MoveToFront(el)
		return
	}
	l.items[id] = l.order.PushFront(&lruItem{id: id, size: size, crc: crc, verified: verified})
	if l.files[id.ino] == nil {
		l.files[id.ino] = make(map[int64]struct{})
	}
	l.files[id.ino][id.idx] = struct{}{}
	l.total += size
}

func (l *lru) size(id blockID) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.items[id]; ok {
		return el.Value.(*lruItem).size
	}
	return 0
}

func (l *lru) has(id blockID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.items[id]
	return ok
}

// record marks a block recorded with its checksum and returns its size, or
// false if it is no longer cached.
func (l *lru) record(id blockID, crc uint32) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.items[id]
	if !ok {
		return 0, false
	}
	it := el.Value.(*lruItem)
	it.recorded, it.crc = true, crc
	return it.size, true
}

func (l *lru) verified(id blockID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.items[id]; ok {
		el.Value.(*lruItem).verified = true
	}
}

// pin holds blocks first..last of ino if all are cached, marking them used,
// and returns the file holding them and the unverified ones as copies. The
// file is taken in the same critical section: forgetFile drops blocks and
// file together, so the file is the one the blocks are in.
func (l *lru) pin(c *Cache, ino uint64, first, last int64) ([]*lruItem, []lruItem, *fetchedFile, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for idx := first; idx <= last; idx++ {
		if _, ok := l.items[blockID{ino, idx}]; !ok {
			return nil, nil, nil, nil
		}
	}
	ff, err := l._file(c, ino)
	if err != nil {
		return nil, nil, nil, err
	}
	items := make([]*lruItem, 0, last-first+1)
	var unverified []lruItem
	for idx := first; idx <= last; idx++ {
		id := blockID{ino, idx}
		el := l.items[id]
		it := el.Value.(*lruItem)
		it.pins++
		l.order.MoveToFront(el)
		items = append(items, it)
		if !it.verified {
			unverified = append(unverified, *it)
		}
	}
	return items, unverified, ff, nil
}

// unpin lets go of pinned blocks and returns those evicted meanwhile that
// no reader holds any more: their space is to be freed now.
func (l *lru) unpin(items []*lruItem) []blockID {
	l.mu.Lock()
	defer l.mu.Unlock()
	var free []blockID
	for _, it := range items {
		it.pins--
		if it.pins == 0 && it.evicted {
			free = append(free, it.id)
		}
	}
	return free
}

// file returns ino's fetched file, opened (and created) if need be, with a
// reference the caller drops with unref.
func (l *lru) file(c *Cache, ino uint64) (*fetchedFile, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l._file(c, ino)
}

// _file is file with l.mu held.
func (l *lru) _file(c *Cache, ino uint64) (*fetchedFile, error) {
	if ff := l.fds[ino]; ff != nil {
		ff.refs++
		return ff, nil
	}
	f, err := os.OpenFile(c.fetchedPath(ino), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open fetched content of inode %d: %w", ino, err)
	}
	ff := &fetchedFile{ino: ino, f: f, refs: 1}
	l.fds[ino] = ff
	return ff, nil
}

func (l *lru) unref(ff *fetchedFile) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ff.refs--
	if ff.refs > 0 {
		return
	}
	if !ff.dropped && len(l.fds) > maxIdleFiles {
		delete(l.fds, ff.ino)
		ff.dropped = true
	}
	if ff.dropped {
		ff.f.Close()
	}
}

// closeFiles closes the open fetched files, at Close; one still in use is
// closed when its last user lets go.
func (l *lru) closeFiles() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ino, ff := range l.fds {
		delete(l.fds, ino)
		ff.dropped = true
		if ff.refs == 0 {
			ff.f.Close()
		}
	}
}

// _remove drops one block from the accounting; l.mu must be held.
func (l *lru) _remove(id blockID) {
	el, ok := l.items[id]
	if !ok {
		return
	}
	l.total -= el.Value.(*lruItem).size
	l.order.Remove(el)
	delete(l.items, id)
	if f := l.files[id.ino]; f != nil {
		delete(f, id.idx)
		if len(f) == 0 {
			delete(l.files, id.ino)
		}
	}
}

func (l *lru) forget(id blockID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l._remove(id)
}

// forgetFile drops a file's blocks and lets go of its open fetched file.
func (l *lru) forgetFile(ino uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for idx := range l.files[ino] {
		l._remove(blockID{ino, idx})
	}
	if ff := l.fds[ino]; ff != nil {
		delete(l.fds, ino)
		ff.dropped = true
		if ff.refs == 0 {
			ff.f.Close()
		}
	}
}

// victims takes least recently used blocks out of the accounting until at
// most limit bytes remain, sparing keep. It returns those to free now; a
// pinned block is freed when its last reader lets go (unpin).
func (l *lru) victims(limit int64, keep blockID) []blockID {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []blockID
	for el := l.order.Back(); el != nil && l.total > limit; {
		prev := el.Prev()
		it := el.Value.(*lruItem)
		if it.id != keep {
			l._remove(it.id)
			if it.pins > 0 {
				it.evicted = true
			} else {
				out = append(out, it.id)
			}
		}
		el = prev
	}
	return out
}

// loadBlocks rebuilds the accounting from the stored block records. A key
// whose value is not a record (content stored in Badger by an older
// deleteBlocks deletes every cached block of ino in txn.
func deleteBlocks(txn *badger.Txn, ino uint64) error {
	idxs, err := blockIndexes(txn, ino)
	if err != nil {
		return err
	}
	for _, idx := range idxs {
		if err := txn.Delete(blockKey(ino, idx)); err != nil {
			return err
		}
	}
	return nil
}

// version) is deleted: that block is fetched again.
func (c *Cache) loadBlocks() error {
	type stored struct {
		id      blockID
		size    int64
		crc     uint32
		version uint64
	}
	var all []stored
	var old [][]byte
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixBlock}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			ino, idx, ok := parseBlockKey(item.Key())
			if !ok {
				continue
			}
			var size int64
			var sum uint32
			err := item.Value(func(v []byte) error {
				size, sum, ok = parseBlockRecord(v)
				return nil
			})
			if err != nil {
				return err
			}
			if !ok {
				old = append(old, item.KeyCopy(nil))
				continue
			}
			all = append(all, stored{blockID{ino, idx}, size, sum, item.Version()})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan cached content: %w", err)
	}
	if len(old) > 0 {
		wb := c.db.NewWriteBatch()
		defer wb.Cancel()
		for _, k := range old {
			if err := wb.Delete(k); err != nil {
				return fmt.Errorf("drop old cached content: %w", err)
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("drop old cached content: %w", err)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].version < all[j].version })
	for _, s := range all {
		c.lru.add(s.id, s.size, s.crc, false)
		c.lru.record(s.id, s.crc)
	}
	return nil
}

func (c *Cache) stripe(ino uint64) *sync.Mutex { return &c.stripes[ino%uint64(len(c.stripes))] }

func blockIndexes(txn *badger.Txn, ino uint64) ([]int64, error) {
	var out []int64
	it := txn.NewIterator(badger.IteratorOptions{Prefix: blockPrefix(ino)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if _, idx, ok := parseBlockKey(it.Item().Key()); ok {
			out = append(out, idx)
		}
	}
	return out, nil
}

// ReadBlock returns block idx of a file, or ErrNotFound if it is not cached.
func (c *Cache) ReadBlock(ino uint64, idx int64) ([]byte, error) {
	s, ok := c.Pin(ino, idx*BlockSize, idx*BlockSize+1)
	if !ok {
		return nil, fmt.Errorf("block %d of inode %d: %w", idx, ino, ErrNotFound)
	}
	defer s.Release()
	size := c.lru.size(blockID{ino, idx})
	data := make([]byte, size)
	n, err := s.File().ReadAt(data, idx*BlockSize)
	if err != nil && !(errors.Is(err, io.EOF) && int64(n) == size) {
		return nil, fmt.Errorf("read block %d of inode %d: %w", idx, ino, err)
	}
	return data, nil
}

// evict deletes least recently used content until the cache fits MaxSize.
// Everything counted is clean (a copy of the server's; written content
// lives in data/ and is not counted), so any unpinned block may go.
func (c *Cache) evict(keep blockID) { c.free(c.lru.victims(c.max, keep)) }

// free punches evicted blocks out of their files and deletes their records.
func (c *Cache) free(ids []blockID) {
	if len(ids) == 0 {
		return
	}
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	for _, id := range ids {
		mu := c.stripe(id.ino)
		mu.Lock()
		c.punch(id)
		mu.Unlock()
		if err := wb.Delete(blockKey(id.ino, id.idx)); err != nil {
			c.log.WithError(err).Warn("evict cached content")
			return
		}
	}
	if err := wb.Flush(); err != nil {
		c.log.WithError(err).Warn("evict cached content")
		return
	}
	c.log.WithField("blocks", len(ids)).Debug("evicted least recently used content")
}

// CachedBlocks reports which blocks of a file are cached, in order.
func (c *Cache) CachedBlocks(ino uint64) []int64 {
	c.lru.mu.Lock()
	defer c.lru.mu.Unlock()
	out := make([]int64, 0, len(c.lru.files[ino]))
	for idx := range c.lru.files[ino] {
		out = append(out, idx)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
