package sync

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/sirupsen/logrus"
)

func discardLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{},
		{IsDir: true, SyncedAt: tA},
		{Local: Side{Size: 1 << 40, ModTime: tA, Precision: time.Nanosecond}, Remote: Side{Size: 7, ModTime: time.Unix(0, 0).UTC(), Precision: time.Minute}, SyncedAt: tA, Imported: true},
		{Local: Side{ModTime: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got Record
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if got != r {
			t.Errorf("round trip: got %+v, want %+v", got, r)
		}
		if len(b) > 64 {
			t.Errorf("record of %d bytes; want compact", len(b))
		}
	}
}

func TestRecordDecodeRefusesDamage(t *testing.T) {
	good, _ := Record{Local: Side{Size: 5, ModTime: tA}, SyncedAt: tA}.MarshalBinary()
	bad := [][]byte{nil, {1}, {2, 0}, {1, 0x80}, good[:len(good)-1], append(append([]byte{}, good...), 0)}
	neg := append([]byte{1, 0}, 1) // size -1 as a zigzag varint
	bad = append(bad, append(neg, 0, 0, 0, 0, 0, 0))
	for _, b := range bad {
		var r Record
		if err := r.UnmarshalBinary(b); !errors.Is(err, ErrCorruptRecord) {
			t.Errorf("%x: err = %v, want ErrCorruptRecord", b, err)
		}
	}
}

func FuzzRecordDecode(f *testing.F) {
	good, _ := Record{Local: Side{Size: 5, ModTime: tA}, SyncedAt: tA, IsDir: true}.MarshalBinary()
	f.Add(good)
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if r.UnmarshalBinary(b) != nil {
			return
		}
		again, _ := r.MarshalBinary()
		var r2 Record
		if err := r2.UnmarshalBinary(again); err != nil || r2 != r {
			t.Fatalf("decoded %+v does not round-trip: %v", r, err)
		}
	})
}

func TestStoreChildrenAndDelete(t *testing.T) {
	st, err := OpenStore(t.TempDir(), "local:/a", "host/b", discardLog())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if has, _ := st.HasRecords(); has {
		t.Fatal("new store has records")
	}
	for _, p := range []string{"a", "a/b", "a/b/c", "a/bb", "ab", "z"} {
		if err := st.Put(p, Record{IsDir: p != "z", SyncedAt: tA}); err != nil {
			t.Fatal(err)
		}
	}
	kids, err := st.Children("a")
	if err != nil {
		t.Fatal(err)
	}
	if len(kids) != 2 || !kids["b"].IsDir || !kids["bb"].IsDir {
		t.Errorf("children of a: %v", kids)
	}
	root, _ := st.Children("")
	if len(root) != 3 {
		t.Errorf("children of the root: %v", root)
	}
	if err := st.Delete("a"); err != nil {
		t.Fatal(err)
	}
	all, _ := st.All()
	if len(all) != 2 || all["ab"].SyncedAt != tA {
		t.Errorf("after deleting a: %v", all)
	}
	if _, ok, _ := st.Get("a/b/c"); ok {
		t.Error("a/b/c survived the delete of a")
	}
}

func TestStoreCorruptRecordIsSkipped(t *testing.T) {
	st, err := OpenStore(t.TempDir(), "l", "r", discardLog())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Put("good", Record{SyncedAt: tA})
	if err := st.db.Update(func(txn *badger.Txn) error { return txn.Set(recordKey("bad"), []byte{9, 9, 9}) }); err != nil {
		t.Fatal(err)
	}
	kids, err := st.Children("")
	if err != nil || len(kids) != 1 {
		t.Errorf("children: %v, %v; want only the good record", kids, err)
	}
}

func TestStoreBelongsToOnePair(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir, "local:/a", "host/b", discardLog())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(dir, "local:/a", "host/b", discardLog()); !errors.Is(err, ErrStoreBusy) {
		t.Errorf("second open while in use: %v, want ErrStoreBusy", err)
	}
	st.Close()
	if _, err := OpenStore(dir, "local:/a", "host/c", discardLog()); err == nil || !strings.Contains(err.Error(), "belongs to") {
		t.Errorf("store of another pair: %v", err)
	}
}

func TestDefaultStateDir(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/xdg")
	d, err := DefaultStateDir("local:/a", "host/b")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(d) != "/xdg/ftpsync-mount/sync" {
		t.Errorf("state dir %s", d)
	}
	if d2, _ := DefaultStateDir("local:/a", "host/c"); d2 == d {
		t.Error("two pairs share a state folder")
	}
	if PairHash("ab", "c") == PairHash("a", "bc") {
		t.Error("the pair hash is ambiguous")
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if d, _ := DefaultStateDir("a", "b"); !strings.HasPrefix(d, "/home/u/.local/state/ftpsync-mount/sync/") {
		t.Errorf("without XDG_STATE_HOME: %s", d)
	}
}

func TestStoreReadOnly(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir, "l", "r", discardLog())
	if err != nil {
		t.Fatal(err)
	}
	st.Put("a", Record{SyncedAt: tA})
	st.Close()
	ro, err := OpenStoreReadOnly(dir, "l", "r", discardLog())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if r, ok, err := ro.Get("a"); !ok || err != nil || r.SyncedAt != tA {
		t.Errorf("read-only get: %+v %v %v", r, ok, err)
	}
	if err := ro.Put("b", Record{}); err == nil {
		t.Error("a read-only store accepted a write")
	}
	if _, err := OpenStoreReadOnly(filepath.Join(dir, "missing"), "l", "r", discardLog()); err == nil {
		t.Error("read-only open of a missing store succeeded")
	}
}
