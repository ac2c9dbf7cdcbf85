package cache

import (
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// maxDepth bounds walks up the tree, so that a corrupt record can not make a
// path lookup loop forever.
const maxDepth = 4096

// ChangeKind says what a listing changed about an entry.
type ChangeKind int

const (
	ChangeAdded   ChangeKind = iota // a new name in the directory
	ChangeRemoved                   // the name is gone (with its subtree)
	ChangeContent                   // a file's content changed; its cached blocks are dropped
	ChangeAttr                      // size, mtime or mode changed, content did not
)

// Change is one difference ApplyListing found, for telling the kernel.
type Change struct {
	Kind   ChangeKind
	Parent uint64
	Name   string
	Ino    uint64
}

// initTree creates the root entry of a new cache.
func (c *Cache) initTree() error {
	return c.db.Update(func(txn *badger.Txn) error {
		_, err := txn.Get(entryKey(RootIno))
		if err == nil {
			return nil
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("read cache root: %w", err)
		}
		return txn.Set(entryKey(RootIno), Entry{Ino: RootIno, IsDir: true, Mode: 0o755, OnServer: true}.marshal())
	})
}

// nextIno hands out a never-used inode number.
func (c *Cache) nextIno() (uint64, error) {
	for {
		n, err := c.seq.Next()
		if err != nil {
			return 0, fmt.Errorf("allocate inode number: %w", err)
		}
		if n > RootIno {
			return n, nil
		}
	}
}

func getEntry(txn *badger.Txn, ino uint64) (Entry, error) {
	item, err := txn.Get(entryKey(ino))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Entry{}, fmt.Errorf("inode %d: %w", ino, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("read inode %d: %w", ino, err)
	}
	var e Entry
	err = item.Value(func(v []byte) error {
		var derr error
		e, derr = unmarshalEntry(ino, v)
		return derr
	})
	return e, err
}

// Get returns the entry with the given inode number.
func (c *Cache) Get(ino uint64) (Entry, error) {
	e, epoch, ok := c.mem.get(ino)
	if ok {
		return e, nil
	}
	err := c.db.View(func(txn *badger.Txn) error {
		var err error
		e, err = getEntry(txn, ino)
		return err
	})
	if err == nil {
		c.mem.fill(e, epoch)
	}
	return e, err
}

// Lookup returns the child called name of directory parent.
func (c *Cache) Lookup(parent uint64, name string) (Entry, error) {
	var e Entry
	err := c.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(childKey(parent, name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%q in inode %d: %w", name, parent, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("look up %q in inode %d: %w", name, parent, err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil || len(v) != 8 {
			return fmt.Errorf("look up %q in inode %d: bad child record", name, parent)
		}
		e, err = getEntry(txn, beUint64(v))
		return err
	})
	return e, err
}

// Children returns the entries of a directory in name order.
func (c *Cache) Children(dir uint64) ([]Entry, error) {
	var out []Entry
	err := c.db.View(func(txn *badger.Txn) error {
		var err error
		out, err = children(txn, dir)
		return err
	})
	return out, err
}

