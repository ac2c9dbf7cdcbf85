package cache

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// writeLocal creates (or rewrites) file name under parent with content,
// commits it and returns the entry with its queued upload.
func writeLocal(t *testing.T, c *Cache, parent uint64, name, content string) Entry {
	t.Helper()
	e, err := c.Lookup(parent, name)
	if errors.Is(err, ErrNotFound) {
		e, err = c.CreateOpen(parent, name, 0o644, time.Now(), true)
	} else if err == nil {
		err = c.OpenLocal(e.Ino, true, true, nil)
	}
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	if _, err := c.WriteLocal(e.Ino, []byte(content), 0); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if err := c.Commit(e.Ino, false); err != nil {
		t.Fatalf("commit %s: %v", name, err)
	}
	c.Release(e.Ino, true)
	e, err = c.Get(e.Ino)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// uploaded plays the write-back's part for a file's queued upload: the
// server now holds it as remote says.
func uploaded(t *testing.T, c *Cache, e Entry, remote target.Entry) Entry {
	t.Helper()
	o, cur, _, err := c.StartOp(e.Upload, false)
	if err != nil {
		t.Fatalf("start upload of %s: %v", e.Name, err)
	}
	local := SideState{Size: cur.Size, ModTime: cur.ModTime, Precision: cur.Precision}
	if err := c.FinishUpload(o.Seq, cur.Ino, cur.LocalGen, local, remote, o.Path); err != nil {
		t.Fatalf("finish upload of %s: %v", e.Name, err)
	}
	e, err = c.Get(e.Ino)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func applyFull(t *testing.T, c *Cache, ino uint64, mark uint64, list ...target.Entry) ListingResult {
	t.Helper()
	res, err := c.ApplyListing(ino, Listing{Entries: list, Mark: mark, Decide: testDecide, Now: time.Now(), RecordKept: true})
	if err != nil {
		t.Fatalf("apply listing: %v", err)
	}
	return res
}

func hasChange(ch []Change, k ChangeKind, name string) bool {
	for _, c := range ch {
		if c.Kind == k && c.Name == name {
			return true
		}
	}
	return false
}

// A listing is applied to the names no local operation touches even while
// others are queued (it used to be ignored whole); the busy names wait.
func TestListingAppliesAroundQueuedOperations(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	mustApply(t, c, RootIno, file("theirs", 3, t0), file("mine", 3, t0))
	mine := mustLookup(t, c, RootIno, "mine")
	if err := c.Unlink(RootIno, "mine"); err != nil {
		t.Fatal(err)
	}
	writeLocal(t, c, RootIno, "new", "abc")
	if c.JournalLen() != 2 {
		t.Fatalf("journal holds %d operations, want 2 (delete and upload)", c.JournalLen())
	}
	res := applyFull(t, c, RootIno, c.ListingMark(), file("theirs", 5, t0.Add(time.Hour)), file("mine", 3, t0), file("added", 1, t0))
	if !res.Deferred {
		t.Error("busy names were skipped but the result is not deferred")
	}
	if !hasChange(res.Changes, ChangeContent, "theirs") || !hasChange(res.Changes, ChangeAdded, "added") {
		t.Errorf("changes %v miss the server's edit of theirs or its new file", res.Changes)
	}
	if _, err := c.Lookup(RootIno, "mine"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the listing brought back mine (inode %d), deleted here with its delete queued: %v", mine.Ino, err)
	}
	if _, err := c.Lookup(RootIno, "new"); err != nil {
		t.Errorf("the listing removed new, created here with its upload queued: %v", err)
	}
	if e := mustLookup(t, c, RootIno, "theirs"); e.Size != 5 {
		t.Errorf("theirs has size %d, want the server's 5", e.Size)
	}
}

// An operation that ends while a listing runs may or may not be in it:
// the names it touched wait for the next listing.
func TestListingSkipsNamesEndedMeanwhile(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	mustApply(t, c, RootIno, file("a", 1, t0))
	e := writeLocal(t, c, RootIno, "b", "bb")
	mark := c.ListingMark() // the listing starts, the upload finishes
	uploaded(t, c, e, file("b", 2, t0))
	res := applyFull(t, c, RootIno, mark, file("a", 1, t0))
	if !res.Deferred {
		t.Error("a name whose upload ended during the listing was not deferred")
	}
	if _, err := c.Lookup(RootIno, "b"); err != nil {
		t.Fatalf("a listing begun before b's upload ended removed it: %v", err)
	}
	res = applyFull(t, c, RootIno, c.ListingMark(), file("a", 1, t0), file("b", 2, t0))
	if res.Deferred || len(res.Changes) != 0 {
		t.Errorf("a later listing reports %v (deferred %v), want nothing", res.Changes, res.Deferred)
	}
}

// A local copy that did not change here gives way to the server's new
// version; one that changed here, or is open, stays.
func TestListingReplacesCleanLocalCopies(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	mustApply(t, c, RootIno)
	clean := uploaded(t, c, writeLocal(t, c, RootIno, "clean", "v1"), file("clean", 2, t0))
	uploaded(t, c, writeLocal(t, c, RootIno, "dirty", "v1"), file("dirty", 2, t0))
	writeLocal(t, c, RootIno, "dirty", "v2 here")
	open := uploaded(t, c, writeLocal(t, c, RootIno, "open", "v1"), file("open", 2, t0))
	if err := c.OpenLocal(open.Ino, false, false, nil); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Minute)
	list := []target.Entry{file("clean", 9, later), file("dirty", 9, later), file("open", 9, later)}
	res := applyFull(t, c, RootIno, c.ListingMark(), list...)
	// dirty is busy (its upload is queued); open is deferred.
	if !res.Deferred {
		t.Error("open or busy files were left but the result is not deferred")
	}
	got := mustLookup(t, c, RootIno, "clean")
	if got.Local || got.Size != 9 || got.Gen != clean.Gen+1 || !hasChange(res.Changes, ChangeContent, "clean") {
		t.Errorf("clean after the server changed it: local %v size %d gen %d (was %d), changes %v; want the server's version",
			got.Local, got.Size, got.Gen, clean.Gen, res.Changes)
	}
	if _, err := os.Stat(c.localPath(clean.Ino)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the local copy of clean is still there: %v", err)
	}
	if got := mustLookup(t, c, RootIno, "dirty"); !got.Local || got.Size != int64(len("v2 here")) {
		t.Errorf("dirty changed here but the listing replaced it: %+v", got)
	}
	if got := mustLookup(t, c, RootIno, "open"); !got.Local {
		t.Error("open is open through the mount but lost its local copy")
	}
	c.Release(open.Ino, false)
	res = applyFull(t, c, RootIno, c.ListingMark(), list...)
	if got := mustLookup(t, c, RootIno, "open"); got.Local || got.Size != 9 {
		t.Errorf("open, once closed, still holds its local copy after a listing: %+v", got)
	}
	// The file can be opened again: its content now comes from the server.
	filled := false
	err := c.OpenLocal(clean.Ino, false, false, func(e Entry, w io.WriterAt) error {
		filled = true
		_, err := w.WriteAt([]byte("from srv!"), 0)
		return err
	})
	if err != nil || !filled {
		t.Fatalf("open after the server's version replaced the local copy: %v (filled %v)", err, filled)
	}
	c.Release(clean.Ino, false)
}

// A folder the server deleted goes, local copies included, unless a file
// in it changed here: then it stays with that file, the rest goes, and
// the conflict is recorded once.
func TestListingKeepsDeletedFolderWithLocalChanges(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	mustApply(t, c, RootIno, dir("gone"), dir("kept"))
	gone, kept := mustLookup(t, c, RootIno, "gone"), mustLookup(t, c, RootIno, "kept")
	mustApply(t, c, gone.Ino, file("x", 1, t0))
	mustApply(t, c, kept.Ino, file("y", 1, t0), dir("sub"))
	sub := mustLookup(t, c, kept.Ino, "sub")
	mustApply(t, c, sub.Ino, file("z", 1, t0))
	local := uploaded(t, c, writeLocal(t, c, gone.Ino, "copy", "c"), file("copy", 1, t0))
	edited := writeLocal(t, c, sub.Ino, "edited", "e")
	uploaded(t, c, edited, file("edited", 1, t0))
	writeLocal(t, c, sub.Ino, "edited", "e2")
	res := applyFull(t, c, RootIno, c.ListingMark())
	if len(res.Kept) != 1 || res.Kept[0] != "kept" || !res.Deferred {
		t.Fatalf("kept folders %v (deferred %v), want [kept]", res.Kept, res.Deferred)
	}
	if _, err := c.Lookup(RootIno, "gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("gone holds no local change but stayed: %v", err)
	}
	if _, err := os.Stat(c.localPath(local.Ino)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the local copy of gone/copy was left in the cache: %v", err)
	}
	if _, err := c.Lookup(sub.Ino, "edited"); err != nil {
		t.Errorf("kept/sub/edited changed here but went: %v", err)
	}
	for _, n := range []struct {
		parent uint64
		name   string
	}{{kept.Ino, "y"}, {sub.Ino, "z"}} {
		if _, err := c.Lookup(n.parent, n.name); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s did not change here but stayed in the deleted folder: %v", n.name, err)
		}
	}
	applyFull(t, c, RootIno, c.ListingMark())
	rs, err := c.Conflicts()
	if err != nil || len(rs) != 1 || rs[0].Path != "kept" || rs[0].Kind != ConflictFolderKept {
		t.Fatalf("conflicts %+v (%v), want one kept-folder conflict at kept", rs, err)
	}
	if in, _ := c.InConflict(mustLookup(t, c, RootIno, "kept").Ino); !in {
		t.Error("InConflict(kept) is false")
	}
}

