package cache

import (
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Verdict is what a listing does to one file, as the caller's
// classification of the mount's entry against the server's decides
// (sync.Classify, DESIGN.md's table).
type Verdict int

const (
	// Leave keeps the mount's entry as it is: it holds a local change that
	// the write-back will send, or settle as a conflict before sending.
	Leave Verdict = iota
	// Same: both sides agree; attributes that do not touch the content
	// (mode, a finer mtime) are taken from the listing.
	Same
	// Take: the server's version replaces the cached one, whose content is
	// dropped (a local copy included); the next read fetches the new one.
	Take
	// Drop: the server deleted the file and nothing local is lost.
	Drop
)

// Decider judges one file of a listing: cached is the mount's entry (never
// nil), listed the server's (nil when the listing lacks the name). It runs
// under the tree lock and must not block or call into the cache.
type Decider func(cached *Entry, listed *target.Entry) Verdict

// Listing is one fresh listing of a directory for ApplyListing.
type Listing struct {
	Entries []target.Entry
	// Mark is ListingMark, taken before the listing was asked for: names
	// the mount's own operations touched since are left for a later one.
	Mark   uint64
	Decide Decider // required
	// Refined names the entries whose time was asked for exactly (MDTM)
	// because the listing's was too coarse; their record is renewed.
	Refined map[string]bool
	Now     time.Time
	// RecordKept records a folder the server deleted that stays for the
	// local changes in it as a conflict (the keep-both policy).
	RecordKept bool
}

// ListingResult is what ApplyListing did.
type ListingResult struct {
	Changes []Change // for the kernel
	// Deferred: some names were left as they are (a local operation on
	// them is under way, or a file to replace is open); list again later.
	Deferred bool
	// Kept are the folders the server deleted that stay because files in
	// them changed here (recorded as conflicts).
	Kept []string
}

// ErrNoDecider is returned by ApplyListing without Listing.Decide.
var ErrNoDecider = errors.New("apply listing: no decider")

// ApplyListing merges a fresh listing of directory dir into the tree:
// names that stay keep their inode numbers, new names get new ones, and
// for every file the Decider says whether the server's version replaces
// the cached one, or a vanished file goes. A folder the server deleted
// goes with everything below it, unless files below it changed here: then
// it stays with them (their uploads re-create it) and the rest goes, and
// the folder is recorded as a conflict. Names with one of the mount's own
// operations under way are left alone (inflight.go). The first listing of
// a directory reports no additions (nobody saw its contents before) and
// removes nothing (its children were all made here).
func (c *Cache) ApplyListing(dir uint64, l Listing) (ListingResult, error) {
	if l.Decide == nil {
		return ListingResult{}, ErrNoDecider
	}
	if l.Now.IsZero() {
		l.Now = time.Now()
	}
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	c.fresh.forget(dir)

	var parent Entry
	var old []Entry
	var dirPath string
	err := c.db.View(func(txn *badger.Txn) error {
		var err error
		if parent, err = getEntry(txn, dir); err != nil {
			return err
		}
		if !parent.IsDir {
			return fmt.Errorf("inode %d: %w", dir, ErrNotDir)
		}
		if dirPath, err = pathTxn(txn, dir); err != nil {
			return err
		}
		old, err = children(txn, dir)
		return err
	})
	if err != nil {
		return ListingResult{}, fmt.Errorf("apply listing: %w", err)
	}
	a := &applier{c: c, dir: dir, path: dirPath, l: l, first: parent.ListedAt.IsZero()}
	if !a.first && c.flight.busyUp(dirPath, l.Mark) {
		// The folder itself (or one above it) is being created, renamed or
		// removed here: the server's folder of that name is not this one.
		a.res.Deferred = true
		return a.res, c.touchListed(parent, l.Now)
	}
	if err := a.merge(old); err != nil {
		return a.res, fmt.Errorf("apply listing of /%s: %w", dirPath, err)
	}
	parent.ListedAt = l.Now
	a.writes = append(a.writes, parent)
	if err := a.commit(); err != nil {
		return a.res, fmt.Errorf("apply listing of /%s: %w", dirPath, err)
	}
	return a.res, nil
}

// applier holds one ApplyListing's decisions until they are committed.
type applier struct {
	c     *Cache
	dir   uint64
	path  string // the directory's target path
	l     Listing
	first bool

	res     ListingResult
	writes  []Entry // new and updated entries
	removed []Entry // subtrees to remove
	content []Entry // server files whose content changed
	reverts []Entry // local copies that give way to the server's version
}

func (a *applier) change(k ChangeKind, e Entry) {
	a.res.Changes = append(a.res.Changes, Change{Kind: k, Parent: e.Parent, Name: e.Name, Ino: e.Ino})
}

// decide asks the Decider about a file, except one open for writing: what
// its handles write is committed at close and decides then.
func (a *applier) decide(cached *Entry, listed *target.Entry) Verdict {
	if a.c.OpenForWrite(cached.Ino) {
		a.res.Deferred = true
		return Leave
	}
	return a.l.Decide(cached, listed)
}

// busy reports (and remembers) a name the mount's own operations touch.
func (a *applier) busy(name string) bool {
	if a.c.flight.busy(target.Join(a.path, name), a.l.Mark) {
		a.res.Deferred = true
		return true
	}
	return false
}

func (a *applier) merge(old []Entry) error {
	byName := make(map[string]Entry, len(old))
	for _, e := range old {
		byName[e.Name] = e
	}
	listed := make(map[string]bool, len(a.l.Entries))
	for i := range a.l.Entries {
		te := &a.l.Entries[i]
		if target.ValidName(te.Name) != nil || listed[te.Name] {
			continue
		}
		listed[te.Name] = true
		if a.busy(te.Name) {
			continue
		}
		prev, ok := byName[te.Name]
		switch {
		case !ok:
			if err := a.add(*te); err != nil {
				return err
			}
		case prev.IsDir && te.IsDir:
			a.same(prev, *te)
		case prev.IsDir != te.IsDir:
			gone, err := a.gone(prev)
			if err != nil {
				return err
			}
			if !gone {
				a.res.Deferred = true
				continue
			}
			if err := a.add(*te); err != nil {
				return err
			}
		default:
			switch a.decide(&prev, te) {
			case Same:
				a.same(prev, *te)
			case Take:
				a.take(prev, *te)
			}
		}
	}
	if a.first {
		return nil
	}
	for _, e := range old {
		if listed[e.Name] || a.busy(e.Name) {
			continue
		}
		if _, err := a.gone(e); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) add(te target.Entry) error {
	ino, err := a.c.nextIno()
	if err != nil {
		return err
	}
	e := fromTarget(te, ino, a.dir, a.l.Now)
	a.writes = append(a.writes, e)
	if !a.first {
		a.change(ChangeAdded, e)
	}
	return nil
}

// same takes what the listing says of an entry both sides agree on,
// keeping the finer of two mtimes of the same moment.
func (a *applier) same(prev Entry, te target.Entry) {
	next := prev
	attr := false
	if prev.IsDir || !prev.Local {
		if m := te.Mode.Perm(); m != prev.Mode {
			next.Mode, attr = m, true
		}
		if !prev.IsDir && te.Precision < prev.Precision {
			next.ModTime, next.Precision, attr = te.ModTime.UTC(), te.Precision, true
		}
	} else if te.Precision < prev.SyncRemote.Precision {
		next.SyncRemote.ModTime, next.SyncRemote.Precision = te.ModTime.UTC(), te.Precision
		attr = true
	}
	refined := a.l.Refined[te.Name]
	if refined {
		next.Seen = a.l.Now
	}
	if !attr && !refined {
		return
	}
	a.writes = append(a.writes, next)
	if attr && (prev.IsDir || !prev.Local) {
		a.change(ChangeAttr, next)
	}
}

// take replaces a file's cached version with the server's.
func (a *applier) take(prev Entry, te target.Entry) {
	next := fromTarget(te, prev.Ino, a.dir, a.l.Now)
	next.Gen = prev.Gen + 1
	if prev.Local {
		a.reverts = append(a.reverts, next)
		return
	}
	a.content = append(a.content, next)
	a.change(ChangeContent, next)
}

// gone handles an entry the listing lacks (or lists with the other type).
// It reports whether the entry is removed.
func (a *applier) gone(e Entry) (bool, error) {
	if !e.IsDir {
		if a.decide(&e, nil) != Drop {
			return false, nil
		}
		a.removed = append(a.removed, e)
		a.change(ChangeRemoved, e)
		return true, nil
	}
	k, err := a.c.keptBelow(e, target.Join(a.path, e.Name), a)
	if err != nil {
		return false, err
	}
	if len(k.keep) == 0 {
		a.removed = append(a.removed, e)
		a.change(ChangeRemoved, e)
		return true, nil
	}
	for _, x := range k.drop {
		a.removed = append(a.removed, x)
		a.change(ChangeRemoved, x)
	}
	a.res.Kept = append(a.res.Kept, target.Join(a.path, e.Name))
	a.res.Deferred = true
	return false, nil
}

// kept is the outcome of keptBelow: the entries of a deleted folder's
// subtree that stay (with the folders above them) and the tops of the
// parts that go.
type kept struct {
	keep map[uint64]bool
	drop []Entry
}

// keptBelow walks the subtree of folder top (at path p), which the server
// deleted, and finds what must stay: files the Decider does not let go
// (local changes), and anything with an operation of ours under way.
func (c *Cache) keptBelow(top Entry, p string, a *applier) (kept, error) {
	type node struct {
		e    Entry
		path string
	}
	var all []node
	parentOf := make(map[uint64]uint64)
	k := kept{keep: make(map[uint64]bool)}
	err := c.db.View(func(txn *badger.Txn) error {
		queue := []node{{top, p}}
		for len(queue) > 0 {
			n := queue[0]
			queue = queue[1:]
			all = append(all, n)
			if !n.e.IsDir {
				continue
			}
			kids, err := children(txn, n.e.Ino)
			if err != nil {
				return err
			}
			for _, kid := range kids {
				parentOf[kid.Ino] = n.e.Ino
				queue = append(queue, node{kid, target.Join(n.path, kid.Name)})
			}
		}
		return nil
	})
	if err != nil {
		return k, err
	}
	for _, n := range all {
		stays := c.flight.busy(n.path, a.l.Mark)
		if !n.e.IsDir && !stays {
			e := n.e
			stays = a.decide(&e, nil) != Drop
		}
		if !stays {
			continue
		}
		for ino := n.e.Ino; ino != 0 && !k.keep[ino]; ino = parentOf[ino] {
			k.keep[ino] = true
			if ino == top.Ino {
				break
			}
		}
	}
	if len(k.keep) == 0 {
		return k, nil
	}
	for _, n := range all {
		if !k.keep[n.e.Ino] && k.keep[parentOf[n.e.Ino]] {
			k.drop = append(k.drop, n.e)
		}
	}
	return k, nil
}

// commit stores the decisions: removals, content drops, local copies
// giving way, then the new and updated records in one batch.
func (a *applier) commit() error {
	c := a.c
	if err := c.removeSubtrees(a.removed); err != nil {
		return err
	}
	for _, e := range a.content {
		if err := c.replaceContent(e); err != nil {
			return err
		}
	}
	for _, e := range a.reverts {
		done, err := c._revertLocal(e)
		if err != nil {
			return err
		}
		if !done {
			a.res.Deferred = true
			continue
		}
		a.change(ChangeContent, e)
	}
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	for _, e := range a.writes {
		if err := wb.Set(entryKey(e.Ino), e.marshal()); err != nil {
			return err
		}
		if e.Ino != RootIno {
			if err := wb.Set(childKey(e.Parent, e.Name), beBytes(e.Ino)); err != nil {
				return err
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	for _, e := range a.writes {
		c.mem.put(e)
	}
	for _, p := range a.res.Kept {
		if !a.l.RecordKept {
			break
		}
		rec := ConflictRecord{Path: p, Kind: ConflictFolderKept, At: a.l.Now.UTC()}
		if err := c.addConflictOnce(rec); err != nil {
			return err
		}
	}
	return nil
}

func fromTarget(te target.Entry, ino, parent uint64, now time.Time) Entry {
	e := Entry{
		Ino: ino, Parent: parent, Name: te.Name, IsDir: te.IsDir,
		ModTime: te.ModTime.UTC(), Precision: te.Precision, Mode: te.Mode.Perm(), Seen: now,
		OnServer: true,
	}
	if !te.IsDir {
		e.Size = te.Size
	}
	return e
}

// touchListed records that a directory's listing was taken without
// applying it, so that it is not asked for again at once.
func (c *Cache) touchListed(dir Entry, now time.Time) error {
	dir.ListedAt = now
	err := c.db.Update(func(txn *badger.Txn) error { return txn.Set(entryKey(dir.Ino), dir.marshal()) })
	if err != nil {
		return fmt.Errorf("apply listing of inode %d: %w", dir.Ino, err)
	}
	c.mem.put(dir)
	return nil
}

// replaceContent stores a file's new remote state and drops its blocks in
// one transaction, under the file's stripe so that no fetch of the old
// content can store a block afterwards.
func (c *Cache) replaceContent(e Entry) error {
	mu := c.stripe(e.Ino)
	mu.Lock()
	defer mu.Unlock()
	c.fresh.forget(e.Parent)
	err := c.db.Update(func(txn *badger.Txn) error {
		if err := deleteBlocks(txn, e.Ino); err != nil {
			return err
		}
		if err := txn.Set(entryKey(e.Ino), e.marshal()); err != nil {
			return err
		}
		return txn.Set(childKey(e.Parent, e.Name), beBytes(e.Ino))
	})
	if err != nil {
		return fmt.Errorf("drop changed content of inode %d: %w", e.Ino, err)
	}
	c.mem.put(e)
	c.forgetContent(e.Ino)
	return nil
}

// _revertLocal makes a local file that the server changed (and that did
// not change here) a server file again: its record becomes next and its
// local copy goes, so the next read fetches the new content. A file open
// through the mount is left for a later listing (false). c.treeMu is held;
// open.mu is held throughout, so that OpenLocal never opens the local
// copy as it goes (it looks again under open.mu).
func (c *Cache) _revertLocal(next Entry) (bool, error) {
	c.open.mu.Lock()
	defer c.open.mu.Unlock()
	if c.open.m[next.Ino] != nil {
		return false, nil
	}
	err := c._update(func(t *tx) error {
		t.files = append(t.files, next.Ino)
		return t.put(next)
	})
	if err != nil {
		return false, fmt.Errorf("take the server's version of inode %d: %w", next.Ino, err)
	}
	c.forgetContent(next.Ino)
	return true, nil
}

// removeSubtrees deletes entries, everything below them and their content.
// All stripes are held so that no fetch stores a block of a removed file;
// open.mu is held so that no local copy is opened as it goes, and a local
// file still open stays readable, without a parent, until its last handle
// is released (like a file unlinked while open).
func (c *Cache) removeSubtrees(tops []Entry) error {
	if len(tops) == 0 {
		return nil
	}
	for i := range c.stripes {
		c.stripes[i].Lock()
		defer c.stripes[i].Unlock()
	}
	c.open.mu.Lock()
	defer c.open.mu.Unlock()
	var all []Entry
	blocks := make(map[uint64][]int64)
	err := c.db.View(func(txn *badger.Txn) error {
		queue := append([]Entry(nil), tops...)
		for len(queue) > 0 {
			e := queue[0]
			queue = queue[1:]
			all = append(all, e)
			if !e.IsDir {
				idxs, err := blockIndexes(txn, e.Ino)
				if err != nil {
					return err
				}
				blocks[e.Ino] = idxs
				continue
			}
			kids, err := children(txn, e.Ino)
			if err != nil {
				return err
			}
			queue = append(queue, kids...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove subtree: %w", err)
	}
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	var orphans []Entry
	var files []uint64
	for _, e := range all {
		c.fresh.forget(e.Parent, e.Ino)
		if err := wb.Delete(childKey(e.Parent, e.Name)); err != nil {
			return fmt.Errorf("remove inode %d: %w", e.Ino, err)
		}
		if e.Local && c.open.m[e.Ino] != nil {
			e.Parent, e.Upload = 0, 0
			orphans = append(orphans, e)
			if err := wb.Set(entryKey(e.Ino), e.marshal()); err != nil {
				return fmt.Errorf("remove inode %d: %w", e.Ino, err)
			}
			continue
		}
		if err := wb.Delete(entryKey(e.Ino)); err != nil {
			return fmt.Errorf("remove inode %d: %w", e.Ino, err)
		}
		for _, idx := range blocks[e.Ino] {
			if err := wb.Delete(blockKey(e.Ino, idx)); err != nil {
				return fmt.Errorf("remove inode %d: %w", e.Ino, err)
			}
		}
		if e.Local {
			files = append(files, e.Ino)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("remove subtree: %w", err)
	}
	orphaned := make(map[uint64]bool, len(orphans))
	for _, e := range orphans {
		c.mem.put(e)
		orphaned[e.Ino] = true
	}
	for _, e := range all {
		if !orphaned[e.Ino] {
			c.mem.drop(e.Ino)
			c.forgetContent(e.Ino)
		}
	}
	for _, ino := range files {
		c.removeLocalFile(ino)
	}
	return nil
}
