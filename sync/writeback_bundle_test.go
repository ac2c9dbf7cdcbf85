package sync

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
)

// listHook is a target that runs onList before each listing.
type listHook struct {
	target.Target
	onList func(dir string)
}

func (l listHook) List(ctx context.Context, dir string) ([]target.Entry, error) {
	if l.onList != nil {
		l.onList(dir)
	}
	return l.Target.List(ctx, dir)
}

// newStagedWBEnv is newWBEnv over a server that stages new folders;
// onList, if set, runs before each listing.
func newStagedWBEnv(t *testing.T, onList func(dir string)) *wbEnv {
	t.Helper()
	e := &wbEnv{t: t, srv: t.TempDir(), cacheDir: t.TempDir()}
	lt, err := local.New(e.srv, local.Options{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	e.tg = &recTarget{Target: listHook{Target: stagedRemote{lt}, onList: onList}}
	e.open()
	t.Cleanup(e.close)
	return e
}

// staged reports the calls that went to a staging folder, with its name
// replaced by "@", and the others as they are.
func stagedCalls(calls []string) []string {
	out := make([]string, 0, len(calls))
	for _, c := range calls {
		f := strings.Fields(c)
		for i, p := range f {
			parts := strings.Split(p, "/")
			for j, s := range parts {
				if target.IsTempName(s) {
					parts[j] = "@"
				}
			}
			f[i] = strings.Join(parts, "/")
		}
		out = append(out, strings.Join(f, " "))
	}
	return out
}

func (e *wbEnv) wantStagedCalls(want ...string) {
	e.t.Helper()
	if got := stagedCalls(e.tg.Calls()); strings.Join(got, "\n") != strings.Join(want, "\n") {
		e.t.Fatalf("server calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func (e *wbEnv) noStaging() {
	e.t.Helper()
	if left := stagingFolders(e.t, e.srv); len(left) != 0 {
		e.t.Fatalf("staging folders left on the server: %v", left)
	}
	if notes, err := e.c.StagingNotes(); err != nil || len(notes) != 0 {
		e.t.Fatalf("staging notes left: %v %v", notes, err)
	}
}

func (e *wbEnv) wantSynced(p string) {
	e.t.Helper()
	ent, err := e.c.LookupPath(p)
	if err != nil {
		e.t.Fatal(err)
	}
	if ent.Dirty || !ent.Synced || !ent.OnServer {
		e.t.Fatalf("/%s: dirty %v synced %v on server %v after the flush", p, ent.Dirty, ent.Synced, ent.OnServer)
	}
}

// A new folder with folders and closed files below it goes up as one
// staged folder: made under a staging name, filled, renamed into place.
func TestBundleUploadsNewFolderStaged(t *testing.T) {
	e := newStagedWBEnv(t, nil)
	e.wb.Close() // let the queue pile up, as during tar x
	d := e.mkdir(cache.RootIno, "d")
	e.write(d, "a", "alpha")
	sub := e.mkdir(d, "sub")
	e.write(sub, "b", "beta")
	e.c.Close()
	e.open()
	e.flush()
	calls := stagedCalls(e.tg.Calls())
	if len(calls) != 5 || calls[0] != "mkdir @" || calls[1] != "mkdir @/sub" || calls[4] != "rename @ d" ||
		!sameSet(calls[2:4], []string{"write @/a", "write @/sub/b"}) {
		t.Fatalf("server calls: %v", calls)
	}
	if got := e.serverFile("d/a") + e.serverFile("d/sub/b"); got != "alphabeta" {
		t.Fatalf("server holds %q", got)
	}
	e.noStaging()
	e.wantSynced("d/a")
	e.wantSynced("d/sub/b")
	// What the bundle recorded is the server's state: nothing to do.
	e.flush()
	if n := len(e.tg.Calls()); n != 5 {
		t.Fatalf("a second flush sent %d more calls", n-5)
	}
}

// A folder with a file still open for writing goes up with the closed
// files; the open one follows on its own once closed. A folder with a
// deletion queued below it is not bundled.
func TestBundleEligibility(t *testing.T) {
	e := newStagedWBEnv(t, nil)
	e.wb.Close()
	d := e.mkdir(cache.RootIno, "d")
	e.write(d, "a", "alpha")
	open, err := e.c.Create(d, "open", 0o644, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.OpenLocal(open.Ino, true, true, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.WriteLocal(open.Ino, []byte("later"), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Commit(open.Ino, false); err != nil {
		t.Fatal(err)
	}
	e.c.Release(open.Ino, true)
	if err := e.c.OpenLocal(open.Ino, true, false, nil); err != nil {
		t.Fatal(err)
	}
	e.startRunner()
	done := make(chan error, 1)
	go func() { done <- e.wb.Flush(context.Background()) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.Join(e.tg.Calls(), "\n"), "rename") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	e.c.Release(open.Ino, true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.wantStagedCalls("mkdir @", "write @/a", "rename @ d", "write d/open")
	e.noStaging()

	// A rename into a new folder: each operation alone.
	e.tg.calls = nil
	x := e.mkdir(cache.RootIno, "x")
	e.write(x, "f", "f")
	e.flush()
	e.tg.calls = nil
	e.wb.Close()
	y := e.mkdir(x, "y")
	e.write(y, "g", "g")
	if err := e.c.Rename(x, "f", y, "f", false); err != nil {
		t.Fatal(err)
	}
	e.c.Close()
	e.open()
	e.flush()
	calls := stagedCalls(e.tg.Calls())
	if !sameSet(calls, []string{"mkdir x/y", "write x/y/g", "rename x/f x/y/f"}) || calls[0] != "mkdir x/y" {
		t.Fatalf("server calls: %v", calls)
	}
}

// startRunner starts a runner on the open cache, as open does, with a
// Delay that holds everything until a flush.
func (e *wbEnv) startRunner() {
	e.t.Helper()
	var err error
	e.wb, err = NewWriteback(WritebackOptions{Target: e.tg, Cache: e.c, Log: quietLog(), Delay: time.Hour,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
}

// release lets held writes go on, and later ones not wait.
func (e *wbEnv) release() {
	e.tg.mu.Lock()
	h := e.tg.hold
	e.tg.hold = nil
	e.tg.mu.Unlock()
	close(h)
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// A folder that appeared on the server while its bundle was being built
// is not replaced: the staged copy is dropped and each file is uploaded
// into the folder there, checked against what it holds.
func TestBundleFolderAppeared(t *testing.T) {
	var e *wbEnv
	e = newStagedWBEnv(t, func(dir string) {
		if target.IsTempName(target.Base(dir)) {
			if err := os.MkdirAll(filepath.Join(e.srv, "d"), 0o755); err != nil {
				t.Error(err)
			}
			if err := os.WriteFile(filepath.Join(e.srv, "d", "a"), []byte("theirs"), 0o644); err != nil {
				t.Error(err)
			}
		}
	})
	e.wb.Close()
	d := e.mkdir(cache.RootIno, "d")
	e.write(d, "a", "ours")
	e.write(d, "b", "bee")
	e.c.Close()
	e.open()
	e.flush()
	if got := e.serverFile("d/a"); got != "theirs" {
		t.Fatalf("d/a on the server = %q: the folder that appeared was overwritten", got)
	}
	if got := e.serverFile("d/b"); got != "bee" {
		t.Fatalf("d/b = %q", got)
	}
	kids, err := e.c.Children(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(kids) != 3 {
		t.Fatalf("d holds %d entries, want a, b and a conflict copy of a", len(kids))
	}
	for _, k := range kids {
		if strings.HasPrefix(k.Name, "a.conflict-") && e.serverFile("d/"+k.Name) != "ours" {
			t.Fatalf("the conflict copy on the server holds %q", e.serverFile("d/"+k.Name))
		}
	}
	e.noStaging()
	calls := stagedCalls(e.tg.Calls())
	for _, c := range calls {
		if c == "rename @ d" {
			t.Fatalf("the staged folder was renamed over the one that appeared: %v", calls)
		}
	}
}

// A file written again while its bundle runs is uploaded again after it;
// meanwhile it shows as uploading.
func TestBundleContentChanged(t *testing.T) {
	e := newStagedWBEnv(t, nil)
	e.wb.Close()
	d := e.mkdir(cache.RootIno, "d")
	ino := e.write(d, "a", "first")
	e.c.Close()
	e.tg.hold, e.tg.holding = make(chan struct{}), make(chan struct{})
	e.open()
	done := make(chan error, 1)
	go func() { done <- e.wb.Flush(context.Background()) }()
	<-e.tg.holding
	if up, _ := e.wb.FileState(ino); !up {
		t.Fatal("a file in a running bundle does not show as uploading")
	}
	st := e.wb.Status()
	if len(st.Running) != 2 || !strings.HasPrefix(st.Running[0].Op, "mkdir /d (staged") || st.Running[1].Op != "upload /d/a" {
		t.Fatalf("status shows %+v running", st.Running)
	}
	e.write(d, "a", "second")
	e.release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := e.serverFile("d/a"); got != "second" {
		t.Fatalf("d/a = %q", got)
	}
	e.wantStagedCalls("mkdir @", "write @/a", "rename @ d", "write d/a")
	e.wantSynced("d/a")
	e.noStaging()
}

// A mount stopped mid-bundle leaves a staging folder; the next one removes
// it and uploads the folder again, once.
func TestBundleRestartAfterCrash(t *testing.T) {
	e := newStagedWBEnv(t, nil)
	e.wb.Close()
	d := e.mkdir(cache.RootIno, "d")
	e.write(d, "a", "alpha")
	e.write(d, "b", "beta")
	e.c.Close()
	e.tg.hold, e.tg.holding = make(chan struct{}), make(chan struct{})
	e.open()
	go func() { _ = e.wb.Flush(context.Background()) }()
	<-e.tg.holding
	e.close() // the kill: the staging folder stays, the operations queued
	if left := stagingFolders(t, e.srv); len(left) != 1 {
		t.Fatalf("staging folders after the stop: %v", left)
	}
	e.tg.mu.Lock()
	e.tg.hold, e.tg.calls = nil, nil
	e.tg.mu.Unlock()
	e.open()
	if e.c.JournalLen() == 0 {
		t.Fatal("the stop lost the queued operations")
	}
	e.flush()
	if got := e.serverFile("d/a") + e.serverFile("d/b"); got != "alphabeta" {
		t.Fatalf("server holds %q", got)
	}
	e.noStaging()
	ents, err := os.ReadDir(e.srv)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Fatalf("server root holds %d entries, want d alone", len(ents))
	}
}

// A file whose upload failed inside a bundle stays out of it and is
// uploaded again alone, into the folder then in place.
func TestBundleFileFailedRetriedAlone(t *testing.T) {
	e := newStagedWBEnv(t, nil)
	e.wb.Close()
	d := e.mkdir(cache.RootIno, "d")
	e.write(d, "a", "alpha")
	e.c.Close()
	e.tg.failNext = 1
	e.open()
	e.flush()
	e.wantStagedCalls("mkdir @", "write @/a failed", "rename @ d", "write d/a")
	if got := e.serverFile("d/a"); got != "alpha" {
		t.Fatalf("d/a = %q", got)
	}
	e.wantSynced("d/a")
	e.noStaging()
}

// renameStall renames, then waits for the runner to stop: a mount killed
// right after its bundle's folder went into place, before it recorded it.
type renameStall struct {
	target.Target
	done chan struct{} // closed once a rename happened
}

func (r renameStall) Rename(ctx context.Context, from, to string) error {
	if err := r.Target.Rename(ctx, from, to); err != nil {
		return err
	}
	close(r.done)
	<-ctx.Done()
	return ctx.Err()
}

// A mount killed after the staged folder went into place and before it
// was recorded finds its files there when it comes back: nothing is
// uploaded twice, and nothing is taken for a conflict.
func TestBundleRestartAfterRename(t *testing.T) {
	e := newStagedWBEnv(t, nil)
	e.wb.Close()
	d := e.mkdir(cache.RootIno, "d")
	e.write(d, "a", "alpha")
	e.write(e.mkdir(d, "sub"), "b", "beta")
	e.c.Close()
	inner := e.tg.Target
	stall := renameStall{Target: inner, done: make(chan struct{})}
	e.tg.Target = stall
	e.open()
	go func() { _ = e.wb.Flush(context.Background()) }()
	<-stall.done
	e.close()
	e.tg.mu.Lock()
	e.tg.Target, e.tg.calls = inner, nil
	e.tg.mu.Unlock()
	e.open()
	e.flush()
	for _, c := range e.tg.Calls() {
		if strings.HasPrefix(c, "write") || strings.HasPrefix(c, "rename") {
			t.Fatalf("the restarted mount sent %q: %v", c, e.tg.Calls())
		}
	}
	if got := e.serverFile("d/a") + e.serverFile("d/sub/b"); got != "alphabeta" {
		t.Fatalf("server holds %q", got)
	}
	e.wantSynced("d/a")
	e.wantSynced("d/sub/b")
	if r := e.unresolved(); len(r) != 0 {
		t.Fatalf("conflicts: %v", r)
	}
	e.noStaging()
}

// renameRace makes the final folder appear on the server, with a file in
// it, just before the staging folder is renamed onto it.
type renameRace struct {
	target.Target
	srv string
}

func (r renameRace) Rename(ctx context.Context, from, to string) error {
	if target.IsTempName(target.Base(from)) && to == "d" {
		if err := os.MkdirAll(filepath.Join(r.srv, "d"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(r.srv, "d", "theirs"), []byte("theirs"), 0o644); err != nil {
			return err
		}
	}
	return r.Target.Rename(ctx, from, to)
}

// A folder that appears on the server in the instant before the staged
// one is renamed onto it is neither replaced nor merged into: the files
// go one by one into the folder there, and later new folders are still
// staged.
func TestBundleRenameRace(t *testing.T) {
	e := newStagedWBEnv(t, nil)
	e.wb.Close()
	e.tg.Target = renameRace{Target: e.tg.Target, srv: e.srv}
	d := e.mkdir(cache.RootIno, "d")
	e.write(d, "a", "alpha")
	e.c.Close()
	e.open()
	e.flush()
	if got := e.serverFile("d/theirs") + e.serverFile("d/a"); got != "theirsalpha" {
		t.Fatalf("server holds %q", got)
	}
	e.noStaging()
	// The same runner stages the next new folder.
	e.tg.mu.Lock()
	e.tg.calls = nil
	e.tg.mu.Unlock()
	e.write(e.mkdir(cache.RootIno, "f"), "b", "beta")
	e.flush()
	e.wantStagedCalls("mkdir @", "write @/b", "rename @ f")
}
