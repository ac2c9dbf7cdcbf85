package cache

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// What the write-back runner (sync/) asks of the cache: start an operation,
// record its result, settle a conflict. Each is one transaction under
// treeMu, so the runner and the mount's own changes never interleave
// inside one.

// Errors StartOp returns.
var (
	ErrGone = errors.New("operation withdrawn")      // superseded or its entry is gone: forget it
	ErrBusy = errors.New("file is open for writing") // try again once it is closed
)

// StartOp marks operation seq as started and returns it with its entry (for
// an upload: the file, which from now on counts as on the server, so that
// later renames and deletes are sent after the upload). A file still open
// for writing is not uploaded (ErrBusy) unless evenOpen (an fsync waits).
//
// For an upload it also adds the file's size and mtime to the upload notes
// of its path, in the same transaction, and returns what it noted (nil if
// nothing, as NoteUpload on a nearly full disk): what the server will show
// once the upload is done.
func (c *Cache) StartOp(seq uint64, evenOpen bool) (Op, Entry, *SideState, error) {
	canNote := !c.diskLow()
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	var s Started
	err := c._update(func(t *tx) error {
		var err error
		if s, err = t.startOp(seq, evenOpen, canNote); err == nil && (s.Op.Seq == 0 || errors.Is(s.Err, ErrBusy)) {
			// Not in the journal, or busy: nothing was written.
			return s.Err
		}
		return err
	})
	if err != nil {
		return s.Op, s.Entry, nil, err
	}
	if s.Err != nil {
		return s.Op, s.Entry, nil, s.Err
	}
	return s.Op, s.Entry, s.Noted, nil
}

// Started is what StartOps tells of one operation: as StartOp returns it,
// with Err ErrGone or ErrBusy where it did not start.
type Started struct {
	Op    Op
	Entry Entry
	Noted *SideState
	Err   error
}

// startOp is StartOp within t. An operation that did not start has Err
// set (ErrGone with a zero Op: it was not in the journal; ErrGone with
// the Op: its file is gone and it was finished; ErrBusy); the error
// returned is the transaction's.
func (t *tx) startOp(seq uint64, evenOpen, canNote bool) (Started, error) {
	c := t.c
	o, ok, err := t.hasOp(seq)
	if err != nil {
		return Started{}, err
	} else if !ok {
		return Started{Err: ErrGone}, nil
	}
	s := Started{Op: o}
	if o.Kind != OpUpload {
		return s, nil
	}
	if !evenOpen && c.OpenForWrite(o.Ino) {
		s.Err = ErrBusy
		return s, nil
	}
	e, err := t.get(o.Ino)
	if errors.Is(err, ErrNotFound) || err == nil && (e.Parent == 0 || !e.Local) {
		s.Entry, s.Err = e, ErrGone
		return s, t.finish(seq)
	}
	if err != nil {
		return s, err
	}
	s.Entry = e
	if canNote {
		if fi, err := os.Stat(c.localPath(e.Ino)); err == nil {
			n := SideState{Size: fi.Size(), ModTime: e.ModTime, Precision: e.Precision}
			if err := addNoteTxn(t.txn, o.Path, n); err != nil {
				return s, err
			}
			s.Noted = &n
		}
	}
	if e.Upload == seq {
		e.Upload, e.OnServer = 0, true
		return s, t.put(e)
	}
	return s, nil
}

// FinishOp deletes a done operation from the journal.
func (c *Cache) FinishOp(seq uint64) error {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	return c._update(func(t *tx) error { return t.finish(seq) })
}

func (t *tx) finish(seq uint64) error {
	if _, ok, err := t.hasOp(seq); err != nil || !ok {
		return err
	}
	t.removed = append(t.removed, seq)
	return t.txn.Delete(journalKey(seq))
}

// FinishUpload records a finished upload: the local file as it was sent
// (gen and local) and the server's entry afterwards become the last-synced
// state, and the file is clean unless it changed during the upload. What
// the server shows at notePath becomes its upload note (NoteUpload with
// done), in the same transaction.
func (c *Cache) FinishUpload(seq, ino, gen uint64, local SideState, remote target.Entry, notePath string) error {
	note := !c.diskLow()
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	return c._update(func(t *tx) error {
		return t.finishUpload(Finished{Seq: seq, Ino: ino, Gen: gen, Local: local, Remote: remote, NotePath: notePath}, note)
	})
}

// Finished is one operation StartOps started and the runner carried out:
// an upload (Ino set) as FinishUpload records it, or any other operation
// (Ino zero), which FinishOp ends.
type Finished struct {
	Seq, Ino, Gen uint64
	Local         SideState
	Remote        target.Entry
	NotePath      string
}

func (t *tx) finishUpload(f Finished, note bool) error {
	remoteSide := SideState{Size: f.Remote.Size, ModTime: f.Remote.ModTime.UTC(), Precision: f.Remote.Precision}
	if note {
		if err := t.txn.Set(noteKey(f.NotePath), marshalNotes([]SideState{remoteSide})); err != nil {
			return err
		}
	}
	e, live, err := t.finishLive(f.Seq, f.Ino)
	if !live {
		return err
	}
	e.Synced, e.SyncLocal, e.SyncRemote = true, f.Local, remoteSide
	e.Seen = time.Now().UTC()
	// A change during the upload was judged against the older record.
	e.Grown = e.LocalGen == f.Gen
	if e.LocalGen == f.Gen && e.Upload == 0 {
		e.Dirty = false
	}
	return t.put(e)
}

