package sync

import (
	"fmt"
	"strings"
)

// Mode is the kind of one-shot run.
type Mode int

// The one-shot modes, as in pyftpsync.
const (
	ModeSync     Mode = iota // two-way
	ModeUpload               // make the remote tree like the local one
	ModeDownload             // make the local tree like the remote one
)

func (m Mode) String() string {
	switch m {
	case ModeUpload:
		return "upload"
	case ModeDownload:
		return "download"
	}
	return "sync"
}

// Resolution is how a conflict is settled.
type Resolution int

// The resolutions of --resolve.
const (
	ResolveAsk      Resolution = iota // ask the Asker (skip without one)
	ResolveLocal                      // the local version wins
	ResolveRemote                     // the remote version wins
	ResolveNew                        // the newer file wins
	ResolveOld                        // the older file wins
	ResolveSkip                       // leave both alone and report it
	ResolveKeepBoth                   // the remote keeps the name, the local one is saved beside it
)

var resolutionNames = [...]string{"ask", "local", "remote", "new", "old", "skip", "keep-both"}

func (r Resolution) String() string {
	if int(r) < len(resolutionNames) {
		return resolutionNames[r]
	}
	return "unknown"
}

// ParseResolution reads a --resolve value.
func ParseResolution(s string) (Resolution, error) {
	for i, n := range resolutionNames {
		if strings.EqualFold(s, n) {
			return Resolution(i), nil
		}
	}
	return 0, fmt.Errorf("--resolve %q: use one of %s", s, strings.Join(resolutionNames[:], ", "))
}

// Allowed reports whether a mode accepts a resolution: one-way modes can
// only let the source win or skip, as in pyftpsync.
func (m Mode) Allowed(r Resolution) bool {
	switch m {
	case ModeUpload:
		return r == ResolveAsk || r == ResolveLocal || r == ResolveSkip
	case ModeDownload:
		return r == ResolveAsk || r == ResolveRemote || r == ResolveSkip
	}
	return true
}

// CaseMode says what to do with two names that differ only in case, one
// on each side (a case-insensitive server or disk cannot hold both).
type CaseMode int

// The values of --case.
const (
	CaseStrict CaseMode = iota // report the pair and leave both alone
	CaseLocal                  // rename the remote entry to the local name
	CaseRemote                 // rename the local entry to the remote name
)

// ParseCaseMode reads a --case value.
func ParseCaseMode(s string) (CaseMode, error) {
	switch strings.ToLower(s) {
	case "strict":
		return CaseStrict, nil
	case "local":
		return CaseLocal, nil
	case "remote":
		return CaseRemote, nil
	}
	return 0, fmt.Errorf("--case %q: use strict, local or remote", s)
}

// step is one thing the run does to a path.
type step int

const (
	stepNone         step = iota
	stepRecord            // both agree: record them
	stepForget            // both gone: drop the record
	stepUpload            // copy local to remote
	stepDownload          // copy remote to local
	stepDeleteLocal       // remove the local entry
	stepDeleteRemote      // remove the remote entry
	stepKeepBoth          // save the local version beside, then download
	stepConflict          // needs a resolution (resolve turns it into another op)
	stepSkip              // an unresolved conflict or problem, reported
)

// planStep maps a decision onto the mode. In one-way modes the destination
// follows the source: only --delete lets the run remove things, and a
// destination that changed since the last sync is a conflict that only
// --force or a resolution for the source overrides.
func planStep(d Decision, mode Mode, del bool) step {
	if d.Conflict == TypeMismatch {
		return stepSkip
	}
	switch d.Action {
	case Nothing:
		return stepNone
	case Equal:
		return stepRecord
	case Forget:
		return stepForget
	}
	switch mode {
	case ModeUpload:
		return planOneWay(d.Action, d.Conflict, d.Local, d.Remote, del, stepUpload, stepDeleteRemote, Upload, Download, DeleteLocal, DeleteRemote, LocalChangedGone, RemoteChangedGone)
	case ModeDownload:
		return planOneWay(d.Action, d.Conflict, d.Remote, d.Local, del, stepDownload, stepDeleteLocal, Download, Upload, DeleteRemote, DeleteLocal, RemoteChangedGone, LocalChangedGone)
	}
	switch d.Action {
	case Upload:
		return stepUpload
	case Download:
		return stepDownload
	case DeleteLocal:
		return stepDeleteLocal
	case DeleteRemote:
		return stepDeleteRemote
	}
	return stepConflict
}

// planOneWay is plan for a one-way mode, written once for both directions:
// "src" is the side copied from, "dst" the side copied to.
func planOneWay(a Action, k ConflictKind, src, dst Change, del bool, copyOp, delOp step,
	toDst, toSrc, dstGone, srcGone Action, srcChangedDstGone, srcGoneDstChanged ConflictKind) step {
	switch a {
	case toDst:
		return copyOp
	case dstGone:
		// The destination deleted what the source still has unchanged:
		// the source is the truth, copy it again.
		return copyOp
	case toSrc:
		if src == Absent {
			// Only on the destination and never synced.
			if del {
				return delOp
			}
			return stepNone
		}
		// The destination changed, the source did not.
		return stepConflict
	case srcGone:
		if del {
			return delOp
		}
		return stepNone
	}
	switch k {
	case srcChangedDstGone:
		return copyOp
	case srcGoneDstChanged:
		if del {
			return stepConflict
		}
		return stepNone
	}
	return stepConflict
}
