package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	gosync "sync"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
)

// reconnectEvery is how often an offline mount tries the server again, at
// most; requests in between fail at once with the last error.
const reconnectEvery = 5 * time.Second

// openTargetOrOffline opens the target; if the server cannot be reached but
// a cache of it exists, it returns a stand-in that serves the cache and
// connects on first use instead, so that a warm cache mounts while the
// server is down. The cache directory must be known without the server: it
// is --cache-dir, or the default one, named by the tree ID, which target/ftp
// derives from the URL alone.
func openTargetOrOffline(ctx context.Context, g *globalOptions, mf *mountFlags, spec string) (target.Target, error) {
	tgt, err := openTarget(ctx, g, &mf.target, spec)
	if err == nil || !errors.Is(err, target.ErrTemporary) || !isRemoteSpec(spec) {
		return tgt, err
	}
	ep, perr := ftp.ParseURL(spec)
	if perr != nil {
		return nil, err
	}
	dir := mf.cacheDir
	if dir == "" {
		dir = xdgDir("XDG_CACHE_HOME", ".cache", "ftpsync-mount", cacheName(ep.ID()))
	}
	if dir == "" {
		return nil, err
	}
	if _, serr := os.Stat(filepath.Join(dir, "db")); serr != nil {
		return nil, err // nothing cached to show
	}
	g.log.WithError(err).Warnf("the server is unreachable; serving the cache in %s and connecting when needed", dir)
	if mf.cacheDir == "" {
		mf.cacheDir = dir
	}
	return &offlineTarget{
		open: func(ctx context.Context) (target.Target, error) { return openTarget(ctx, g, &mf.target, spec) },
		id:   ep.ID(), name: ep.String(), lastErr: err, lastTry: time.Now(),
	}, nil
}

// offlineTarget stands in for a target whose server was down at mount time.
// Every call first connects (at most once per reconnectEvery); until that
// succeeds it fails with the connection's error, which the mount answers
// with EIO for anything not cached.
type offlineTarget struct {
	open     func(context.Context) (target.Target, error) // read only
	id, name string                                       // read only

	mu         gosync.Mutex  // protects the following
	t          target.Target // once connected
	closed     bool
	connecting bool
	lastTry    time.Time
	lastErr    error
}

var _ target.Target = (*offlineTarget)(nil)

// get returns the connected target, or the reason there is none yet.
func (o *offlineTarget) get(ctx context.Context) (target.Target, error) {
	o.mu.Lock()
	if o.t != nil || o.connecting || time.Since(o.lastTry) < reconnectEvery {
		t, err := o.t, o.lastErr
		o.mu.Unlock()
		if t != nil {
			return t, nil
		}
		return nil, err
	}
	o.connecting, o.lastTry = true, time.Now()
	o.mu.Unlock()

	t, err := o.open(ctx)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.connecting = false
	if err != nil {
		o.lastErr = err
		return nil, err
	}
	if o.closed {
		t.Close()
		return nil, errors.New("mount is shutting down")
	}
	o.t = t
	return t, nil
}

func (o *offlineTarget) Stat(ctx context.Context, p string) (target.Entry, error) {
	t, err := o.get(ctx)
	if err != nil {
		return target.Entry{}, err
	}
	return t.Stat(ctx, p)
}

func (o *offlineTarget) List(ctx context.Context, dir string) ([]target.Entry, error) {
	t, err := o.get(ctx)
	if err != nil {
		return nil, err
	}
	return t.List(ctx, dir)
}

func (o *offlineTarget) Open(ctx context.Context, p string, offset, length int64) (io.ReadCloser, error) {
	t, err := o.get(ctx)
	if err != nil {
		return nil, err
	}
	return t.Open(ctx, p, offset, length)
}

func (o *offlineTarget) Write(ctx context.Context, p string, r io.Reader, opts target.WriteOptions) (target.Entry, error) {
	t, err := o.get(ctx)
	if err != nil {
		return target.Entry{}, err
	}
	return t.Write(ctx, p, r, opts)
}

func (o *offlineTarget) Append(ctx context.Context, p string, r io.Reader) (target.Entry, error) {
	t, err := o.get(ctx)
	if err != nil {
		return target.Entry{}, err
	}
	return t.Append(ctx, p, r)
}

func (o *offlineTarget) Rename(ctx context.Context, from, to string) error {
	t, err := o.get(ctx)
	if err != nil {
		return err
	}
	return t.Rename(ctx, from, to)
}

func (o *offlineTarget) Remove(ctx context.Context, p string) error {
	t, err := o.get(ctx)
	if err != nil {
		return err
	}
	return t.Remove(ctx, p)
}

func (o *offlineTarget) Mkdir(ctx context.Context, p string) error {
	t, err := o.get(ctx)
	if err != nil {
		return err
	}
	return t.Mkdir(ctx, p)
}

func (o *offlineTarget) Rmdir(ctx context.Context, p string) error {
	t, err := o.get(ctx)
	if err != nil {
		return err
	}
	return t.Rmdir(ctx, p)
}

func (o *offlineTarget) SetModTime(ctx context.Context, p string, mt time.Time) error {
	t, err := o.get(ctx)
	if err != nil {
		return err
	}
	return t.SetModTime(ctx, p, mt)
}

// Features are those of the server once connected; none before.
func (o *offlineTarget) Features() target.Features {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.t == nil {
		return target.Features{}
	}
	return o.t.Features()
}

func (o *offlineTarget) String() string { return o.name }
func (o *offlineTarget) ID() string     { return o.id }

func (o *offlineTarget) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	if o.t == nil {
		return nil
	}
	return o.t.Close()
}
