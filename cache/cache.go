// Package cache is the mount's persistent local store: in Badger the
// remote tree with inode numbers that stay stable across remounts, the remote
// state of every entry as last listed, and which fixed-size blocks of each
// file's content are cached, so that part of a file can be cached without
// the rest; the content itself in plain files (fetched.go, local.go). It knows nothing of
// FUSE or FTP; sync/ fills it and fs/ reads it.
//
// Lock order: an open file's commitMu, then treeMu, then a content stripe,
// then openFiles.mu, then an open file's mu, then lruMu (removeSubtrees
// holds a stripe, openFiles.mu and lruMu); never the other way round.
// Badger transactions are taken inside any of them, never the other way
// round.
package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/sirupsen/logrus"
)

// Sentinel errors callers test with errors.Is.
var (
	ErrNotFound = errors.New("not in the cache")
	ErrLocked   = errors.New("cache directory is in use by another ftpsync-mount process")
	ErrStale    = errors.New("file content changed while it was being cached")
	ErrNotDir   = errors.New("not a directory")
)

// BlockSize is the unit content is cached in. 1 MiB keeps the number of keys
// small for big files while a random 4 KiB read costs at most one block.
const BlockSize = 1 << 20

// RootIno is the inode number of the mount's root directory.
const RootIno = 1

// Options configures a Cache. The command line fills it.
type Options struct {
	// Dir holds the Badger files and the lock file; created with mode 0700.
	Dir string
	// MaxSize bounds the bytes of cached content; 0 means no bound. Tree
	// metadata is not counted and never evicted.
	MaxSize int64
	// GCInterval is how often Badger's value log is compacted (default 5m).
	GCInterval time.Duration
	Log        logrus.FieldLogger
}

// Cache is the store. It is safe for concurrent use.
type Cache struct {
	db   *badger.DB         // read only after Open
	seq  *badger.Sequence   // inode numbers; leased in ranges, so a crash only skips some
	lock *os.File           // flock held for the cache's lifetime
	log  logrus.FieldLogger // read only
	dir  string             // read only
	max  int64              // read only

	// treeMu serialises changes to the tree (ApplyListing, removals), so that
	// the existing children read before a change are still current when the
	// change commits. Readers do not take it: Badger gives them snapshots.
	treeMu sync.Mutex

	// stripes serialise, per inode, storing a block against dropping a file's
	// content, so that a block fetched before a remote change is never stored
	// after the change dropped the old blocks.
	stripes [64]sync.Mutex

	lru lru      // cached block accounting; has its own lock
	mem entryMem // recently used entry records; has its own lock

	// Guarded by treeMu: the journal's next sequence number and the
	// runner's hook (journal.go).
	nextSeq uint64
	hook    func(JournalEvent)
	// flight indexes the queued operations by path for listings
	// (inflight.go); guarded by treeMu.
	flight inflight
	// journalLen counts queued operations; written under treeMu.
	journalLen atomic.Int64

	open  openFiles // local files open through the mount; has its own lock
	spare spares    // empty local files made ahead for create (spare.go)
	fresh freshDirs // names of the folders made in this run (fresh.go)

	stop   chan struct{}  // closed by Close to end the GC loop and the spare maker
	stopWG sync.WaitGroup // the GC loop and the spare maker
}

