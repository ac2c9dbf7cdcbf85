package sync

import (
	"context"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// oneWayEnv prepares every cell of the table for a one-way run: after a
// first sync, the source and the destination each change, delete and add
// files. src and dst are the folders of the source and the destination.
func oneWayEnv(t *testing.T, mode Mode) (e *syncEnv, src, dst string) {
	e = newSyncEnv(t)
	src, dst = e.ldir, e.rdir
	if mode == ModeDownload {
		src, dst = e.rdir, e.ldir
	}
	for _, n := range []string{"same", "srcchange", "dstchange", "srcdel", "dstdel", "both"} {
		writeAt(t, src, n, "v1", tA)
	}
	e.mustRun(Options{Mode: ModeSync})
	writeAt(t, src, "srcchange", "src v2", tA.Add(time.Hour))
	writeAt(t, dst, "dstchange", "dst v2", tA.Add(time.Hour))
	removeAt(t, src, "srcdel")
	removeAt(t, dst, "dstdel")
	writeAt(t, src, "both", "src v2", tA.Add(time.Hour))
	writeAt(t, dst, "both", "dst v2!", tA.Add(2*time.Hour))
	writeAt(t, src, "srcnew", "new", tA)
	writeAt(t, dst, "dstnew", "new", tA)
	return e, src, dst
}

func TestOneWayModes(t *testing.T) {
	for _, mode := range []Mode{ModeUpload, ModeDownload} {
		t.Run(mode.String()+" without --delete", func(t *testing.T) {
			e, src, dst := oneWayEnv(t, mode)
			sum, out := e.mustRun(Options{Mode: mode})
			want := map[string]string{
				"same": "v1", "srcchange": "src v2", "dstchange": "dst v2", "dstdel": "v1",
				"both": "dst v2!", "srcnew": "new", "dstnew": "new", "srcdel": "v1",
			}
			checkTree(t, dst, want)
			if exists(src, "dstnew") || exists(src, "srcdel") {
				t.Error("the source was changed")
			}
			if sum.Conflicts != 2 || sum.Skipped != 2 || sum.DeletedLocal+sum.DeletedRemote != 0 {
				t.Errorf("summary %+v\n%s", sum, out)
			}
			if !strings.Contains(out, "--force overwrites it") {
				t.Errorf("the changed destination is not explained:\n%s", out)
			}
		})
		t.Run(mode.String()+" with --delete --force", func(t *testing.T) {
			e, src, dst := oneWayEnv(t, mode)
			sum, out := e.mustRun(Options{Mode: mode, Delete: true, Force: true})
			checkTree(t, dst, map[string]string{"same": "v1", "srcchange": "src v2", "dstchange": "v1", "dstdel": "v1", "both": "src v2", "srcnew": "new"})
			if sum.Skipped != 0 {
				t.Errorf("summary %+v\n%s", sum, out)
			}
			e.sameTrees()
			e.noop(Options{Mode: mode, Delete: true})
			e.noop(Options{Mode: ModeSync})
			_ = src
		})
		t.Run(mode.String()+" resolving for the source", func(t *testing.T) {
			e, _, dst := oneWayEnv(t, mode)
			res := ResolveLocal
			if mode == ModeDownload {
				res = ResolveRemote
			}
			e.mustRun(Options{Mode: mode, Resolve: res})
			if got := readAt(t, dst, "both"); got != "src v2" {
				t.Errorf("both = %q, want the source's", got)
			}
		})
	}
}

// checkTree fails unless root holds exactly these files.
func checkTree(t *testing.T, root string, want map[string]string) {
	t.Helper()
	got := contents(t, root)
	for _, d := range diffMaps(got, want) {
		t.Errorf("%s: %s", root, d)
	}
}

func TestOneWayDestinationDeletedFolderIsRestored(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "d/f", "v1", tA)
	e.mustRun(Options{Mode: ModeUpload})
	removeAt(t, e.rdir, "d")
	sum, out := e.mustRun(Options{Mode: ModeUpload})
	if sum.FilesUp != 1 || !exists(e.rdir, "d/f") {
		t.Errorf("summary %+v\n%s", sum, out)
	}
}