func children(txn *badger.Txn, dir uint64) ([]Entry, error) {
	var inos []uint64
	prefix := childPrefix(dir)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
	for it.Rewind(); it.Valid(); it.Next() {
		err := it.Item().Value(func(v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("inode %d: bad child record", dir)
			}
			inos = append(inos, beUint64(v))
			return nil
		})
		if err != nil {
			it.Close()
			return nil, err
		}
	}
	it.Close()
	out := make([]Entry, 0, len(inos))
	for _, ino := range inos {
		e, err := getEntry(txn, ino)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Path returns the target path of an entry ("" for the root).
func (c *Cache) Path(ino uint64) (string, error) {
	var names []string
	err := c.db.View(func(txn *badger.Txn) error {
		for depth := 0; ino != RootIno; depth++ {
			if depth > maxDepth {
				return fmt.Errorf("inode %d: tree deeper than %d levels", ino, maxDepth)
			}
			e, err := getEntry(txn, ino)
			if err != nil {
				return err
			}
			names = append(names, e.Name)
			ino = e.Parent
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	for i, j := 0, len(names)-1; i < j; i, j = i+1, j-1 {
		names[i], names[j] = names[j], names[i]
	}
	return strings.Join(names, "/"), nil
}

// ApplyListing merges a fresh listing of directory dir into the tree: names
// that stay keep their inode numbers, new names get new ones, vanished names
// are removed with everything below them, and a file whose size or mtime
// changed (compared at the listing's precision) loses its cached content. It
// returns what changed; the first listing of a directory reports no
// additions, since nobody can have seen the directory's contents before.
func (c *Cache) ApplyListing(dir uint64, list []target.Entry, now time.Time) ([]Change, error) {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()

	var parent Entry
	var old []Entry
	err := c.db.View(func(txn *badger.Txn) error {
		var err error
		if parent, err = getEntry(txn, dir); err != nil {
			return err
		}
		if !parent.IsDir {
			return fmt.Errorf("inode %d: %w", dir, ErrNotDir)
		}
		old, err = children(txn, dir)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("apply listing: %w", err)
	}
	firstListing := parent.ListedAt.IsZero()
	if !firstListing && (c.journalLen.Load() > 0 || now.Sub(c.dirChanged[dir]) < listingGrace) {
		// Local changes are on their way to the server: until they arrive,
		// the server's tree is older than the mount's and a listing would
		// bring back what was just renamed or deleted. A listing of a
		// folder changed here moments ago may have been taken before the
		// change reached the server, so it is not trusted either. The
		// listing is taken up again later (the poller's job).
		return nil, c.touchListed(parent, now)
	}
	byName := make(map[string]Entry, len(old))
	for _, e := range old {
		byName[e.Name] = e
	}

	var changes []Change
	var removed, contentChanged, writes []Entry
	listed := make(map[string]bool, len(list))
	for _, te := range list {
		if target.ValidName(te.Name) != nil || listed[te.Name] {
			continue
		}
		listed[te.Name] = true
		prev, ok := byName[te.Name]
		if ok && prev.localOwned() {
			continue
		}
		if ok && prev.IsDir != te.IsDir {
			removed = append(removed, prev)
			changes = append(changes, Change{Kind: ChangeRemoved, Parent: dir, Name: prev.Name, Ino: prev.Ino})
			ok = false
		}
		if !ok {
			ino, err := c.nextIno()
			if err != nil {
				return changes, err
			}
			e := fromTarget(te, ino, dir, now)
			writes = append(writes, e)
			if !firstListing {
				changes = append(changes, Change{Kind: ChangeAdded, Parent: dir, Name: e.Name, Ino: ino})
			}
			continue
		}
		next := fromTarget(te, prev.Ino, dir, now)
		next.ListedAt, next.Gen = prev.ListedAt, prev.Gen
		switch {
		case !te.IsDir && contentDiffers(prev, next):
			next.Gen++
			contentChanged = append(contentChanged, next)
			changes = append(changes, Change{Kind: ChangeContent, Parent: dir, Name: next.Name, Ino: next.Ino})
		case prev.Mode != next.Mode || prev.Size != next.Size || !prev.ModTime.Equal(next.ModTime) || prev.Precision != next.Precision:
			writes = append(writes, next)
			changes = append(changes, Change{Kind: ChangeAttr, Parent: dir, Name: next.Name, Ino: next.Ino})
		}
	}
	for _, e := range old {
		// Children of a folder never listed were all made here (a change
		// lists its folder first): the server may not have them yet.
		if !listed[e.Name] && !e.localOwned() && !firstListing {
			removed = append(removed, e)
			changes = append(changes, Change{Kind: ChangeRemoved, Parent: dir, Name: e.Name, Ino: e.Ino})
		}
	}

	if err := c.removeSubtrees(removed); err != nil {
		return changes, err
	}
	for _, e := range contentChanged {
		if err := c.replaceContent(e); err != nil {
			return changes, err
		}
	}
	parent.ListedAt = now
	writes = append(writes, parent)
	wb := c.db.NewWriteBatch()
	defer wb.Cancel()
	for _, e := range writes {
		if err := wb.Set(entryKey(e.Ino), e.marshal()); err != nil {
			return changes, fmt.Errorf("apply listing of inode %d: %w", dir, err)
		}
		if e.Ino != RootIno {
			if err := wb.Set(childKey(e.Parent, e.Name), beBytes(e.Ino)); err != nil {
				return changes, fmt.Errorf("apply listing of inode %d: %w", dir, err)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return changes, fmt.Errorf("apply listing of inode %d: %w", dir, err)
	}
	for _, e := range writes {
		c.mem.put(e)
	}
	return changes, nil
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

// listingGrace is how long after a local change in a folder a listing of it
// is not applied: one begun before the change reached the server would
// undo it in the cache. It exceeds the time a listing may take.
const listingGrace = 45 * time.Second

// localOwned reports whether the mount's side decides what the entry is:
// its content lives locally, or it is not on the server yet. A listing
// neither replaces nor removes such an entry; the poller classifies it.
func (e Entry) localOwned() bool { return e.Local || e.Dirty || !e.OnServer || e.Upload != 0 }

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

// contentDiffers applies DESIGN.md's rule: a different size, or an mtime
// that differs at the coarser of the two precisions.
func contentDiffers(a, b Entry) bool {
	if a.Size != b.Size {
		return true
	}
	p := max(a.Precision, b.Precision, time.Second)
	return !a.ModTime.Truncate(p).Equal(b.ModTime.Truncate(p))
}

// replaceContent stores a file's new remote state and drops its blocks in
// one transaction, under the file's stripe so that no fetch of the old
// content can store a block afterwards.
func (c *Cache) replaceContent(e Entry) error {
	mu := c.stripe(e.Ino)
	mu.Lock()
	defer mu.Unlock()
	err := c.db.Update(func(txn *badger.Txn) error {
		idxs, err := blockIndexes(txn, e.Ino)
		if err != nil {
			return err
		}
		for _, idx := range idxs {
			if err := txn.Delete(blockKey(e.Ino, idx)); err != nil {
				return err
			}
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

// removeSubtrees deletes entries, everything below them and their content.
// All stripes are held so that no fetch stores a block of a removed file.
func (c *Cache) removeSubtrees(tops []Entry) error {
	if len(tops) == 0 {
		return nil
	}
	for i := range c.stripes {
		c.stripes[i].Lock()
		defer c.stripes[i].Unlock()
	}
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
	for _, e := range all {
		if err := wb.Delete(entryKey(e.Ino)); err != nil {
			return fmt.Errorf("remove inode %d: %w", e.Ino, err)
		}
		if err := wb.Delete(childKey(e.Parent, e.Name)); err != nil {
			return fmt.Errorf("remove inode %d: %w", e.Ino, err)
		}
		for _, idx := range blocks[e.Ino] {
			if err := wb.Delete(blockKey(e.Ino, idx)); err != nil {
				return fmt.Errorf("remove inode %d: %w", e.Ino, err)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("remove subtree: %w", err)
	}
	for _, e := range all {
		c.mem.drop(e.Ino)
		c.forgetContent(e.Ino)
	}
	return nil
}

func beBytes(v uint64) []byte {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	return b
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, x := range b[:8] {
		v = v<<8 | uint64(x)
	}
	return v
}
