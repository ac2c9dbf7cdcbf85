package cache

import (
	"testing"
	"time"
)

// FuzzJournalOpDecode feeds stored write-back journal values to the
// decoder: damage is an error, never a panic; a decoded operation has a
// known kind and survives a round trip, so the runner replays exactly what
// was queued. (A damaged path such as "../x" still decodes; the target
// refuses it with ErrInvalidName before anything reaches the server.)
// Seeds live in testdata/fuzz/FuzzJournalOpDecode/.
func FuzzJournalOpDecode(f *testing.F) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, o := range []Op{
		{Kind: OpUpload, Ino: 5, Path: "a/b.txt", Queued: t0},
		{Kind: OpRename, Ino: 6, Path: "old", To: "new dir/new", Queued: t0},
		{Kind: OpRemove, Path: "gone", Synced: true, Record: SideState{Size: 3, ModTime: t0, Precision: time.Second}},
		{Kind: OpMkdir, Path: "d"},
	} {
		f.Add(o.marshal())
	}
	f.Add([]byte{opVersion, 0})
	f.Add([]byte{opVersion, byte(OpRename) + 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := unmarshalOp(9, b)
		if err != nil {
			return
		}
		if o.Seq != 9 || o.Kind < OpUpload || o.Kind > OpRename || len(o.Path)+len(o.To) > len(b) {
			t.Fatalf("decoded %+v from %d bytes", o, len(b))
		}
		again, err := unmarshalOp(9, o.marshal())
		if err != nil || again != o {
			t.Fatalf("decoded %+v does not round-trip: %+v, %v", o, again, err)
		}
	})
}
