package cache

import (
	"bytes"
	"testing"
	"time"
)

// Fuzz tests of the decoders of what the cache keeps in Badger. A damaged
// or hostile cache directory must give errors, never a panic, and whatever
// decodes must survive a round trip, so that rewriting a record never
// changes it. Seeds live in testdata/fuzz/<name>/.

func FuzzEntryDecode(f *testing.F) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, e := range []Entry{
		{Parent: 1, Name: "file.txt", Size: 5, ModTime: t0, Precision: time.Second, Mode: 0o644, Seen: t0, ListedAt: t0, Gen: 3},
		{Name: "", IsDir: true},
		{Parent: 7, Name: "ünï", Local: true, Dirty: true, OnServer: true, Synced: true, Upload: 9, LocalGen: 2,
			SyncLocal: SideState{Size: 1, ModTime: t0, Precision: time.Second}, SyncRemote: SideState{Size: 2, ModTime: t0, Precision: time.Minute}},
	} {
		f.Add(e.marshal())
	}
	f.Add([]byte{recordVersion1, 0, 1, 'x', 0, 2, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{recordVersion, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := unmarshalEntry(42, b)
		if err != nil {
			return
		}
		if e.Ino != 42 || len(e.Name) > len(b) {
			t.Fatalf("decoded ino %d, name of %d bytes from %d bytes", e.Ino, len(e.Name), len(b))
		}
		again, err := unmarshalEntry(42, e.marshal())
		if err != nil || again != e {
			t.Fatalf("decoded %+v does not round-trip: %+v, %v", e, again, err)
		}
	})
}

func FuzzBlockKey(f *testing.F) {
	f.Add(blockKey(1, 0))
	f.Add(blockKey(1<<63, 1<<40))
	f.Add(entryKey(5))
	f.Fuzz(func(t *testing.T, k []byte) {
		ino, idx, ok := parseBlockKey(k)
		if !ok {
			return
		}
		if back := blockKey(ino, idx); !bytes.Equal(back, k) {
			t.Fatalf("key %x parsed as %d/%d, which makes %x", k, ino, idx, back)
		}
	})
}

func FuzzConflictDecode(f *testing.F) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, r := range []ConflictRecord{
		{Path: "a/doc.txt", Copy: "a/doc.conflict-20250102-030405.txt", Kind: ConflictBothChanged,
			Local: SideState{Size: 3, ModTime: t0, Precision: time.Second}, Remote: SideState{Size: 9, ModTime: t0, Precision: time.Minute}, At: t0},
		{Path: "gone", Kind: ConflictFolderKept, At: t0},
	} {
		f.Add(r.marshal())
	}
	f.Add([]byte{conflictVersion, 9, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := unmarshalConflict(b)
		if err != nil {
			return
		}
		if len(r.Path)+len(r.Copy) > len(b) {
			t.Fatalf("decoded paths of %d bytes from %d bytes", len(r.Path)+len(r.Copy), len(b))
		}
		again, err := unmarshalConflict(r.marshal())
		if err != nil || again != r {
			t.Fatalf("decoded %+v does not round-trip: %+v, %v", r, again, err)
		}
	})
}
