package sync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
)

// recTarget is a local target that records every change it is asked for,
// can fail writes and can hold a write until released.
type recTarget struct {
	target.Target
	mu       gosync.Mutex
	calls    []string
	failNext int           // writes to fail with a temporary error
	failAll  bool          // fail every write
	hold     chan struct{} // if set, writes wait for it to close
	holding  chan struct{} // closed when the first write starts waiting on hold
}

func (r *recTarget) log(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *recTarget) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *recTarget) Write(ctx context.Context, p string, rd io.Reader, o target.WriteOptions) (target.Entry, error) {
	r.mu.Lock()
	fail := r.failAll || r.failNext > 0
	if r.failNext > 0 {
		r.failNext--
	}
	hold, holding := r.hold, r.holding
	if hold != nil && !fail {
		select {
		case <-holding: // another write waits already
		default:
			close(holding)
		}
	}
	r.mu.Unlock()
	if fail {
		r.log("write " + p + " failed")
		return target.Entry{}, target.NewError("write", p, target.ErrTemporary, errors.New("connection reset"))
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			r.log("write " + p + " cancelled")
			return target.Entry{}, ctx.Err()
		}
	}
	r.log("write " + p)
	return r.Target.Write(ctx, p, rd, o)
}

func (r *recTarget) Rename(ctx context.Context, from, to string) error {
	r.log("rename " + from + " " + to)
	return r.Target.Rename(ctx, from, to)
}

func (r *recTarget) Remove(ctx context.Context, p string) error {
	r.log("remove " + p)
	return r.Target.Remove(ctx, p)
}

func (r *recTarget) Mkdir(ctx context.Context, p string) error {
	r.log("mkdir " + p)
	return r.Target.Mkdir(ctx, p)
}

func (r *recTarget) Rmdir(ctx context.Context, p string) error {
	r.log("rmdir " + p)
	return r.Target.Rmdir(ctx, p)
}

// wbEnv is a cache, a server folder and a runner with millisecond timers.
type wbEnv struct {
	t        *testing.T
	srv      string
	cacheDir string
	tg       *recTarget
	c        *cache.Cache
	wb       *Writeback
	now      func() time.Time // the runner's clock; nil: time.Now
	resolve  Resolution       // the runner's --resolve; zero: keep both
	delay    time.Duration    // the runner's Delay; zero: 5ms
}

