package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Upload notes: what the mount's own uploads left, or were about to leave,
// at a server path. A kill -9 between an upload's rename on the server and
// the journal's record of it (FinishUpload) leaves the next mount seeing a
// server file that matches no record; the note, written before the upload
// starts, lets it recognise its own upload instead of calling it a change
// made elsewhere (the mount's counterpart of sync's transfer intents). The
// notes only matter while operations are queued: the runner clears them
// when the journal is empty, since every record then covers the server.
//
//	u<path>            the notes of one server path

const prefixUploadNote = 'u'

// maxNotes bounds the notes of one path: the last finished upload and the
// attempts started after it.
const maxNotes = 3

const noteVersion = 1

func noteKey(p string) []byte { return append([]byte{prefixUploadNote}, p...) }

func marshalNotes(ss []SideState) []byte {
	b := []byte{noteVersion, byte(len(ss))}
	for _, s := range ss {
		b = binary.AppendVarint(b, s.Size)
		b = appendTime(b, s.ModTime)
		b = binary.AppendVarint(b, int64(s.Precision))
	}
	return b
}

var errBadNote = errors.New("bad upload note")

func unmarshalNotes(b []byte) ([]SideState, error) {
	if len(b) < 2 || b[0] != noteVersion || int(b[1]) > maxNotes {
		return nil, errBadNote
	}
	r := &recordReader{b: b[2:]}
	ss := make([]SideState, int(b[1]))
	for i := range ss {
		ss[i].Size = r.varint()
		ss[i].ModTime = r.time()
		ss[i].Precision = time.Duration(r.varint())
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, errBadNote
	}
	return ss, nil
}

func notesTxn(txn *badger.Txn, p string) ([]SideState, error) {
	item, err := txn.Get(noteKey(p))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ss []SideState
	err = item.Value(func(v []byte) error {
		var derr error
		ss, derr = unmarshalNotes(v)
		return derr
	})
	if errors.Is(err, errBadNote) {
		return nil, nil // a damaged note is no note: the path is classified as usual
	}
	return ss, err
}

// UploadNotes returns what the mount's own uploads left, or were about to
// leave, at server path p, newest last.
func (c *Cache) UploadNotes(p string) ([]SideState, error) {
	var ss []SideState
	err := c.db.View(func(txn *badger.Txn) error {
		var err error
		ss, err = notesTxn(txn, p)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read the upload notes of /%s: %w", p, err)
	}
	return ss, nil
}

// NoteUpload adds s to the notes of server path p before an upload there
// starts; FinishUpload replaces them with what the finished upload left.
//
// On a nearly full cache disk it notes nothing: Badger's log is a memory
// mapping, and a write into a page the disk has no room for kills the
// process (SIGBUS). Without the note a kill may give a needless conflict
// copy, never a lost write.
func (c *Cache) NoteUpload(p string, s SideState) error {
	if c.diskLow() {
		return nil
	}
	err := c.db.Update(func(txn *badger.Txn) error { return addNoteTxn(txn, p, s) })
	if err != nil {
		return fmt.Errorf("note the upload of /%s: %w", p, err)
	}
	return nil
}

// addNoteTxn adds s to the notes of p, keeping the last maxNotes.
func addNoteTxn(txn *badger.Txn, p string, s SideState) error {
	old, err := notesTxn(txn, p)
	if err != nil {
		return err
	}
	ss := append(old, s)
	if len(ss) > maxNotes {
		ss = ss[len(ss)-maxNotes:]
	}
	return txn.Set(noteKey(p), marshalNotes(ss))
}

// MoveUploadNotes follows a rename on the server of from (a file or a
// folder) to to, or its deletion when to is "".
//
// On a nearly full disk it leaves them (see NoteUpload): a note at a path
// the file left only ever matches that file's exact size and mtime.
func (c *Cache) MoveUploadNotes(from, to string) error {
	if c.diskLow() {
		return nil
	}
	// An update that finds nothing writes nothing.
	err := c.db.Update(func(txn *badger.Txn) error {
		type kv struct {
			rest string
			v    []byte
		}
		var found []kv
		prefix := noteKey(from)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true})
		for it.Rewind(); it.Valid(); it.Next() {
			rest := string(it.Item().Key()[len(prefix):])
			if rest != "" && rest[0] != '/' {
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				it.Close()
				return err
			}
			found = append(found, kv{rest, v})
		}
		it.Close()
		for _, f := range found {
			if err := txn.Delete(noteKey(from + f.rest)); err != nil {
				return err
			}
		}
		if to == "" {
			return nil
		}
		for _, f := range found {
			if err := txn.Set(noteKey(to+f.rest), f.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("move the upload notes of /%s: %w", from, err)
	}
	return nil
}

// ClearUploadNotes drops every note; the runner calls it when the journal
// is empty and nothing runs. Notes are few (one per path uploaded since the
// journal was last empty), so they are deleted in bounded transactions.
func (c *Cache) ClearUploadNotes() error {
	if c.diskLow() {
		return nil // the next remount clears them
	}
	const batch = 1000
	for range 1 << 20 {
		var keys [][]byte
		err := c.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixUploadNote}})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < batch; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err == nil && len(keys) > 0 {
			err = c.db.Update(func(txn *badger.Txn) error {
				for _, k := range keys {
					if err := txn.Delete(k); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("clear the upload notes: %w", err)
		}
		if len(keys) < batch {
			return nil
		}
	}
	return nil
}

// noteHeadroom is the free space below which no note is written.
const noteHeadroom = 4 << 20

// diskLow reports whether the cache's disk has less than noteHeadroom free.
func (c *Cache) diskLow() bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.dir, &st); err != nil {
		return true
	}
	return int64(st.Bavail)*st.Bsize < noteHeadroom
}
