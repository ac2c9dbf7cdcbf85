package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

func testLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// openTest opens a cache that makes each local file when a create needs
// it, without spares (spare.go), so that data/ holds only what the test
// made.
func openTest(t *testing.T, dir string, maxSize int64) *Cache {
	t.Helper()
	c := openTestSpares(t, dir, maxSize)
	c.spare.off = true
	return c
}

// openTestSpares opens a cache as the mount does.
func openTestSpares(t *testing.T, dir string, maxSize int64) *Cache {
	t.Helper()
	c, err := Open(Options{Dir: dir, MaxSize: maxSize, Log: testLog()})
	if err != nil {
		t.Fatalf("open cache: %v", err)
	}
	return c
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func file(name string, size int64, mtime time.Time) target.Entry {
	return target.Entry{Name: name, Size: size, ModTime: mtime, Precision: time.Second, Mode: 0o644}
}

func dir(name string) target.Entry {
	return target.Entry{Name: name, IsDir: true, ModTime: t0, Precision: time.Second, Mode: 0o755}
}

func mustApply(t *testing.T, c *Cache, ino uint64, list ...target.Entry) []Change {
	t.Helper()
	res, err := c.ApplyListing(ino, Listing{Entries: list, Mark: c.ListingMark(), Decide: testDecide, Now: time.Now()})
	if err != nil {
		t.Fatalf("apply listing: %v", err)
	}
	return res.Changes
}

// testDecide stands in for sync's decider (the cache cannot import sync;
// sync's tests run the real one against a cache): a file changed here is
// left alone, otherwise the listing is compared with the record of the
// server's side by size and by mtime at the coarser precision.
func testDecide(cached *Entry, listed *target.Entry) Verdict {
	rec := SideState{Size: cached.Size, ModTime: cached.ModTime, Precision: cached.Precision}
	if cached.Local {
		if cached.Dirty || cached.Upload != 0 || !cached.Synced || !cached.OnServer {
			return Leave
		}
		rec = cached.SyncRemote
	}
	if listed == nil {
		return Drop
	}
	p := max(rec.Precision, listed.Precision, time.Second)
	if listed.Size != rec.Size || !listed.ModTime.Truncate(p).Equal(rec.ModTime.Truncate(p)) {
		return Take
	}
	return Same
}

func mustLookup(t *testing.T, c *Cache, parent uint64, name string) Entry {
	t.Helper()
	e, err := c.Lookup(parent, name)
	if err != nil {
		t.Fatalf("lookup %q: %v", name, err)
	}
	return e
}

func TestInodesStableAcrossReopen(t *testing.T) {
	d := t.TempDir()
	c := openTest(t, d, 0)
	mustApply(t, c, RootIno, file("a b.txt", 3, t0), dir(".hidden"), file("ünï", 0, t0))
	h := mustLookup(t, c, RootIno, ".hidden")
	mustApply(t, c, h.Ino, file("x", 5, t0))
	x := mustLookup(t, c, h.Ino, "x")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	c = openTest(t, d, 0)
	defer c.Close()
	if got := mustLookup(t, c, RootIno, ".hidden"); got.Ino != h.Ino || !got.IsDir || got.ListedAt.IsZero() {
		t.Fatalf("after reopen .hidden = %+v, want ino %d, listed dir", got, h.Ino)
	}
	if got := mustLookup(t, c, h.Ino, "x"); got.Ino != x.Ino || got.Size != 5 || !got.ModTime.Equal(t0) {
		t.Fatalf("after reopen x = %+v", got)
	}
	p, err := c.Path(x.Ino)
	if err != nil || p != ".hidden/x" {
		t.Fatalf("Path = %q, %v; want .hidden/x", p, err)
	}
	kids, err := c.Children(RootIno)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range kids {
		names = append(names, k.Name)
	}
	if fmt.Sprint(names) != "[.hidden a b.txt ünï]" {
		t.Fatalf("children = %q", names)
	}
	// New entries after reopen get fresh numbers, never reused ones.
	mustApply(t, c, RootIno, file("a b.txt", 3, t0), dir(".hidden"), file("ünï", 0, t0), file("new", 1, t0))
	if n := mustLookup(t, c, RootIno, "new"); n.Ino <= x.Ino {
		t.Fatalf("new ino %d not above earlier %d", n.Ino, x.Ino)
	}
}

func TestSecondOpenFailsClearly(t *testing.T) {
	d := t.TempDir()
	c := openTest(t, d, 0)
	defer c.Close()
	_, err := Open(Options{Dir: d, Log: testLog()})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	fi, err := os.Stat(d)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir mode %v, %v; want 0700", fi.Mode(), err)
	}
	lf, err := os.Stat(filepath.Join(d, "lock"))
	if err != nil || lf.Mode().Perm() != 0o600 {
		t.Fatalf("lock file mode %v, %v; want 0600", lf.Mode(), err)
	}
}

