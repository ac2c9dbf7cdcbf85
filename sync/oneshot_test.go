package sync

import (
	"context"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"strings"
	"testing"
	"time"
)

var tA = time.Date(2025, 6, 1, 10, 0, 0, 123456789, time.UTC)

func TestSyncFirstRunThenNothing(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "a.txt", "local a", tA)
	writeAt(t, e.ldir, "sub/deep/b.txt", "local b", tA)
	writeAt(t, e.rdir, "c.txt", "remote c", tA)
	writeAt(t, e.rdir, "rsub/d.txt", "remote d", tA)
	writeAt(t, e.ldir, "same.txt", "same", tA)
	writeAt(t, e.rdir, "same.txt", "same", tA)
	sum, out := e.mustRun(Options{Mode: ModeSync})
	if sum.FilesUp != 2 || sum.FilesDown != 2 || sum.Conflicts != 0 || sum.BytesUp != 14 {
		t.Errorf("summary %+v\n%s", sum, out)
	}
	e.sameTrees()
	// Every pair that ends equal is recorded, the one that was equal
	// from the start included (pyftpsync's issue #71).
	recs := e.records()
	for _, p := range []string{"a.txt", "sub", "sub/deep", "sub/deep/b.txt", "c.txt", "rsub", "rsub/d.txt", "same.txt"} {
		if _, ok := recs[p]; !ok {
			t.Errorf("no record of %s", p)
		}
	}
	if len(recs) != 8 {
		t.Errorf("%d records, want 8: %v", len(recs), recs)
	}
	// Downloads keep the server's mtime.
	if got := snapshotDir(t, e.ldir)["c.txt"]; !strings.HasSuffix(got, tA.Format(time.RFC3339Nano)) {
		t.Errorf("downloaded c.txt: %s, want mtime %v", got, tA)
	}
	e.noop(Options{Mode: ModeSync})
}

func TestSyncChangesAndDeletionsFollowState(t *testing.T) {
	e := newSyncEnv(t)
	for _, n := range []string{"keep", "lchange", "rchange", "ldel", "rdel", "bothdel", "dir/x"} {
		writeAt(t, e.ldir, n, "v1 "+n, tA)
	}
	e.mustRun(Options{Mode: ModeSync})
	e.sameTrees()

	writeAt(t, e.ldir, "lchange", "v2 local", tA.Add(time.Hour))
	writeAt(t, e.rdir, "rchange", "v2 remote", tA.Add(time.Hour))
	removeAt(t, e.ldir, "ldel")
	removeAt(t, e.rdir, "rdel")
	removeAt(t, e.ldir, "bothdel")
	removeAt(t, e.rdir, "bothdel")
	removeAt(t, e.rdir, "dir")
	sum, out := e.mustRun(Options{Mode: ModeSync})
	if sum.FilesUp != 1 || sum.FilesDown != 1 || sum.DeletedRemote != 1 || sum.DeletedLocal != 3 || sum.Conflicts != 0 {
		t.Errorf("summary %+v\n%s", sum, out)
	}
	e.sameTrees()
	if got := readAt(t, e.rdir, "lchange"); got != "v2 local" {
		t.Errorf("remote lchange = %q", got)
	}
	if got := readAt(t, e.ldir, "rchange"); got != "v2 remote" {
		t.Errorf("local rchange = %q", got)
	}
	for _, p := range []string{"ldel", "rdel", "bothdel", "dir", "dir/x"} {
		if exists(e.ldir, p) || exists(e.rdir, p) {
			t.Errorf("%s still exists", p)
		}
		if _, ok := e.records()[p]; ok {
			t.Errorf("%s still recorded", p)
		}
	}
	e.noop(Options{Mode: ModeSync})
}

// conflictEnv syncs one file, then changes it on both sides: the local
// version is older than the remote one.
func conflictEnv(t *testing.T) *syncEnv {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "f.txt", "v1", tA)
	e.mustRun(Options{Mode: ModeSync})
	writeAt(t, e.ldir, "f.txt", "local v2", tA.Add(time.Hour))
	writeAt(t, e.rdir, "f.txt", "remote v2!", tA.Add(2*time.Hour))
	return e
}

