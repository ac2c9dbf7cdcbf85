package cache

import (
	"errors"
	"testing"
	"time"
)

// Names in a folder made in this run are looked up in memory; every way a
// folder's names change shows in the lookups that follow.
func TestFreshFolderLookups(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	d, err := c.Mkdir(RootIno, "d", 0o755, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := func(name string, ino uint64) {
		t.Helper()
		e, err := c.Lookup(d.Ino, name)
		switch {
		case ino == 0 && !errors.Is(err, ErrNotFound):
			t.Fatalf("lookup %s: %v, %v; want not found", name, e, err)
		case ino != 0 && (err != nil || e.Ino != ino):
			t.Fatalf("lookup %s: inode %d, %v; want %d", name, e.Ino, err, ino)
		}
	}
	if _, known := c.fresh.lookup(d.Ino, "x"); !known {
		t.Fatal("a folder made in this run is not known in memory")
	}
	a, err := c.Create(d.Ino, "a", 0o644, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Mkdir(d.Ino, "sub", 0o755, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want("a", a.Ino)
	want("sub", sub.Ino)
	want("missing", 0)

	if err := c.Rename(d.Ino, "a", d.Ino, "b", false); err != nil {
		t.Fatal(err)
	}
	want("a", 0)
	want("b", a.Ino)
	if err := c.Rename(d.Ino, "b", sub.Ino, "c", false); err != nil {
		t.Fatal(err)
	}
	want("b", 0)
	if e, err := c.Lookup(sub.Ino, "c"); err != nil || e.Ino != a.Ino {
		t.Fatalf("lookup sub/c: %v, %v", e, err)
	}
	if err := c.Unlink(sub.Ino, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(sub.Ino, "c"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup sub/c after the unlink: %v", err)
	}
	if err := c.Rmdir(d.Ino, "sub"); err != nil {
		t.Fatal(err)
	}
	want("sub", 0)
	// A listing of the server's folder brings in names made there.
	d2, err := c.Mkdir(RootIno, "d2", 0o755, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	settle(t, c) // the folder is on the server
	if _, known := c.fresh.lookup(d2.Ino, "x"); !known {
		t.Fatal("a folder made in this run is not known in memory")
	}
	mustApply(t, c, d2.Ino, file("server", 3, t0))
	if e, err := c.Lookup(d2.Ino, "server"); err != nil || e.Size != 3 {
		t.Fatalf("lookup a listed name: %v, %v", e, err)
	}
}
