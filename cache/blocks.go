package cache

import (
	"container/list"
	"errors"
	"fmt"
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
	id   blockID
	size int64
}

// lru accounts for cached content and orders it by last use. It is memory
// only: at Open it is rebuilt from the block keys, oldest write first, which
// approximates use order without writing on every read.
type lru struct {
	mu    sync.Mutex // protects the following
	order *list.List // of *lruItem; front is the most recently used
	items map[blockID]*list.Element
	files map[uint64]map[int64]struct{} // blocks per inode
	total int64                         // bytes in order
}

func (l *lru) init() {
	l.order = list.New()
	l.items = make(map[blockID]*list.Element)
	l.files = make(map[uint64]map[int64]struct{})
}

func (l *lru) used() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// add records a stored block as the most recently used.
func (l *lru) add(id blockID, size int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.items[id]; ok {
		it := el.Value.(*lruItem)
		l.total += size - it.size
		it.size = size
		l.order.MoveToFront(el)
		return
	}
	l.items[id] = l.order.PushFront(&lruItem{id: id, size: size})
	if l.files[id.ino] == nil {
		l.files[id.ino] = make(map[int64]struct{})
	}
	l.files[id.ino][id.idx] = struct{}{}
	l.total += size
}

func (l *lru) touch(id blockID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.items[id]; ok {
		l.order.MoveToFront(el)
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

func (l *lru) forgetFile(ino uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for idx := range l.files[ino] {
		l._remove(blockID{ino, idx})
	}
}

// victims takes least recently used blocks out of the accounting until at
// most limit bytes remain, sparing keep.
func (l *lru) victims(limit int64, keep blockID) []blockID {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []blockID
	for el := l.order.Back(); el != nil && l.total > limit; {
		prev := el.Prev()
		it := el.Value.(*lruItem)
		if it.id != keep {
			out = append(out, it.id)
			l._remove(it.id)
		}
		el = prev
	}
	return out
}

// loadBlocks rebuilds the accounting from the stored block keys.
func (c *Cache) loadBlocks() error {
	type stored struct {
		id      blockID
		size    int64
		version uint64
	}
	var all []stored
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixBlock}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			ino, idx, ok := parseBlockKey(item.Key())
			if !ok {
				continue
			}
			all = append(all, stored{blockID{ino, idx}, item.ValueSize(), item.Version()})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan cached content: %w", err)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].version < all[j].version })
	for _, s := range all {
		c.lru.add(s.id, s.size)
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
	id := blockID{ino, idx}
	var data []byte
	err := c.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(blockKey(ino, idx))
		if err != nil {
			return err
		}
		data, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		// An eviction may have raced with a store of the same block.
		c.lru.forget(id)
		return nil, fmt.Errorf("block %d of inode %d: %w", idx, ino, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read block %d of inode %d: %w", idx, ino, err)
	}
	c.lru.touch(id)
	return data, nil
}

// PutBlock stores block idx of a file fetched for content generation gen.
// If the file's remote content changed since (another gen) or the file is
// gone, it returns ErrStale and stores nothing. A full block is BlockSize
// bytes; only the file's last block may be shorter.
func (c *Cache) PutBlock(ino, gen uint64, idx int64, data []byte) error {
	id := blockID{ino, idx}
	mu := c.stripe(ino)
	mu.Lock()
	err := c.putBlockTxn(ino, gen, idx, data)
	if err == nil {
		c.lru.add(id, int64(len(data)))
	}
	mu.Unlock()
	if err != nil {
		return fmt.Errorf("store block %d of inode %d: %w", idx, ino, err)
	}
	if c.max > 0 {
		c.evict(id)
	}
	return nil
}

// putBlockTxn stores the block if the entry still matches. A change of the
// entry by the mount (a rename) in between makes Badger report a conflict;
// the check is then simply done again.
func (c *Cache) putBlockTxn(ino, gen uint64, idx int64, data []byte) error {
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		err = c.db.Update(func(txn *badger.Txn) error {
			e, err := getEntry(txn, ino)
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
			return txn.Set(blockKey(ino, idx), data)
		})
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return err
}

// evict deletes least recently used content until the cache fits MaxSize.
// Everything cached now is clean (a copy of the server's), so any block may
// go; the write path will exempt dirty blocks.
func (c *Cache) evict(keep blockID) {
	ids := c.lru.victims(c.max, keep)
	if len(ids) == 0 {
		return
	}
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	for _, id := range ids {
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
