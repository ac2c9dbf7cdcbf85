package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Conflicts the mount settled by keeping both versions (or the one version
// there was) stay recorded until the user resolves them, so that status
// lists them and user.ftpsync.state says "conflict".
//
//	x<path>\x00<copy>   one conflict record

const prefixConflict = 'x'

// ConflictKind says what happened; Resolve acts on it.
type ConflictKind uint8

const (
	// ConflictBothChanged: the file changed here and on the server; the
	// server's version kept the name, the local one is at Copy.
	ConflictBothChanged ConflictKind = iota + 1
	// ConflictBothNew: a new file here and a different new one of the same
	// name on the server; as ConflictBothChanged.
	ConflictBothNew
	// ConflictLocalChangedGone: changed here but deleted on the server; the
	// local version keeps its name and is uploaded again.
	ConflictLocalChangedGone
	// ConflictRemoteChangedGone: deleted here but changed on the server;
	// the server's version stays (and shows in the mount again).
	ConflictRemoteChangedGone
	// ConflictFolderKept: a folder deleted on the server holds files that
	// changed here; it stays with them and their uploads re-create it.
	ConflictFolderKept
	// ConflictFolderNotEmpty: a folder deleted here holds files on the
	// server that were not here; the server's folder stays.
	ConflictFolderNotEmpty
)

var conflictKindText = [...]string{"", "changed on both sides", "new on both sides and different",
	"changed here but deleted on the server", "deleted here but changed on the server",
	"folder deleted on the server while files in it changed here",
	"folder deleted here but holds other files on the server"}

func (k ConflictKind) String() string {
	if int(k) < len(conflictKindText) {
		return conflictKindText[k]
	}
	return "unknown conflict"
}

// MarshalText shows the kind as its description (status --json).
func (k ConflictKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a description MarshalText wrote.
func (k *ConflictKind) UnmarshalText(b []byte) error {
	for i, s := range conflictKindText {
		if i > 0 && s == string(b) {
			*k = ConflictKind(i)
			return nil
		}
	}
	return fmt.Errorf("unknown conflict kind %q", b)
}

// ConflictRecord is one unresolved conflict.
type ConflictRecord struct {
	Path   string       `json:"path"`           // the file or folder; the server's version where both were kept
	Copy   string       `json:"copy,omitempty"` // where the local version was saved, if it had to move
	Kind   ConflictKind `json:"kind"`
	Local  SideState    `json:"local"`  // the local version when the conflict was found
	Remote SideState    `json:"remote"` // the server's version then
	At     time.Time    `json:"at"`
}

const conflictVersion = 1

func conflictKey(path, cp string) []byte {
	k := append([]byte{prefixConflict}, path...)
	k = append(k, 0)
	return append(k, cp...)
}

func (r ConflictRecord) marshal() []byte {
	b := []byte{conflictVersion, byte(r.Kind)}
	for _, s := range []string{r.Path, r.Copy} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, s := range []SideState{r.Local, r.Remote} {
		b = binary.AppendVarint(b, s.Size)
		b = appendTime(b, s.ModTime)
		b = binary.AppendVarint(b, int64(s.Precision))
	}
	return appendTime(b, r.At)
}

var errBadConflict = errors.New("bad conflict record")

func unmarshalConflict(b []byte) (ConflictRecord, error) {
	if len(b) < 2 || b[0] != conflictVersion {
		return ConflictRecord{}, errBadConflict
	}
	r := ConflictRecord{Kind: ConflictKind(b[1])}
	rd := &recordReader{b: b[2:]}
	r.Path = string(rd.bytes(rd.uvarint()))
	r.Copy = string(rd.bytes(rd.uvarint()))
	for _, s := range []*SideState{&r.Local, &r.Remote} {
		s.Size = rd.varint()
		s.ModTime = rd.time()
		s.Precision = time.Duration(rd.varint())
	}
	r.At = rd.time()
	if rd.err != nil || r.Kind < ConflictBothChanged || r.Kind > ConflictFolderNotEmpty {
		return ConflictRecord{}, errBadConflict
	}
	return r, nil
}

// addConflict records a conflict in the transaction.
func (t *tx) addConflict(r ConflictRecord) error {
	return t.txn.Set(conflictKey(r.Path, r.Copy), r.marshal())
}

// AddConflict records a conflict the write-back settled without changing
// the tree (the server's version kept, say).
func (c *Cache) AddConflict(r ConflictRecord) error {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	return c._update(func(t *tx) error { return t.addConflict(r) })
}

// addConflictOnce records r unless a record of its path and copy exists
// (a folder kept round after round is one conflict); c.treeMu is held.
func (c *Cache) addConflictOnce(r ConflictRecord) error {
	return c._update(func(t *tx) error {
		if _, err := t.txn.Get(conflictKey(r.Path, r.Copy)); err == nil {
			return nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return t.addConflict(r)
	})
}

// Conflicts returns the unresolved conflicts in path order.
func (c *Cache) Conflicts() ([]ConflictRecord, error) {
	var out []ConflictRecord
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixConflict}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(v []byte) error {
				r, err := unmarshalConflict(v)
				if err != nil {
					c.log.WithError(err).Warn("skipping a damaged conflict record")
					return nil
				}
				out = append(out, r)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the conflicts: %w", err)
	}
	return out, nil
}

// InConflict reports whether entry ino is part of an unresolved conflict:
// the file (or folder) itself or a conflict copy. Its path is looked up
// only when there are conflicts.
func (c *Cache) InConflict(ino uint64) (bool, error) {
	rs, err := c.Conflicts()
	if err != nil || len(rs) == 0 {
		return false, err
	}
	p, err := c.Path(ino)
	if err != nil {
		return false, err
	}
	for _, r := range rs {
		if r.Path == p || (r.Copy != "" && r.Copy == p) {
			return true, nil
		}
	}
	return false, nil
}

// ErrNoConflict is returned by Resolve for a path with no recorded conflict.
var ErrNoConflict = errors.New("no unresolved conflict")

// Keep is what Resolve keeps.
type Keep int

// The choices of `ftpsync-mount resolve --keep`.
const (
	KeepLocal  Keep = iota + 1 // the local version wins
	KeepRemote                 // the server's version wins
	KeepBoth                   // both stay as they are
)

// ParseKeep reads a --keep value.
func ParseKeep(s string) (Keep, error) {
	switch s {
	case "local":
		return KeepLocal, nil
	case "remote":
		return KeepRemote, nil
	case "both":
		return KeepBoth, nil
	}
	return 0, fmt.Errorf("%q: use local, remote or both", s)
}

// Resolve settles the conflict recorded for path p (the file's path or its
// conflict copy's) through ordinary changes of the mount, which the
// write-back then sends: keeping the local version moves the conflict copy
// over the server's version (or deletes the server's where the local side
// had deleted it); keeping the server's deletes the conflict copy (or the
// local version the server had deleted); keeping both forgets the record.
//
// It returns the names the kernel must look up again (the mount changed
// them behind its back).
func (c *Cache) Resolve(p string, keep Keep) (ConflictRecord, []Change, error) {
	rs, err := c.Conflicts()
	if err != nil {
		return ConflictRecord{}, nil, err
	}
	var r ConflictRecord
	found := false
	for _, x := range rs {
		if x.Path == p || x.Copy != "" && x.Copy == p {
			r, found = x, true
			break
		}
	}
	if !found {
		return ConflictRecord{}, nil, fmt.Errorf("/%s: %w", p, ErrNoConflict)
	}
	var changes []Change
	for _, q := range []string{r.Path, r.Copy} {
		if e, err := c.LookupPath(q); q != "" && err == nil {
			changes = append(changes, Change{Kind: ChangeRemoved, Parent: e.Parent, Name: e.Name, Ino: e.Ino})
		}
	}
	switch {
	case keep == KeepBoth:
	case r.Copy != "" && keep == KeepLocal:
		err = c.renamePath(r.Copy, r.Path)
	case r.Copy != "" && keep == KeepRemote:
		err = c.removePath(r.Copy)
	case r.Kind == ConflictLocalChangedGone && keep == KeepRemote,
		r.Kind == ConflictFolderKept && keep == KeepRemote:
		err = c.removePath(r.Path)
	case r.Kind == ConflictRemoteChangedGone && keep == KeepLocal,
		r.Kind == ConflictFolderNotEmpty && keep == KeepLocal:
		// The server's version must be in the mount to be deleted through it.
		if _, err = c.LookupPath(r.Path); err == nil {
			err = c.removePath(r.Path)
		} else if errors.Is(err, ErrNotFound) {
			err = fmt.Errorf("the server's version is not in the mount yet (list the folder again, or wait for the next poll): %w", err)
		}
	}
	if err != nil {
		return r, changes, fmt.Errorf("resolve /%s: %w", p, err)
	}
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	err = c._update(func(t *tx) error { return t.txn.Delete(conflictKey(r.Path, r.Copy)) })
	if err != nil {
		return r, changes, fmt.Errorf("resolve /%s: %w", p, err)
	}
	return r, changes, nil
}

// LookupPath returns the entry at target path p ("" is the root).
func (c *Cache) LookupPath(p string) (Entry, error) {
	e, err := c.Get(RootIno)
	if p == "" || err != nil {
		return e, err
	}
	for _, name := range strings.Split(p, "/") {
		if e, err = c.Lookup(e.Ino, name); err != nil {
			return Entry{}, fmt.Errorf("/%s: %w", p, err)
		}
	}
	return e, nil
}

func (c *Cache) renamePath(from, to string) error {
	src, err := c.LookupPath(from)
	if err != nil {
		return err
	}
	dst, err := c.LookupPath(dirOf(to))
	if err != nil {
		return err
	}
	return c.Rename(src.Parent, src.Name, dst.Ino, target.Base(to), false)
}

// removePath deletes a file, or a folder with everything in it, as rm -r
// through the mount would.
func (c *Cache) removePath(p string) error {
	e, err := c.LookupPath(p)
	if errors.Is(err, ErrNotFound) {
		return nil // gone already
	}
	if err != nil {
		return err
	}
	if !e.IsDir {
		return c.Unlink(e.Parent, e.Name)
	}
	kids, err := c.Children(e.Ino)
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := c.removePath(target.Join(p, k.Name)); err != nil {
			return err
		}
	}
	return c.Rmdir(e.Parent, e.Name)
}

func dirOf(p string) string {
	d, _ := target.Split(p)
	return d
}
