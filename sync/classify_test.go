package sync

import (
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

var t0 = time.Date(2026, 3, 1, 12, 34, 56, 789000000, time.UTC)

func fileAt(size int64, mt time.Time, prec time.Duration) *target.Entry {
	return &target.Entry{Name: "f", Size: size, ModTime: mt, Precision: prec}
}

// cellRecord is a record of a file synced at t0 with 10 bytes on both
// sides; the remote listed it at second precision.
func cellRecord() *Record {
	return &Record{
		Local:    Side{Size: 10, ModTime: t0, Precision: time.Nanosecond},
		Remote:   Side{Size: 10, ModTime: t0.Truncate(time.Second), Precision: time.Second},
		SyncedAt: t0.Add(time.Second),
	}
}

// TestClassifyTable checks every cell of DESIGN.md's table, once as
// written and once with the sides swapped, which must mirror the action.
func TestClassifyTable(t *testing.T) {
	rec := cellRecord()
	states := map[Change]func(local bool) *target.Entry{
		Unchanged: func(local bool) *target.Entry {
			if local {
				return fileAt(10, t0, time.Nanosecond)
			}
			return fileAt(10, t0.Truncate(time.Second), time.Second)
		},
		Changed: func(local bool) *target.Entry {
			if local {
				return fileAt(11, t0.Add(time.Hour), time.Nanosecond)
			}
			return fileAt(12, t0.Add(2*time.Hour), time.Second)
		},
		Deleted: func(bool) *target.Entry { return nil },
	}
	want := map[[2]Change]struct {
		a Action
		k ConflictKind
	}{
		{Unchanged, Unchanged}: {Nothing, NoConflict},
		{Unchanged, Changed}:   {Download, NoConflict},
		{Unchanged, Deleted}:   {DeleteLocal, NoConflict},
		{Changed, Unchanged}:   {Upload, NoConflict},
		{Changed, Changed}:     {Conflict, BothChanged},
		{Changed, Deleted}:     {Conflict, LocalChangedGone},
		{Deleted, Unchanged}:   {DeleteRemote, NoConflict},
		{Deleted, Changed}:     {Conflict, RemoteChangedGone},
		{Deleted, Deleted}:     {Forget, NoConflict},
	}
	mirror := map[Action]Action{Nothing: Nothing, Download: Upload, Upload: Download, DeleteLocal: DeleteRemote,
		DeleteRemote: DeleteLocal, Conflict: Conflict, Forget: Forget}
	mirrorKind := map[ConflictKind]ConflictKind{NoConflict: NoConflict, BothChanged: BothChanged,
		LocalChangedGone: RemoteChangedGone, RemoteChangedGone: LocalChangedGone}
	for cell, w := range want {
		l, r := states[cell[0]](true), states[cell[1]](false)
		d := Classify(Input{Local: l, Remote: r, Record: rec})
		if d.Action != w.a || d.Conflict != w.k || d.Local != cell[0] || d.Remote != cell[1] {
			t.Errorf("local %v, remote %v: got %v/%v (local %v, remote %v), want %v/%v", cell[0], cell[1], d.Action, d.Conflict, d.Local, d.Remote, w.a, w.k)
		}
		// Swapped: the record's sides swap too.
		sw := &Record{Local: rec.Remote, Remote: rec.Local, SyncedAt: rec.SyncedAt}
		l2, r2 := states[cell[1]](false), states[cell[0]](true)
		d2 := Classify(Input{Local: l2, Remote: r2, Record: sw})
		if d2.Action != mirror[w.a] || d2.Conflict != mirrorKind[w.k] {
			t.Errorf("swapped local %v, remote %v: got %v/%v, want %v/%v", cell[1], cell[0], d2.Action, d2.Conflict, mirror[w.a], mirrorKind[w.k])
		}
	}
}

func TestClassifyNoRecord(t *testing.T) {
	l := fileAt(10, t0, time.Nanosecond)
	cases := []struct {
		name string
		l, r *target.Entry
		a    Action
		k    ConflictKind
	}{
		{"local only", l, nil, Upload, NoConflict},
		{"remote only", nil, fileAt(10, t0, time.Second), Download, NoConflict},
		{"both, same at the remote's precision", l, fileAt(10, t0.Truncate(time.Second), time.Second), Equal, NoConflict},
		{"both, same at minute precision", l, fileAt(10, t0.Truncate(time.Minute), time.Minute), Equal, NoConflict},
		{"both, other size", l, fileAt(11, t0.Truncate(time.Second), time.Second), Conflict, BothNew},
		{"both, other second", l, fileAt(10, t0.Truncate(time.Second).Add(time.Second), time.Second), Conflict, BothNew},
		{"both, other nanosecond", l, fileAt(10, t0.Add(1), time.Nanosecond), Conflict, BothNew},
		{"neither", nil, nil, Nothing, NoConflict},
		{"both folders", &target.Entry{Name: "d", IsDir: true}, &target.Entry{Name: "d", IsDir: true}, Equal, NoConflict},
		{"folder and file", &target.Entry{Name: "d", IsDir: true}, fileAt(1, t0, time.Second), Conflict, TypeMismatch},
		{"file and folder", l, &target.Entry{Name: "d", IsDir: true}, Conflict, TypeMismatch},
	}
	for _, c := range cases {
		d := Classify(Input{Local: c.l, Remote: c.r})
		if d.Action != c.a || d.Conflict != c.k {
			t.Errorf("%s: got %v/%v, want %v/%v", c.name, d.Action, d.Conflict, c.a, c.k)
		}
		// The mirror image gives the mirrored action.
		d2 := Classify(Input{Local: c.r, Remote: c.l})
		wantA := map[Action]Action{Upload: Download, Download: Upload}[c.a]
		if wantA == 0 {
			wantA = c.a
		}
		if d2.Action != wantA || d2.Conflict != c.k {
			t.Errorf("%s swapped: got %v/%v, want %v/%v", c.name, d2.Action, d2.Conflict, wantA, c.k)
		}
	}
}

func TestClassifyFolders(t *testing.T) {
	dir := &target.Entry{Name: "d", IsDir: true, ModTime: t0}
	moved := &target.Entry{Name: "d", IsDir: true, ModTime: t0.Add(time.Hour)}
	rec := &Record{IsDir: true}
	for _, c := range []struct {
		name string
		l, r *target.Entry
		a    Action
	}{
		{"both there (mtimes of folders do not matter)", dir, moved, Nothing},
		{"deleted on the server", dir, nil, DeleteLocal},
		{"deleted locally", nil, dir, DeleteRemote},
		{"deleted on both", nil, nil, Forget},
	} {
		if d := Classify(Input{Local: c.l, Remote: c.r, Record: rec}); d.Action != c.a {
			t.Errorf("%s: got %v, want %v", c.name, d.Action, c.a)
		}
	}
	// A record of a file does not describe a folder now at that path.
	if d := Classify(Input{Local: dir, Record: cellRecord()}); d.Action != Upload || d.Local != New {
		t.Errorf("folder where a file was synced: got %v (local %v), want upload of a new folder", d.Action, d.Local)
	}
}

func TestClassifyEqualAfterInterruptedTransfer(t *testing.T) {
	// Both sides changed to the same thing (a download finished, its
	// record was not written): equal, not a conflict.
	rec := cellRecord()
	r := fileAt(20, t0.Add(time.Hour).Truncate(time.Second), time.Second)
	l := fileAt(20, t0.Add(time.Hour).Truncate(time.Second), time.Nanosecond)
	if d := Classify(Input{Local: l, Remote: r, Record: rec}); d.Action != Equal {
		t.Errorf("got %v, want equal", d.Action)
	}
	// The mount says the local file was written: still a conflict.
	if d := Classify(Input{Local: l, Remote: r, Record: rec, LocalDirty: DirtyYes}); d.Action != Conflict {
		t.Errorf("dirty: got %v, want conflict", d.Action)
	}
}

func TestClassifyDirtyFlag(t *testing.T) {
	rec := cellRecord()
	same := fileAt(10, t0, time.Nanosecond)
	other := fileAt(99, t0.Add(time.Hour), time.Nanosecond)
	r := fileAt(10, t0.Truncate(time.Second), time.Second)
	if d := Classify(Input{Local: same, Remote: r, Record: rec, LocalDirty: DirtyYes}); d.Action != Upload {
		t.Errorf("dirty with same size and time: got %v, want upload", d.Action)
	}
	if d := Classify(Input{Local: other, Remote: r, Record: rec, LocalDirty: DirtyNo}); d.Action != Nothing {
		t.Errorf("not dirty with other size and time: got %v, want nothing", d.Action)
	}
}

func TestClassifyPrecision(t *testing.T) {
	// Recorded from an MLSD listing at second precision; a LIST listing
	// at minute precision of the same file is unchanged.
	rec := cellRecord()
	l := fileAt(10, t0, time.Nanosecond)
	if d := Classify(Input{Local: l, Remote: fileAt(10, t0.Truncate(time.Minute), time.Minute), Record: rec}); d.Action != Nothing {
		t.Errorf("minute listing of the same time: got %v, want nothing", d.Action)
	}
	if d := Classify(Input{Local: l, Remote: fileAt(10, t0.Truncate(time.Minute).Add(time.Minute), time.Minute), Record: rec}); d.Action != Download {
		t.Errorf("minute listing a minute later: got %v, want download", d.Action)
	}
	// Local times are exact: one nanosecond is a change.
	if d := Classify(Input{Local: fileAt(10, t0.Add(1), time.Nanosecond), Remote: fileAt(10, t0.Truncate(time.Second), time.Second), Record: rec}); d.Action != Upload {
		t.Errorf("local touched: got %v, want upload", d.Action)
	}
}

func TestClassifyImportedTolerance(t *testing.T) {
	rec := &Record{Imported: true, Local: Side{Size: 5, ModTime: t0}, Remote: Side{Size: 5, ModTime: t0}}
	near := fileAt(5, t0.Add(1900*time.Millisecond), time.Nanosecond)
	far := fileAt(5, t0.Add(2100*time.Millisecond), time.Nanosecond)
	rn := fileAt(5, t0.Add(-time.Second).Truncate(time.Second), time.Second)
	if d := Classify(Input{Local: near, Remote: rn, Record: rec}); d.Action != Nothing {
		t.Errorf("within 2 s: got %v, want nothing", d.Action)
	}
	if d := Classify(Input{Local: far, Remote: rn, Record: rec}); d.Action != Upload {
		t.Errorf("beyond 2 s: got %v, want upload", d.Action)
	}
	// A LIST server with minute precision: same minute is unchanged.
	rm := fileAt(5, t0.Truncate(time.Minute), time.Minute)
	if d := Classify(Input{Local: near, Remote: rm, Record: rec}); d.Action != Nothing {
		t.Errorf("minute listing: got %v, want nothing", d.Action)
	}
}

func TestAmbiguous(t *testing.T) {
	s := Side{Size: 10, ModTime: t0.Truncate(time.Second), Precision: time.Second}
	listed := *fileAt(10, t0.Truncate(time.Minute), time.Minute)
	if !Ambiguous(listed, s, t0.Add(time.Second)) {
		t.Error("synced within the listed minute: want ambiguous")
	}
	if Ambiguous(listed, s, t0.Add(10*time.Minute)) {
		t.Error("synced long after the listed minute: a later change would show another minute")
	}
	if Ambiguous(*fileAt(11, t0.Truncate(time.Minute), time.Minute), s, t0) {
		t.Error("other size: a change, not ambiguous")
	}
	if Ambiguous(*fileAt(10, t0.Truncate(time.Second), time.Second), s, t0) {
		t.Error("second precision: never ambiguous")
	}
}

func TestConflictName(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]string{
		"a/report.txt":     "a/report.conflict-20260102-030405.txt",
		"notes":            "notes.conflict-20260102-030405",
		".profile":         ".profile.conflict-20260102-030405",
		"x/archive.tar.gz": "x/archive.tar.conflict-20260102-030405.gz",
	} {
		if got := ConflictName(in, at); got != want {
			t.Errorf("ConflictName(%q) = %q, want %q", in, got, want)
		}
	}
}