// A local file removed by a listing while open stays readable through its
// handle, then goes with the last one.
func TestListingRemovesOpenFileLikeUnlink(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	mustApply(t, c, RootIno)
	e := uploaded(t, c, writeLocal(t, c, RootIno, "f", "hello"), file("f", 5, t0))
	if err := c.OpenLocal(e.Ino, false, false, nil); err != nil {
		t.Fatal(err)
	}
	res := applyFull(t, c, RootIno, c.ListingMark())
	if !hasChange(res.Changes, ChangeRemoved, "f") {
		t.Fatalf("changes %v, want f removed", res.Changes)
	}
	buf := make([]byte, 5)
	if n, err := c.ReadLocal(e.Ino, buf, 0); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read through the open handle: %q, %v", buf[:n], err)
	}
	c.Release(e.Ino, false)
	if _, err := os.Stat(c.localPath(e.Ino)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the local copy outlived its last handle: %v", err)
	}
	if _, err := c.Get(e.Ino); !errors.Is(err, ErrNotFound) {
		t.Errorf("the entry outlived its last handle: %v", err)
	}
}

// The index of queued operations is rebuilt from the journal on open.
func TestBusyNamesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, 0)
	mustApply(t, c, RootIno, file("a", 1, t0))
	if err := c.Unlink(RootIno, "a"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c = openTest(t, dir, 0)
	defer c.Close()
	res := applyFull(t, c, RootIno, c.ListingMark(), file("a", 1, t0))
	if _, err := c.Lookup(RootIno, "a"); !errors.Is(err, ErrNotFound) || !res.Deferred {
		t.Errorf("after reopening, a listing brought back a file whose delete is queued (deferred %v): %v", res.Deferred, err)
	}
}

func TestConflictKindText(t *testing.T) {
	for k := ConflictBothChanged; k <= ConflictFolderNotEmpty; k++ {
		b, err := k.MarshalText()
		var back ConflictKind
		if err != nil || back.UnmarshalText(b) != nil || back != k {
			t.Errorf("kind %d: %q, %v: read back as %d", k, b, err, back)
		}
	}
	var k ConflictKind
	if k.UnmarshalText([]byte("nonsense")) == nil {
		t.Error("an unknown kind was read without an error")
	}
}