// Open opens or creates the cache in opts.Dir. A second Open of the same
// directory, from any process, fails with ErrLocked.
func Open(opts Options) (*Cache, error) {
	if opts.Log == nil {
		return nil, errors.New("cache: Options.Log is required")
	}
	if opts.GCInterval <= 0 {
		opts.GCInterval = 5 * time.Minute
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create cache directory %s: %w", opts.Dir, err)
	}
	if err := os.Chmod(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cache directory %s: %w", opts.Dir, err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	dbDir := filepath.Join(opts.Dir, "db")
	db, err := badger.Open(badgerOptions(dbDir, opts.Log))
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("open cache database in %s: %w", dbDir, err)
	}
	// Badger writes its own LOCK file with the umask's mode; the cache holds
	// no secrets, but it is the user's data and stays private.
	os.Chmod(filepath.Join(dbDir, "LOCK"), 0o600)
	seq, err := db.GetSequence([]byte(keySequence), 1000)
	if err != nil {
		db.Close()
		lock.Close()
		return nil, fmt.Errorf("open cache inode sequence: %w", err)
	}
	c := &Cache{db: db, seq: seq, lock: lock, log: opts.Log, dir: opts.Dir, max: opts.MaxSize, stop: make(chan struct{})}
	c.lru.init()
	c.mem.init()
	c.open.init()
	c.spare.init()
	c.nextSeq = 1
	c.flight.init()
	if err := c.initTree(); err != nil {
		c.closeDB()
		return nil, err
	}
	if err := c.loadBlocks(); err != nil {
		c.closeDB()
		return nil, err
	}
	if err := c.loadJournal(); err != nil {
		c.closeDB()
		return nil, fmt.Errorf("open the write-back journal: %w", err)
	}
	if err := os.MkdirAll(c.fetchedDir(), 0o700); err != nil {
		c.closeDB()
		return nil, fmt.Errorf("create %s: %w", c.fetchedDir(), err)
	}
	if err := c.makeShards(); err != nil {
		c.closeDB()
		return nil, err
	}
	if err := c.recoverLocal(); err != nil {
		c.closeDB()
		return nil, fmt.Errorf("recover the local files: %w", err)
	}
	c.stopWG.Add(1)
	go c.gcLoop(opts.GCInterval)
	return c, nil
}

// badgerOptions tunes Badger for a client tool rather than a database server:
// small memtables and caches keep the resident memory bounded (tens of MiB,
// not Badger's default of several hundred), content blocks go to the value
// log so that the LSM tree holds only the small metadata records.
func badgerOptions(dir string, log logrus.FieldLogger) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(2 << 20).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueThreshold(4 << 10).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithNumVersionsToKeep(1).
		WithMetricsEnabled(false)
}

// lockDir takes an exclusive flock on DIR/lock so that a second mount of the
// same cache fails at once with a message that says what to do.
func lockDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, "lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open cache lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (unmount it first, or use another --cache-dir)", dir, ErrLocked)
		}
		return nil, fmt.Errorf("lock cache %s: %w", p, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return f, nil
}

// gcLoop reclaims value-log space freed by evicted and replaced blocks.
// RunValueLogGC rewrites at most one file per call, so each round calls it
// until it reports nothing left to do, bounded in count.
func (c *Cache) gcLoop(every time.Duration) {
	defer c.stopWG.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		for i := 0; i < 16; i++ {
			if err := c.db.RunValueLogGC(0.5); err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					c.log.WithError(err).Warn("cache value log GC")
				}
				break
			}
		}
	}
}

// Close flushes and releases the cache and its lock.
func (c *Cache) Close() error {
	close(c.stop)
	c.stopWG.Wait()
	c.lru.closeFiles()
	c.markClean()
	return c.closeDB()
}

func (c *Cache) closeDB() error {
	err := c.seq.Release()
	if cerr := c.db.Close(); err == nil {
		err = cerr
	}
	c.lock.Close()
	if err != nil {
		return fmt.Errorf("close cache %s: %w", c.dir, err)
	}
	return nil
}

// Usage is what statfs reports: the content bytes cached and the space the
// cache may use (MaxSize, or what the disk under Dir holds).
type Usage struct {
	Used  int64 // bytes of cached content
	Total int64 // bytes the cache may use
	Free  int64 // bytes still available to it
}

// Usage reports the cache's space.
func (c *Cache) Usage() (Usage, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.dir, &st); err != nil {
		return Usage{}, fmt.Errorf("statfs %s: %w", c.dir, err)
	}
	diskTotal := int64(st.Blocks) * st.Bsize
	diskFree := int64(st.Bavail) * st.Bsize
	u := Usage{Used: c.lru.used()}
	if c.max <= 0 {
		u.Total, u.Free = diskTotal, diskFree
		return u, nil
	}
	u.Total = c.max
	u.Free = max(0, min(c.max-u.Used, diskFree))
	return u, nil
}

// badgerLogger passes Badger's messages to our logger, one level down for
// its informational chatter (compactions, table flushes) and its per-write
// debug lines (trace, when the logger supports it).
type badgerLogger struct{ log logrus.FieldLogger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.log.Errorf("badger: "+f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.log.Warnf("badger: "+f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.log.Debugf("badger: "+f, a...) }
func (l badgerLogger) Debugf(f string, a ...any) {
	if t, ok := l.log.(interface{ Tracef(string, ...any) }); ok {
		t.Tracef("badger: "+f, a...)
	}
}
