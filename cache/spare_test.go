package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// localNames is localFiles by file name, sorted.
func localNames(t *testing.T, c *Cache) []string {
	t.Helper()
	var names []string
	for _, p := range localFiles(t, c) {
		names = append(names, filepath.Base(p))
	}
	sort.Strings(names)
	return names
}

func waitSpares(t *testing.T, c *Cache) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.spare.ready) < spareFiles {
		if time.Now().After(deadline) {
			t.Fatalf("%d spare files made, want %d", len(c.spare.ready), spareFiles)
		}
		time.Sleep(time.Millisecond)
	}
}

// Creates take local files made ahead; the ones not taken are gone after
// Close, and a reopened cache hands out inode numbers no file uses.
func TestSpareLocalFiles(t *testing.T) {
	dir := t.TempDir()
	c := openTestSpares(t, dir, 0)
	if got := localNames(t, c); len(got) != 0 {
		t.Fatalf("a new cache has local files %v", got)
	}
	var want []string
	for i := range 2 * spareFiles {
		e, err := c.Create(RootIno, fmt.Sprintf("f%d", i), 0o644, t0)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprint(e.Ino))
		if i == 0 {
			waitSpares(t, c) // the rest come from spares
		}
	}
	waitSpares(t, c)
	if got := localNames(t, c); len(got) != len(want)+spareFiles {
		t.Fatalf("%d local files with the spares, want %d", len(got), len(want)+spareFiles)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c = openTestSpares(t, dir, 0)
	defer c.Close()
	sort.Strings(want)
	if got := localNames(t, c); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after Close the local files are %v, want %v", got, want)
	}
	e, err := c.Create(RootIno, "after", 0o644, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if w == fmt.Sprint(e.Ino) {
			t.Fatalf("inode %d handed out twice", e.Ino)
		}
	}
}

// Spares left by a crash own no entry: the next Open removes them.
func TestSpareLocalFilesAfterCrash(t *testing.T) {
	dir := t.TempDir()
	c := openTestSpares(t, dir, 0)
	e, err := c.Create(RootIno, "kept", 0o644, t0)
	if err != nil {
		t.Fatal(err)
	}
	waitSpares(t, c)
	// As after kill -9: the spares stay on disk (taken out of the maker's
	// reach), and no clean mark.
	for len(c.spare.ready) > 0 {
		s := <-c.spare.ready
		s.f.Close()
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, cleanMark)); err != nil {
		t.Fatal(err)
	}
	if got := localNames(t, c); len(got) != 1+spareFiles {
		t.Fatalf("%d local files before the reopen, want %d", len(got), 1+spareFiles)
	}
	c = openTestSpares(t, dir, 0)
	defer c.Close()
	if got := localNames(t, c); fmt.Sprint(got) != fmt.Sprint([]string{fmt.Sprint(e.Ino)}) {
		t.Fatalf("after the crash the local files are %v, want only %d", got, e.Ino)
	}
	mustLookup(t, c, RootIno, "kept")
}
