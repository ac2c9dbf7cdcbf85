package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// passFile creates name for writing as the mount does for FUSE
// passthrough, and writes data into its local file as the kernel does,
// without the cache seeing it.
func passFile(t *testing.T, c *Cache, name, data string) uint64 {
	t.Helper()
	e, err := c.CreateOpen(RootIno, name, 0o644, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.PassthroughFd(e.Ino); !ok {
		t.Fatal("no passthrough file")
	}
	if err := os.WriteFile(c.localPath(e.Ino), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return e.Ino
}

// crashOpen leaves the cache as kill -9 would with files open: no clean
// mark, nothing released.
func crashOpen(t *testing.T, c *Cache) {
	t.Helper()
	crash(t, c)
	os.Remove(filepath.Join(c.dir, cleanMark))
}

// A passthrough file's close marks it; its release commits. A crash in
// between loses nothing closed: the next Open records the mark, with the
// upload queued. Writes after the close and a stale mark do not count.
func TestCloseMark(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, 0)
	ino := passFile(t, c, "closed", "whole content")
	mt := time.Date(2005, 6, 7, 8, 9, 10, 0, time.UTC)
	if err := os.Chtimes(c.localPath(ino), mt, mt); err != nil {
		t.Fatal(err)
	}
	if err := c.CommitClose(ino); err != nil {
		t.Fatal(err)
	}
	if e, _ := c.Get(ino); e.Size != 0 {
		t.Fatalf("committed at the close already: size %d", e.Size)
	}
	// Written after the close, never closed again: cut by the recovery.
	f, err := os.OpenFile(c.localPath(ino), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(" and more")
	f.Close()
	open := passFile(t, c, "open", "never closed")

	// Released: committed. Then truncated by path, which commits at once;
	// the mark is stale from then on.
	released := passFile(t, c, "released", "released content")
	if err := c.CommitClose(released); err != nil {
		t.Fatal(err)
	}
	c.Release(released, true)
	waitReleased(t, c, released)
	if e, _ := c.Get(released); e.Size != int64(len("released content")) {
		t.Fatalf("the release did not commit: size %d", e.Size)
	}
	if err := c.OpenLocal(released, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.TruncateLocal(released, 3); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(released, false); err != nil {
		t.Fatal(err)
	}
	c.Release(released, true)

	crashOpen(t, c)
	c = openTest(t, dir, 0)
	defer c.Close()
	wantContent(t, c, ino, "whole content")
	if e, _ := c.Get(ino); !e.ModTime.Equal(mt) || !e.Dirty {
		t.Errorf("recorded mtime %v dirty %v, want %v and dirty", e.ModTime, e.Dirty, mt)
	}
	if !uploadQueued(t, c, ino) {
		t.Error("no upload queued for the closed file")
	}
	wantContent(t, c, open, "")
	wantContent(t, c, released, "rel")
}

// waitReleased waits until ino is no longer open in the cache.
func waitReleased(t *testing.T, c *Cache, ino uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.open.get(ino) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("inode %d not released after 10s", ino)
		}
		time.Sleep(time.Millisecond)
	}
}

// The release of a marked file commits it; Close then leaves the cache
// clean, with every upload queued.
func TestReleaseCommitsMarks(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, 0)
	var inos []uint64
	for i := range 20 {
		ino := passFile(t, c, fmt.Sprintf("f%02d", i), strings.Repeat("x", i))
		if err := c.CommitClose(ino); err != nil {
			t.Fatal(err)
		}
		inos = append(inos, ino)
	}
	for _, ino := range inos {
		c.Release(ino, true)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, cleanMark)); err != nil {
		t.Fatalf("not closed cleanly: %v", err)
	}
	c = openTest(t, dir, 0)
	defer c.Close()
	for i, ino := range inos {
		wantContent(t, c, ino, strings.Repeat("x", i))
		if !uploadQueued(t, c, ino) {
			t.Errorf("inode %d: no upload queued", ino)
		}
	}
}
