package sync

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	gosync "sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/internal/metrics"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// WritebackOptions configures the write-back runner. The command line
// fills it.
type WritebackOptions struct {
	Target target.Target
	Cache  *cache.Cache
	Log    logrus.FieldLogger
	// Delay is how long after a file's last change its upload waits, so
	// that a file written in several opens is sent once (default 2s).
	Delay time.Duration
	// Transfers is how many operations run at once (default 4).
	Transfers int
	// MinBackoff and MaxBackoff bound the wait before a failed operation is
	// tried again; it doubles from one to the other (default 1s, 5m).
	MinBackoff, MaxBackoff time.Duration
	// OnChange, if set, is told of tree changes the runner makes (a
	// conflict copy), for the kernel.
	OnChange func([]cache.Change)
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// AppendUploads sends a file that only grew since its last upload by
	// appending the new tail (APPE), after checking the server's copy is
	// unchanged. Off by default: others see the file grow in place.
	AppendUploads bool
	// Conflicts, if set, counts the conflicts the runner settles.
	Conflicts *metrics.Counter
	// Resolve settles conflicts: ResolveLocal, ResolveRemote, ResolveNew,
	// ResolveOld, or (any other value) keep both versions, the default.
	Resolve Resolution
}

// flushAttempts is how often a flush tries a failing operation before it
// reports it and leaves it queued for later.
const flushAttempts = 3

// waitLimit ends a round after this many operations that wait for their
// time (uploads within Delay of their last change): they were queued in
// about the order they become ready, so the ones behind them can wait for
// the next round, and a round stays cheap while thousands of files are
// being written.
const waitLimit = 128

// roundGap spaces scheduling rounds woken by journal changes.
const roundGap = 20 * time.Millisecond

// scanLimit bounds how far past the journal's head one scheduling round
// looks, so that a queue of many thousand operations costs little per
// round; operations further back start once the head drains.
const scanLimit = 4096

// Writeback carries the journal's operations out on the server: in journal
// order where their paths overlap (a folder before the files in it, an
// upload before a rename of it), in parallel where they do not. Uploads
// wait Delay after their file's last change and until no handle can write
// the file. Failures are retried with back-off and stay in the journal
// across restarts.
//
// Lock order: cache's tree lock, then Writeback.mu (the journal hook runs
// under the tree lock). Writeback.mu is never held while calling the cache
// or the target.
type Writeback struct {
	opts WritebackOptions // read only
	ctx  context.Context  // cancelled by Close
	stop context.CancelFunc
	wg   gosync.WaitGroup // the loop and running operations
	wake chan struct{}    // capacity 1: an operation ended, a flush began
	news chan struct{}    // capacity 1: the journal changed

	mu  gosync.Mutex // protects the following
	ops map[uint64]*opState
	// uploadsOf counts the uploads in ops per file, so that FileState
	// looks through ops only for a file that has one.
	uploadsOf map[uint64]int
	order     []uint64 // sequence numbers, ascending; may hold finished ones
	running   int
	flushing  int            // flushes in progress
	changed   chan struct{}  // closed and replaced whenever an operation ends
	forced    map[uint64]int // files an fsync waits for: upload now, even while open
	// notes is set when the cache may hold upload notes (knownAt) to
	// clear once the queue is empty; a remount starts with it set.
	notes  bool
	loaded bool // the journal was read
	idle   bool // the last round found nothing to start or wait for
	// openWait is set when the last round left an upload waiting for its
	// file to be closed: only then does a close need a new round.
	openWait bool
	burst    burstMeter // operations queued lately (writeback_burst.go)
	// busy and busyAnc are _pick's scratch maps, kept between rounds so
	// that a round allocates nothing: the paths of earlier unfinished
	// operations and their proper ancestors.
	busy, busyAnc map[string]bool
	moving        int // reads waiting in WaitMoved: no waiting for a burst
	stats         wbStats
	// noStage is set once the server refused to rename a staged folder
	// into place; noBundle holds the mkdirs to run alone after their
	// bundle failed or fell back (writeback_bundle.go).
	noStage  bool
	noBundle map[uint64]bool
	stageID  string // read only: names this runner's staging folders
}

