package sync

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/internal/metrics"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// ListOptions configures a Lister. The command line fills it.
type ListOptions struct {
	Target target.Target
	Cache  *cache.Cache
	Log    logrus.FieldLogger
	// DirCacheTime is how long a directory listing is trusted before it is
	// listed again (default 5m).
	DirCacheTime time.Duration
	// Prefetch is how many subdirectory listings run in the background at
	// once after a directory was listed (default 4; keep it at or below the
	// target's connection count so that foreground requests still get one).
	Prefetch int
	// OnChange, if set, is told what a listing changed, so that the kernel
	// can drop what it cached. It is called from the listing's goroutine,
	// never inside a kernel request, and must not block for long.
	OnChange func([]cache.Change)
	// PollInterval, if positive, starts the poller (poll.go): every
	// PollInterval it lists again at most PollBatch (default 128) of the
	// directories used recently, so that changes made on the server show.
	PollInterval time.Duration
	PollBatch    int
	// RecordKept records a folder deleted on the server that stays for the
	// local changes in it as a conflict (the keep-both policy).
	RecordKept bool
	// PollRounds and PollListings, if set, count the poller's rounds and
	// the directories they listed.
	PollRounds, PollListings *metrics.Counter
}

// prefetchQueue bounds the subdirectories waiting for a background listing;
// beyond it the oldest wait until they are opened.
const prefetchQueue = 4096

// prefetchDepth is how many levels below a directory someone asked for are
// listed in the background: two keep a depth-first walk (ls -R, find, du)
// from waiting for the server at each level, while opening the root of a
// huge tree does not crawl all of it.
const prefetchDepth = 2

// queued is a directory waiting for a background listing, with the levels
// of subdirectories its listing may queue in turn.
type queued struct {
	ino   uint64
	depth int
}

// Lister keeps directory listings in the cache fresh: a directory never
// listed is listed before it is answered; a stale one is answered from the
// cache at once and listed again in the background (so a remount with a
// warm cache shows the tree at once); each listing queues its unlisted
// subdirectories for bounded background listing, so that ls -R, find and du
// on a cold tree run in parallel.
//
// The queue is a stack: ls -R and find walk depth first, so the
// subdirectories of the directory opened last are the ones needed next.
type Lister struct {
	opts ListOptions // read only

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     gosync.WaitGroup // prefetch workers and background refreshes
	wake   chan struct{}    // capacity Prefetch: pending grew

	mu      gosync.Mutex         // protects the following
	flights map[uint64]*flight   // listings in progress per directory
	failed  map[uint64]time.Time // when a background refresh last failed
	pending []queued             // directories to list in the background, newest last
	opened  map[uint64]struct{}  // directories whose subdirectories were queued
	used    map[uint64]time.Time // when each directory was last used (poll.go)
	// usedSwept is when Touch last looked for stale entries in a full used.
	usedSwept time.Time
	// deferred are directories whose last listing left names for later.
	deferred map[uint64]struct{}
	down     bool // the last listing failed
}

// flight is one listing in progress that several callers may wait for.
type flight struct {
	done chan struct{} // closed when err is set
	err  error
}

