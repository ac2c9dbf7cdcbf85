package sync

import (
	"testing"
	"time"
)

// While a burst holds operations back, news of queued operations gathers
// for burstWindow before a round (nothing queued then may start sooner);
// otherwise, and whenever a flush, an fsync or a rename that a read waits
// for wants the queue moving, for roundGap only.
func TestNewsGapDuringBurst(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	w := &Writeback{opts: WritebackOptions{Delay: 2 * time.Second}}
	if got := w._newsGap(now); got != roundGap {
		t.Fatalf("no burst: gap %v, want %v", got, roundGap)
	}
	w.burst.add(now, burstChanges)
	if got := w._newsGap(now); got != burstWindow {
		t.Fatalf("burst: gap %v, want %v", got, burstWindow)
	}
	for name, set := range map[string]func(w *Writeback){
		"flush":   func(w *Writeback) { w.flushing = 1 },
		"fsync":   func(w *Writeback) { w.forced = map[uint64]int{7: 1} },
		"moving":  func(w *Writeback) { w.moving = 1 },
		"delay 0": func(w *Writeback) { w.opts.Delay = 0 },
	} {
		w2 := &Writeback{opts: w.opts, burst: w.burst}
		set(w2)
		if got := w2._newsGap(now); got != roundGap {
			t.Errorf("burst with %s: gap %v, want %v", name, got, roundGap)
		}
	}
	if got := w._newsGap(now.Add(2 * burstWindow)); got != roundGap {
		t.Fatalf("after the burst paused: gap %v, want %v", got, roundGap)
	}
}