func TestFilters(t *testing.T) {
	e := newSyncEnv(t)
	for _, p := range []string{"a.txt", "b.log", "deep/c.log", "build/out.txt", "src/build/x.txt", "keep/tmp/x.bak", "x.bak",
		".git/config", "sub/.DS_Store", "notes.md", MetaFileName, "sub/" + MetaFileName} {
		writeAt(t, e.ldir, p, "content "+p, tA)
	}
	f, err := NewFilter([]string{"*.txt", "*.bak"}, []string{"**/*.log", "build/", "keep/**/*.bak"})
	if err != nil {
		t.Fatal(err)
	}
	e.mustRun(Options{Mode: ModeSync, Filter: f})
	got := contents(t, e.rdir)
	want := map[string]string{"a.txt": "", "src": "dir", "x.bak": "", "deep": "dir", "keep": "dir", "keep/tmp": "dir", "sub": "dir"}
	for p := range want {
		if _, ok := got[p]; !ok {
			t.Errorf("%s was not synced", p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s was synced", p)
		}
	}
	e.noop(Options{Mode: ModeSync, Filter: f})
}

func TestDeleteUnmatched(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "a.txt", "a", tA)
	writeAt(t, e.rdir, "old.log", "log", tA)
	writeAt(t, e.rdir, "cache/x", "x", tA)
	writeAt(t, e.rdir, ".git/config", "vcs", tA)
	f, _ := NewFilter(nil, []string{"*.log", "cache/"})
	sum, out := e.mustRun(Options{Mode: ModeUpload, Delete: true, DeleteUnmatched: true, Filter: f})
	checkTree(t, e.rdir, map[string]string{"a.txt": "a", ".git": "dir", ".git/config": "vcs"})
	if sum.DeletedRemote != 3 {
		t.Errorf("summary %+v\n%s", sum, out)
	}
}

func TestCaseClashes(t *testing.T) {
	setup := func(t *testing.T) *syncEnv {
		e := newSyncEnv(t)
		writeAt(t, e.ldir, "Readme.md", "local", tA)
		writeAt(t, e.rdir, "README.md", "remote", tA.Add(time.Hour))
		return e
	}
	t.Run("strict", func(t *testing.T) {
		e := setup(t)
		sum, out := e.mustRun(Options{Mode: ModeSync})
		if sum.Skipped != 1 || !strings.Contains(out, "differs only in case") {
			t.Errorf("summary %+v\n%s", sum, out)
		}
		checkTree(t, e.ldir, map[string]string{"Readme.md": "local"})
		checkTree(t, e.rdir, map[string]string{"README.md": "remote"})
	})
	t.Run("local", func(t *testing.T) {
		e := setup(t)
		sum, out := e.mustRun(Options{Mode: ModeSync, Case: CaseLocal, Resolve: ResolveRemote})
		checkTree(t, e.ldir, map[string]string{"Readme.md": "remote"})
		checkTree(t, e.rdir, map[string]string{"Readme.md": "remote"})
		if sum.Conflicts != 1 {
			t.Errorf("summary %+v\n%s", sum, out)
		}
		e.noop(Options{Mode: ModeSync})
	})
	t.Run("remote", func(t *testing.T) {
		e := setup(t)
		e.mustRun(Options{Mode: ModeSync, Case: CaseRemote, Resolve: ResolveLocal})
		checkTree(t, e.ldir, map[string]string{"README.md": "local"})
		checkTree(t, e.rdir, map[string]string{"README.md": "local"})
	})
}

// stopAfter is a target whose n-th Write completes and then cancels the
// run, as if the process were killed right after a transfer and before its
// record.
type stopAfter struct {
	target.Target
	n      int64
	writes atomic.Int64
	cancel context.CancelFunc
}

func (s *stopAfter) Write(ctx context.Context, p string, r io.Reader, o target.WriteOptions) (target.Entry, error) {
	e, err := s.Target.Write(ctx, p, r, o)
	if err != nil {
		// Not on the server (a parallel transfer the stop cut short):
		// the resumed run must send it, so it is not counted.
		return e, err
	}
	if s.writes.Add(1) == s.n {
		// The file is in place but the run never hears of it, so it
		// is not recorded: the next run must see both sides equal.
		s.cancel()
		return target.Entry{}, context.Canceled
	}
	return e, err
}