func TestApplyListingChanges(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	if ch := mustApply(t, c, RootIno, file("keep", 10, t0), file("edit", 10, t0), file("gone", 1, t0), dir("sub")); len(ch) != 0 {
		t.Fatalf("first listing reported %v, want nothing", ch)
	}
	sub := mustLookup(t, c, RootIno, "sub")
	mustApply(t, c, sub.Ino, file("deep", 4, t0))
	deep := mustLookup(t, c, sub.Ino, "deep")
	edit := mustLookup(t, c, RootIno, "edit")
	if err := c.PutBlock(edit.Ino, edit.Gen, 0, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := c.PutBlock(deep.Ino, deep.Gen, 0, []byte("abcd")); err != nil {
		t.Fatal(err)
	}

	// Same second at a coarser precision is no change; "sub" became a file.
	ch := mustApply(t, c, RootIno,
		target.Entry{Name: "keep", Size: 10, ModTime: t0.Add(20 * time.Second), Precision: time.Minute},
		file("edit", 10, t0.Add(time.Hour)), file("sub", 7, t0), file("added", 2, t0))
	got := map[string]ChangeKind{}
	for _, x := range ch {
		got[fmt.Sprint(x.Name, "/", x.Kind)] = x.Kind
	}
	want := []string{
		fmt.Sprint("keep/", ChangeAttr), fmt.Sprint("edit/", ChangeContent), fmt.Sprint("gone/", ChangeRemoved),
		fmt.Sprint("sub/", ChangeRemoved), fmt.Sprint("sub/", ChangeAdded), fmt.Sprint("added/", ChangeAdded),
	}
	for _, w := range want {
		if _, ok := got[w]; !ok {
			t.Errorf("missing change %s in %v", w, ch)
		}
	}
	if len(ch) != len(want) {
		t.Errorf("changes = %v, want %d", ch, len(want))
	}
	if _, err := c.ReadBlock(edit.Ino, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("changed file's block still cached: %v", err)
	}
	if _, err := c.Get(deep.Ino); !errors.Is(err, ErrNotFound) {
		t.Errorf("entry below a removed directory survives: %v", err)
	}
	if _, err := c.ReadBlock(deep.Ino, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("content below a removed directory survives: %v", err)
	}
	if u, _ := c.Usage(); u.Used != 0 {
		t.Errorf("usage after removals = %d, want 0", u.Used)
	}
	if e := mustLookup(t, c, RootIno, "edit"); e.Ino != edit.Ino || e.Gen != edit.Gen+1 {
		t.Errorf("edited file: ino %d gen %d; want same ino %d, gen %d", e.Ino, e.Gen, edit.Ino, edit.Gen+1)
	}
	if e := mustLookup(t, c, RootIno, "sub"); e.IsDir || e.Ino == sub.Ino {
		t.Errorf("sub turned file kept the directory's inode: %+v", e)
	}
}

func TestBlocksAndStaleGen(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	size := int64(BlockSize + 100)
	mustApply(t, c, RootIno, file("f", size, t0))
	f := mustLookup(t, c, RootIno, "f")
	b0 := bytes.Repeat([]byte{7}, BlockSize)
	if err := c.PutBlock(f.Ino, f.Gen, 0, b0); err != nil {
		t.Fatal(err)
	}
	if err := c.PutBlock(f.Ino, f.Gen, 1, make([]byte, 99)); !errors.Is(err, ErrStale) {
		t.Fatalf("short last block stored: %v", err)
	}
	if err := c.PutBlock(f.Ino, f.Gen+1, 1, make([]byte, 100)); !errors.Is(err, ErrStale) {
		t.Fatalf("block of another generation stored: %v", err)
	}
	if _, err := c.ReadBlock(f.Ino, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing block read: %v", err)
	}
	got, err := c.ReadBlock(f.Ino, 0)
	if err != nil || !bytes.Equal(got, b0) {
		t.Fatalf("read block 0: %v", err)
	}
	if fmt.Sprint(c.CachedBlocks(f.Ino)) != "[0]" {
		t.Fatalf("cached blocks %v", c.CachedBlocks(f.Ino))
	}
}

func TestEvictionKeepsMetadataAndBound(t *testing.T) {
	d := t.TempDir()
	c := openTest(t, d, 3*BlockSize)
	mustApply(t, c, RootIno, file("big", 8*BlockSize, t0), dir("d"))
	f := mustLookup(t, c, RootIno, "big")
	blk := make([]byte, BlockSize)
	for i := int64(0); i < 8; i++ {
		if err := c.PutBlock(f.Ino, f.Gen, i, blk); err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			// Reading block 1 makes it recent, so it outlives 2 and 3.
			if _, err := c.ReadBlock(f.Ino, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	u, _ := c.Usage()
	if u.Used > 3*BlockSize || u.Total != 3*BlockSize {
		t.Fatalf("usage %+v exceeds the 3-block bound", u)
	}
	if got := fmt.Sprint(c.CachedBlocks(f.Ino)); got != "[5 6 7]" {
		t.Fatalf("cached after eviction %s, want [5 6 7]", got)
	}
	if _, err := c.ReadBlock(f.Ino, 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("evicted block still readable: %v", err)
	}
	c.Close()

	c = openTest(t, d, 3*BlockSize)
	defer c.Close()
	if got := fmt.Sprint(c.CachedBlocks(f.Ino)); got != "[5 6 7]" {
		t.Fatalf("after reopen cached %s, want [5 6 7]", got)
	}
	mustLookup(t, c, RootIno, "d")
}

func TestLargeDirectory(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	list := make([]target.Entry, 10000)
	for i := range list {
		list[i] = file(fmt.Sprintf("file %05d", i), int64(i), t0)
	}
	mustApply(t, c, RootIno, list...)
	kids, err := c.Children(RootIno)
	if err != nil || len(kids) != len(list) {
		t.Fatalf("children: %d, %v", len(kids), err)
	}
	// Re-listing with half removed and one changed.
	half := append([]target.Entry(nil), list[:5000]...)
	half[42].Size = 1
	ch := mustApply(t, c, RootIno, half...)
	if len(ch) != 5001 {
		t.Fatalf("changes %d, want 5001", len(ch))
	}
	if kids, _ := c.Children(RootIno); len(kids) != 5000 {
		t.Fatalf("children after shrink %d", len(kids))
	}
}

func TestInvalidNamesIgnored(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	mustApply(t, c, RootIno, file("..", 1, t0), file("a/b", 1, t0), file("ok", 1, t0), file("ok", 2, t0))
	kids, _ := c.Children(RootIno)
	if len(kids) != 1 || kids[0].Name != "ok" || kids[0].Size != 1 {
		t.Fatalf("children %+v; want only the first ok", kids)
	}
}
