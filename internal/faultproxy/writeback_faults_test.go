package faultproxy_test

import (
	"context"
	"errors"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/internal/faultproxy"
	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	syncpkg "github.com/ftpsync-mount/ftpsync-mount/sync"
)

// TestMountWritebackOfNewFoldersThroughFaults queues a new folder tree in
// the mount's cache, as tar x does, and flushes the write-back through the
// faults until a flush succeeds: the tree is staged and renamed into place
// whole, or (after a failure) uploaded one file at a time. The server then
// holds the tree byte for byte, no file was ever seen half-written under
// its name, and no staging folder or temporary file is left.
func TestMountWritebackOfNewFoldersThroughFaults(t *testing.T) {
	const seed = 13
	rnd := rand.New(rand.NewSource(seed))
	srv := ftpdtest.Start(t)
	files := fillTree(t, t.TempDir(), rnd, "m", 24, 150<<10)
	want := map[string][]byte{}
	allowed := map[string][][]byte{}
	for p, data := range files {
		want["new/"+p] = data
		allowed["new/"+p] = [][]byte{data}
	}
	fig := &figures{}
	p := faultproxy.New(faultConfig(t, seed))
	t.Cleanup(func() { p.Close() })
	remote := newTarget(t, fig, srv, p)
	if !remote.Features().StagedWrites {
		t.Fatal("the embedded server should offer staged writes (MLSD)")
	}
	log := testLog(t)
	c, err := cache.Open(cache.Options{Dir: t.TempDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for path, data := range want {
		putCached(t, c, path, data)
	}
	w := watch(t, srv.Root, allowed, fig)
	wb, err := syncpkg.NewWriteback(syncpkg.WritebackOptions{Target: remote, Cache: c, Log: log, Delay: time.Hour,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()
	retry(t, fig, "flush", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		return wb.Flush(ctx)
	})
	serverEndsWhole(t, w, fig, srv.Root, want)
	if notes, err := c.StagingNotes(); err != nil || len(notes) != 0 {
		t.Errorf("staging folders noted after the flush: %v %v", notes, err)
	}
	fig.report(t, "mount write-back of new folders", p, seed)
}

// putCached creates the file p (and the folders above it) in the cache as
// the mount does, closed.
func putCached(t *testing.T, c *cache.Cache, p string, data []byte) {
	t.Helper()
	parts := strings.Split(p, "/")
	dir := uint64(cache.RootIno)
	for _, name := range parts[:len(parts)-1] {
		e, err := c.Lookup(dir, name)
		if errors.Is(err, cache.ErrNotFound) {
			e, err = c.Mkdir(dir, name, 0o755, time.Now())
		}
		if err != nil {
			t.Fatal(err)
		}
		dir = e.Ino
	}
	e, err := c.Create(dir, parts[len(parts)-1], 0o644, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.OpenLocal(e.Ino, true, true, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(e.Ino, data, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(e.Ino, false); err != nil {
		t.Fatal(err)
	}
	c.Release(e.Ino, true)
}
