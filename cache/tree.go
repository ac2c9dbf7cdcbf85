package cache

import (
	"errors"
	"fmt"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
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
	if ino, known := c.fresh.lookup(parent, name); known {
		if ino == 0 {
			return Entry{}, fmt.Errorf("%q in inode %d: %w", name, parent, ErrNotFound)
		}
		if e, err := c.Get(ino); err == nil && e.Parent == parent && e.Name == name {
			return e, nil
		}
	}
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