// NewLister starts the background workers; Close stops them.
func NewLister(opts ListOptions) (*Lister, error) {
	if opts.Target == nil || opts.Cache == nil || opts.Log == nil {
		return nil, errors.New("sync: ListOptions needs Target, Cache and Log")
	}
	if opts.DirCacheTime <= 0 {
		opts.DirCacheTime = 5 * time.Minute
	}
	if opts.Prefetch <= 0 {
		opts.Prefetch = 4
	}
	if opts.PollBatch <= 0 {
		opts.PollBatch = 128
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Lister{
		opts: opts, ctx: ctx, cancel: cancel, wake: make(chan struct{}, opts.Prefetch),
		flights: make(map[uint64]*flight), failed: make(map[uint64]time.Time), opened: make(map[uint64]struct{}),
		used: make(map[uint64]time.Time), deferred: make(map[uint64]struct{}),
	}
	if opts.PollInterval > 0 {
		l.wg.Add(1)
		go l.pollLoop()
	}
	for i := 0; i < opts.Prefetch; i++ {
		l.wg.Add(1)
		go l.worker()
	}
	return l, nil
}

// Close stops background listings and waits for them.
func (l *Lister) Close() {
	// Under mu, so that no goroutine is added (always under mu, after a
	// look at ctx) once Wait may have begun.
	l.mu.Lock()
	l.cancel()
	l.mu.Unlock()
	l.wg.Wait()
}

// Ensure makes sure directory dir has a listing in the cache. It lists from
// the target only if the directory was never listed; a listing older than
// DirCacheTime is refreshed in the background. The first time someone asks
// for a directory listed in the background, its unlisted subdirectories are
// queued, so that a walk stays ahead of the reader all the way down.
func (l *Lister) Ensure(ctx context.Context, dir cache.Entry) error {
	l.Touch(dir.Ino)
	if dir.ListedAt.IsZero() {
		return l.wait(ctx, l.start(dir.Ino, prefetchDepth))
	}
	if time.Since(dir.ListedAt) > l.opts.DirCacheTime && !l.failedRecently(dir.Ino) {
		l.start(dir.Ino, prefetchDepth)
	} else if l.markOpened(dir.Ino, true) {
		go func() {
			defer l.wg.Done()
			if err := l.queueSubdirs(dir.Ino, prefetchDepth); err != nil {
				l.opts.Log.WithError(err).Debug("prefetch of subdirectories skipped")
			}
		}()
	}
	return nil
}

// markOpened records that dir's subdirectories are being queued and
// reports whether that is new; with goroutine, it also counts the goroutine
// the caller then starts in wg.
func (l *Lister) markOpened(dir uint64, goroutine bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.opened[dir]; ok || l.ctx.Err() != nil {
		return false
	}
	l.opened[dir] = struct{}{}
	if goroutine {
		l.wg.Add(1)
	}
	return true
}

// failedRecently keeps a server that is down from being asked again on
// every lookup: a failed refresh is retried after DirCacheTime.
func (l *Lister) failedRecently(dir uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.failed[dir]
	return ok && time.Since(at) < l.opts.DirCacheTime
}

// Refresh lists dir from the target now and waits for it.
func (l *Lister) Refresh(ctx context.Context, dir uint64) error {
	return l.wait(ctx, l.start(dir, prefetchDepth))
}

func (l *Lister) wait(ctx context.Context, fl *flight) error {
	select {
	case <-fl.done:
		return fl.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start begins listing dir unless that is already under way; afterwards
// its unlisted subdirectories are queued for background listings that may
// go depth-1 levels further (prefetchDepth for a directory someone asked
// for, so that opening the root of a huge tree does not crawl all of it).
// The listing runs on the Lister's context, so a caller that gives up does
// not cancel it for the others waiting.
func (l *Lister) start(dir uint64, depth int) *flight {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fl, ok := l.flights[dir]; ok {
		return fl
	}
	fl := &flight{done: make(chan struct{})}
	l.flights[dir] = fl
	if l.ctx.Err() != nil {
		delete(l.flights, dir)
		fl.err = fmt.Errorf("list: %w", ErrFetchClosed)
		close(fl.done)
		return fl
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		err := l.list(dir, depth)
		l.mu.Lock()
		delete(l.flights, dir)
		if err != nil {
			l.failed[dir] = time.Now()
		} else {
			delete(l.failed, dir)
		}
		l.mu.Unlock()
		fl.err = err
		close(fl.done)
	}()
	return fl
}

// list reads one directory from the target into the cache and, with depth
// left, queues its unlisted subdirectories.
func (l *Lister) list(dir uint64, depth int) error {
	c := l.opts.Cache
	p, err := c.Path(dir)
	if err != nil {
		return err
	}
	mark := c.ListingMark()
	entries, err := l.opts.Target.List(l.ctx, p)
	if errors.Is(err, target.ErrNotFound) && c.Queued(p) {
		// Made here and not on the server yet (a staged folder goes up
		// whole): nothing is wrong with the server.
		return fmt.Errorf("list /%s: not on the server yet: %w", p, err)
	}
	l.noteOutcome(p, err)
	if err != nil {
		return fmt.Errorf("list /%s: %w", p, err)
	}
	now := time.Now()
	refined := refine(l.ctx, l.opts.Target, p, entries, func() ([]cache.Entry, error) { return c.Children(dir) }, now)
	res, err := c.ApplyListing(dir, cache.Listing{Entries: entries, Mark: mark, Decide: decideListing,
		Refined: refined, Now: now, RecordKept: l.opts.RecordKept})
	if len(res.Changes) > 0 && l.opts.OnChange != nil {
		l.opts.OnChange(res.Changes)
	}
	for _, k := range res.Kept {
		l.opts.Log.WithField("path", "/"+k).Warn("conflict: the folder was deleted on the server but files in it changed here; they are kept and uploaded again")
	}
	l.noteListed(dir, res.Deferred)
	if err != nil {
		return fmt.Errorf("list /%s: %w", p, err)
	}
	if depth <= 0 {
		return nil
	}
	if depth == prefetchDepth {
		l.markOpened(dir, false)
	}
	if err := l.queueSubdirs(dir, depth); err != nil {
		return fmt.Errorf("list /%s: %w", p, err)
	}
	return nil
}

// noteOutcome logs failed listings: the first after a success as a
// warning, the rest (a server that is down fails every listing of every
// poll round) at debug level until a listing works again.
func (l *Lister) noteOutcome(p string, err error) {
	l.mu.Lock()
	was := l.down
	l.down = err != nil
	l.mu.Unlock()
	log := l.opts.Log.WithField("path", "/"+p)
	switch {
	case err != nil && !was:
		log.WithError(err).Warn("listing a directory failed; serving what the cache holds (further failures are logged at debug level until a listing works)")
	case err != nil:
		log.WithError(err).Debug("listing a directory failed")
	case was:
		log.Info("listing works again")
	}
}

// queueSubdirs queues dir's unlisted subdirectories for the workers, in
// reverse so that the first name is listed first; beyond prefetchQueue the
// oldest entries are dropped (they are listed when opened).
func (l *Lister) queueSubdirs(dir uint64, depth int) error {
	kids, err := l.opts.Cache.Children(dir)
	if err != nil {
		return err
	}
	added := 0
	l.mu.Lock()
	for i := len(kids) - 1; i >= 0; i-- {
		if k := kids[i]; k.IsDir && k.ListedAt.IsZero() {
			l.pending = append(l.pending, queued{k.Ino, depth - 1})
			added++
		}
	}
	if over := len(l.pending) - prefetchQueue; over > 0 {
		l.pending = append(l.pending[:0], l.pending[over:]...)
	}
	l.mu.Unlock()
	for i := 0; i < min(added, cap(l.wake)); i++ {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// pop takes the newest queued directory.
func (l *Lister) pop() (queued, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.pending)
	if n == 0 {
		return queued{}, false
	}
	q := l.pending[n-1]
	l.pending = l.pending[:n-1]
	return q, true
}

// worker lists queued subdirectories that nobody has listed meanwhile.
func (l *Lister) worker() {
	defer l.wg.Done()
	for {
		q, ok := l.pop()
		if !ok {
			select {
			case <-l.ctx.Done():
				return
			case <-l.wake:
			}
			continue
		}
		if l.ctx.Err() != nil {
			return
		}
		e, err := l.opts.Cache.Get(q.ino)
		if err != nil || !e.ListedAt.IsZero() {
			continue // removed meanwhile, or already listed
		}
		l.wait(l.ctx, l.start(q.ino, q.depth))
	}
}