func TestSyncConflictResolutions(t *testing.T) {
	cases := []struct {
		res        Resolution
		local, rem string
	}{
		{ResolveSkip, "local v2", "remote v2!"},
		{ResolveAsk, "local v2", "remote v2!"}, // no asker: skip
		{ResolveLocal, "local v2", "local v2"},
		{ResolveRemote, "remote v2!", "remote v2!"},
		{ResolveNew, "remote v2!", "remote v2!"},
		{ResolveOld, "local v2", "local v2"},
	}
	for _, c := range cases {
		t.Run(c.res.String(), func(t *testing.T) {
			e := conflictEnv(t)
			sum, out := e.mustRun(Options{Mode: ModeSync, Resolve: c.res})
			if sum.Conflicts != 1 {
				t.Errorf("conflicts = %d, want 1\n%s", sum.Conflicts, out)
			}
			if got := readAt(t, e.ldir, "f.txt"); got != c.local {
				t.Errorf("local = %q, want %q", got, c.local)
			}
			if got := readAt(t, e.rdir, "f.txt"); got != c.rem {
				t.Errorf("remote = %q, want %q", got, c.rem)
			}
			if c.local != c.rem {
				if sum.Skipped != 1 || !strings.Contains(out, "changed on both sides") {
					t.Errorf("skip not reported: %+v\n%s", sum, out)
				}
				// Still a conflict next time.
				sum, _ := e.mustRun(Options{Mode: ModeSync})
				if sum.Conflicts != 1 {
					t.Errorf("second run: conflicts = %d, want 1", sum.Conflicts)
				}
				return
			}
			e.noop(Options{Mode: ModeSync})
		})
	}
}

func TestSyncConflictKeepBoth(t *testing.T) {
	e := conflictEnv(t)
	now := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	sum, out := e.mustRun(Options{Mode: ModeSync, Resolve: ResolveKeepBoth, Now: func() time.Time { return now }})
	if sum.Conflicts != 1 || sum.Skipped != 0 {
		t.Errorf("summary %+v\n%s", sum, out)
	}
	const saved = "f.conflict-20260203-040506.txt"
	for _, root := range []string{e.ldir, e.rdir} {
		if got := readAt(t, root, "f.txt"); got != "remote v2!" {
			t.Errorf("%s/f.txt = %q, want the remote version", root, got)
		}
		if got := readAt(t, root, saved); got != "local v2" {
			t.Errorf("%s/%s = %q, want the local version", root, saved, got)
		}
	}
	e.noop(Options{Mode: ModeSync})
}

type fixedAsker struct {
	answers []Resolution
	asked   []string
}

func (a *fixedAsker) Ask(_ context.Context, p string, _ ConflictKind, _, _ *target.Entry) (Resolution, error) {
	a.asked = append(a.asked, p)
	r := a.answers[0]
	a.answers = a.answers[1:]
	return r, nil
}

func TestSyncConflictAsk(t *testing.T) {
	e := conflictEnv(t)
	a := &fixedAsker{answers: []Resolution{ResolveRemote}}
	sum, _ := e.mustRun(Options{Mode: ModeSync, Resolve: ResolveAsk, Asker: a, Parallel: 1})
	if len(a.asked) != 1 || a.asked[0] != "f.txt" || sum.FilesDown != 1 {
		t.Errorf("asked %v, summary %+v", a.asked, sum)
	}
	if got := readAt(t, e.ldir, "f.txt"); got != "remote v2!" {
		t.Errorf("local = %q", got)
	}
}

func TestSyncDeletionConflicts(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "gone-remote", "v1", tA)
	writeAt(t, e.ldir, "gone-local", "v1", tA)
	e.mustRun(Options{Mode: ModeSync})
	writeAt(t, e.ldir, "gone-remote", "local v2", tA.Add(time.Hour))
	removeAt(t, e.rdir, "gone-remote")
	writeAt(t, e.rdir, "gone-local", "remote v2", tA.Add(time.Hour))
	removeAt(t, e.ldir, "gone-local")
	sum, out := e.mustRun(Options{Mode: ModeSync})
	if sum.Conflicts != 2 || sum.Skipped != 2 {
		t.Errorf("summary %+v\n%s", sum, out)
	}
	if !strings.Contains(out, "changed locally but deleted on the server") || !strings.Contains(out, "deleted locally but changed on the server") {
		t.Errorf("conflicts not named:\n%s", out)
	}
	// keep-both keeps the surviving version on both sides.
	sum, out = e.mustRun(Options{Mode: ModeSync, Resolve: ResolveKeepBoth})
	if sum.FilesUp != 1 || sum.FilesDown != 1 {
		t.Errorf("keep-both: %+v\n%s", sum, out)
	}
	e.sameTrees()
	e.noop(Options{Mode: ModeSync})
}