// opState is the runner's view of one journal operation.
type opState struct {
	op        cache.Op
	readyAt   time.Time // uploads: not before this (Delay)
	notBefore time.Time // after a failure: back-off
	running   bool
	cancel    context.CancelFunc // set while running
	cancelled bool               // cancelled on purpose: retry at once
	attempts  int
	flushFail int // failures during the current flush
	lastErr   error
	progress  *uploadCounter // uploads: bytes sent so far
	size      int64
	bundle    *bundle // set on a bundle's mkdir while the bundle runs
	inBundle  bool    // runs as part of a bundle
}

// NewWriteback starts the runner. It reads the journal in the background,
// so that a mount with a long queue is ready at once.
func NewWriteback(opts WritebackOptions) (*Writeback, error) {
	if opts.Target == nil || opts.Cache == nil || opts.Log == nil {
		return nil, errors.New("sync: WritebackOptions needs Target, Cache and Log")
	}
	if opts.Delay < 0 {
		opts.Delay = 0
	}
	if opts.Transfers <= 0 {
		opts.Transfers = 4
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(opts.MinBackoff, 5*time.Minute)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, stop := context.WithCancel(context.Background())
	w := &Writeback{opts: opts, ctx: ctx, stop: stop, wake: make(chan struct{}, 1), news: make(chan struct{}, 1),
		ops: make(map[uint64]*opState), uploadsOf: make(map[uint64]int), changed: make(chan struct{}), forced: make(map[uint64]int),
		notes: true, noBundle: make(map[uint64]bool), stageID: newStageID()}
	w.wg.Add(1)
	go w.loop()
	return w, nil
}

// Close stops the runner; running operations are cancelled and stay in the
// journal.
func (w *Writeback) Close() {
	w.opts.Cache.SetJournalHook(nil)
	w.stop()
	w.wg.Wait()
}

func (w *Writeback) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// hook receives journal changes from the cache, under its tree lock.
func (w *Writeback) hook(ev cache.JournalEvent) {
	w.mu.Lock()
	if n := len(ev.Added) + len(ev.Touched); n > 0 {
		w.burst.add(w.opts.Now(), n)
	}
	for _, seq := range ev.Touched {
		if st := w.ops[seq]; st != nil && st.op.Kind == cache.OpUpload {
			st.readyAt = ev.At.Add(w.opts.Delay)
		}
	}
	for _, o := range ev.Added {
		w._add(o)
		if o.Kind == cache.OpRemove || o.Kind == cache.OpRename {
			w._cancelUploadOf(o.Ino)
		}
	}
	for _, seq := range ev.Removed {
		if st := w.ops[seq]; st != nil && !st.running {
			w._drop(seq)
		}
	}
	// A close (Wake alone) matters only to an upload waiting for it; tar x
	// closes thousands of files that nothing waits for yet.
	wake := len(ev.Removed) > 0 || w.openWait
	w.mu.Unlock()
	if len(ev.Added) == 0 && len(ev.Touched) == 0 {
		if wake {
			w.signal() // something may have been unblocked: look at once
		}
		return
	}
	select {
	case w.news <- struct{}{}:
	default:
	}
}

func (w *Writeback) _add(o cache.Op) {
	if _, ok := w.ops[o.Seq]; ok {
		return
	}
	st := &opState{op: o}
	if o.Kind == cache.OpUpload {
		st.readyAt = o.Queued.Add(w.opts.Delay)
	}
	w.ops[o.Seq] = st
	if o.Kind == cache.OpUpload {
		w.uploadsOf[o.Ino]++
	}
	if n := len(w.order); n > 0 && w.order[n-1] > o.Seq {
		i := sort.Search(n, func(i int) bool { return w.order[i] >= o.Seq })
		w.order = append(w.order[:i], append([]uint64{o.Seq}, w.order[i:]...)...)
		return
	}
	w.order = append(w.order, o.Seq)
}

// _drop forgets the operation seq; w.mu is held.
func (w *Writeback) _drop(seq uint64) {
	if st := w.ops[seq]; st != nil && st.op.Kind == cache.OpUpload {
		if w.uploadsOf[st.op.Ino]--; w.uploadsOf[st.op.Ino] <= 0 {
			delete(w.uploadsOf, st.op.Ino)
		}
	}
	delete(w.ops, seq)
	delete(w.noBundle, seq)
}

// _cancelUploadOf stops a running upload of a file that was just deleted
// or renamed: the rest of it would be wasted, and the retry notices.
func (w *Writeback) _cancelUploadOf(ino uint64) {
	for _, st := range w.ops {
		if st.running && st.op.Kind == cache.OpUpload && st.op.Ino == ino && st.cancel != nil {
			st.cancelled = true
			st.cancel()
		}
	}
}

func (w *Writeback) loop() {
	defer w.wg.Done()
	// Attaching reads the journal under the cache's tree lock, so that no
	// change slips between the read and the hook.
	ops, err := w.opts.Cache.AttachJournal(w.hook)
	if err != nil {
		w.opts.Log.WithError(err).Error("cannot read the write-back journal; queued changes wait for the next mount")
	}
	w.mu.Lock()
	for _, o := range ops {
		w._add(o)
	}
	w.loaded = true
	w.mu.Unlock()
	if len(ops) > 0 {
		w.opts.Log.WithField("operations", len(ops)).Info("resuming the write-back queue")
	}
	w.wg.Add(1)
	go w.dropLeftStaging()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	pause := time.NewTimer(time.Hour)
	defer pause.Stop()
	for {
		w.mu.Lock()
		start, next := w._pick(w.opts.Now())
		w.mu.Unlock()
		if len(start) == 0 {
			w.clearKnown()
		}
		for _, st := range start {
			w.wg.Add(1)
			go w.run(st)
		}
		w.broadcast()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(w.opts.Now()), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-w.ctx.Done():
			return
		case <-w.wake:
		case <-w.news:
			// News comes with every file closed; a round looks at up to
			// scanLimit operations, so such rounds are spaced a little.
			w.mu.Lock()
			gap := w._newsGap(w.opts.Now())
			w.mu.Unlock()
			pause.Reset(gap)
			select {
			case <-w.ctx.Done():
				return
			case <-pause.C:
			case <-w.wake:
				if !pause.Stop() {
					<-pause.C
				}
			}
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// _dueAt is when st may start by its own timers (its back-off, and an
// upload's --write-back delay unless a flush or an fsync wants it now),
// whether such a wait forces it, and whether they gave up on it after
// flushAttempts failures; w.mu is held.
func (w *Writeback) _dueAt(st *opState) (at time.Time, forced, givenUp bool) {
	forced = st.op.Kind == cache.OpUpload && w.forced[st.op.Ino] > 0
	at = st.notBefore
	if st.op.Kind == cache.OpUpload && w.flushing == 0 && !forced && st.readyAt.After(at) {
		at = st.readyAt
	}
	givenUp = (w.flushing > 0 || forced) && st.flushFail >= flushAttempts
	return at, forced, givenUp
}

// _pick chooses operations to start now and returns when the next one
// waiting on time becomes ready (zero: none). An operation may start when
// no earlier unfinished operation touches the same path, an ancestor or a
// descendant of it.
func (w *Writeback) _pick(now time.Time) (start []*opState, next time.Time) {
	// Finished operations leave the head at once: every round walks the
	// order from the head, and while the queue drains behind a long tar x
	// thousands of them would be walked again each round.
	head := 0
	for head < len(w.order) && w.ops[w.order[head]] == nil {
		head++
	}
	w.order = w.order[head:]
	if len(w.order) > 2*len(w.ops)+64 {
		live := w.order[:0]
		for _, seq := range w.order {
			if w.ops[seq] != nil {
				live = append(live, seq)
			}
		}
		w.order = live
	}
	if w.busy == nil {
		w.busy, w.busyAnc = make(map[string]bool), make(map[string]bool)
	}
	busy, busyAnc := w.busy, w.busyAnc
	clear(busy)
	clear(busyAnc)
	scanned, timeWaiting := 0, 0
	waiting := false
	w.openWait = false
	for i, seq := range w.order {
		st := w.ops[seq]
		if st == nil {
			continue
		}
		if scanned >= scanLimit || timeWaiting >= waitLimit || w.running >= w.opts.Transfers {
			// Every slot is taken (a finished operation wakes us) or the
			// rest waits for the head to drain.
			waiting = true
			break
		}
		scanned++
		var pbuf [2]string // Op.Paths without an allocation per operation
		paths := append(pbuf[:0], st.op.Path)
		if st.op.Kind == cache.OpRename {
			paths = append(paths, st.op.To)
		}
		// A path busy already, or below a busy folder, needs no marking:
		// everything a later operation could touch through it is blocked
		// by that folder already. While a new folder's thousands of files
		// wait behind its mkdir, that halves a round's map work.
		conflict := false
		var marked [2]bool
		for j, p := range paths {
			switch {
			case busy[p], hasBusyAncestor(busy, p):
				conflict, marked[j] = true, true
			case busyAnc[p]:
				conflict = true
			}
		}
		if !st.running && !conflict {
			at, forced, givenUp := w._dueAt(st)
			if st.op.Kind == cache.OpMkdir && w._mayBundle(st) {
				// Files written into a new folder right after it was made
				// go up with it, staged (writeback_bundle.go).
				if ready := st.op.Queued.Add(w.opts.Delay); ready.After(at) {
					at = ready
				}
			}
			if hold := w._burstHold(now, at, st.op.Queued); hold.After(at) {
				at = hold
			}
			switch {
			case givenUp:
			case at.After(now):
				waiting = true
				timeWaiting++
				if next.IsZero() || at.Before(next) {
					next = at
				}
			case st.op.Kind == cache.OpUpload && !forced && w.opts.Cache.OpenForWrite(st.op.Ino):
				waiting = true // Release wakes us
				w.openWait = true
			default:
				st.running = true
				w.running++
				if st.op.Kind == cache.OpMkdir {
					if b := w._bundle(i, st, now); b != nil {
						st.bundle = b
						w.running += b.weight - 1
						for _, m := range b.members {
							m.running, m.inBundle = true, true
						}
					}
				}
				start = append(start, st)
			}
		}
		for j, p := range paths {
			if marked[j] {
				continue
			}
			busy[p] = true
			for d := parentPath(p); d != "" && !busyAnc[d]; d = parentPath(d) {
				busyAnc[d] = true
			}
		}
	}
	w.idle = w.loaded && w.running == 0 && len(start) == 0 && !waiting
	return start, next
}

func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func hasBusyAncestor(busy map[string]bool, p string) bool {
	for d := parentPath(p); d != ""; d = parentPath(d) {
		if busy[d] {
			return true
		}
	}
	return false
}

// broadcast wakes everyone waiting for the queue to change.
func (w *Writeback) broadcast() {
	w.mu.Lock()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// run carries out one operation and records the outcome.
func (w *Writeback) run(st *opState) {
	defer w.wg.Done()
	if b := st.bundle; b != nil {
		w.runBundle(b)
		w.signal()
		return
	}
	ctx, cancel := context.WithCancel(w.ctx)
	w.mu.Lock()
	st.cancel = cancel
	w.mu.Unlock()
	w.mu.Lock()
	forced := st.op.Kind == cache.OpUpload && w.forced[st.op.Ino] > 0
	w.mu.Unlock()
	err := w.do(ctx, st, forced)
	cancel()
	now := w.opts.Now()
	w.mu.Lock()
	st.running, st.cancel = false, nil
	w.running--
	switch {
	case err == nil, errors.Is(err, cache.ErrGone):
		w._drop(st.op.Seq)
		if err == nil {
			w.stats.done++
			w.opts.Log.WithField("seq", st.op.Seq).Debugf("done: %s", st.op)
		}
	case errors.Is(err, cache.ErrBusy):
	case st.cancelled || w.ctx.Err() != nil:
		st.cancelled = false
	default:
		w._failed(st, now, err)
	}
	w.mu.Unlock()
	w.signal()
}

// _failed records a failed attempt of st; w.mu is held.
func (w *Writeback) _failed(st *opState, now time.Time, err error) {
	st.attempts++
	st.lastErr = err
	if w.flushing > 0 || w.forced[st.op.Ino] > 0 {
		st.flushFail++
	}
	st.notBefore = now.Add(w.backoff(st.attempts))
	w.stats.addError(now, st.op, err)
	w.opts.Log.WithError(err).WithField("attempt", st.attempts).Warnf("%s failed; trying again in %s", st.op, st.notBefore.Sub(now).Round(time.Millisecond))
}

// backoff doubles from MinBackoff to MaxBackoff; during a flush it stays
// short, since someone is waiting.
func (w *Writeback) backoff(attempts int) time.Duration {
	d := w.opts.MinBackoff
	for i := 1; i < attempts && d < w.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.opts.MaxBackoff)
	if w.flushing > 0 {
		d = min(d, w.opts.MinBackoff)
	}
	return d
}

// Flush starts every queued operation now (ignoring Delay) and waits until
// the journal is empty. If operations keep failing (flushAttempts each) it
// returns an error naming them; they stay queued. Files still open for
// writing keep Flush waiting until they are closed or ctx ends.
func (w *Writeback) Flush(ctx context.Context) error {
	w.mu.Lock()
	w.flushing++
	w.idle = false
	for _, st := range w.ops {
		st.flushFail = 0
		st.notBefore = time.Time{}
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.flushing--
		w.mu.Unlock()
	}()
	w.signal()
	for {
		w.mu.Lock()
		ch := w.changed
		n := len(w.ops)
		// Read with n: the journal may be loaded right after n was.
		done := w.loaded && n == 0
		idle := w.idle
		var failed []string
		if idle && n > 0 {
			failed = w._failedOps()
		}
		w.mu.Unlock()
		if done {
			return nil
		}
		if idle && len(failed) > 0 {
			return &FlushError{Failed: failed}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("flush: %w (%d operations still queued)", ctx.Err(), n)
		case <-w.ctx.Done():
			return fmt.Errorf("flush: the runner stopped with %d operations queued", n)
		}
	}
}

// _failedOps describes the operations left after a flush gave up.
func (w *Writeback) _failedOps() []string {
	var out []string
	for _, seq := range w.order {
		st := w.ops[seq]
		if st == nil {
			continue
		}
		msg := st.op.String()
		if st.lastErr != nil {
			msg += ": " + st.lastErr.Error()
		} else {
			msg += ": waits for an earlier operation"
		}
		out = append(out, msg)
	}
	return out
}

// FlushError lists what a flush could not bring to the server.
type FlushError struct{ Failed []string }

func (e *FlushError) Error() string {
	const show = 10
	msg := fmt.Sprintf("%d operations did not reach the server and stay queued for the next mount", len(e.Failed))
	for i, f := range e.Failed {
		if i == show {
			msg += fmt.Sprintf("\n  ... and %d more", len(e.Failed)-show)
			break
		}
		msg += "\n  " + f
	}
	return msg
}

// FlushFile uploads file ino now, even while it is open (fsync with
// --fsync=upload), and waits until the journal holds no upload of it. It
// fails once that upload failed flushAttempts times; it stays queued.
func (w *Writeback) FlushFile(ctx context.Context, ino uint64) error {
	w.mu.Lock()
	w.forced[ino]++
	for _, st := range w.ops {
		if st.op.Ino == ino {
			st.flushFail, st.notBefore = 0, time.Time{}
		}
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		if w.forced[ino]--; w.forced[ino] <= 0 {
			delete(w.forced, ino)
		}
		w.mu.Unlock()
	}()
	w.signal()
	for {
		w.mu.Lock()
		ch := w.changed
		pending := !w.loaded
		var failed error
		for _, st := range w.ops {
			if st.op.Kind == cache.OpUpload && st.op.Ino == ino {
				pending = true
				if st.flushFail >= flushAttempts && !st.running {
					failed = st.lastErr
				}
			}
		}
		w.mu.Unlock()
		if !pending {
			return nil
		}
		if failed != nil {
			return failed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("upload of inode %d: %w", ino, ctx.Err())
		case <-w.ctx.Done():
			return fmt.Errorf("upload of inode %d: the runner stopped", ino)
		}
	}
}

// WaitMoved waits until no queued rename has moved something onto path p or
// an ancestor of it: until then the server holds p's content under its old
// name, so a read of content not cached yet must wait.
func (w *Writeback) WaitMoved(ctx context.Context, p string) error {
	counted := false
	defer func() {
		if counted {
			w.mu.Lock()
			w.moving--
			w.mu.Unlock()
		}
	}()
	for {
		w.mu.Lock()
		ch := w.changed
		pending := false
		for _, st := range w.ops {
			if st.op.Kind == cache.OpRename && (p == st.op.To || strings.HasPrefix(p, st.op.To+"/")) {
				pending = true
				break
			}
		}
		if pending && !counted {
			w.moving++
			counted = true
		}
		w.mu.Unlock()
		if !pending {
			return nil
		}
		w.signal()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("read /%s: waiting for its rename to reach the server: %w", p, ctx.Err())
		case <-w.ctx.Done():
			return fmt.Errorf("read /%s: the write-back runner stopped", p)
		}
	}
}

// FileState tells whether an upload of file ino runs now, and whether its
// last attempt failed (it waits for a retry), for user.ftpsync.state.
func (w *Writeback) FileState(ino uint64) (uploading, failed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.uploadsOf[ino] == 0 {
		return false, false
	}
	for _, st := range w.ops {
		if st.op.Kind != cache.OpUpload || st.op.Ino != ino {
			continue
		}
		if st.running {
			uploading = true
		} else if st.lastErr != nil {
			failed = true
		}
	}
	return uploading, failed
}