func TestInterruptedRunResumes(t *testing.T) {
	e := newSyncEnv(t)
	const files = 20
	for i := range files {
		writeAt(t, e.ldir, "dir/f"+string(rune('a'+i)), strings.Repeat("x", i+1), tA)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stop := &stopAfter{Target: e.remote, n: 5, cancel: cancel}
	_, _, err := e.runWith(ctx, e.local, stop, Options{Mode: ModeSync, Parallel: 2})
	if err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Fatalf("interrupted run: err = %v", err)
	}
	done := stop.writes.Load()
	if done < 5 || done >= files {
		t.Fatalf("%d writes before the interruption", done)
	}
	count := &stopAfter{Target: e.remote, n: -1, cancel: func() {}}
	sum, out, err := e.runWith(t.Context(), e.local, count, Options{Mode: ModeSync})
	if err != nil {
		t.Fatal(err)
	}
	if got := count.writes.Load(); got != files-done || sum.Conflicts != 0 {
		t.Errorf("resumed run wrote %d files, want %d; %+v\n%s", got, files-done, sum, out)
	}
	e.sameTrees()
	e.noop(Options{Mode: ModeSync})
}

// editDuringRun changes a local file while the run is reading the remote
// one, as a user editing the file at the wrong moment would.
type editDuringRun struct {
	target.Target
	edit func()
}

func (d *editDuringRun) Open(ctx context.Context, p string, off, n int64) (io.ReadCloser, error) {
	d.edit()
	return d.Target.Open(ctx, p, off, n)
}

func TestEditDuringRunIsNotOverwritten(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "f", "v1", tA)
	writeAt(t, e.ldir, "g", "v1", tA)
	e.mustRun(Options{Mode: ModeSync})
	writeAt(t, e.rdir, "f", "server v2", tA.Add(time.Hour))
	removeAt(t, e.rdir, "g")
	e.remote = &editDuringRun{Target: e.remote, edit: func() {
		writeAt(t, e.ldir, "f", "user edit", tA.Add(2*time.Hour))
	}}
	sum, out := e.mustRun(Options{Mode: ModeSync, Parallel: 1})
	if got := readAt(t, e.ldir, "f"); got != "user edit" {
		t.Errorf("the local edit was overwritten: %q", got)
	}
	if sum.Skipped != 1 || !strings.Contains(out, "changed during the run") {
		t.Errorf("summary %+v\n%s", sum, out)
	}
	// The next run sees it as the conflict it is.
	e.remote = e.remote.(*editDuringRun).Target
	sum, _ = e.mustRun(Options{Mode: ModeSync})
	if sum.Conflicts != 1 {
		t.Errorf("next run: %+v", sum)
	}

	// A deletion checks too.
	e2 := newSyncEnv(t)
	writeAt(t, e2.ldir, "g", "v1", tA)
	e2.mustRun(Options{Mode: ModeSync})
	removeAt(t, e2.rdir, "g")
	e2.remote = &listThenEdit{Target: e2.remote, edit: func() { writeAt(t, e2.ldir, "g", "user edit", tA.Add(time.Hour)) }}
	sum, out = e2.mustRun(Options{Mode: ModeSync})
	if !exists(e2.ldir, "g") || sum.DeletedLocal != 0 || sum.Skipped != 1 {
		t.Errorf("a local file edited during the run was deleted: %+v\n%s", sum, out)
	}
}

// listThenEdit runs edit after the first listing of the root, before any
// operation on the files in it.
type listThenEdit struct {
	target.Target
	edit func()
	once sync.Once
}

func (l *listThenEdit) List(ctx context.Context, dir string) ([]target.Entry, error) {
	ents, err := l.Target.List(ctx, dir)
	l.once.Do(l.edit)
	return ents, err
}

func TestCaseClashFolders(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "Docs/a", "a", tA)
	writeAt(t, e.rdir, "docs/b", "b", tA)
	sum, out := e.mustRun(Options{Mode: ModeSync, Case: CaseLocal, DryRun: true})
	if !strings.Contains(out, "would rename remote") || sum.FilesUp+sum.FilesDown != 0 {
		t.Errorf("dry run: %+v\n%s", sum, out)
	}
	e.mustRun(Options{Mode: ModeSync, Case: CaseLocal})
	checkTree(t, e.rdir, map[string]string{"Docs": "dir", "Docs/a": "a", "Docs/b": "b"})
	e.sameTrees()
	e.noop(Options{Mode: ModeSync})
}
