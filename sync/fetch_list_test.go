package sync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

func newListEnv(t *testing.T, opts ListOptions) (*fetchEnv, *Lister) {
	t.Helper()
	env := newFetchEnv(t, 0)
	env.tgt.listed = make(chan string, 100)
	opts.Target, opts.Cache, opts.Log = env.tgt, env.c, quietLog()
	l, err := NewLister(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return env, l
}

// waitListed waits until the target was asked to list p.
func waitListed(t *testing.T, c chan string, p string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case got := <-c:
			if got == p {
				return
			}
		case <-deadline:
			t.Fatalf("%q was not listed", p)
		}
	}
}

func TestEnsureListsOnceAndPrefetchesSubdirs(t *testing.T) {
	env, l := newListEnv(t, ListOptions{Prefetch: 2})
	os.MkdirAll(filepath.Join(env.root, "a", "deeper", "deepest"), 0o755)
	os.MkdirAll(filepath.Join(env.root, "b c"), 0o755)
	os.WriteFile(filepath.Join(env.root, "b c", "f"), []byte("x"), 0o644)

	root, _ := env.c.Get(cache.RootIno)
	if err := l.Ensure(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	waitListed(t, env.tgt.listed, "")
	// Both subdirectories and a/deeper are listed in the background;
	// a/deeper/deepest is not (prefetch goes two levels down from what was
	// opened).
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case p := <-env.tgt.listed:
			seen[p] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("background listings seen: %v", seen)
		}
	}
	if !seen["a"] || !seen["b c"] || !seen["a/deeper"] {
		t.Fatalf("background listings %v, want a, b c and a/deeper", seen)
	}
	bc, err := env.c.Lookup(cache.RootIno, "b c")
	if err != nil {
		t.Fatal(err)
	}
	// A fresh listing is answered from the cache.
	root, _ = env.c.Get(cache.RootIno)
	if err := l.Ensure(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-env.tgt.listed:
		if p == "" {
			t.Fatal("a fresh directory was listed again")
		}
	default:
	}
	// Wait for "b c" to be stored (its flight ends after ApplyListing).
	if err := l.Refresh(context.Background(), bc.Ino); err != nil {
		t.Fatal(err)
	}
	if _, err := env.c.Lookup(bc.Ino, "f"); err != nil {
		t.Fatalf("file in prefetched directory: %v", err)
	}
	// The second level of background listings does not queue its own
	// subdirectories.
	a, err := env.c.Lookup(cache.RootIno, "a")
	if err != nil {
		t.Fatal(err)
	}
	l.Close() // waits for every listing under way
	deeper, err := env.c.Lookup(a.Ino, "deeper")
	if err != nil {
		t.Fatal(err)
	}
	deepest, err := env.c.Lookup(deeper.Ino, "deepest")
	if err != nil {
		t.Fatal(err)
	}
	if !deepest.ListedAt.IsZero() {
		t.Fatal("background listings went on to list a/deeper/deepest")
	}
}

func TestStaleDirectoryAnsweredAtOnceAndRefreshed(t *testing.T) {
	changes := make(chan []cache.Change, 10)
	env, l := newListEnv(t, ListOptions{DirCacheTime: time.Millisecond, OnChange: func(c []cache.Change) { changes <- c }})
	os.WriteFile(filepath.Join(env.root, "old"), []byte("x"), 0o644)
	if err := l.Refresh(context.Background(), cache.RootIno); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(env.root, "old"))
	os.WriteFile(filepath.Join(env.root, "new"), []byte("y"), 0o644)
	time.Sleep(2 * time.Millisecond) // let the listing age past DirCacheTime

	root, _ := env.c.Get(cache.RootIno)
	if err := l.Ensure(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-changes:
		kinds := map[string]cache.ChangeKind{}
		for _, c := range got {
			kinds[c.Name] = c.Kind
		}
		if len(got) != 2 || kinds["old"] != cache.ChangeRemoved || kinds["new"] != cache.ChangeAdded {
			t.Fatalf("changes %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stale directory was not refreshed")
	}
}

