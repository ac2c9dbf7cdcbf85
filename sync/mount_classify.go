package sync

import (
	"context"
	"errors"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// The mount's side of DESIGN.md's table: what a listing does to each cached
// file is Classify's decision, with the mount's entry as the local side and
// its record of the server as the last-synced state. The mount knows its
// own changes (LocalDirty), so nothing is guessed from local times.

// mountSides gives Classify's view of a cached file: the local side, the
// record, and whether the mount saw a change. A local file never synced
// (or not on the server) has no record: the write-back decides its fate.
func mountSides(e *cache.Entry) (*target.Entry, *Record, Dirty, bool) {
	l := target.Entry{Name: e.Name, Size: e.Size, ModTime: e.ModTime, Precision: e.Precision}
	if !e.Local {
		// Served from the server: the cache holds the server's state as
		// last listed, and nothing changed here.
		side := SideOf(l)
		return &l, &Record{Local: side, Remote: side, SyncedAt: e.Seen}, DirtyNo, true
	}
	if !e.Synced || !e.OnServer {
		return nil, nil, DirtyUnknown, false
	}
	rec := &Record{Local: sideOf(e.SyncLocal), Remote: sideOf(e.SyncRemote), SyncedAt: e.Seen}
	dirty := DirtyNo
	if e.Dirty || e.Upload != 0 {
		dirty = DirtyYes
	}
	return &l, rec, dirty, true
}

// decideListing is the cache.Decider of the mount's listings: the server's
// new version replaces a file that did not change here, a file the server
// deleted goes if it did not change here, and everything that changed here
// is left to the write-back, which checks again right before it uploads
// and settles a conflict there (so there is one place that does it).
func decideListing(cached *cache.Entry, listed *target.Entry) cache.Verdict {
	local, rec, dirty, ok := mountSides(cached)
	if !ok {
		return cache.Leave
	}
	switch Classify(Input{Local: local, Remote: listed, Record: rec, LocalDirty: dirty}).Action {
	case Nothing, Equal:
		return cache.Same
	case Download:
		return cache.Take
	case DeleteLocal:
		return cache.Drop
	}
	return cache.Leave
}

// maxRefine bounds the exact-time lookups (MDTM) one listing may make.
// Beyond it the rest keep the listing's coarse time: a same-size change in
// the same minute may then go unseen until the file changes again.
const maxRefine = 256

// refine asks the server for the exact time (MDTM, where the target can) of
// files whose listed time is too coarse to tell (LIST gives minutes, or
// days for older files):
//   - a file listed in the same minute as its exact record, with the same
//     size, when the record was taken so soon that a later change could
//     fall into that minute (Ambiguous);
//   - a file that is new or changed and was modified so recently that a
//     later change could fall into the same minute: its record is taken
//     exact, so that such a change can be told later.
//
// MLSD listings are exact to the second and never need it. The cached
// entries of dir are read only for a listing that does; without them
// nothing is refined. It returns the names it refined.
func refine(ctx context.Context, tg target.Target, dir string, list []target.Entry, cachedOf func() ([]cache.Entry, error), now time.Time) map[string]bool {
	rf, ok := tg.(mtimeRefiner)
	if !ok {
		return nil
	}
	var byName map[string]*cache.Entry
	var refined map[string]bool
	for i := range list {
		te := &list[i]
		if te.IsDir || te.Precision <= time.Second {
			continue
		}
		if byName == nil {
			cached, err := cachedOf()
			if err != nil {
				return nil
			}
			byName = make(map[string]*cache.Entry, len(cached))
			for j := range cached {
				byName[cached[j].Name] = &cached[j]
			}
		}
		need := recent(*te, now)
		if c := byName[te.Name]; c != nil && !c.IsDir {
			_, rec, _, ok := mountSides(c)
			if ok && sameTime(te.ModTime, rec.Remote.ModTime, te.Precision) && te.Size == rec.Remote.Size {
				need = Ambiguous(*te, rec.Remote, rec.SyncedAt)
			}
		}
		if !need {
			continue
		}
		if len(refined) >= maxRefine {
			break
		}
		t, err := rf.RefineModTime(ctx, target.Join(dir, te.Name))
		if err != nil {
			if errors.Is(err, context.Canceled) {
				break
			}
			continue // gone meanwhile, or no MDTM: keep the listing's time
		}
		te.ModTime, te.Precision = t.UTC(), time.Second
		if refined == nil {
			refined = make(map[string]bool)
		}
		refined[te.Name] = true
	}
	return refined
}

// recent reports whether a file listed with a coarse time may still be
// changed within the period it was listed in (one period of slack covers a
// server clock somewhat ahead of ours).
func recent(te target.Entry, now time.Time) bool {
	return now.Before(te.ModTime.Truncate(te.Precision).Add(2 * te.Precision))
}
