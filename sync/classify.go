// Package sync decides, for every path, what must happen so that a local tree
// and a remote tree agree again, and carries it out. The decision itself is
// the pure function Classify, shared by the mount's write-back and poller and
// by the one-shot sync, upload and download commands.
package sync

import (
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Action is what Classify decides for one path.
type Action int

// The actions, after DESIGN.md's table "Change detection and conflicts".
const (
	Nothing      Action = iota // both sides agree with the record
	Equal                      // both sides hold the same thing but the record is missing or stale: record it
	Upload                     // copy local to remote (or create the remote folder)
	Download                   // copy remote to local (or create the local folder)
	DeleteLocal                // the server deleted it and the local copy did not change
	DeleteRemote               // it was deleted locally and the server's copy did not change
	Forget                     // gone on both sides: drop the record
	Conflict                   // both sides changed since the record; Decision.Conflict says how
)

var actionNames = [...]string{"nothing", "equal", "upload", "download", "delete local", "delete remote", "forget", "conflict"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Change is how one side differs from the record.
type Change int

// The states of one side relative to the last sync.
const (
	Absent    Change = iota // not there and never synced
	New                     // there but never synced
	Unchanged               // as recorded
	Changed                 // different size or mtime than recorded
	Deleted                 // recorded but gone
)

var changeNames = [...]string{"absent", "new", "unchanged", "changed", "deleted"}

func (c Change) String() string {
	if int(c) < len(changeNames) {
		return changeNames[c]
	}
	return "unknown"
}

// ConflictKind tells conflicts apart so that resolutions and messages fit.
type ConflictKind int

// The kinds of conflict.
const (
	NoConflict        ConflictKind = iota
	BothChanged                    // both changed since the last sync, differently
	BothNew                        // both new and different
	LocalChangedGone               // changed locally, deleted on the server
	RemoteChangedGone              // deleted locally, changed on the server
	TypeMismatch                   // a file on one side, a folder on the other
)

var conflictText = [...]string{"", "changed on both sides", "new on both sides and different",
	"changed locally but deleted on the server", "deleted locally but changed on the server",
	"a file on one side and a folder on the other"}

func (k ConflictKind) String() string {
	if int(k) < len(conflictText) {
		return conflictText[k]
	}
	return "unknown conflict"
}

// Dirty is the mount's knowledge of local changes. The one-shot commands
// leave it DirtyUnknown, and the local side is compared with the record.
type Dirty int

// The values of Dirty.
const (
	DirtyUnknown Dirty = iota // compare size and mtime with the record
	DirtyYes                  // the mount saw a write, truncate or setattr
	DirtyNo                   // the mount saw no change
)

// Input is everything Classify looks at for one path.
type Input struct {
	Local  *target.Entry // nil if absent locally
	Remote *target.Entry // nil if absent on the server
	Record *Record       // nil if never synced
	// LocalDirty overrides the size and mtime comparison of the local side
	// when the caller knows better (the mount).
	LocalDirty Dirty
}

// Decision is Classify's answer.
type Decision struct {
	Action   Action
	Local    Change
	Remote   Change
	Conflict ConflictKind // set when Action is Conflict
}

// Classify decides what to do with one path. It is pure: all it needs is in
// the input, so the mount and the one-shot commands cannot disagree.
//
// A record whose kind (file or folder) differs from an entry present now no
// longer describes that path and is ignored. Two present files that are the
// same (size, and mtime at the coarser precision) are Equal whatever their
// history: a run interrupted after a transfer but before its record then
// completes instead of reporting a conflict.
func Classify(in Input) Decision {
	l, r, rec := in.Local, in.Remote, in.Record
	if l != nil && r != nil && l.IsDir != r.IsDir {
		return Decision{Action: Conflict, Local: presence(l, rec), Remote: presence(r, rec), Conflict: TypeMismatch}
	}
	if rec != nil && (l != nil && l.IsDir != rec.IsDir || r != nil && r.IsDir != rec.IsDir) {
		rec = nil
	}
	d := Decision{Local: localChange(l, rec, in.LocalDirty), Remote: remoteChange(r, rec)}
	if rec == nil {
		switch {
		case l == nil && r == nil:
			d.Action = Nothing
		case r == nil:
			d.Action = Upload
		case l == nil:
			d.Action = Download
		case l.IsDir || SameFile(*l, *r):
			d.Action = Equal
		default:
			d.Action, d.Conflict = Conflict, BothNew
		}
		return d
	}
	switch d.Local {
	case Unchanged:
		switch d.Remote {
		case Unchanged:
			d.Action = Nothing
		case Changed:
			d.Action = Download
		case Deleted:
			d.Action = DeleteLocal
		}
	case Changed:
		switch d.Remote {
		case Unchanged:
			d.Action = Upload
		case Changed:
			if SameFile(*l, *r) && in.LocalDirty != DirtyYes {
				d.Action = Equal
			} else {
				d.Action, d.Conflict = Conflict, BothChanged
			}
		case Deleted:
			d.Action, d.Conflict = Conflict, LocalChangedGone
		}
	case Deleted:
		switch d.Remote {
		case Unchanged:
			d.Action = DeleteRemote
		case Changed:
			d.Action, d.Conflict = Conflict, RemoteChangedGone
		case Deleted:
			d.Action = Forget
		}
	}
	return d
}

// presence is the change of a side when only its existence matters.
func presence(e *target.Entry, rec *Record) Change {
	switch {
	case e == nil && rec == nil:
		return Absent
	case e == nil:
		return Deleted
	case rec == nil:
		return New
	}
	return Unchanged
}

func localChange(e *target.Entry, rec *Record, dirty Dirty) Change {
	c := presence(e, rec)
	if c != Unchanged || e.IsDir {
		return c
	}
	switch dirty {
	case DirtyYes:
		return Changed
	case DirtyNo:
		return Unchanged
	}
	return sideChange(*e, rec.Local, rec.Imported)
}

func remoteChange(e *target.Entry, rec *Record) Change {
	c := presence(e, rec)
	if c != Unchanged || e.IsDir {
		return c
	}
	return sideChange(*e, rec.Remote, rec.Imported)
}

// importTolerance is how far pyftpsync lets two mtimes differ and still be
// equal; records imported from its meta files are compared the same way.
const importTolerance = 2 * time.Second

func sideChange(e target.Entry, s Side, imported bool) Change {
	if e.Size != s.Size {
		return Changed
	}
	if imported {
		// pyftpsync's times, within two seconds; a listing coarser than
		// that is compared at its own precision.
		d := e.ModTime.Sub(s.ModTime)
		if d <= importTolerance && d >= -importTolerance ||
			e.Precision > importTolerance && sameTime(e.ModTime, s.ModTime, e.Precision) {
			return Unchanged
		}
		return Changed
	}
	if !sameTime(e.ModTime, s.ModTime, max(e.Precision, s.Precision)) {
		return Changed
	}
	return Unchanged
}

// SameFile reports whether two files look identical: same size and the same
// mtime at the coarser of the two precisions.
func SameFile(a, b target.Entry) bool {
	return !a.IsDir && !b.IsDir && a.Size == b.Size && sameTime(a.ModTime, b.ModTime, max(a.Precision, b.Precision))
}

// sameTime compares at precision p: a listing with minute precision reports
// the minute a file changed in, so both times are cut to the minute.
func sameTime(a, b time.Time, p time.Duration) bool {
	if p <= time.Nanosecond {
		return a.Equal(b)
	}
	return a.Truncate(p).Equal(b.Truncate(p))
}

// Ambiguous reports whether a listed entry with coarse precision (LIST
// output with minutes or days) could hide a change from the recorded side:
// same size, same time at the listing's precision, and the record was taken
// so soon after the listed time that a later change could fall into the
// same minute (or day). The caller then asks the server for the exact time
// (MDTM) and classifies again. syncedAt is when the record was taken.
func Ambiguous(e target.Entry, s Side, syncedAt time.Time) bool {
	if e.IsDir || e.Precision <= time.Second || s.Precision > time.Second || e.Size != s.Size {
		return false
	}
	if !sameTime(e.ModTime, s.ModTime, e.Precision) {
		return false
	}
	// Anything written after syncedAt lands in a later period unless the
	// server's clock lags ours; one period of slack covers modest skew.
	end := e.ModTime.Truncate(e.Precision).Add(2 * e.Precision)
	return syncedAt.Before(end)
}
