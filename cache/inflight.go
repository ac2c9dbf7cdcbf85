package cache

import "github.com/ftpsync-mount/ftpsync-mount/target"

// The mount's own operations on their way to the server, by path. A
// listing says what the server held when it was taken; for a name with an
// operation still queued, or with one that ended while the listing ran,
// that is older than what the mount shows, and applying it would undo the
// local change (bring back a file just deleted or renamed here, say).
// ApplyListing leaves such names as they are; a later listing takes them
// up. Names no operation touched are applied at once, so a server change
// shows even while thousands of uploads are queued.
//
// Every field is guarded by Cache.treeMu: operations are queued and
// finished in _update, which runs under it.
type inflight struct {
	queued map[string]int      // paths (Op.Paths) of queued operations, counted
	ops    map[uint64][]string // the paths of each queued operation
	ended  map[string]uint64   // path: mark at which the last operation on it ended
	mark   uint64              // counts operations that ended
	floor  uint64              // ended holds every end after this mark
}

// inflightPrune bounds the ended map; the oldest half is forgotten and a
// listing begun before them treats every name as busy.
const inflightPrune = 1 << 14

func (f *inflight) init() {
	f.queued = make(map[string]int)
	f.ops = make(map[uint64][]string)
	f.ended = make(map[string]uint64)
}

func (f *inflight) add(o Op) {
	if _, ok := f.ops[o.Seq]; ok {
		return
	}
	ps := o.Paths()
	f.ops[o.Seq] = ps
	for _, p := range ps {
		f.queued[p]++
	}
}

func (f *inflight) end(seq uint64) {
	ps, ok := f.ops[seq]
	if !ok {
		return
	}
	delete(f.ops, seq)
	f.mark++
	for _, p := range ps {
		if f.queued[p]--; f.queued[p] <= 0 {
			delete(f.queued, p)
		}
		f.ended[p] = f.mark
	}
	if len(f.ended) > inflightPrune {
		cut := f.mark - uint64(inflightPrune/2)
		for p, m := range f.ended {
			if m <= cut {
				delete(f.ended, p)
			}
		}
		f.floor = max(f.floor, cut)
	}
}

// busy reports whether p has a queued operation, or had one end after
// mark (a listing that began at mark may predate its effect).
func (f *inflight) busy(p string, mark uint64) bool {
	return f.queued[p] > 0 || f.ended[p] > mark || mark < f.floor
}

// busyUp reports whether p or any folder above it is busy: a listing of p
// is then not of the folder the mount shows there (it is being renamed,
// created or removed).
func (f *inflight) busyUp(p string, mark uint64) bool {
	for ; p != ""; p, _ = target.Split(p) {
		if f.busy(p, mark) {
			return true
		}
	}
	return false
}

// ListingMark is taken before a directory is listed from the server and
// handed to ApplyListing with the listing.
func (c *Cache) ListingMark() uint64 {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	return c.flight.mark
}

// Queued reports whether p or a folder above it has an operation queued
// or running: the server may not show p yet.
func (c *Cache) Queued(p string) bool {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	return c.flight.busyUp(p, c.flight.mark)
}