func TestServerDownServesCachedListing(t *testing.T) {
	env, l := newListEnv(t, ListOptions{DirCacheTime: time.Millisecond})
	os.Mkdir(filepath.Join(env.root, "never"), 0o755)
	if err := l.Refresh(context.Background(), cache.RootIno); err != nil {
		t.Fatal(err)
	}
	waitListed(t, env.tgt.listed, "")
	os.RemoveAll(env.root) // the server's folder is gone: every list fails
	time.Sleep(2 * time.Millisecond)

	root, _ := env.c.Get(cache.RootIno)
	if err := l.Ensure(context.Background(), root); err != nil {
		t.Fatalf("stale but cached directory: %v", err)
	}
	if _, err := env.c.Lookup(cache.RootIno, "never"); err != nil {
		t.Fatalf("cached entry lost: %v", err)
	}
	never, _ := env.c.Lookup(cache.RootIno, "never")
	never.ListedAt = time.Time{}
	err := l.Refresh(context.Background(), never.Ino)
	if err == nil || errors.Is(err, target.ErrInvalidName) {
		t.Fatalf("listing with the server down: %v", err)
	}
}

// A directory listed in the background queues its own subdirectories once
// someone asks for it, so that a depth-first walk finds them listed.
func TestOpeningPrefetchedDirectoryQueuesItsSubdirs(t *testing.T) {
	env, l := newListEnv(t, ListOptions{Prefetch: 1})
	os.MkdirAll(filepath.Join(env.root, "a", "b", "c", "d", "e"), 0o755)

	root, _ := env.c.Get(cache.RootIno)
	if err := l.Ensure(context.Background(), root); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"", "a", "a/b"} {
		waitListed(t, env.tgt.listed, p)
	}
	a, err := env.c.Lookup(cache.RootIno, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.c.Lookup(a.Ino, "b")
	if err != nil {
		t.Fatal(err)
	}
	// Wait for the background listing of a/b to be stored (Refresh would
	// list again, as a foreground listing).
	l.mu.Lock()
	fl := l.flights[b.Ino]
	l.mu.Unlock()
	if fl != nil {
		<-fl.done
	}
	b, _ = env.c.Get(b.Ino)
	if b.ListedAt.IsZero() {
		t.Fatal("a/b is not listed")
	}
	select {
	case p := <-env.tgt.listed:
		t.Fatalf("%q listed before anyone opened a/b", p)
	default:
	}
	if err := l.Ensure(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	waitListed(t, env.tgt.listed, "a/b/c")
	waitListed(t, env.tgt.listed, "a/b/c/d")
	// Two levels below what was asked for, no further.
	l.Close()
	c, err := env.c.Lookup(b.Ino, "c")
	if err != nil {
		t.Fatal(err)
	}
	d, err := env.c.Lookup(c.Ino, "d")
	if err != nil {
		t.Fatal(err)
	}
	e, err := env.c.Lookup(d.Ino, "e")
	if err != nil {
		t.Fatal(err)
	}
	if !e.ListedAt.IsZero() {
		t.Fatal("a/b/c/d/e was listed without anyone opening a/b/c")
	}
}

// A folder made here and not yet on the server (its mkdir is queued, or
// its bundle is being staged) cannot be listed there; that says nothing
// about the server, which is not taken for down.
func TestListingQueuedFolderIsNotAnOutage(t *testing.T) {
	env, l := newListEnv(t, ListOptions{})
	d, err := env.c.Mkdir(cache.RootIno, "new", 0o755, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Refresh(context.Background(), d.Ino); !errors.Is(err, target.ErrNotFound) {
		t.Fatalf("listing a folder the server lacks: %v", err)
	}
	l.mu.Lock()
	down := l.down
	l.mu.Unlock()
	if down {
		t.Fatal("a folder queued for the server counts as a failed listing")
	}
	// Once nothing is queued for it, its absence is a failure again.
	ops, err := env.c.Journal()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops {
		if err := env.c.FinishOp(o.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Refresh(context.Background(), d.Ino); err == nil {
		t.Fatal("listing a folder the server lacks worked")
	}
	l.mu.Lock()
	down = l.down
	l.mu.Unlock()
	if !down {
		t.Fatal("a folder missing on the server with nothing queued is not reported")
	}
}
