package fs

import (
	"context"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/sync"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
)

// switchTarget wraps a target and can play a server that is down: every
// call then fails at once as a refused connection would.
type switchTarget struct {
	target.Target
	down     atomic.Bool
	opens    atomic.Int64 // transfers opened
	bytes    atomic.Int64 // bytes transferred
	written  atomic.Int64 // bytes uploaded by Write
	appended atomic.Int64 // bytes uploaded by Append
}

// countingSource counts the bytes an upload read.
type countingSource struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingSource) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (s *switchTarget) Write(ctx context.Context, p string, r io.Reader, o target.WriteOptions) (target.Entry, error) {
	if s.down.Load() {
		return target.Entry{}, errDown
	}
	return s.Target.Write(ctx, p, countingSource{r, &s.written}, o)
}

// RefineModTime passes MDTM on where the target has it (LIST-only servers).
func (s *switchTarget) RefineModTime(ctx context.Context, p string) (time.Time, error) {
	rf, ok := s.Target.(interface {
		RefineModTime(context.Context, string) (time.Time, error)
	})
	if !ok {
		return time.Time{}, target.Errorf("mdtm", p, target.ErrUnsupported, "the target has no exact times")
	}
	return rf.RefineModTime(ctx, p)
}

func (s *switchTarget) Stat(ctx context.Context, p string) (target.Entry, error) {
	if s.down.Load() {
		return target.Entry{}, errDown
	}
	return s.Target.Stat(ctx, p)
}

func (s *switchTarget) Append(ctx context.Context, p string, r io.Reader) (target.Entry, error) {
	if s.down.Load() {
		return target.Entry{}, errDown
	}
	return s.Target.Append(ctx, p, countingSource{r, &s.appended})
}

var errDown = target.NewError("connect", "", target.ErrTemporary, errors.New("connection refused"))

func (s *switchTarget) List(ctx context.Context, dir string) ([]target.Entry, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.Target.List(ctx, dir)
}

func (s *switchTarget) Open(ctx context.Context, p string, off, n int64) (io.ReadCloser, error) {
	if s.down.Load() {
		return nil, errDown
	}
	s.opens.Add(1)
	rc, err := s.Target.Open(ctx, p, off, n)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, n: &s.bytes}, nil
}

// countingReader counts the bytes a transfer delivered.
type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// mountOpts describes a test mount.
type mountOpts struct {
	target       target.Target // default: a local target over serverDir
	serverDir    string        // default: a new temp dir
	cacheDir     string        // default: a new temp dir
	maxSize      int64
	dirCacheTime time.Duration
	readOnly     bool
	writeBack    time.Duration // the upload delay; default 10ms
	noRunner     bool          // queue writes but never upload them
	appendUpload bool          // --append-uploads
	fsyncUpload  bool          // --fsync=upload
	pollInterval time.Duration // --poll-interval; 0: no poller
	resolve      sync.Resolution
}

// testMount is a mounted filesystem over a target, and its layers.
type testMount struct {
	dir       string // the mount point
	serverDir string // what a local target serves; empty for other targets
	cacheDir  string
	tgt       *switchTarget
	cache     *cache.Cache
	lister    *sync.Lister
	notifier  *Notifier
	sent      chan struct{} // receives after each batch of kernel notifications
	server    *fuse.Server
	wb        *sync.Writeback // nil with noRunner or readOnly
	log       *logrus.Logger
	unmounted bool
	closers   []func() // layers to close after unmounting
	closed    bool
}

// mount mounts a filesystem on a temp dir; the test's cleanup unmounts it
// (retrying while the kernel reports it busy) and closes every layer.
func mount(t *testing.T, o mountOpts) *testMount {
	t.Helper()
	log := logrus.New()
	log.SetOutput(io.Discard)
	if testing.Verbose() {
		log.SetOutput(os.Stderr)
		log.SetLevel(logrus.DebugLevel)
	}
	if o.cacheDir == "" {
		o.cacheDir = t.TempDir()
	}
	if o.target == nil {
		if o.serverDir == "" {
			o.serverDir = t.TempDir()
		}
		lt, err := local.New(o.serverDir, local.Options{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		o.target = lt
	}
	m := &testMount{dir: t.TempDir(), serverDir: o.serverDir, cacheDir: o.cacheDir, tgt: &switchTarget{Target: o.target}, log: log}
	c, err := cache.Open(cache.Options{Dir: o.cacheDir, MaxSize: o.maxSize, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	m.cache = c
	notifier := NewNotifier(log)
	m.notifier, m.sent = notifier, make(chan struct{}, 100)
	notifier.sent = func() { m.sent <- struct{}{} }
	fetcher, err := sync.NewFetcher(sync.FetchOptions{Target: m.tgt, Cache: c, Log: log, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m.lister, err = sync.NewLister(sync.ListOptions{Target: m.tgt, Cache: c, Log: log, DirCacheTime: o.dirCacheTime, OnChange: notifier.Changed,
		PollInterval: o.pollInterval, RecordKept: o.resolve == 0 || o.resolve == sync.ResolveKeepBoth})
	if err != nil {
		t.Fatal(err)
	}
	if !o.readOnly && !o.noRunner {
		if o.writeBack == 0 {
			o.writeBack = 10 * time.Millisecond
		}
		m.wb, err = sync.NewWriteback(sync.WritebackOptions{Target: m.tgt, Cache: c, Log: log, Delay: o.writeBack,
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, OnChange: notifier.Changed,
			AppendUploads: o.appendUpload, Resolve: o.resolve})
		if err != nil {
			t.Fatal(err)
		}
	}
	m.server, err = Mount(m.dir, Options{Cache: c, Fetcher: fetcher, Lister: m.lister, Notifier: notifier, Log: log,
		ReadOnly: o.readOnly, Writeback: m.wb, FsyncUpload: o.fsyncUpload, Debug: os.Getenv("FTPSYNC_FUSE_DEBUG") != ""})
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	m.closers = []func(){m.lister.Close, fetcher.Close, notifier.Close, func() { c.Close() }, func() { o.target.Close() }}
	if m.wb != nil {
		m.closers = append([]func(){m.wb.Close}, m.closers...)
	}
	t.Cleanup(func() { m.close(t) })
	return m
}

// close unmounts and closes every layer, so that the cache can be opened
// again by another mount.
func (m *testMount) close(t *testing.T) {
	t.Helper()
	if m.closed {
		return
	}
	m.closed = true
	m.unmount(t)
	for _, f := range m.closers {
		f()
	}
}

// flush unmounts the mount and uploads everything queued, as the command
// does at unmount, failing the test if something did not get there.
func (m *testMount) flush(t *testing.T) {
	t.Helper()
	m.unmount(t)
	if m.wb == nil {
		t.Fatal("flush: this mount has no write-back runner")
	}
	// As the command does: a close the kernel did not report before the
	// unmount must not keep the flush waiting.
	m.cache.ReleaseAll()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := m.wb.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// unmount unmounts, retrying for a while: the kernel reports a mount busy
// until the last file closed in the test is released.
func (m *testMount) unmount(t *testing.T) {
	t.Helper()
	if m.unmounted {
		return
	}
	var err error
	for i := 0; i < 50; i++ {
		if err = m.server.Unmount(); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("unmount %s: %v", m.dir, err)
		return
	}
	m.server.Wait()
	m.unmounted = true
}