func newWBEnv(t *testing.T) *wbEnv {
	t.Helper()
	e := &wbEnv{t: t, srv: t.TempDir(), cacheDir: t.TempDir()}
	lt, err := local.New(e.srv, local.Options{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	e.tg = &recTarget{Target: lt}
	e.open()
	t.Cleanup(e.close)
	return e
}

func (e *wbEnv) open() {
	e.t.Helper()
	c, err := cache.Open(cache.Options{Dir: e.cacheDir, Log: quietLog()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.c = c
	delay := e.delay
	if delay == 0 {
		delay = 5 * time.Millisecond
	}
	e.wb, err = NewWriteback(WritebackOptions{Target: e.tg, Cache: c, Log: quietLog(), Delay: delay,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Now: e.now, Resolve: e.resolve})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *wbEnv) close() {
	if e.c == nil {
		return
	}
	e.wb.Close()
	e.c.Close()
	e.c = nil
}

// write creates or rewrites a file in the cache as the mount does: open,
// write, commit at close, release.
func (e *wbEnv) write(parent uint64, name, data string) uint64 {
	e.t.Helper()
	ent, err := e.c.Lookup(parent, name)
	if errors.Is(err, cache.ErrNotFound) {
		ent, err = e.c.Create(parent, name, 0o644, time.Now())
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.c.OpenLocal(ent.Ino, true, true, nil); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.c.WriteLocal(ent.Ino, []byte(data), 0); err != nil {
		e.t.Fatal(err)
	}
	if err := e.c.Commit(ent.Ino, false); err != nil {
		e.t.Fatal(err)
	}
	e.c.Release(ent.Ino, true)
	return ent.Ino
}

func (e *wbEnv) mkdir(parent uint64, name string) uint64 {
	e.t.Helper()
	d, err := e.c.Mkdir(parent, name, 0o755, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return d.Ino
}

func (e *wbEnv) flush() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.wb.Flush(ctx); err != nil {
		e.t.Fatalf("flush: %v", err)
	}
	if n := e.c.JournalLen(); n != 0 {
		e.t.Fatalf("journal holds %d operations after a flush", n)
	}
}

func (e *wbEnv) serverFile(p string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.srv, p))
	if err != nil {
		e.t.Fatalf("on the server: %v", err)
	}
	return string(b)
}

func (e *wbEnv) wantCalls(want ...string) {
	e.t.Helper()
	if got := e.tg.Calls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		e.t.Fatalf("server calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// A folder is created before the file in it, and renaming the folder after
// the file was queued moves the uploaded file with it: one rename.
func TestWritebackOrder(t *testing.T) {
	e := newWBEnv(t)
	d := e.mkdir(cache.RootIno, "d")
	e.write(d, "f", "content")
	if err := e.c.Rename(cache.RootIno, "d", cache.RootIno, "e", false); err != nil {
		t.Fatal(err)
	}
	e.flush()
	e.wantCalls("mkdir d", "write d/f", "rename d e")
	if got := e.serverFile("e/f"); got != "content" {
		t.Fatalf("e/f = %q", got)
	}
}

// Write, rename, write uploads once under the final name; create and
// delete before the upload sends nothing.
func TestWritebackCoalesces(t *testing.T) {
	e := newWBEnv(t)
	e.wb.Close() // hold the queue while the changes pile up
	e.write(cache.RootIno, "a", "one")
	if err := e.c.Rename(cache.RootIno, "a", cache.RootIno, "b", false); err != nil {
		t.Fatal(err)
	}
	e.write(cache.RootIno, "b", "two")
	e.write(cache.RootIno, "tmp", "x")
	if err := e.c.Unlink(cache.RootIno, "tmp"); err != nil {
		t.Fatal(err)
	}
	e.c.Close()
	e.open()
	e.flush()
	e.wantCalls("write b")
	if got := e.serverFile("b"); got != "two" {
		t.Fatalf("b = %q", got)
	}
}

// A file already on the server is renamed there, not uploaded again.
func TestWritebackRenameUploaded(t *testing.T) {
	e := newWBEnv(t)
	e.write(cache.RootIno, "a", "data")
	e.flush()
	if err := e.c.Rename(cache.RootIno, "a", cache.RootIno, "b", false); err != nil {
		t.Fatal(err)
	}
	e.flush()
	e.wantCalls("write a", "rename a b")
}

// Failed uploads are retried with back-off until they succeed.
func TestWritebackRetries(t *testing.T) {
	e := newWBEnv(t)
	e.tg.failNext = 2
	e.write(cache.RootIno, "f", "data")
	e.flush()
	e.wantCalls("write f failed", "write f failed", "write f")
	if st := e.wb.Status(); len(st.Errors) != 2 || st.Pending != 0 {
		t.Fatalf("status after retries: %+v", st)
	}
}

// A flush that cannot reach the server says what failed; the operation
// stays queued and goes out after a restart.
func TestWritebackFlushFailsAndResumes(t *testing.T) {
	e := newWBEnv(t)
	e.tg.failAll = true
	e.mkdir(cache.RootIno, "d")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.write(cache.RootIno, "f", "data")
	err := e.wb.Flush(ctx)
	var fe *FlushError
	if !errors.As(err, &fe) || len(fe.Failed) != 1 || !strings.Contains(fe.Failed[0], "upload /f") {
		t.Fatalf("flush against a failing server: %v", err)
	}
	if n := e.c.JournalLen(); n != 1 {
		t.Fatalf("journal holds %d operations, want 1", n)
	}
	e.close()
	e.tg.failAll = false
	e.open()
	e.flush()
	if got := e.serverFile("f"); got != "data" {
		t.Fatalf("f = %q", got)
	}
}

// Deleting a file while it uploads cancels the upload and leaves nothing.
func TestWritebackRemoveWhileUploading(t *testing.T) {
	e := newWBEnv(t)
	e.write(cache.RootIno, "keep", "k")
	e.flush()
	e.tg.hold, e.tg.holding = make(chan struct{}), make(chan struct{})
	e.write(cache.RootIno, "keep", "changed")
	select {
	case <-e.tg.holding:
	case <-time.After(10 * time.Second):
		t.Fatal("the upload did not start")
	}
	if err := e.c.Unlink(cache.RootIno, "keep"); err != nil {
		t.Fatal(err)
	}
	e.flush()
	e.wantCalls("write keep", "write keep cancelled", "remove keep")
	if _, err := os.Stat(filepath.Join(e.srv, "keep")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("keep is still on the server: %v", err)
	}
}

// A file changed on the server since the last sync is never overwritten:
// the server's version keeps the name, the local one becomes a conflict
// copy on both sides.
func TestWritebackConflictKeepsBoth(t *testing.T) {
	e := newWBEnv(t)
	e.write(cache.RootIno, "doc.txt", "v1")
	e.flush()
	if err := os.WriteFile(filepath.Join(e.srv, "doc.txt"), []byte("server's v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.write(cache.RootIno, "doc.txt", "local v2")
	e.flush()
	if got := e.serverFile("doc.txt"); got != "server's v2" {
		t.Fatalf("doc.txt on the server = %q", got)
	}
	kids, err := e.c.Children(cache.RootIno)
	if err != nil {
		t.Fatal(err)
	}
	var copyName string
	for _, k := range kids {
		if strings.HasPrefix(k.Name, "doc.conflict-") && strings.HasSuffix(k.Name, ".txt") {
			copyName = k.Name
		}
	}
	if copyName == "" {
		t.Fatalf("no conflict copy in the cache: %v", kids)
	}
	if got := e.serverFile(copyName); got != "local v2" {
		t.Fatalf("%s on the server = %q", copyName, got)
	}
	if st := e.wb.Status(); len(st.Conflicts) != 1 {
		t.Fatalf("conflicts in status: %+v", st.Conflicts)
	}
}

// Many independent files go out in parallel and all arrive.
func TestWritebackMany(t *testing.T) {
	e := newWBEnv(t)
	for i := 0; i < 5; i++ {
		d := e.mkdir(cache.RootIno, fmt.Sprintf("d%d", i))
		for j := 0; j < 20; j++ {
			e.write(d, fmt.Sprintf("f%d", j), strings.Repeat("x", i*j))
		}
	}
	e.flush()
	for i := 0; i < 5; i++ {
		for j := 0; j < 20; j++ {
			if got := e.serverFile(fmt.Sprintf("d%d/f%d", i, j)); !bytes.Equal([]byte(got), bytes.Repeat([]byte("x"), i*j)) {
				t.Fatalf("d%d/f%d = %q", i, j, got)
			}
		}
	}
}

// A kill after an upload reached the server but before the cache recorded
// it, with the file changed again meanwhile, leaves the next mount a server
// file that matches no record. The upload's note recognises it as our own:
// the newer local version is uploaded, with no conflict copy.
func TestWritebackRecognisesOwnUploadAfterKill(t *testing.T) {
	e := newWBEnv(t)
	ino := e.write(cache.RootIno, "doc", "v1")
	e.flush()
	e.tg.hold, e.tg.holding = make(chan struct{}), make(chan struct{})
	e.write(cache.RootIno, "doc", "v2")
	select {
	case <-e.tg.holding:
	case <-time.After(10 * time.Second):
		t.Fatal("the upload did not start")
	}
	v2, err := e.c.Get(ino)
	if err != nil {
		t.Fatal(err)
	}
	e.write(cache.RootIno, "doc", "v3, written during the upload")
	// The held upload of v2 lands, as if the kill came right after its
	// rename on the server.
	p := filepath.Join(e.srv, "doc")
	if err := os.WriteFile(p, []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, v2.ModTime, v2.ModTime); err != nil {
		t.Fatal(err)
	}
	e.close()
	e.tg.hold, e.tg.holding = nil, nil
	e.open()
	e.flush()
	if got := e.serverFile("doc"); got != "v3, written during the upload" {
		t.Fatalf("doc on the server = %q", got)
	}
	kids, err := e.c.Children(cache.RootIno)
	if err != nil {
		t.Fatal(err)
	}
	if len(kids) != 1 {
		t.Fatalf("the mount holds %d files, want doc alone: %v", len(kids), kids)
	}
	if st := e.wb.Status(); len(st.Conflicts) != 0 {
		t.Fatalf("conflicts: %+v", st.Conflicts)
	}
}

// Two conflicts of one file within the same second keep both copies under
// numbered names instead of failing on the first copy's name.
func TestWritebackSecondConflictSameSecond(t *testing.T) {
	e := newWBEnv(t)
	e.close()
	at := time.Now()
	e.now = func() time.Time { return at }
	e.open()
	e.write(cache.RootIno, "doc.txt", "v1")
	e.flush()
	for i, v := range []string{"server's v2", "server's v3, longer"} {
		if err := os.WriteFile(filepath.Join(e.srv, "doc.txt"), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		e.write(cache.RootIno, "doc.txt", fmt.Sprintf("local %d", i))
		e.flush()
	}
	stamp := at.UTC().Format("20060102-150405")
	for name, want := range map[string]string{"doc.txt": "server's v3, longer",
		"doc.conflict-" + stamp + ".txt": "local 0", "doc.conflict-" + stamp + "-2.txt": "local 1"} {
		if got := e.serverFile(name); got != want {
			t.Errorf("%s on the server = %q, want %q", name, got, want)
		}
	}
}

// A burst of changes (tar x) holds the write-back until it pauses, at most
// burstHoldFactor times Delay past when each operation was due; a flush
// does not wait. The runner's clock stands still unless the test moves it,
// and Delay is a minute, so the real time the test takes does not count.
func TestWritebackWaitsForBurst(t *testing.T) {
	e := newWBEnv(t)
	e.close()
	start := time.Now()
	var mu gosync.Mutex
	clock := start.Add(2 * time.Minute) // every upload is due
	e.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	setClock := func(at time.Time) {
		mu.Lock()
		clock = at
		mu.Unlock()
	}
	e.delay = time.Minute
	e.open()
	for !e.wb.Status().Loaded { // the runner counts what it is told of
		time.Sleep(time.Millisecond)
	}
	// Each file queues two operations (create, commit): a burst is
	// recognised after the first burstChanges/2 files.
	const files, recognised = 2 * burstChanges, burstChanges / 2
	burst := func(prefix string) {
		for i := 0; i < files; i++ {
			e.write(cache.RootIno, fmt.Sprintf("%s%02d", prefix, i), "x")
		}
	}
	waitQueue := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for e.c.JournalLen() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d operations queued, want %d", e.c.JournalLen(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	burst("a")
	time.Sleep(3 * burstWindow) // real time: rounds run, the clock stands
	for _, c := range e.tg.Calls() {
		var i int
		if _, err := fmt.Sscanf(c, "write a%d", &i); err != nil || i >= recognised {
			t.Fatalf("the write-back ran %q during a burst", c)
		}
	}
	setClock(clock.Add(2 * burstWindow)) // the burst paused
	waitQueue(0)

	// A burst that goes on: operations due longer ago than the bound run.
	setClock(start.Add(burstHoldFactor*time.Minute + 3*time.Minute))
	burst("b")
	waitQueue(0)

	// A flush does not wait for a burst to pause.
	setClock(start.Add(2 * time.Minute))
	burst("c")
	e.flush()
	if got := e.serverFile("c00"); got != "x" {
		t.Fatalf("c00 on the server = %q", got)
	}
}

// An upload starts Delay after the file's last commit, also where the
// commit left the upload queued at its create in place (the newest
// operation: JournalEvent.Touched).
func TestWritebackDelayFromLastCommit(t *testing.T) {
	e := newWBEnv(t)
	e.close()
	e.delay = 400 * time.Millisecond
	e.open()
	ent, err := e.c.CreateOpen(cache.RootIno, "f", 0o644, time.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := e.c.WriteLocal(ent.Ino, []byte("data"), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Commit(ent.Ino, false); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	e.c.Release(ent.Ino, true)
	time.Sleep(time.Until(committed.Add(200 * time.Millisecond)))
	for _, c := range e.tg.Calls() {
		if strings.HasPrefix(c, "write") {
			t.Fatalf("%q within 200ms of the commit, before the 400ms delay", c)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.ContainsFunc(e.tg.Calls(), func(c string) bool { return strings.HasPrefix(c, "write f") }) {
		if time.Now().After(deadline) {
			t.Fatalf("not uploaded 10s after the commit: %q", e.tg.Calls())
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.flush()
	if got := e.serverFile("f"); got != "data" {
		t.Fatalf("on the server %q", got)
	}
}
