package cache

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
)

// A block whose bytes on disk no longer match its record (a power loss
// between the write and the record) is dropped on first use after reopen,
// not served.
func TestFetchedBlockChecksum(t *testing.T) {
	d := t.TempDir()
	c := openTest(t, d, 0)
	mustApply(t, c, RootIno, file("f", 2*BlockSize, t0))
	f := mustLookup(t, c, RootIno, "f")
	b0, b1 := bytes.Repeat([]byte{1}, BlockSize), bytes.Repeat([]byte{2}, BlockSize)
	if err := c.PutBlock(f.Ino, f.Gen, 0, b0); err != nil {
		t.Fatal(err)
	}
	if err := c.PutBlock(f.Ino, f.Gen, 1, b1); err != nil {
		t.Fatal(err)
	}
	c.Close()
	fh, err := os.OpenFile(c.fetchedPath(f.Ino), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte{9}, BlockSize+5); err != nil {
		t.Fatal(err)
	}
	fh.Close()

	c = openTest(t, d, 0)
	defer c.Close()
	if got, err := c.ReadBlock(f.Ino, 0); err != nil || !bytes.Equal(got, b0) {
		t.Fatalf("intact block 0 after reopen: %v", err)
	}
	if _, err := c.ReadBlock(f.Ino, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("damaged block 1 served: %v", err)
	}
	if c.Has(f.Ino, 1) {
		t.Fatal("damaged block 1 still counted as cached")
	}
}

// Eviction keeps the bound at once but frees a block's disk space only
// when no reader holds it; evicted blocks read as holes.
func TestEvictionPunchesAndSparesPinned(t *testing.T) {
	c := openTest(t, t.TempDir(), 2*BlockSize)
	defer c.Close()
	mustApply(t, c, RootIno, file("f", 4*BlockSize, t0))
	f := mustLookup(t, c, RootIno, "f")
	blk := bytes.Repeat([]byte{5}, BlockSize)
	if err := c.PutBlock(f.Ino, f.Gen, 0, blk); err != nil {
		t.Fatal(err)
	}
	span, ok := c.Pin(f.Ino, 0, 10)
	if !ok {
		t.Fatal("pin block 0")
	}
	for i := int64(1); i < 4; i++ {
		if err := c.PutBlock(f.Ino, f.Gen, i, blk); err != nil {
			t.Fatal(err)
		}
	}
	if u, _ := c.Usage(); u.Used > 2*BlockSize {
		t.Fatalf("usage %d over the 2-block bound", u.Used)
	}
	got := make([]byte, BlockSize)
	if _, err := span.File().ReadAt(got, 0); err != nil || !bytes.Equal(got, blk) {
		t.Fatalf("pinned block 0 freed under its reader: %v", err)
	}
	span.Release()
	fh, err := os.Open(c.fetchedPath(f.Ino))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	for i := int64(0); i < 2; i++ {
		if c.Has(f.Ino, i) {
			t.Fatalf("block %d not evicted", i)
		}
		if _, err := fh.ReadAt(got, i*BlockSize); err != nil || !bytes.Equal(got, make([]byte, BlockSize)) {
			t.Fatalf("evicted block %d not punched out: %v", i, err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(c.fetchedPath(f.Ino), &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 2*BlockSize+64<<10 {
		t.Fatalf("fetched file uses %d bytes on disk, want at most 2 blocks", used)
	}
}
