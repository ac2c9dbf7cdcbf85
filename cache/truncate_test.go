package cache

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// newLocal creates file name in the root holding data, written and closed
// as the mount does.
func newLocal(t *testing.T, c *Cache, name string, data []byte) uint64 {
	t.Helper()
	e, err := c.CreateOpen(RootIno, name, 0o644, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(e.Ino, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(e.Ino, false); err != nil {
		t.Fatal(err)
	}
	c.Release(e.Ino, true)
	return e.Ino
}

// crash leaves the cache as kill -9 would: whatever is open is neither
// committed nor released.
func crash(t *testing.T, c *Cache) {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, of := range c.open.m {
		of.f.Close()
	}
}

// wantContent checks what the entry records and the local file holds.
func wantContent(t *testing.T, c *Cache, ino uint64, want string) {
	t.Helper()
	e, err := c.Get(ino)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(c.localPath(ino))
	if err != nil {
		t.Fatal(err)
	}
	if e.Size != int64(len(want)) || string(got) != want {
		t.Errorf("inode %d: recorded size %d, local file %q; want %q", ino, e.Size, got, want)
	}
}

// localFiles lists the files in data/ and its subfolders, by path under
// data/.
func localFiles(t *testing.T, c *Cache) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(c.dataDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(c.dataDir(), p)
		out = append(out, rel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantNoPending checks that no uncommitted content file is left in data/.
func wantNoPending(t *testing.T, c *Cache) {
	t.Helper()
	for _, p := range localFiles(t, c) {
		if strings.Contains(p, pendingMark) {
			t.Errorf("left in data/: %s", p)
		}
	}
}

// readOpen reads an open file through the cache, as any handle does.
func readOpen(t *testing.T, c *Cache, ino uint64) string {
	t.Helper()
	n, _, ok := c.OpenState(ino)
	if !ok {
		t.Fatalf("inode %d is not open", ino)
	}
	b := make([]byte, n+10)
	got, err := c.ReadLocal(ino, b, 0)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:got])
}

// rewrite opens file ino for writing, truncates it to size and writes data
// there, as a handle does after open(O_TRUNC) or ftruncate; nothing is
// committed.
func rewrite(t *testing.T, c *Cache, ino uint64, size int64, data string) {
	t.Helper()
	if err := c.OpenLocal(ino, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.TruncateLocal(ino, size); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(ino, []byte(data), size); err != nil {
		t.Fatal(err)
	}
}

func uploadQueued(t *testing.T, c *Cache, ino uint64) bool {
	t.Helper()
	ops, err := c.Journal()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		if o.Kind == OpUpload && o.Ino == ino {
			return true
		}
	}
	return false
}

// settle forgets the queued uploads, as a finished write-back would.
func settle(t *testing.T, c *Cache) {
	t.Helper()
	ops, err := c.Journal()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		if err := c.FinishOp(o.Seq); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTruncationCommittedAtClose: a handle's truncation and the writes
// after it show to every handle at once, but the file's committed content
// stays the old one until the commit; a crash before it leaves the old
// content and no trace of the new, a commit leaves the new with its upload
// queued.
func TestTruncationCommittedAtClose(t *testing.T) {
	for _, size := range []int64{0, 4} {
		dir := t.TempDir()
		c := openTest(t, dir, 0)
		ino := newLocal(t, c, "f", []byte("old content"))
		settle(t, c)
		if err := c.OpenLocal(ino, false, false, nil); err != nil { // a reader
			t.Fatal(err)
		}
		rewrite(t, c, ino, size, "NEW") // the writer
		kept := "old content"[:size] + "NEW"
		if got := readOpen(t, c, ino); got != kept {
			t.Errorf("truncate to %d: an open handle reads %q, want %q", size, got, kept)
		}
		wantContent(t, c, ino, "old content")
		crash(t, c)

		c = openTest(t, dir, 0)
		wantContent(t, c, ino, "old content")
		wantNoPending(t, c)
		if uploadQueued(t, c, ino) {
			t.Errorf("truncate to %d: an upload is queued for a change never closed", size)
		}
		rewrite(t, c, ino, size, "NEW")
		if err := c.Commit(ino, false); err != nil {
			t.Fatal(err)
		}
		wantContent(t, c, ino, kept)
		wantNoPending(t, c)
		if !uploadQueued(t, c, ino) {
			t.Errorf("truncate to %d: no upload queued after the commit", size)
		}
		c.Release(ino, true)
		c.Close()
		c = openTest(t, dir, 0)
		wantContent(t, c, ino, kept)
		c.Close()
	}
}

// TestCrashBetweenRecordAndRename: a commit whose transaction recorded the
// truncated content, cut by a crash before the rename, is finished by the
// next Open.
func TestCrashBetweenRecordAndRename(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, 0)
	ino := newLocal(t, c, "f", []byte("old content"))
	crashAfterRecord(t, c, ino)

	c = openTest(t, dir, 0)
	defer c.Close()
	wantContent(t, c, ino, "new")
	wantNoPending(t, c)
	if !uploadQueued(t, c, ino) {
		t.Error("the recorded change has no upload queued")
	}
	err := c.db.View(func(txn *badger.Txn) error {
		if _, err := txn.Get(placeKey(ino)); err == nil {
			t.Error("the place note is still there")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// crashAfterRecord rewrites ino to "new" and runs Commit up to the crash
// between its transaction and the rename of the new content into place.
func crashAfterRecord(t *testing.T, c *Cache, ino uint64) {
	t.Helper()
	settle(t, c)
	rewrite(t, c, ino, 0, "new")
	of := c.open.get(ino)
	c.treeMu.Lock()
	err := c._record(ino, 3, time.Now(), 0, of.pending, nil) // Commit, up to the crash
	c.treeMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	crash(t, c)
}

// TestRecoveryCutsUnclosedWrites: bytes a handle wrote past the recorded
// size and never closed (an append, a new file) are cut off by the next
// Open, so the mount shows, and uploads, the file as last closed; a file
// unlinked while open is gone with its entry.
func TestRecoveryCutsUnclosedWrites(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, 0)
	appended := newLocal(t, c, "log", []byte("line 1\n"))
	if err := c.OpenLocal(appended, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(appended, []byte("line 2, cut\n"), 7); err != nil {
		t.Fatal(err)
	}
	fresh, err := c.CreateOpen(RootIno, "new", 0o644, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(fresh.Ino, []byte("never closed"), 0); err != nil {
		t.Fatal(err)
	}
	unlinked := newLocal(t, c, "gone", []byte("bye"))
	if err := c.OpenLocal(unlinked, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Unlink(RootIno, "gone"); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(c.shardDir(123), "fill-123")
	if err := os.WriteFile(stray, []byte("cut copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	crash(t, c)

	c = openTest(t, dir, 0)
	defer c.Close()
	wantContent(t, c, appended, "line 1\n")
	wantContent(t, c, fresh.Ino, "")
	if !uploadQueued(t, c, fresh.Ino) {
		t.Error("the created file's upload is not queued")
	}
	if _, err := c.Get(unlinked); !errors.Is(err, ErrNotFound) {
		t.Errorf("the file unlinked while open: %v, want ErrNotFound", err)
	}
	for _, p := range []string{c.localPath(unlinked), stray} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
}

// TestReleaseDropsUncommittedTruncation: a truncation whose handle is
// released without a commit (its commit failed) is dropped: the file keeps
// its content as last closed, and the next Open checks the local files.
func TestReleaseDropsUncommittedTruncation(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, 0)
	ino := newLocal(t, c, "f", []byte("closed"))
	if err := c.OpenLocal(ino, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.TruncateLocal(ino, 2); err != nil {
		t.Fatal(err)
	}
	c.Release(ino, true)
	wantContent(t, c, ino, "closed")
	wantNoPending(t, c)
	if err := c.OpenLocal(ino, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if got := readOpen(t, c, ino); got != "closed" {
		t.Errorf("after the release a new handle reads %q", got)
	}
	c.Release(ino, false)
	c.Close()
	if _, err := os.Stat(filepath.Join(dir, cleanMark)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a close after a dropped change left the clean mark (%v)", err)
	}
}

// TestTruncationOnFullDisk: new content that does not fit fails the
// truncation with ENOSPC and changes nothing; truncating to 0 needs no
// space, and the commit frees the old content's.
func TestTruncationOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", data).CombinedOutput(); err != nil {
		t.Skipf("mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", data).Run() })
	c := openTest(t, dir, 0)
	defer c.Close()
	old := bytes.Repeat([]byte("o"), 700<<10)
	ino := newLocal(t, c, "big", old)
	if err := c.OpenLocal(ino, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.TruncateLocal(ino, 600<<10); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("truncate to 600 KiB on a full disk: %v, want ENOSPC", err)
	}
	if got := readOpen(t, c, ino); got != string(old) {
		t.Errorf("after the failed truncation a handle reads %d bytes, want the %d closed", len(got), len(old))
	}
	wantNoPending(t, c)
	if err := c.TruncateLocal(ino, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(ino, []byte("small"), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(ino, false); err != nil {
		t.Fatal(err)
	}
	c.Release(ino, true)
	wantContent(t, c, ino, "small")
	wantNoPending(t, c)
	big := bytes.Repeat([]byte("n"), 900<<10)
	newLocal(t, c, "big2", big) // fits only if the old content's space is free
}

// TestUnlinkedWhileTruncated: a file unlinked while a handle rewrites it is
// committed without an upload and leaves nothing in data/ once released.
func TestUnlinkedWhileTruncated(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	ino := newLocal(t, c, "f", []byte("old content"))
	settle(t, c)
	rewrite(t, c, ino, 0, "new")
	if err := c.Unlink(RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	if got := readOpen(t, c, ino); got != "new" {
		t.Errorf("the open handle reads %q after the unlink, want %q", got, "new")
	}
	if err := c.Commit(ino, true); err != nil {
		t.Fatal(err)
	}
	if uploadQueued(t, c, ino) {
		t.Error("an upload is queued for an unlinked file")
	}
	c.Release(ino, true)
	for _, p := range localFiles(t, c) {
		t.Errorf("left in data/: %s", p)
	}
	if _, err := c.Get(ino); !errors.Is(err, ErrNotFound) {
		t.Errorf("the unlinked entry: %v, want ErrNotFound", err)
	}
}

// A file served from the server opened with O_TRUNC is not fetched: the
// handle starts from empty content and the file becomes local, with the
// server's state as its record, only at the commit; a crash before leaves
// it a server file.
func TestTruncateServerFileWithoutFetching(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, 0)
	mustApply(t, c, RootIno, file("srv", 10, t0))
	srv := mustLookup(t, c, RootIno, "srv")
	noFill := func(Entry, io.WriterAt) error { t.Error("the old content was fetched"); return nil }
	if err := c.OpenLocal(srv.Ino, true, true, noFill); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(srv.Ino, []byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	if n, _, ok := c.OpenState(srv.Ino); !ok || n != 3 {
		t.Errorf("size through the handle: %d, %v; want 3", n, ok)
	}
	if e := mustLookup(t, c, RootIno, "srv"); e.Local || e.Size != 10 {
		t.Errorf("before the close the entry is local %v, size %d; want the server's 10", e.Local, e.Size)
	}
	crash(t, c)
	c = openTest(t, dir, 0)
	if e := mustLookup(t, c, RootIno, "srv"); e.Local || e.Size != 10 || e.Gen != srv.Gen {
		t.Errorf("after a crash before the close the entry is local %v, size %d, gen %d; want the server file", e.Local, e.Size, e.Gen)
	}
	wantNoPending(t, c)

	if err := c.OpenLocal(srv.Ino, true, true, noFill); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(srv.Ino, []byte("newer"), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(srv.Ino, false); err != nil {
		t.Fatal(err)
	}
	c.Release(srv.Ino, true)
	wantContent(t, c, srv.Ino, "newer")
	e := mustLookup(t, c, RootIno, "srv")
	if !e.Local || !e.Dirty || !e.Synced || e.SyncRemote.Size != 10 || !e.SyncRemote.ModTime.Equal(t0) || e.Upload == 0 {
		t.Errorf("after the close: %+v; want local, dirty, synced against the server's 10 bytes, upload queued", e)
	}
	c.Close()
}

// ReleaseAll commits and closes what the kernel never closed.
func TestReleaseAllCommitsLeftOpen(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	ino := newLocal(t, c, "f", []byte("old"))
	if err := c.OpenLocal(ino, true, true, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.OpenLocal(ino, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(ino, []byte("new!"), 0); err != nil {
		t.Fatal(err)
	}
	c.ReleaseAll()
	if c.OpenForWrite(ino) || c.open.get(ino) != nil {
		t.Fatal("a handle is still open after ReleaseAll")
	}
	wantContent(t, c, ino, "new!")
	wantNoPending(t, c)
}

// A second O_TRUNC open of a server file while the first handle's new
// content is uncommitted joins that handle (it used to loop until the
// first one closed) and truncates what it wrote.
func TestSecondTruncatingOpenJoinsTheFirst(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	mustApply(t, c, RootIno, file("srv", 10, t0))
	srv := mustLookup(t, c, RootIno, "srv")
	noFill := func(Entry, io.WriterAt) error { t.Error("the old content was fetched"); return nil }
	if err := c.OpenLocal(srv.Ino, true, true, noFill); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(srv.Ino, []byte("first"), 0); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.OpenLocal(srv.Ino, true, true, noFill) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a second O_TRUNC open waits for the first handle to close")
	}
	if n, _, ok := c.OpenState(srv.Ino); !ok || n != 0 {
		t.Errorf("size after the second O_TRUNC open: %d, %v; want 0", n, ok)
	}
	if _, err := c.WriteLocal(srv.Ino, []byte("second"), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(srv.Ino, false); err != nil {
		t.Fatal(err)
	}
	c.Release(srv.Ino, true)
	c.Release(srv.Ino, true)
	wantContent(t, c, srv.Ino, "second")
	if e := mustLookup(t, c, RootIno, "srv"); !e.Local || e.Size != 6 || e.Upload == 0 {
		t.Errorf("after the close: %+v; want local, 6 bytes, upload queued", e)
	}
	wantNoPending(t, c)
	c.Close()
}
