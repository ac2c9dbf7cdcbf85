package sync

import (
	"context"
	"errors"
	"sort"
	gosync "sync"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
)

// The poller pulls changes made on the server by others: every
// PollInterval it lists again the directories the mount used recently,
// most recently used first and at most PollBatch of them per round, so
// that a huge tree does not flood the server. Each listing goes through
// the same classification as any other (mount_classify.go), which drops
// what changed on the server and tells the kernel. A directory a listing
// could only partly apply (a local operation on some name was under way)
// is listed again in the next round whatever its use.

// pollWorkers is how many listings of one round run at once: few, so that
// a round never takes the connections the user's reads need.
const pollWorkers = 2

// usedMax bounds the directories remembered as used.
const usedMax = 1 << 14

// Touch records that directory dir was used (looked up in, read, a file in
// it opened), for the poller; without one it does nothing.
func (l *Lister) Touch(dir uint64) {
	if l.opts.PollInterval <= 0 {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.used) >= usedMax {
		// Full of folders used recently: look for stale ones at most once
		// an interval (a round drops them too), not at every call.
		if now.Sub(l.usedSwept) < l.opts.PollInterval {
			return
		}
		l.usedSwept = now
		window := l.usedWindow()
		for ino, at := range l.used {
			if now.Sub(at) > window {
				delete(l.used, ino)
			}
		}
		if len(l.used) >= usedMax {
			return // all recent: the poller has more than it can list anyway
		}
	}
	l.used[dir] = now
}

// usedWindow is how long a directory counts as used: the kernel answers
// repeated lookups and reads itself, so the mount sees a directory in use
// far less often than the user does.
func (l *Lister) usedWindow() time.Duration {
	return max(l.opts.DirCacheTime, 20*l.opts.PollInterval)
}

// noteListed remembers, for the poller, whether a listing of dir left
// names for later.
func (l *Lister) noteListed(dir uint64, deferred bool) {
	if l.opts.PollInterval <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if deferred {
		l.deferred[dir] = struct{}{}
	} else {
		delete(l.deferred, dir)
	}
}

// PollStats is what one poll round did.
type PollStats struct {
	Listed int // directories listed
	Failed int // listings that failed (the cache keeps serving them)
}

// pollLoop runs the rounds until Close.
func (l *Lister) pollLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		st := l.PollRound(l.ctx)
		l.opts.PollRounds.Inc()
		if st.Listed > 0 {
			l.opts.Log.WithField("listed", st.Listed).WithField("failed", st.Failed).Debug("poll round")
		}
	}
}

// PollRound lists the directories due now and waits for them.
func (l *Lister) PollRound(ctx context.Context) PollStats {
	return l.listAll(ctx, l.pollDue(time.Now()))
}

// pollDue picks a round's directories: those left partly applied, then
// the most recently used, PollBatch in all.
func (l *Lister) pollDue(now time.Time) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	due := make([]uint64, 0, min(l.opts.PollBatch, len(l.deferred)+len(l.used)))
	seen := make(map[uint64]bool)
	for ino := range l.deferred {
		if len(due) < l.opts.PollBatch {
			due = append(due, ino)
			seen[ino] = true
		}
	}
	type use struct {
		ino uint64
		at  time.Time
	}
	var recent []use
	window := l.usedWindow()
	for ino, at := range l.used {
		if now.Sub(at) > window {
			delete(l.used, ino)
			continue
		}
		if !seen[ino] {
			recent = append(recent, use{ino, at})
		}
	}
	sort.Slice(recent, func(i, j int) bool { return recent[i].at.After(recent[j].at) })
	for _, u := range recent {
		if len(due) >= l.opts.PollBatch {
			break
		}
		due = append(due, u.ino)
	}
	return due
}

// listAll lists dirs now, pollWorkers at a time, and waits for them.
func (l *Lister) listAll(ctx context.Context, dirs []uint64) PollStats {
	var st PollStats
	var mu gosync.Mutex
	var wg gosync.WaitGroup
	work := make(chan uint64)
	for range min(pollWorkers, len(dirs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ino := range work {
				err := l.listNow(ctx, ino)
				mu.Lock()
				st.Listed++
				if err != nil {
					st.Failed++
				}
				mu.Unlock()
			}
		}()
	}
	for _, ino := range dirs {
		select {
		case work <- ino:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	l.opts.PollListings.Add(int64(st.Listed))
	return st
}

// listNow lists dir from the server and waits. A listing already under way
// may have been asked for before what the caller wants to see happened,
// so it is waited out and a new one started.
func (l *Lister) listNow(ctx context.Context, dir uint64) error {
	if e, err := l.opts.Cache.Get(dir); err != nil || !e.IsDir {
		l.noteListed(dir, false)
		return err
	}
	l.mu.Lock()
	fl := l.flights[dir]
	l.mu.Unlock()
	if fl != nil {
		l.wait(ctx, fl)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return l.wait(ctx, l.start(dir, 0))
}

// RefreshTree lists dir now and, with recursive, every folder below it the
// cache holds (as listed afresh), so that `ftpsync-mount refresh` shows the
// server's state when it returns. It reports how many folders it listed.
func (l *Lister) RefreshTree(ctx context.Context, dir uint64, recursive bool) (PollStats, error) {
	var total PollStats
	level := []uint64{dir}
	for len(level) > 0 {
		st := l.listAll(ctx, level)
		total.Listed += st.Listed
		total.Failed += st.Failed
		if err := ctx.Err(); err != nil {
			return total, err
		}
		if !recursive {
			break
		}
		var next []uint64
		for _, ino := range level {
			kids, err := l.opts.Cache.Children(ino)
			if errors.Is(err, cache.ErrNotFound) {
				continue
			}
			if err != nil {
				return total, err
			}
			for _, k := range kids {
				if k.IsDir {
					next = append(next, k.Ino)
				}
			}
		}
		level = next
	}
	return total, nil
}
