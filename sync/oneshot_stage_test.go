package sync

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// stagedRemote stands for a server that stages new folders (an FTP server
// with MLSD) over a local folder, which ignores WriteOptions.Staged and
// writes atomically: the engine's side of staging is what is tested here.
type stagedRemote struct{ target.Target }

func (s stagedRemote) Features() target.Features {
	f := s.Target.Features()
	f.StagedWrites = true
	return f
}

// stagedDone checks the end of a staged upload: no staging folder left, the
// same trees on both sides, and nothing to do for a further run.
func (e *syncEnv) stagedDone() {
	e.t.Helper()
	if left := stagingFolders(e.t, e.rdir); len(left) != 0 {
		e.t.Errorf("staging folders left: %v", left)
	}
	e.sameTrees()
	e.noop(Options{Mode: ModeSync})
}

// stagingFolders lists the staging folders left in root.
func stagingFolders(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && target.IsTempName(d.Name()) {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStagedFolderAppearsWhole(t *testing.T) {
	e := newSyncEnv(t)
	for i := range 12 {
		writeAt(t, e.ldir, "new/f"+string(rune('a'+i)), strings.Repeat("x", i), tA)
		writeAt(t, e.ldir, "new/deep/er/g"+string(rune('a'+i)), "g", tA)
	}
	writeAt(t, e.ldir, "top.txt", "top", tA)
	// Whenever a file of the new folder is written, the folder must not
	// be in place yet: it goes public in one rename, at the end.
	var early atomic.Int64
	e.remote = &watchWrites{Target: stagedRemote{e.remote}, before: func(string) {
		if exists(e.rdir, "new") {
			early.Add(1)
		}
	}}
	sum, out := e.mustRun(Options{Mode: ModeUpload})
	if early.Load() != 0 {
		t.Errorf("%d files were written while the new folder was already in place", early.Load())
	}
	if sum.FilesUp != 25 || sum.DirsCreated != 3 || sum.Errors != 0 {
		t.Errorf("summary %+v\n%s", sum, out)
	}
	if !strings.Contains(out, "upload               new/deep/er/ga") || !strings.Contains(out, "mkdir remote         new/deep") {
		t.Errorf("output does not name the staged uploads:\n%s", out)
	}
	e.stagedDone()
	if n := len(e.records()); n != 25+3 {
		t.Errorf("%d records, want one per file and folder (28)", n)
	}
}

// watchWrites calls before ahead of every write.
type watchWrites struct {
	target.Target
	before func(p string)
}

func (w *watchWrites) Write(ctx context.Context, p string, r io.Reader, o target.WriteOptions) (target.Entry, error) {
	w.before(p)
	return w.Target.Write(ctx, p, r, o)
}

func TestStagedFolderResumes(t *testing.T) {
	e := newSyncEnv(t)
	const files = 20
	for i := range files {
		writeAt(t, e.ldir, "dir/sub"+string(rune('0'+i%3))+"/f"+string(rune('a'+i)), strings.Repeat("x", i+1), tA)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stop := &stopAfter{Target: stagedRemote{e.remote}, n: 7, cancel: cancel}
	if _, _, err := e.runWith(ctx, e.local, stop, Options{Mode: ModeUpload, Parallel: 2}); err == nil {
		t.Fatal("the interrupted run reported no error")
	}
	done := stop.writes.Load()
	if exists(e.rdir, "dir") || len(stagingFolders(t, e.rdir)) == 0 {
		t.Fatalf("after the interruption the folder must be staged, not in place: %v", snapshotDir(t, e.rdir))
	}
	// The next run takes up what the stopped one staged.
	count := &stopAfter{Target: stagedRemote{e.remote}, n: -1, cancel: func() {}}
	sum, out, err := e.runWith(t.Context(), e.local, count, Options{Mode: ModeUpload})
	if err != nil {
		t.Fatal(err)
	}
	if got := count.writes.Load(); got != files-done || sum.FilesUp != files-done {
		t.Errorf("resumed run wrote %d files (%d counted), want %d\n%s", got, sum.FilesUp, files-done, out)
	}
	e.stagedDone()
}

// shortStaged stores one byte less of the named file than it was given,
// but reports the whole: a transfer cut short where both ends saw a clean
// end of the data.
type shortStaged struct {
	target.Target
	name string
}

func (s shortStaged) Write(ctx context.Context, p string, r io.Reader, o target.WriteOptions) (target.Entry, error) {
	if target.Base(p) != s.name {
		return s.Target.Write(ctx, p, r, o)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return target.Entry{}, err
	}
	o.Size = int64(len(b) - 1)
	e, err := s.Target.Write(ctx, p, strings.NewReader(string(b[:len(b)-1])), o)
	e.Size++
	return e, err
}

func TestStagedFolderLeavesOutShortUpload(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "dir/good", "good data", tA)
	writeAt(t, e.ldir, "dir/cut", "data cut short", tA)
	sum, out, err := e.runWith(t.Context(), e.local, shortStaged{stagedRemote{e.remote}, "cut"}, Options{Mode: ModeUpload})
	if !errors.Is(err, ErrRunFailed) || sum.Errors != 1 || sum.FilesUp != 1 {
		t.Fatalf("run with a short upload: %v, %+v\n%s", err, sum, out)
	}
	if got := readAt(t, e.rdir, "dir/good"); got != "good data" {
		t.Errorf("dir/good = %q", got)
	}
	if exists(e.rdir, "dir/cut") {
		t.Errorf("the short upload went public: %q", readAt(t, e.rdir, "dir/cut"))
	}
	if left := stagingFolders(t, e.rdir); len(left) != 0 {
		t.Errorf("staging folders left: %v", left)
	}
	sum, out = e.mustRun(Options{Mode: ModeUpload})
	if sum.FilesUp != 1 {
		t.Errorf("second run: %+v\n%s", sum, out)
	}
	e.sameTrees()
}

// noFolderRename refuses to rename staging folders, as a server might
// refuse to rename any folder.
type noFolderRename struct{ target.Target }

func (n noFolderRename) Rename(ctx context.Context, from, to string) error {
	if target.IsTempName(target.Base(from)) {
		return target.Errorf("rename", from, target.ErrPermission, "folders cannot be renamed here")
	}
	return n.Target.Rename(ctx, from, to)
}

func TestStagedFolderRenameRefused(t *testing.T) {
	e := newSyncEnv(t)
	for i := range 6 {
		writeAt(t, e.ldir, "a/f"+string(rune('a'+i)), "a", tA)
		writeAt(t, e.ldir, "b/sub/f"+string(rune('a'+i)), "b", tA)
	}
	sum, out, err := e.runWith(t.Context(), e.local, noFolderRename{stagedRemote{e.remote}}, Options{Mode: ModeUpload, Parallel: 1})
	if err != nil || sum.FilesUp != 12 {
		t.Fatalf("run: %v, %+v\n%s", err, sum, out)
	}
	e.stagedDone()
}

func TestStagedFolderLeftoversAreSorted(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "dir/same", "same", tA)
	writeAt(t, e.ldir, "dir/changed", "new version", tA)
	writeAt(t, e.ldir, "dir/sub/x", "x", tA)
	// What a run killed at some point left, for a local tree that has
	// changed since: one file as it is now, one older, one removed
	// since, and a folder removed since.
	tmp := filepath.Join(e.rdir, target.TempName("dir", stageName(e.local.ID(), e.remote.ID())))
	writeAt(t, tmp, "same", "same", tA)
	writeAt(t, tmp, "changed", "older version", tA)
	writeAt(t, tmp, "gone", "gone", tA)
	writeAt(t, tmp, "gonedir/y", "y", tA)
	count := &stopAfter{Target: stagedRemote{e.remote}, n: -1, cancel: func() {}}
	sum, out, err := e.runWith(t.Context(), e.local, count, Options{Mode: ModeUpload})
	if err != nil {
		t.Fatal(err)
	}
	if got := count.writes.Load(); got != 2 || sum.FilesUp != 2 {
		t.Errorf("wrote %d files (%d counted), want 2: changed and sub/x\n%s", got, sum.FilesUp, out)
	}
	e.stagedDone()
}

func TestDryRunStagesNothing(t *testing.T) {
	e := newSyncEnv(t)
	writeAt(t, e.ldir, "dir/f", "f", tA)
	_, out, err := e.runWith(t.Context(), e.local, stagedRemote{e.remote}, Options{Mode: ModeUpload, DryRun: true})
	if err != nil || !strings.Contains(out, "would upload") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if got := snapshotDir(t, e.rdir); len(got) != 0 {
		t.Errorf("the dry run changed the remote side: %v", got)
	}
}

// lostRenameReply renames staging folders but reports a dropped
// connection, as when the reply to RNTO is lost on the way.
type lostRenameReply struct{ target.Target }

func (l lostRenameReply) Rename(ctx context.Context, from, to string) error {
	err := l.Target.Rename(ctx, from, to)
	if err == nil && target.IsTempName(target.Base(from)) {
		return target.Errorf("rename", from, target.ErrTemporary, "connection reset before the reply")
	}
	return err
}

func TestStagedFolderRenameReplyLost(t *testing.T) {
	e := newSyncEnv(t)
	for i := range 5 {
		writeAt(t, e.ldir, "dir/f"+string(rune('a'+i)), "f", tA)
	}
	count := &stopAfter{Target: lostRenameReply{stagedRemote{e.remote}}, n: -1, cancel: func() {}}
	sum, out, err := e.runWith(t.Context(), e.local, count, Options{Mode: ModeUpload})
	if err != nil || sum.FilesUp != 5 || count.writes.Load() != 5 {
		t.Fatalf("run: %v, %+v, %d writes\n%s", err, sum, count.writes.Load(), out)
	}
	e.sameTrees()
	e.noop(Options{Mode: ModeSync})
}
