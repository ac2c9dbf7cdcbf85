package sync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
)

// countingTarget wraps a target and counts what crosses it: opened
// transfers, bytes read, listings. openErr makes every Open fail; stall
// makes every transfer hang after its first read until the test ends.
type countingTarget struct {
	target.Target
	opens   atomic.Int64
	bytes   atomic.Int64
	openErr error
	stall   chan struct{}
	listed  chan string // receives each listed path, if set
}

func (c *countingTarget) Open(ctx context.Context, p string, off, n int64) (io.ReadCloser, error) {
	if c.openErr != nil {
		return nil, c.openErr
	}
	c.opens.Add(1)
	rc, err := c.Target.Open(ctx, p, off, n)
	if err != nil {
		return nil, err
	}
	return &countingReader{rc: rc, t: c, closed: make(chan struct{})}, nil
}

func (c *countingTarget) List(ctx context.Context, dir string) ([]target.Entry, error) {
	es, err := c.Target.List(ctx, dir)
	if c.listed != nil {
		c.listed <- dir
	}
	return es, err
}

type countingReader struct {
	rc     io.ReadCloser
	t      *countingTarget
	closed chan struct{}
	once   gosync.Once
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.t.stall != nil {
		select {
		case <-r.t.stall:
		case <-r.closed:
		}
		return 0, errors.New("stalled transfer closed")
	}
	n, err := r.rc.Read(p)
	r.t.bytes.Add(int64(n))
	return n, err
}

