package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// The write-back journal: every change the server must learn of, in the
// order the mount made it (DESIGN.md invariant 4). Each operation is one key
// j<seq>; it is written in the same Badger transaction as the tree change
// that caused it, so the two can never disagree after a crash, and it is
// deleted only once the server has it. The runner in sync/ carries them out.
//
// Coalescing happens here, at the source: a file's queued upload that has not
// started moves to the journal's end when the file changes or moves again
// (one upload, under the final name), and disappears when the file is
// deleted; a file never uploaded is renamed and deleted without any
// operation at all.

// OpKind says what an operation does on the server.
type OpKind uint8

// The operations.
const (
	OpUpload OpKind = iota + 1 // store the file Ino's current content at Path
	OpMkdir                    // create the folder Path
	OpRmdir                    // remove the empty folder Path
	OpRemove                   // delete the file Path, unless the server changed it since Record
	OpRename                   // rename Path to To (a file or a whole folder)
)

var opNames = [...]string{"", "upload", "mkdir", "rmdir", "delete", "rename"}

func (k OpKind) String() string {
	if int(k) < len(opNames) {
		return opNames[k]
	}
	return "unknown"
}

// Op is one journal operation.
type Op struct {
	Seq  uint64
	Kind OpKind
	Ino  uint64 // the entry concerned (0 if it is gone)
	Path string // target path when the operation was queued
	To   string // OpRename: the new path
	// Synced and Record are, for OpRemove, the server's state at the last
	// sync of the deleted file, so that a file changed on the server since
	// is kept rather than deleted.
	Synced bool
	Record SideState
	// Queued is when the operation was queued (our clock).
	Queued time.Time
}

// Paths returns the paths the operation touches.
func (o Op) Paths() []string {
	if o.Kind == OpRename {
		return []string{o.Path, o.To}
	}
	return []string{o.Path}
}

func (o Op) String() string {
	if o.Kind == OpRename {
		return fmt.Sprintf("%s /%s to /%s", o.Kind, o.Path, o.To)
	}
	return fmt.Sprintf("%s /%s", o.Kind, o.Path)
}

const opVersion = 1

