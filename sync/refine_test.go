package sync

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// minuteLister shows a folder the way a LIST-only server does: times cut to
// the minute, with MDTM (RefineModTime) giving them to the second.
type minuteLister struct {
	target.Target
	refines atomic.Int64
}

func (m *minuteLister) List(ctx context.Context, dir string) ([]target.Entry, error) {
	ents, err := m.Target.List(ctx, dir)
	for i := range ents {
		ents[i].ModTime = ents[i].ModTime.Truncate(time.Minute)
		ents[i].Precision = time.Minute
	}
	return ents, err
}

func (m *minuteLister) RefineModTime(ctx context.Context, p string) (time.Time, error) {
	m.refines.Add(1)
	e, err := m.Target.Stat(ctx, p)
	return e.ModTime.Truncate(time.Second), err
}

func TestRefineAmbiguousListing(t *testing.T) {
	e := newSyncEnv(t)
	ml := &minuteLister{Target: e.remote}
	e.remote = ml
	now := time.Now().UTC()
	minute := now.Truncate(time.Minute)
	writeAt(t, e.ldir, "f", "aaaa", minute.Add(5*time.Second))
	e.mustRun(Options{Mode: ModeSync, Now: func() time.Time { return now }})
	// The server's copy changes within the same minute, same size: only
	// MDTM can tell.
	writeAt(t, e.rdir, "f", "bbbb", minute.Add(20*time.Second))
	sum, out := e.mustRun(Options{Mode: ModeSync, Now: func() time.Time { return now }})
	if sum.FilesDown != 1 || ml.refines.Load() == 0 {
		t.Errorf("same-minute change not found: %+v, %d refines\n%s", sum, ml.refines.Load(), out)
	}
	if got := readAt(t, e.ldir, "f"); got != "bbbb" {
		t.Errorf("local f = %q", got)
	}
	// Records taken long after the listed minute need no MDTM: a later
	// change would show in another minute.
	sum, _ = e.mustRun(Options{Mode: ModeSync})
	if sum.FilesDown+sum.FilesUp != 0 {
		t.Errorf("third run: %+v", sum)
	}
	e2 := newSyncEnv(t)
	ml2 := &minuteLister{Target: e2.remote}
	e2.remote = ml2
	old := time.Date(2024, 1, 1, 10, 0, 30, 0, time.UTC)
	writeAt(t, e2.ldir, "g", "gggg", old)
	e2.mustRun(Options{Mode: ModeSync})
	n := ml2.refines.Load()
	e2.noop(Options{Mode: ModeSync})
	if ml2.refines.Load() != n {
		t.Errorf("a no-op sync of an old file asked MDTM %d times", ml2.refines.Load()-n)
	}
}
