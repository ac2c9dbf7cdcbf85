package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// do carries out one operation on the server and records it in the cache.
func (w *Writeback) do(ctx context.Context, st *opState, evenOpen bool) error {
	c, tg := w.opts.Cache, w.opts.Target
	o, e, noted, err := c.StartOp(st.op.Seq, evenOpen)
	if err != nil {
		return err
	}
	switch o.Kind {
	case cache.OpUpload:
		if noted != nil {
			w.notesSet()
		}
		return w.upload(ctx, st, o, e, noted)
	case cache.OpMkdir:
		err = tg.Mkdir(ctx, o.Path)
		if errors.Is(err, target.ErrExist) {
			var te target.Entry
			if te, err = tg.Stat(ctx, o.Path); err == nil && !te.IsDir {
				err = fmt.Errorf("mkdir /%s: a file of that name is on the server", o.Path)
			}
		}
	case cache.OpRmdir:
		err = tg.Rmdir(ctx, o.Path)
		switch {
		case errors.Is(err, target.ErrNotFound):
			err = nil
		case errors.Is(err, target.ErrNotEmpty):
			// Someone put files there meanwhile: never an rmtree (DESIGN.md),
			// whatever --resolve says; the next listing shows them again.
			const what = "the folder was deleted here but holds other files on the server; it is kept there"
			if w.choose(nil, nil) == winBoth {
				w.addConflict(cache.ConflictRecord{Path: o.Path, Kind: cache.ConflictFolderNotEmpty, At: w.opts.Now().UTC()})
			}
			w.conflict(o, what)
			err = nil
		}
		if err == nil {
			err = w.moveKnown(o.Path, "")
		}
	case cache.OpRemove:
		if err = w.remove(ctx, o); err == nil {
			err = w.moveKnown(o.Path, "")
		}
	case cache.OpRename:
		err = tg.Rename(ctx, o.Path, o.To)
		if err == nil {
			err = w.moveKnown(o.Path, o.To)
		}
		if errors.Is(err, target.ErrNotFound) {
			w.opts.Log.WithField("path", "/"+o.Path).Warn("renaming on the server: the source is gone there; uploading the local copy instead")
			err = c.Requeue(o.Ino)
		}
	default:
		err = fmt.Errorf("unknown journal operation %d", o.Kind)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	return c.FinishOp(o.Seq)
}

// remove deletes a file on the server unless the server changed it since
// the last sync (then it is a conflict and the server's version stays).
func (w *Writeback) remove(ctx context.Context, o cache.Op) error {
	tg := w.opts.Target
	if o.Synced {
		cur, err := tg.Stat(ctx, o.Path)
		if errors.Is(err, target.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		rec := &Record{Remote: sideOf(o.Record)}
		if ours, ok := w.knownAt(o.Path, cur); ok {
			rec.Remote = SideOf(ours)
		}
		d := Classify(Input{Remote: &cur, Record: rec, LocalDirty: DirtyNo})
		if d.Action == Conflict {
			// The deletion is the local version, made when it was queued.
			deleted := target.Entry{Name: cur.Name, ModTime: o.Queued}
			switch w.choose(&deleted, &cur) {
			case winLocal:
				w.conflict(o, d.Conflict.String()+"; the server's version is deleted (--resolve)")
			case winBoth:
				w.record(o, d, target.Entry{}, &cur, "the server's version is kept")
				return nil
			default:
				w.conflict(o, d.Conflict.String()+"; the server's version is kept (--resolve)")
				return nil
			}
		}
	}
	err := tg.Remove(ctx, o.Path)
	if errors.Is(err, target.ErrNotFound) {
		return nil
	}
	return err
}

func sideOf(s cache.SideState) Side {
	return Side{Size: s.Size, ModTime: s.ModTime, Precision: s.Precision}
}

// upload sends a file's local content, after checking with Classify that
// the server's copy did not change since the last sync.
func (w *Writeback) upload(ctx context.Context, st *opState, o cache.Op, e cache.Entry, noted *cache.SideState) error {
	c, tg := w.opts.Cache, w.opts.Target
	f, err := c.OpenContent(e.Ino)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("upload /%s: %w", o.Path, err)
	}
	size := fi.Size()
	local := target.Entry{Name: target.Base(o.Path), Size: size, ModTime: e.ModTime, Precision: e.Precision}
	remote, err := tg.Stat(ctx, o.Path)
	var rp *target.Entry
	switch {
	case err == nil:
		rp = &remote
	case !errors.Is(err, target.ErrNotFound):
		return fmt.Errorf("upload /%s: check the server's copy: %w", o.Path, err)
	}
	var rec *Record
	if e.Synced {
		rec = &Record{Local: sideOf(e.SyncLocal), Remote: sideOf(e.SyncRemote)}
	}
	if rp != nil {
		if ours, ok := w.knownAt(o.Path, remote); ok {
			// What is there is what our own earlier operation left; the
			// entry's record may predate it (it was replaced by a rename,
			// or deleted, while that operation ran).
			if rec == nil {
				rec = &Record{Local: SideOf(local)}
			}
			rec.Remote = SideOf(ours)
		}
	}
	if rp != nil && SameFile(local, *rp) && (local.Precision > 0 || remote.ModTime.Equal(local.ModTime)) {
		// Already there: an earlier upload finished but was not recorded
		// (a crash), or someone stored the very same file.
		return w.finishUpload(o, e, size, remote)
	}
	d := Classify(Input{Local: &local, Remote: rp, Record: rec, LocalDirty: DirtyYes})
	if d.Action == Conflict {
		switch w.choose(&local, rp) {
		case winRemote:
			return w.takeRemote(o, e, rp, d)
		case winBoth:
			if rp != nil {
				return w.keepBoth(o, e, remote, d)
			}
			// Deleted on the server: the local version, the only one,
			// keeps its name and is uploaded again.
			w.record(o, d, local, nil, "the local version is uploaded again")
		default:
			w.conflict(o, d.Conflict.String()+"; the local version is uploaded (--resolve)")
		}
	}
	if w.canAppend(e, d, rp, size) {
		return w.appendTail(ctx, st, o, e, f, size, noted)
	}
	return w.send(ctx, st, o, e, f, size, noted)
}

// send uploads the whole file. A folder the server lost meanwhile (deleted
// there while this file changed here) is made again first.
func (w *Writeback) send(ctx context.Context, st *opState, o cache.Op, e cache.Entry, f *os.File, size int64, noted *cache.SideState) error {
	tg := w.opts.Target
	if err := w.noteIntent(o.Path, size, e, noted); err != nil {
		return err
	}
	for try := 0; ; try++ {
		counter := &uploadCounter{r: io.NewSectionReader(f, 0, size)}
		w.mu.Lock()
		st.progress, st.size = counter, size
		w.mu.Unlock()
		got, err := tg.Write(ctx, o.Path, counter, target.WriteOptions{ModTime: e.ModTime, Size: size})
		if err == nil {
			w.mu.Lock()
			w.stats.bytes += size
			w.mu.Unlock()
			return w.finishUpload(o, e, size, got)
		}
		if try == 0 && errors.Is(err, target.ErrNotFound) {
			if made, merr := w.makeParents(ctx, o.Path); merr == nil && made {
				continue
			}
		}
		return fmt.Errorf("upload /%s: %w", o.Path, err)
	}
}

// makeParents creates the folders above p that the server lacks, and
// reports whether it made any.
func (w *Writeback) makeParents(ctx context.Context, p string) (bool, error) {
	tg := w.opts.Target
	var missing []string
	for d := parentPath(p); d != ""; d = parentPath(d) {
		te, err := tg.Stat(ctx, d)
		if err == nil && te.IsDir {
			break
		}
		if err != nil && !errors.Is(err, target.ErrNotFound) {
			return false, err
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := tg.Mkdir(ctx, missing[i]); err != nil && !errors.Is(err, target.ErrExist) {
			return false, err
		}
		w.opts.Log.WithField("path", "/"+missing[i]).Info("made the folder again on the server for a file changed in it here")
	}
	return len(missing) > 0, nil
}

// finishUpload records the upload in the cache and, in the same
// transaction, what it left on the server as the path's upload note.
func (w *Writeback) finishUpload(o cache.Op, e cache.Entry, size int64, got target.Entry) error {
	w.notesSet()
	return w.opts.Cache.FinishUpload(o.Seq, e.Ino, e.LocalGen, cache.SideState{Size: size, ModTime: e.ModTime, Precision: e.Precision}, got, o.Path)
}

// canAppend reports whether an upload may send only the new tail: asked
// for, supported, the file only grew since its last sync, and the server's
// copy is exactly what that sync left.
func (w *Writeback) canAppend(e cache.Entry, d Decision, rp *target.Entry, size int64) bool {
	return w.opts.AppendUploads && w.opts.Target.Features().APPE && e.Grown && e.Synced &&
		d.Action == Upload && d.Remote == Unchanged && rp != nil &&
		rp.Size == e.SyncLocal.Size && size > e.SyncLocal.Size
}

// appendTail appends what the file grew by, then sets the mtime where the
// server can. A failure part way leaves the server's file longer than the
// record, so the retry finds it changed: a conflict keeps both versions
// rather than appending twice.
func (w *Writeback) appendTail(ctx context.Context, st *opState, o cache.Op, e cache.Entry, f *os.File, size int64, noted *cache.SideState) error {
	tg := w.opts.Target
	from := e.SyncLocal.Size
	if err := w.noteIntent(o.Path, size, e, noted); err != nil {
		return err
	}
	counter := &uploadCounter{r: io.NewSectionReader(f, from, size-from)}
	w.mu.Lock()
	st.progress, st.size = counter, size-from
	w.mu.Unlock()
	got, err := tg.Append(ctx, o.Path, counter)
	if err != nil {
		return fmt.Errorf("append to /%s: %w", o.Path, err)
	}
	if got.Size != size {
		return fmt.Errorf("append to /%s: the server holds %d bytes, want %d", o.Path, got.Size, size)
	}
	if tg.Features().CanSetModTime() {
		if err := tg.SetModTime(ctx, o.Path, e.ModTime); err == nil {
			if after, err := tg.Stat(ctx, o.Path); err == nil {
				got = after
			}
		}
	}
	w.mu.Lock()
	w.stats.bytes += size - from
	w.mu.Unlock()
	return w.finishUpload(o, e, size, got)
}

// winner is who a conflict's resolution lets win.
type winner int

const (
	winBoth winner = iota
	winLocal
	winRemote
)

// choose applies the mount's --resolve to a conflict between local (the
// local version, or the deletion with the time it was made) and remote
// (nil where the server deleted the file). keep-both, and new or old when
// the times cannot tell, keep both.
func (w *Writeback) choose(local, remote *target.Entry) winner {
	switch w.opts.Resolve {
	case ResolveLocal:
		return winLocal
	case ResolveRemote:
		return winRemote
	case ResolveNew, ResolveOld:
		if local == nil || remote == nil {
			return winBoth
		}
		c := compareTimes(local, remote)
		if w.opts.Resolve == ResolveOld {
			c = -c
		}
		switch {
		case c > 0:
			return winLocal
		case c < 0:
			return winRemote
		}
	}
	return winBoth
}

// takeRemote settles a conflict in the server's favour: the local version
// gives way to the server's (or goes, where the server deleted it).
func (w *Writeback) takeRemote(o cache.Op, e cache.Entry, rp *target.Entry, d Decision) error {
	changes, err := w.opts.Cache.TakeRemote(o.Seq, e.Ino, rp, w.opts.Now())
	if err != nil {
		return err
	}
	w.conflict(o, d.Conflict.String()+"; the server's version is kept and the local one dropped (--resolve)")
	if w.opts.OnChange != nil && len(changes) > 0 {
		w.opts.OnChange(changes)
	}
	return nil
}

// record keeps a conflict that left the tree as it is for status and
// resolve, and reports it. A record that cannot be written is logged; the
// versions are safe either way.
func (w *Writeback) record(o cache.Op, d Decision, local target.Entry, remote *target.Entry, what string) {
	r := cache.ConflictRecord{Path: o.Path, Kind: conflictKindOf(d.Conflict), At: w.opts.Now().UTC(),
		Local: cache.SideState{Size: local.Size, ModTime: local.ModTime, Precision: local.Precision}}
	if remote != nil {
		r.Remote = cache.SideState{Size: remote.Size, ModTime: remote.ModTime, Precision: remote.Precision}
	}
	w.addConflict(r)
	w.conflict(o, d.Conflict.String()+"; "+what)
}

// addConflict records a conflict for status; a failure is only logged.
func (w *Writeback) addConflict(r cache.ConflictRecord) {
	if err := w.opts.Cache.AddConflict(r); err != nil {
		w.opts.Log.WithError(err).WithField("path", "/"+r.Path).Warn("cannot record the conflict for status")
	}
}

// conflictKindOf maps Classify's kinds to the cache's records.
func conflictKindOf(k ConflictKind) cache.ConflictKind {
	switch k {
	case BothNew:
		return cache.ConflictBothNew
	case LocalChangedGone:
		return cache.ConflictLocalChangedGone
	case RemoteChangedGone:
		return cache.ConflictRemoteChangedGone
	}
	return cache.ConflictBothChanged
}

// keepBoth is the default resolution (DESIGN.md): the server's version keeps
// the name, the local one is saved beside it as a conflict copy, in the
// mount and (by the upload KeepBoth queues) on the server.
func (w *Writeback) keepBoth(o cache.Op, e cache.Entry, remote target.Entry, d Decision) error {
	now := w.opts.Now()
	first := target.Base(ConflictName(o.Path, now))
	stamp := ".conflict-" + now.UTC().Format("20060102-150405")
	name := first
	var changes []cache.Change
	var err error
	// A second conflict of the same file within the second takes the
	// next free number rather than failing on the first copy's name.
	for i := 2; i <= maxConflictCopies; i++ {
		changes, err = w.opts.Cache.KeepBoth(o.Seq, e.Ino, conflictKindOf(d.Conflict), name, remote, now)
		if !errors.Is(err, cache.ErrExist) {
			break
		}
		name = strings.Replace(first, stamp, fmt.Sprintf("%s-%d", stamp, i), 1)
	}
	if err != nil {
		return err
	}
	w.conflict(o, fmt.Sprintf("%s; the local version is saved as %s", d.Conflict, name))
	if w.opts.OnChange != nil && len(changes) > 0 {
		w.opts.OnChange(changes)
	}
	return nil
}

// maxConflictCopies bounds the numbered names tried for the conflict
// copies of one file within one second.
const maxConflictCopies = 100

// conflict records and logs a conflict the runner settled.
func (w *Writeback) conflict(o cache.Op, what string) {
	w.opts.Log.WithField("path", "/"+o.Path).Warn("conflict: " + what)
	w.opts.Conflicts.Inc()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.conflicts = append(w.stats.conflicts, SettledConflict{Path: o.Path, What: what, At: w.opts.Now()})
	if len(w.stats.conflicts) > maxKept {
		w.stats.conflicts = w.stats.conflicts[len(w.stats.conflicts)-maxKept:]
	}
}

// uploadCounter counts the bytes an upload read, for status.
type uploadCounter struct {
	r io.Reader
	n atomic.Int64
}

func (c *uploadCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// maxKept bounds the conflicts and errors status remembers.
const maxKept = 50

// SettledConflict is one conflict the runner settled.
type SettledConflict struct {
	Path string    `json:"path"`
	What string    `json:"what"`
	At   time.Time `json:"at"`
}

// OpError is one failed attempt.
type OpError struct {
	Op    string    `json:"op"`
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

type wbStats struct {
	done      int64
	bytes     int64
	conflicts []SettledConflict
	errors    []OpError
}

func (s *wbStats) addError(at time.Time, o cache.Op, err error) {
	s.errors = append(s.errors, OpError{Op: o.String(), Error: err.Error(), At: at})
	if len(s.errors) > maxKept {
		s.errors = s.errors[len(s.errors)-maxKept:]
	}
}

// InFlight is one running operation.
type InFlight struct {
	Op   string `json:"op"`
	Sent int64  `json:"sent"` // bytes, for uploads
	Size int64  `json:"size"`
}

// WritebackStatus is what `ftpsync-mount status` shows of the queue.
type WritebackStatus struct {
	Pending int `json:"pending"` // queued operations, running ones included
	// PendingUploads are the uploads among them (the rest are folder and
	// name changes, which do not wait for --write-back).
	PendingUploads int               `json:"pending_uploads"`
	Running        []InFlight        `json:"running"`
	Done           int64             `json:"done"`       // operations finished since the mount started
	BytesSent      int64             `json:"bytes_sent"` // by finished uploads
	Conflicts      []SettledConflict `json:"conflicts"`
	Errors         []OpError         `json:"errors"`
	Loaded         bool              `json:"loaded"` // the journal was read
}

// Status reports the queue.
func (w *Writeback) Status() WritebackStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := WritebackStatus{Pending: len(w.ops), Done: w.stats.done, BytesSent: w.stats.bytes, Loaded: w.loaded,
		Conflicts: append([]SettledConflict(nil), w.stats.conflicts...), Errors: append([]OpError(nil), w.stats.errors...)}
	for _, st := range w.ops {
		if st.op.Kind == cache.OpUpload {
			s.PendingUploads++
		}
	}
	for _, seq := range w.order {
		st := w.ops[seq]
		if st == nil || !st.running || st.inBundle && st.progress == nil {
			continue // a bundle's file not started yet
		}
		f := InFlight{Op: st.op.String(), Size: st.size}
		if b := st.bundle; b != nil {
			f.Op = fmt.Sprintf("%s (staged with %d operations below it)", st.op, len(b.members))
		}
		if st.progress != nil {
			f.Sent = st.progress.n.Load()
		}
		s.Running = append(s.Running, f)
	}
	return s
}

// What our own operations left at each server path lives in the cache's
// upload notes, so that it survives a kill -9: an upload notes its
// expected size and mtime before it starts and what the server shows once
// done; renames and deletes carry the notes along. A check against an
// entry's record taken before one of them (the entry was replaced or
// deleted while it ran, or the mount was killed before recording it) then
// sees our own write rather than a change made elsewhere.

// noteIntent notes, before an upload of e's size bytes to p starts, what
// the server will show once it is done: the size and the local mtime the
// upload sets (a server that cannot set mtimes shows the upload time, and
// the note then never matches, as if it were absent). StartOp usually
// noted it already (noted); only a file written since needs a new note.
func (w *Writeback) noteIntent(p string, size int64, e cache.Entry, noted *cache.SideState) error {
	if noted != nil && noted.Size == size {
		return nil
	}
	w.notesSet()
	return w.opts.Cache.NoteUpload(p, cache.SideState{Size: size, ModTime: e.ModTime, Precision: e.Precision})
}

// knownAt returns what our own operations left (or were about to leave) at
// p, if the server shows exactly that (size and mtime, at the coarser
// precision). A note that cannot be read counts as absent: the path is
// then classified as usual and may give a needless conflict copy, never a
// lost write.
func (w *Writeback) knownAt(p string, cur target.Entry) (target.Entry, bool) {
	ss, err := w.opts.Cache.UploadNotes(p)
	if err != nil {
		w.opts.Log.WithError(err).Warn("cannot read what our own uploads left; classifying without it")
		return target.Entry{}, false
	}
	for i := len(ss) - 1; i >= 0; i-- {
		k := target.Entry{Name: target.Base(p), Size: ss[i].Size, ModTime: ss[i].ModTime, Precision: ss[i].Precision}
		if SameFile(k, cur) {
			return k, true
		}
	}
	return target.Entry{}, false
}

// moveKnown follows a rename (to "" for a delete) of p and everything
// below it.
func (w *Writeback) moveKnown(from, to string) error {
	return w.opts.Cache.MoveUploadNotes(from, to)
}

// notesSet tells clearKnown that the cache may hold upload notes.
func (w *Writeback) notesSet() {
	w.mu.Lock()
	w.notes = true
	w.mu.Unlock()
}

// clearKnown drops the notes once the journal is empty and nothing runs:
// every entry's record then covers what the server shows. Only the loop
// calls it, between rounds, so no operation starts meanwhile.
func (w *Writeback) clearKnown() {
	w.mu.Lock()
	clear := w.notes && w.loaded && w.running == 0 && len(w.ops) == 0
	if clear {
		w.notes = false
	}
	w.mu.Unlock()
	if !clear {
		return
	}
	if err := w.opts.Cache.ClearUploadNotes(); err != nil {
		w.opts.Log.WithError(err).Warn("cannot clear the upload notes; they are cleared once the queue empties again")
		w.notesSet()
	}
}