func journalKey(seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixJournal
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func (o Op) marshal() []byte {
	b := []byte{opVersion, byte(o.Kind)}
	b = binary.AppendUvarint(b, o.Ino)
	b = binary.AppendUvarint(b, uint64(len(o.Path)))
	b = append(b, o.Path...)
	b = binary.AppendUvarint(b, uint64(len(o.To)))
	b = append(b, o.To...)
	var synced byte
	if o.Synced {
		synced = 1
	}
	b = append(b, synced)
	b = binary.AppendVarint(b, o.Record.Size)
	b = appendTime(b, o.Record.ModTime)
	b = binary.AppendVarint(b, int64(o.Record.Precision))
	return appendTime(b, o.Queued)
}

var errBadOp = errors.New("bad journal operation")

func unmarshalOp(seq uint64, b []byte) (Op, error) {
	if len(b) < 2 || b[0] != opVersion {
		return Op{}, fmt.Errorf("journal operation %d: %w", seq, errBadOp)
	}
	o := Op{Seq: seq, Kind: OpKind(b[1])}
	r := &recordReader{b: b[2:]}
	o.Ino = r.uvarint()
	o.Path = string(r.bytes(r.uvarint()))
	o.To = string(r.bytes(r.uvarint()))
	s := r.bytes(1)
	o.Synced = len(s) == 1 && s[0] == 1
	o.Record.Size = r.varint()
	o.Record.ModTime = r.time()
	o.Record.Precision = time.Duration(r.varint())
	o.Queued = r.time()
	if r.err != nil || o.Kind < OpUpload || o.Kind > OpRename {
		return Op{}, fmt.Errorf("journal operation %d: %w", seq, errBadOp)
	}
	return o, nil
}

// JournalEvent tells the runner what changed in the journal. It is called
// with the tree lock held, in journal order, and must not block or call
// back into the cache.
type JournalEvent struct {
	Added   []Op
	Removed []uint64 // operations withdrawn before they started
	// Touched are queued uploads whose file was committed again at At
	// without moving in the journal (each was its newest operation, so
	// moving it to the end would change nothing): due Delay after At now.
	Touched []uint64
	At      time.Time
	Wake    bool // something else changed (a file was closed)
}

// SetJournalHook sets the function told of journal changes (nil: none).
func (c *Cache) SetJournalHook(f func(JournalEvent)) {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	c.hook = f
}

// AttachJournal sets the hook and returns the queued operations, both under
// the tree lock, so that every operation is either returned or told.
func (c *Cache) AttachJournal(f func(JournalEvent)) ([]Op, error) {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	c.hook = f
	return c.Journal()
}

// _emit tells the hook; c.treeMu is held.
func (c *Cache) _emit(ev JournalEvent) {
	if c.hook != nil && (len(ev.Added) > 0 || len(ev.Removed) > 0 || len(ev.Touched) > 0 || ev.Wake) {
		c.hook(ev)
	}
}

// loadJournal finds the next sequence number, counts the operations and
// indexes their paths (inflight.go); a damaged operation is counted but
// indexes nothing (Journal skips it too).
func (c *Cache) loadJournal() error {
	return c.db.View(func(txn *badger.Txn) error {
		var n int64
		err := scanJournal(txn, func(o Op, err error) {
			c.nextSeq = max(c.nextSeq, o.Seq+1)
			n++
			if err == nil {
				c.flight.add(o)
			}
		})
		c.journalLen.Store(n)
		return err
	})
}

// Journal returns every queued operation in order.
func (c *Cache) Journal() ([]Op, error) {
	var out []Op
	err := c.db.View(func(txn *badger.Txn) error {
		return scanJournal(txn, func(o Op, err error) {
			if err != nil {
				c.log.WithError(err).Error("skipping a damaged journal operation")
				return
			}
			out = append(out, o)
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read the write-back journal: %w", err)
	}
	return out, nil
}

// scanJournal calls f with every queued operation in order, and the error
// of one that cannot be decoded (its Seq is set all the same).
func scanJournal(txn *badger.Txn, f func(o Op, err error)) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixJournal}, PrefetchValues: true})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != 9 {
			continue
		}
		seq := binary.BigEndian.Uint64(k[1:])
		err := it.Item().Value(func(v []byte) error {
			o, err := unmarshalOp(seq, v)
			o.Seq = seq
			f(o, err)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// JournalLen is the number of queued operations.
func (c *Cache) JournalLen() int64 { return c.journalLen.Load() }

// tx is one change of the tree and the journal, committed together.
// Entries are written through put so that the in-memory copies follow.
type tx struct {
	c       *Cache
	txn     *badger.Txn
	puts    map[uint64]Entry
	drops   []uint64
	added   []Op
	removed []uint64
	touched []uint64  // JournalEvent.Touched
	made    []Entry   // new names, for c.fresh after the commit
	at      time.Time // of touched
	files   []uint64  // local files to delete after the commit
}

// _update runs f in one Badger transaction and, after it committed, updates
// the in-memory state and tells the runner; c.treeMu is held.
func (c *Cache) _update(f func(t *tx) error) error {
	t := &tx{c: c, puts: make(map[uint64]Entry)}
	err := c.db.Update(func(txn *badger.Txn) error {
		t.txn = txn
		t.puts, t.drops, t.added, t.removed, t.files = make(map[uint64]Entry), nil, nil, nil, nil
		return f(t)
	})
	if err != nil {
		return err
	}
	for _, e := range t.puts {
		c.mem.put(e)
	}
	for _, ino := range t.drops {
		c.mem.drop(ino)
		c.dropContent(ino)
	}
	for _, ino := range t.files {
		c.removeLocalFile(ino)
	}
	for _, o := range t.added {
		c.flight.add(o)
	}
	for _, seq := range t.removed {
		c.flight.end(seq)
	}
	c.journalLen.Add(int64(len(t.added) - len(t.removed)))
	for _, e := range t.made {
		c.fresh.made(e)
	}
	c._emit(JournalEvent{Added: t.added, Removed: t.removed, Touched: t.touched, At: t.at})
	return nil
}

// get reads an entry as this transaction sees it: its own puts, then the
// in-memory copies, which under treeMu equal what Badger holds (every
// change of an entry commits under treeMu and updates them after), then
// Badger. A commit at close walks the file's folders up to the root for
// its path; from memory that costs no Badger read per level.
func (t *tx) get(ino uint64) (Entry, error) {
	if e, ok := t.puts[ino]; ok {
		return e, nil
	}
	if slices.Contains(t.drops, ino) {
		return Entry{}, fmt.Errorf("inode %d: %w", ino, ErrNotFound)
	}
	if e, _, ok := t.c.mem.get(ino); ok {
		return e, nil
	}
	return getEntry(t.txn, ino)
}

// path is pathTxn through get.
func (t *tx) path(ino uint64) (string, error) {
	return pathWith(t.get, ino)
}

func (t *tx) put(e Entry) error {
	t.puts[e.Ino] = e
	return t.txn.Set(entryKey(e.Ino), e.marshal())
}

// queue appends an operation to the journal.
func (t *tx) queue(o Op) (uint64, error) {
	o.Seq = t.c.nextSeq
	t.c.nextSeq++
	if o.Queued.IsZero() {
		o.Queued = time.Now().UTC()
	}
	if err := t.txn.Set(journalKey(o.Seq), o.marshal()); err != nil {
		return 0, err
	}
	t.added = append(t.added, o)
	return o.Seq, nil
}

// unqueue withdraws an operation that has not started.
func (t *tx) unqueue(seq uint64) error {
	if seq == 0 {
		return nil
	}
	if err := t.txn.Delete(journalKey(seq)); err != nil {
		return err
	}
	t.removed = append(t.removed, seq)
	return nil
}

// requeueUpload queues (or moves to the end) the upload of file e, now at
// path p, and returns the entry with its new Upload sequence.
func (t *tx) requeueUpload(e Entry, p string) (Entry, error) {
	if u := e.Upload; u != 0 && u == t.c.nextSeq-1 && !slices.Contains(t.removed, u) {
		// The journal's newest operation already, for this path, and
		// not started (StartOp clears Upload): moving it to the end
		// changes nothing. A file closed right after it was created
		// (tar x) saves a delete and a write in the journal.
		if ps := t.c.flight.ops[u]; len(ps) == 1 && ps[0] == p {
			t.touched, t.at = append(t.touched, u), time.Now().UTC()
			return e, nil
		}
	}
	if err := t.unqueue(e.Upload); err != nil {
		return e, err
	}
	seq, err := t.queue(Op{Kind: OpUpload, Ino: e.Ino, Path: p})
	if err != nil {
		return e, err
	}
	e.Upload = seq
	return e, nil
}

// hasOp reports whether the operation is still in the journal.
func (t *tx) hasOp(seq uint64) (Op, bool, error) {
	item, err := t.txn.Get(journalKey(seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Op{}, false, nil
	}
	if err != nil {
		return Op{}, false, err
	}
	var o Op
	err = item.Value(func(v []byte) error {
		var derr error
		o, derr = unmarshalOp(seq, v)
		return derr
	})
	return o, err == nil, err
}