func TestSyncFolderDeletedWithChangedFileIsConflict(t *testing.T) {
	for _, side := range []string{"remote", "local"} {
		t.Run("deleted on "+side, func(t *testing.T) {
			e := newSyncEnv(t)
			writeAt(t, e.ldir, "dir/changed.txt", "v1", tA)
			writeAt(t, e.ldir, "dir/same.txt", "v1", tA)
			writeAt(t, e.ldir, "dir/sub/same2.txt", "v1", tA)
			e.mustRun(Options{Mode: ModeSync})
			delRoot, changeRoot := e.rdir, e.ldir
			if side == "local" {
				delRoot, changeRoot = e.ldir, e.rdir
			}
			removeAt(t, delRoot, "dir")
			writeAt(t, changeRoot, "dir/changed.txt", "v2", tA.Add(time.Hour))
			sum, out := e.mustRun(Options{Mode: ModeSync})
			if sum.Conflicts != 1 || sum.Skipped != 1 {
				t.Errorf("summary %+v\n%s", sum, out)
			}
			if got := readAt(t, changeRoot, "dir/changed.txt"); got != "v2" {
				t.Errorf("the changed file is gone or different: %q", got)
			}
			if exists(changeRoot, "dir/same.txt") || exists(changeRoot, "dir/sub") {
				t.Errorf("unchanged files in the deleted folder should follow the deletion")
			}
			// Settling it as keep-both copies the changed file back.
			e.mustRun(Options{Mode: ModeSync, Resolve: ResolveKeepBoth})
			e.sameTrees()
			e.noop(Options{Mode: ModeSync})
		})
	}
}

func TestSyncTypeMismatchIsSkipped(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "x", "a file", tA)
	writeAt(t, e.rdir, "x/inner", "a folder", tA)
	sum, out := e.mustRun(Options{Mode: ModeSync, Resolve: ResolveLocal})
	if sum.Skipped != 1 || !strings.Contains(out, "a file on one side and a folder on the other") {
		t.Errorf("summary %+v\n%s", sum, out)
	}
	if readAt(t, e.ldir, "x") != "a file" || readAt(t, e.rdir, "x/inner") != "a folder" {
		t.Error("a side was changed")
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "keep", "v1", tA)
	writeAt(t, e.ldir, "ldel", "v1", tA)
	writeAt(t, e.ldir, "conf", "v1", tA)
	e.mustRun(Options{Mode: ModeSync})
	removeAt(t, e.ldir, "ldel")
	writeAt(t, e.ldir, "new/dir/file", "new", tA)
	writeAt(t, e.rdir, "rnew", "new", tA)
	writeAt(t, e.ldir, "conf", "local", tA.Add(time.Hour))
	writeAt(t, e.rdir, "conf", "remote", tA.Add(time.Hour))
	writeAt(t, e.ldir, "Case.txt", "x", tA)
	writeAt(t, e.rdir, "CASE.txt", "y", tA)
	lb, rb, sb := snapshotDir(t, e.ldir), snapshotDir(t, e.rdir), e.records()
	for _, mode := range []Mode{ModeSync, ModeUpload, ModeDownload} {
		for _, res := range []Resolution{ResolveKeepBoth, ResolveLocal, ResolveRemote} {
			if !mode.Allowed(res) {
				continue
			}
			sum, out := e.mustRun(Options{Mode: mode, DryRun: true, Delete: true, Resolve: res, Case: CaseLocal})
			if sum.FilesUp+sum.FilesDown == 0 || !strings.Contains(out, "would ") {
				t.Errorf("%v/%v: the plan shows nothing: %+v\n%s", mode, res, sum, out)
			}
		}
	}
	if d := diffMaps(lb, snapshotDir(t, e.ldir)); len(d) > 0 {
		t.Errorf("dry run changed the local tree: %v", d)
	}
	if d := diffMaps(rb, snapshotDir(t, e.rdir)); len(d) > 0 {
		t.Errorf("dry run changed the remote tree: %v", d)
	}
	sa := e.records()
	if len(sa) != len(sb) {
		t.Errorf("dry run changed the records: %d -> %d", len(sb), len(sa))
	}
	for p, r := range sb {
		if sa[p] != r {
			t.Errorf("dry run changed the record of %s", p)
		}
	}
}
