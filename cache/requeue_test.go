package cache

import (
	"testing"
	"time"
)

// A commit moves the file's queued upload to the journal's end, after what
// was queued since, so that it goes after those; where it is the newest
// operation already it stays, and the runner is told to time it from the
// commit (JournalEvent.Touched).
func TestCommitMovesUploadToJournalEnd(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	var events []JournalEvent
	c.SetJournalHook(func(ev JournalEvent) { events = append(events, ev) })
	commit := func(ino uint64) {
		t.Helper()
		if _, err := c.WriteLocal(ino, []byte("x"), 0); err != nil {
			t.Fatal(err)
		}
		if err := c.Commit(ino, false); err != nil {
			t.Fatal(err)
		}
	}
	uploads := func() map[uint64]uint64 { // ino: seq
		t.Helper()
		ops, err := c.Journal()
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint64]uint64{}
		for _, o := range ops {
			if o.Kind == OpUpload {
				m[o.Ino] = o.Seq
			}
		}
		return m
	}

	a, err := c.CreateOpen(RootIno, "a", 0o644, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	before := uploads()[a.Ino]
	events = nil
	start := time.Now().UTC()
	commit(a.Ino) // newest: stays
	if got := uploads()[a.Ino]; got != before {
		t.Fatalf("the newest upload moved from %d to %d", before, got)
	}
	if len(events) != 1 || len(events[0].Touched) != 1 || events[0].Touched[0] != before ||
		len(events[0].Added)+len(events[0].Removed) != 0 || events[0].At.Before(start) {
		t.Fatalf("events %+v, want one touching %d", events, before)
	}

	b, err := c.CreateOpen(RootIno, "b", 0o644, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	commit(a.Ino) // b's upload came since: a's moves after it
	got := uploads()
	if got[a.Ino] <= got[b.Ino] {
		t.Fatalf("a's upload %d is not after b's %d", got[a.Ino], got[b.Ino])
	}
	// A rename of a file not uploaded yet renames its queued upload
	// (the newest then): b's stays where the rename put it.
	if err := c.Rename(RootIno, "b", RootIno, "c", false); err != nil {
		t.Fatal(err)
	}
	seqB := uploads()[b.Ino]
	commit(b.Ino)
	if got := uploads()[b.Ino]; got != seqB {
		t.Fatalf("b's renamed upload moved from %d to %d", seqB, got)
	}
	ops, err := c.Journal()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		if o.Ino == b.Ino && o.Path != "c" {
			t.Fatalf("after the rename b's operation %v names %q, want c", o, o.Path)
		}
	}
	c.Release(a.Ino, true)
	c.Release(b.Ino, true)
}
