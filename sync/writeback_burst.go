package sync

import "time"

// A burst of local changes (tar x, cp -r, git clone, rsync into the mount)
// writes hundreds of files a second. Uploads run meanwhile take the CPU and
// the disk from the writer (on a 2-core machine they tripled the time of a
// tar x of Go's source tree) while the server gets the files no sooner
// overall. So while a burst goes on the write-back waits for it to pause,
// each operation at most burstHoldFactor times Delay past the time it was
// due; after that they run beside the writer as usual. A flush, an fsync
// waiting for the server, a read waiting for a rename (WaitMoved) and a
// Delay of zero do not wait.

const (
	// burstWindow and burstChanges define a burst: at least burstChanges
	// journal operations queued within one or two windows. An editor's
	// save queues a few; tar x two per file.
	burstWindow  = 250 * time.Millisecond
	burstChanges = 32
	// burstHoldFactor bounds the wait: 15 times Delay, 30s by default.
	burstHoldFactor = 15
)

// burstMeter counts the operations queued in the current window and the
// one before.
type burstMeter struct {
	start     time.Time // of the current window
	cur, prev int
}

func (b *burstMeter) add(now time.Time, n int) {
	b.roll(now)
	b.cur += n
}

func (b *burstMeter) roll(now time.Time) {
	switch d := now.Sub(b.start); {
	case d < 0 || d >= 2*burstWindow:
		b.start, b.cur, b.prev = now, 0, 0
	case d >= burstWindow:
		b.start, b.prev, b.cur = b.start.Add(burstWindow), b.cur, 0
	}
}

// active reports whether a burst is going on.
func (b *burstMeter) active(now time.Time) bool {
	b.roll(now)
	return b.cur+b.prev >= burstChanges
}

// _burstHold returns until when an operation due at due waits for the
// burst going on to pause (zero: it does not wait); w.mu is held.
func (w *Writeback) _burstHold(now, due time.Time, queued time.Time) time.Time {
	if !w._holding(now) {
		return time.Time{}
	}
	if due.Before(queued) {
		due = queued
	}
	until := due.Add(burstHoldFactor * w.opts.Delay)
	if !until.After(now) {
		return time.Time{}
	}
	// Looked at again once the burst may have paused.
	return minTime(until, now.Add(burstWindow))
}

// _holding reports whether a burst going on holds operations back; w.mu
// is held.
func (w *Writeback) _holding(now time.Time) bool {
	return w.flushing == 0 && len(w.forced) == 0 && w.moving == 0 && w.opts.Delay > 0 && w.burst.active(now)
}

// _newsGap is how long the runner lets news of queued operations gather
// before a round: roundGap, or burstWindow while a burst holds operations
// back, since nothing it queues may start sooner (a round with thousands
// of operations queued took a tenth of the mount's CPU during tar x when
// run every roundGap); w.mu is held.
func (w *Writeback) _newsGap(now time.Time) time.Duration {
	if w._holding(now) {
		return burstWindow
	}
	return roundGap
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
