package sync

import (
	"context"
	"os"
	"path/filepath"
	gosync "sync"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
)

// pollEnv is a server folder, a cache and a Lister over tg.
type pollEnv struct {
	root    string
	c       *cache.Cache
	l       *Lister
	mu      gosync.Mutex
	changes []cache.Change
}

func newPollEnv(t *testing.T, wrap func(target.Target) target.Target, opts ListOptions) *pollEnv {
	t.Helper()
	env := &pollEnv{root: t.TempDir()}
	lt, err := local.New(env.root, local.Options{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	var tg target.Target = lt
	if wrap != nil {
		tg = wrap(lt)
	}
	if env.c, err = cache.Open(cache.Options{Dir: t.TempDir(), Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	opts.Target, opts.Cache, opts.Log = tg, env.c, quietLog()
	opts.OnChange = func(ch []cache.Change) {
		env.mu.Lock()
		env.changes = append(env.changes, ch...)
		env.mu.Unlock()
	}
	if env.l, err = NewLister(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		env.l.Close()
		env.c.Close()
		lt.Close()
	})
	return env
}

func (env *pollEnv) put(t *testing.T, name, data string, at time.Time) {
	t.Helper()
	p := filepath.Join(env.root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, at, at); err != nil {
		t.Fatal(err)
	}
}

// ensure opens a folder as a lookup in the mount would (listing it and
// marking it used).
func (env *pollEnv) ensure(t *testing.T, p string) cache.Entry {
	t.Helper()
	e, err := env.c.LookupPath(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.l.Ensure(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if e, err = env.c.LookupPath(p); err != nil {
		t.Fatal(err)
	}
	return e
}

func (env *pollEnv) took() []cache.Change {
	env.mu.Lock()
	defer env.mu.Unlock()
	ch := env.changes
	env.changes = nil
	return ch
}

// The poller lists the folders in use again and brings in what changed on
// the server: an edit, a new file and folder, a delete, a rename.
func TestPollerBringsInServerChanges(t *testing.T) {
	env := newPollEnv(t, nil, ListOptions{PollInterval: 20 * time.Millisecond})
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	env.put(t, "edit.txt", "v1", old)
	env.put(t, "gone.txt", "x", old)
	env.put(t, "from.txt", "r", old)
	env.ensure(t, "")
	edit, err := env.c.LookupPath("edit.txt")
	if err != nil {
		t.Fatal(err)
	}
	env.put(t, "edit.txt", "v2 longer", time.Now())
	env.put(t, "new/inner.txt", "n", time.Now())
	os.Remove(filepath.Join(env.root, "gone.txt"))
	os.Rename(filepath.Join(env.root, "from.txt"), filepath.Join(env.root, "to.txt"))

	deadline := time.Now().Add(5 * time.Second)
	for {
		e, err := env.c.LookupPath("edit.txt")
		_, newErr := env.c.LookupPath("new")
		_, toErr := env.c.LookupPath("to.txt")
		_, goneErr := env.c.LookupPath("gone.txt")
		_, fromErr := env.c.LookupPath("from.txt")
		if err == nil && e.Size == int64(len("v2 longer")) && newErr == nil && toErr == nil && goneErr != nil && fromErr != nil {
			if e.Gen != edit.Gen+1 {
				t.Errorf("edit.txt's generation %d, want %d (its cached content dropped)", e.Gen, edit.Gen+1)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poller did not bring in the server's changes: edit %+v (%v), new %v, to %v, gone %v, from %v",
				e, err, newErr, toErr, goneErr, fromErr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The cache shows a listing before OnChange hears of it: wait for the
	// last notice too (took drains what was told so far).
	want := map[string]cache.ChangeKind{"edit.txt": cache.ChangeContent, "new": cache.ChangeAdded, "to.txt": cache.ChangeAdded,
		"gone.txt": cache.ChangeRemoved, "from.txt": cache.ChangeRemoved}
	kinds := map[string]cache.ChangeKind{}
	for {
		for _, c := range env.took() {
			kinds[c.Name] = c.Kind
		}
		missing := false
		for name, k := range want {
			missing = missing || kinds[name] != k
		}
		if !missing {
			break
		}
		if time.Now().After(deadline) {
			for name, k := range want {
				if kinds[name] != k {
					t.Errorf("the kernel was told %v about %s, want %v (all: %v)", kinds[name], name, k, kinds)
				}
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A round lists the folders left partly applied first, then the most
// recently used, at most PollBatch; folders not used recently are left.
func TestPollRoundIsBounded(t *testing.T) {
	// The interval only makes the Lister keep track for a poller; its
	// rounds are run here by hand.
	env := newPollEnv(t, nil, ListOptions{PollBatch: 2, DirCacheTime: time.Hour, PollInterval: time.Minute})
	for _, d := range []string{"a", "b", "c", "d"} {
		if err := os.Mkdir(filepath.Join(env.root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env.ensure(t, "")
	var inos []uint64
	for _, d := range []string{"a", "b", "c", "d"} {
		inos = append(inos, env.ensure(t, d).Ino)
		time.Sleep(2 * time.Millisecond)
	}
	env.l.noteListed(inos[0], true) // a: deferred
	due := env.l.pollDue(time.Now())
	if len(due) != 2 || due[0] != inos[0] || due[1] != inos[3] {
		t.Fatalf("due %v, want a (deferred) then d (last used) of a b c d = %v", due, inos)
	}
	if st := env.l.PollRound(context.Background()); st.Listed != 2 || st.Failed != 0 {
		t.Fatalf("round %+v, want 2 listed", st)
	}
	// Use older than the window is forgotten.
	if due := env.l.pollDue(time.Now().Add(2 * time.Hour)); len(due) != 0 {
		t.Fatalf("due two hours later: %v, want none", due)
	}
}

// On a LIST-only server a same-size change within the same minute is
// caught by asking for the exact time of files changed so recently that
// the minute cannot tell; older files cost no such request.
func TestPollCatchesSameMinuteEditOnListOnlyServer(t *testing.T) {
	var ml *minuteLister
	env := newPollEnv(t, func(tg target.Target) target.Target { ml = &minuteLister{Target: tg}; return ml }, ListOptions{})
	base := time.Now().Truncate(time.Minute)
	env.put(t, "f.txt", "aaa", base)
	env.put(t, "old.txt", "o", base.Add(-time.Hour))
	env.ensure(t, "")
	f, err := env.c.LookupPath("f.txt")
	if err != nil {
		t.Fatal(err)
	}
	if f.Precision != time.Second || !f.ModTime.Equal(base) {
		t.Fatalf("f.txt was recorded at %v (precision %v), want the exact %v", f.ModTime, f.Precision, base)
	}
	if n := ml.refines.Load(); n != 1 {
		t.Fatalf("%d exact-time requests for the first listing, want 1 (f.txt, changed this minute)", n)
	}
	env.put(t, "f.txt", "bbb", base.Add(time.Second))
	if _, err := env.l.RefreshTree(context.Background(), cache.RootIno, false); err != nil {
		t.Fatal(err)
	}
	g, err := env.c.LookupPath("f.txt")
	if err != nil {
		t.Fatal(err)
	}
	if g.Gen != f.Gen+1 || !g.ModTime.Equal(base.Add(time.Second)) {
		t.Fatalf("after a same-size edit in the same minute f.txt is gen %d at %v, want gen %d at %v",
			g.Gen, g.ModTime, f.Gen+1, base.Add(time.Second))
	}
	if n := ml.refines.Load(); n != 2 {
		t.Errorf("%d exact-time requests in all, want 2 (old.txt never needs one)", n)
	}
}

// A full record of used folders drops the stale ones to make room, looking
// for them at most once an interval.
func TestTouchWhenFull(t *testing.T) {
	env := newPollEnv(t, nil, ListOptions{DirCacheTime: time.Minute, PollInterval: time.Minute})
	l := env.l
	fill := func(at time.Time) {
		l.mu.Lock()
		defer l.mu.Unlock()
		clear(l.used)
		for i := range usedMax {
			l.used[uint64(1000+i)] = at
		}
	}
	fill(time.Now().Add(-time.Hour))
	l.Touch(1)
	l.mu.Lock()
	n, at := len(l.used), l.used[1]
	l.mu.Unlock()
	if n != 1 || at.IsZero() {
		t.Fatalf("after a Touch of a full record of stale folders: %d remembered, the new one at %v; want it alone", n, at)
	}
	fill(time.Now().Add(-time.Hour))
	l.Touch(2) // within the interval of the last look: not added, not swept
	l.mu.Lock()
	n, added := len(l.used), !l.used[2].IsZero()
	l.mu.Unlock()
	if n != usedMax || added {
		t.Fatalf("a second Touch within the interval: %d remembered (want %d), new one added %v", n, usedMax, added)
	}
}