func (r *countingReader) Close() error {
	r.once.Do(func() { close(r.closed) })
	return r.rc.Close()
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// fetchEnv is a local folder served through a counting target into a cache.
type fetchEnv struct {
	root string
	tgt  *countingTarget
	c    *cache.Cache
	f    *Fetcher
	l    *Lister
}

func newFetchEnv(t *testing.T, maxSize int64) *fetchEnv {
	t.Helper()
	root := t.TempDir()
	lt, err := local.New(root, local.Options{Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(cache.Options{Dir: t.TempDir(), MaxSize: maxSize, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	env := &fetchEnv{root: root, tgt: &countingTarget{Target: lt}, c: c}
	env.f, err = NewFetcher(FetchOptions{Target: env.tgt, Cache: c, Log: quietLog(), Idle: time.Second, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	env.l, err = NewLister(ListOptions{Target: env.tgt, Cache: c, Log: quietLog(), Prefetch: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		env.l.Close()
		env.f.Close()
		c.Close()
		lt.Close()
	})
	return env
}

// entry lists the root and returns the cache entry of name.
func (env *fetchEnv) entry(t *testing.T, name string) cache.Entry {
	t.Helper()
	if err := env.l.Refresh(context.Background(), cache.RootIno); err != nil {
		t.Fatal(err)
	}
	e, err := env.c.Lookup(cache.RootIno, name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func TestSequentialReadIsOneTransfer(t *testing.T) {
	env := newFetchEnv(t, 0)
	want := randomBytes(10*cache.BlockSize+12345, 1)
	os.WriteFile(filepath.Join(env.root, "seq"), want, 0o644)
	e := env.entry(t, "seq")

	var got bytes.Buffer
	buf := make([]byte, 128<<10)
	for off := int64(0); ; {
		n, err := env.f.ReadAt(context.Background(), e, buf, off)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		if n == 0 {
			break
		}
		got.Write(buf[:n])
		off += int64(n)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("content differs")
	}
	if o := env.tgt.opens.Load(); o != 1 {
		t.Errorf("%d transfers for one sequential read, want 1", o)
	}
	if b := env.tgt.bytes.Load(); b != int64(len(want)) {
		t.Errorf("transferred %d bytes, want %d", b, len(want))
	}
	// Read again: all from the cache.
	if _, err := env.f.ReadAt(context.Background(), e, buf, 5*cache.BlockSize); err != nil {
		t.Fatal(err)
	}
	if o := env.tgt.opens.Load(); o != 1 {
		t.Errorf("cached read opened a transfer")
	}
}

func TestRandomReadTransfersLittle(t *testing.T) {
	env := newFetchEnv(t, 0)
	p := filepath.Join(env.root, "big")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 30)
	mark := []byte("the needle")
	f.WriteAt(mark, 900<<20+100)
	f.Close()
	e := env.entry(t, "big")

	buf := make([]byte, 4096)
	n, err := env.f.ReadAt(context.Background(), e, buf, 900<<20)
	if err != nil || n != 4096 {
		t.Fatalf("read: %d, %v", n, err)
	}
	if !bytes.Equal(buf[100:100+len(mark)], mark) {
		t.Fatalf("read wrong content %q", buf[100:120])
	}
	// Let the transfer run as far ahead as it will, then count.
	env.f.Close()
	if b := env.tgt.bytes.Load(); b > 6<<20 {
		t.Fatalf("4 KiB read transferred %d bytes, want at most 6 MiB", b)
	}
	if o := env.tgt.opens.Load(); o != 1 {
		t.Fatalf("%d transfers, want 1", o)
	}
}

func TestReadersShareOneTransfer(t *testing.T) {
	env := newFetchEnv(t, 0)
	want := randomBytes(4*cache.BlockSize, 2)
	os.WriteFile(filepath.Join(env.root, "shared"), want, 0o644)
	e := env.entry(t, "shared")

	s1, err := env.f.streamFor(e, 1)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := env.f.streamFor(e, 2)
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 {
		t.Fatal("a second reader of the same range started its own transfer")
	}
	var wg gosync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			buf := make([]byte, 300<<10)
			off := int64(cache.BlockSize + i*1000)
			n, err := env.f.ReadAt(context.Background(), e, buf, off)
			if err != nil || !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
				t.Errorf("reader %d: %d, %v", i, n, err)
			}
		}(i)
	}
	wg.Wait()
	if o := env.tgt.opens.Load(); o != 1 {
		t.Fatalf("%d transfers for readers of one range, want 1", o)
	}
}

func TestServerDownCachedStillReadable(t *testing.T) {
	env := newFetchEnv(t, 0)
	want := randomBytes(12*cache.BlockSize, 3)
	os.WriteFile(filepath.Join(env.root, "f"), want, 0o644)
	e := env.entry(t, "f")
	buf := make([]byte, 1000)
	if _, err := env.f.ReadAt(context.Background(), e, buf, 0); err != nil {
		t.Fatal(err)
	}
	env.f.Close() // finish the first transfer before the server "goes down"
	env.f, _ = NewFetcher(FetchOptions{Target: env.tgt, Cache: env.c, Log: quietLog(), Timeout: time.Second})
	env.tgt.openErr = target.NewError("read", "f", target.ErrTemporary, errors.New("connection refused"))

	if n, err := env.f.ReadAt(context.Background(), e, buf, 10); err != nil || !bytes.Equal(buf[:n], want[10:10+n]) {
		t.Fatalf("cached read with server down: %d, %v", n, err)
	}
	start := time.Now()
	_, err := env.f.ReadAt(context.Background(), e, buf, 11*cache.BlockSize+5)
	if !errors.Is(err, target.ErrTemporary) {
		t.Fatalf("uncached read with server down: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("failing read took %v", d)
	}
}

func TestStalledTransferTimesOut(t *testing.T) {
	env := newFetchEnv(t, 0)
	os.WriteFile(filepath.Join(env.root, "f"), make([]byte, 1000), 0o644)
	e := env.entry(t, "f")
	env.tgt.stall = make(chan struct{})
	defer close(env.tgt.stall)
	env.f.Close()
	env.f, _ = NewFetcher(FetchOptions{Target: env.tgt, Cache: env.c, Log: quietLog(), Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := env.f.ReadAt(context.Background(), e, make([]byte, 10), 0)
	if err == nil {
		t.Fatal("read from a stalled server succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stalled read failed only after %v", d)
	}
}

func TestRemoteChangeDuringReadGivesNewContent(t *testing.T) {
	env := newFetchEnv(t, 0)
	p := filepath.Join(env.root, "f")
	os.WriteFile(p, bytes.Repeat([]byte("a"), 2*cache.BlockSize), 0o644)
	old := env.entry(t, "f")
	buf := make([]byte, 10)
	if _, err := env.f.ReadAt(context.Background(), old, buf, 0); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(p, bytes.Repeat([]byte("b"), 3*cache.BlockSize), 0o644)
	os.Chtimes(p, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	cur := env.entry(t, "f")
	if cur.Gen == old.Gen {
		t.Fatal("listing did not notice the change")
	}
	// The old transfer may still run; a read of the new content must not
	// be served from it.
	n, err := env.f.ReadAt(context.Background(), cur, buf, cache.BlockSize)
	if err != nil || string(buf[:n]) != "bbbbbbbbbb" {
		t.Fatalf("read after change: %q, %v", buf[:n], err)
	}
}

func TestEvictionUnderTinyCache(t *testing.T) {
	env := newFetchEnv(t, 2*cache.BlockSize)
	want := randomBytes(8*cache.BlockSize, 4)
	os.WriteFile(filepath.Join(env.root, "f"), want, 0o644)
	e := env.entry(t, "f")
	buf := make([]byte, cache.BlockSize)
	for i := int64(0); i < 8; i++ {
		n, err := env.f.ReadAt(context.Background(), e, buf, i*cache.BlockSize)
		if err != nil || !bytes.Equal(buf[:n], want[i*cache.BlockSize:(i+1)*cache.BlockSize]) {
			t.Fatalf("block %d: %d, %v", i, n, err)
		}
	}
	if u, _ := env.c.Usage(); u.Used > 2*cache.BlockSize {
		t.Fatalf("cache holds %d bytes over its 2 MiB bound", u.Used)
	}
}
