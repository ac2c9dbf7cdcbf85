package cache

import (
	"sync"
)

// entryMemMax bounds the entries kept in memory (about 150 bytes each).
const entryMemMax = 1 << 16

// entryMem keeps recently used entry records in memory. Every read in
// Badger waits until earlier commits are applied, and storing a block may
// wait for a value-log file to be synced; without this, each read request
// of a file being fetched would wait for the previous block's write.
//
// Writers update it after their commit (put, drop); a reader that missed
// fills it only if no writer ran meanwhile (the epoch), so a record read
// before a change can never replace the changed one.
type entryMem struct {
	mu    sync.Mutex // protects the following
	m     map[uint64]Entry
	epoch uint64 // incremented by every put and drop
}

func (em *entryMem) init() { em.m = make(map[uint64]Entry) }

func (em *entryMem) get(ino uint64) (Entry, uint64, bool) {
	em.mu.Lock()
	defer em.mu.Unlock()
	e, ok := em.m[ino]
	return e, em.epoch, ok
}

// fill stores a record read from Badger at epoch, unless a writer ran since.
func (em *entryMem) fill(e Entry, epoch uint64) {
	em.mu.Lock()
	defer em.mu.Unlock()
	if em.epoch == epoch {
		em._insert(e)
	}
}

// put stores a record just committed.
func (em *entryMem) put(e Entry) {
	em.mu.Lock()
	defer em.mu.Unlock()
	em.epoch++
	em._insert(e)
}

func (em *entryMem) drop(ino uint64) {
	em.mu.Lock()
	defer em.mu.Unlock()
	em.epoch++
	delete(em.m, ino)
}

// _insert adds a record, first making room by dropping an arbitrary one
// (map order is random enough for a cache of hot records); em.mu is held.
func (em *entryMem) _insert(e Entry) {
	if _, ok := em.m[e.Ino]; !ok && len(em.m) >= entryMemMax {
		for k := range em.m {
			delete(em.m, k)
			break
		}
	}
	em.m[e.Ino] = e
}