// finishLive ends operation seq and returns its file's entry; live is
// false when the file is gone (deleted, or unlinked while open).
func (t *tx) finishLive(seq, ino uint64) (e Entry, live bool, err error) {
	if err := t.finish(seq); err != nil {
		return Entry{}, false, err
	}
	e, err = t.get(ino)
	if errors.Is(err, ErrNotFound) || err == nil && e.Parent == 0 {
		return e, false, nil
	}
	return e, err == nil, err
}

// KeepBoth settles a conflict of kind found before uploading file ino:
// the server's version keeps the name (a new entry served from the server),
// the local version moves to conflictName beside it and is queued for
// upload under that name, and the conflict is recorded until resolved. It
// returns the changes for the kernel.
func (c *Cache) KeepBoth(seq, ino uint64, kind ConflictKind, conflictName string, remote target.Entry, now time.Time) ([]Change, error) {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	var changes []Change
	err := c._update(func(t *tx) error {
		changes = nil
		if err := t.finish(seq); err != nil {
			return err
		}
		e, err := t.get(ino)
		if err != nil {
			return err
		}
		if e.Parent == 0 {
			return nil
		}
		if _, err := lookupTxn(t.txn, e.Parent, conflictName); err == nil {
			return fmt.Errorf("keep both: %q: %w", conflictName, ErrExist)
		}
		newIno, err := c.nextIno()
		if err != nil {
			return err
		}
		remote.Name = e.Name
		srv := fromTarget(remote, newIno, e.Parent, now)
		c.fresh.forget(e.Parent)
		if err := t.txn.Set(childKey(e.Parent, e.Name), beBytes(newIno)); err != nil {
			return err
		}
		if err := t.put(srv); err != nil {
			return err
		}
		changes = append(changes, Change{Kind: ChangeRemoved, Parent: e.Parent, Name: e.Name, Ino: e.Ino},
			Change{Kind: ChangeAdded, Parent: e.Parent, Name: conflictName, Ino: e.Ino},
			Change{Kind: ChangeAdded, Parent: e.Parent, Name: e.Name, Ino: newIno})
		pp, err := t.path(e.Parent)
		if err != nil {
			return err
		}
		rec := ConflictRecord{Path: target.Join(pp, srv.Name), Copy: target.Join(pp, conflictName), Kind: kind,
			Local:  SideState{Size: e.Size, ModTime: e.ModTime, Precision: e.Precision},
			Remote: SideState{Size: remote.Size, ModTime: remote.ModTime.UTC(), Precision: remote.Precision}, At: now.UTC()}
		if err := t.addConflict(rec); err != nil {
			return err
		}
		e.Name, e.OnServer, e.Synced, e.Upload, e.Grown = conflictName, false, false, 0, false
		if err := t.txn.Set(childKey(e.Parent, conflictName), beBytes(e.Ino)); err != nil {
			return err
		}
		return t.changed(e)
	})
	if err != nil {
		return nil, fmt.Errorf("keep both versions of inode %d: %w", ino, err)
	}
	return changes, nil
}

// Requeue queues a fresh upload of a local file, for when the server lost
// what an operation expected to find there (a rename whose source is gone).
func (c *Cache) Requeue(ino uint64) error {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	return c._update(func(t *tx) error {
		e, err := t.get(ino)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if e.IsDir || !e.Local || e.Parent == 0 {
			return nil
		}
		e.OnServer, e.Grown = false, false
		return t.changed(e)
	})
}

// TakeRemote settles a conflict found before uploading file ino in the
// server's favour (--resolve remote): the operation ends and the local
// version gives way to the server's, remote, or to nothing where the
// server deleted the file. A file open through the mount waits (ErrBusy).
// It returns the changes for the kernel.
func (c *Cache) TakeRemote(seq, ino uint64, remote *target.Entry, now time.Time) ([]Change, error) {
	c.treeMu.Lock()
	defer c.treeMu.Unlock()
	if remote != nil {
		// Held throughout, so that OpenLocal never opens the local copy as
		// it goes (see _revertLocal).
		c.open.mu.Lock()
		defer c.open.mu.Unlock()
		if c.open.m[ino] != nil {
			return nil, ErrBusy
		}
	}
	var changes []Change
	err := c._update(func(t *tx) error {
		changes = nil
		e, live, err := t.finishLive(seq, ino)
		if !live {
			return err
		}
		if remote == nil {
			changes = append(changes, Change{Kind: ChangeRemoved, Parent: e.Parent, Name: e.Name, Ino: e.Ino})
			return t.drop(e)
		}
		if err := t.unqueue(e.Upload); err != nil {
			return err
		}
		next := fromTarget(*remote, e.Ino, e.Parent, now)
		next.Name, next.Gen = e.Name, e.Gen+1
		t.files = append(t.files, e.Ino)
		changes = append(changes, Change{Kind: ChangeContent, Parent: e.Parent, Name: e.Name, Ino: e.Ino})
		return t.put(next)
	})
	if err != nil {
		return nil, fmt.Errorf("take the server's version of inode %d: %w", ino, err)
	}
	c.forgetContent(ino)
	return changes, nil
}
