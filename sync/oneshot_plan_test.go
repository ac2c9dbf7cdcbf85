package sync

import (
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// TestPlanEveryCellInEveryMode maps every cell of the classification table
// onto each mode, with and without --delete.
func TestPlanEveryCellInEveryMode(t *testing.T) {
	rec := cellRecord()
	unchanged := map[bool]*target.Entry{true: fileAt(10, t0, time.Nanosecond), false: fileAt(10, t0.Truncate(time.Second), time.Second)}
	changed := map[bool]*target.Entry{true: fileAt(11, t0.Add(time.Hour), time.Nanosecond), false: fileAt(12, t0.Add(2*time.Hour), time.Second)}
	dir := &target.Entry{Name: "f", IsDir: true}
	type cell struct {
		name string
		in   Input
	}
	cells := []cell{
		{"unchanged/unchanged", Input{Local: unchanged[true], Remote: unchanged[false], Record: rec}},
		{"unchanged/changed", Input{Local: unchanged[true], Remote: changed[false], Record: rec}},
		{"unchanged/deleted", Input{Local: unchanged[true], Record: rec}},
		{"changed/unchanged", Input{Local: changed[true], Remote: unchanged[false], Record: rec}},
		{"changed/changed", Input{Local: changed[true], Remote: changed[false], Record: rec}},
		{"changed/deleted", Input{Local: changed[true], Record: rec}},
		{"deleted/unchanged", Input{Remote: unchanged[false], Record: rec}},
		{"deleted/changed", Input{Remote: changed[false], Record: rec}},
		{"deleted/deleted", Input{Record: rec}},
		{"new/absent", Input{Local: unchanged[true]}},
		{"absent/new", Input{Remote: unchanged[false]}},
		{"new/new same", Input{Local: unchanged[true], Remote: unchanged[false]}},
		{"new/new different", Input{Local: unchanged[true], Remote: changed[false]}},
		{"file/folder", Input{Local: unchanged[true], Remote: dir}},
	}
	const c, n, s = stepConflict, stepNone, stepSkip
	up, down, dl, dr, rc, fg := stepUpload, stepDownload, stepDeleteLocal, stepDeleteRemote, stepRecord, stepForget
	// Per cell: sync, upload, upload --delete, download, download --delete.
	want := map[string][5]step{
		"unchanged/unchanged": {n, n, n, n, n},
		"unchanged/changed":   {down, c, c, down, down},
		"unchanged/deleted":   {dl, up, up, n, dl},
		"changed/unchanged":   {up, up, up, c, c},
		"changed/changed":     {c, c, c, c, c},
		"changed/deleted":     {c, up, up, n, c},
		"deleted/unchanged":   {dr, n, dr, down, down},
		"deleted/changed":     {c, n, c, down, down},
		"deleted/deleted":     {fg, fg, fg, fg, fg},
		"new/absent":          {up, up, up, n, dl},
		"absent/new":          {down, n, dr, down, down},
		"new/new same":        {rc, rc, rc, rc, rc},
		"new/new different":   {c, c, c, c, c},
		"file/folder":         {s, s, s, s, s},
	}
	modes := []struct {
		m   Mode
		del bool
	}{{ModeSync, false}, {ModeUpload, false}, {ModeUpload, true}, {ModeDownload, false}, {ModeDownload, true}}
	for _, cl := range cells {
		d := Classify(cl.in)
		for i, m := range modes {
			if got := planStep(d, m.m, m.del); got != want[cl.name][i] {
				t.Errorf("%s in %v (delete %v): step %d, want %d (decision %+v)", cl.name, m.m, m.del, got, want[cl.name][i], d)
			}
		}
	}
}
