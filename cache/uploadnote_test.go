package cache

import (
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

func mustNotes(t *testing.T, c *Cache, p string) []SideState {
	t.Helper()
	ss, err := c.UploadNotes(p)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// finished records what a finished upload left at p, as FinishUpload does
// for an operation (here one already gone, so only the note changes).
func finished(c *Cache, p string, s SideState) error {
	return c.FinishUpload(1, 1<<40, 0, s, target.Entry{Size: s.Size, ModTime: s.ModTime, Precision: s.Precision}, p)
}

// Upload notes survive a reopen, keep the last few attempts, are replaced
// by a finished upload, follow renames of a file or folder (not of a
// sibling sharing its prefix), and go with a delete or a clear.
func TestUploadNotes(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, 0)
	s := func(n int64) SideState {
		return SideState{Size: n, ModTime: t0.Add(time.Duration(n)), Precision: time.Nanosecond}
	}
	for n := int64(1); n <= 4; n++ {
		if err := c.NoteUpload("d/f", s(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := finished(c, "dx/f", s(9)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c = openTest(t, dir, 0)
	defer c.Close()
	if got := mustNotes(t, c, "d/f"); len(got) != maxNotes || got[0] != s(2) || got[maxNotes-1] != s(4) {
		t.Fatalf("notes after a reopen: %+v", got)
	}
	if err := finished(c, "d/f", s(5)); err != nil {
		t.Fatal(err)
	}
	if got := mustNotes(t, c, "d/f"); len(got) != 1 || got[0] != s(5) {
		t.Fatalf("notes after a finished upload: %+v", got)
	}
	if err := c.MoveUploadNotes("d", "e"); err != nil {
		t.Fatal(err)
	}
	if got := mustNotes(t, c, "d/f"); len(got) != 0 {
		t.Fatalf("notes left at the old path: %+v", got)
	}
	if got := mustNotes(t, c, "e/f"); len(got) != 1 || got[0] != s(5) {
		t.Fatalf("notes at the new path: %+v", got)
	}
	if got := mustNotes(t, c, "dx/f"); len(got) != 1 {
		t.Fatalf("a sibling's notes moved along: %+v", got)
	}
	if err := c.MoveUploadNotes("e/f", ""); err != nil {
		t.Fatal(err)
	}
	if got := mustNotes(t, c, "e/f"); len(got) != 0 {
		t.Fatalf("notes after a delete: %+v", got)
	}
	if err := c.ClearUploadNotes(); err != nil {
		t.Fatal(err)
	}
	if got := mustNotes(t, c, "dx/f"); len(got) != 0 {
		t.Fatalf("notes after a clear: %+v", got)
	}
}
