package sync

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/internal/metrics"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// ErrFetchClosed is returned by reads after the Fetcher was closed.
var ErrFetchClosed = errors.New("fetcher closed")

// FetchOptions configures a Fetcher. The command line fills it.
type FetchOptions struct {
	Target target.Target
	Cache  *cache.Cache
	Log    logrus.FieldLogger
	// ReadAhead is how many blocks a transfer may run ahead of the furthest
	// block a reader asked for (default 4). It bounds what a random read
	// costs: reading 4 KiB transfers at most 1+ReadAhead blocks.
	ReadAhead int64
	// Idle is how long a transfer stays open, paused, waiting for a reader to
	// ask for more before it is closed (default 5s).
	Idle time.Duration
	// Timeout bounds opening a transfer and each block's arrival, so that a
	// dead server fails a read instead of hanging it (default 30s).
	Timeout time.Duration
	// CacheHits and CacheMisses, if set, count blocks served from memory or
	// the cache and blocks that had to come from the server.
	CacheHits, CacheMisses *metrics.Counter
}

// Fetcher reads file content through the cache, fetching missing blocks
// from the target. A sequential read is one transfer (one RETR on FTP) that
// feeds blocks into the cache as they arrive; a read elsewhere starts
// another transfer at that offset (REST); readers of the same missing blocks
// share one transfer.
//
// Lock order: Fetcher.mu, then stream.mu.
type Fetcher struct {
	opts FetchOptions // read only

	ctx    context.Context // cancelled by Close; parent of every transfer
	cancel context.CancelFunc
	wg     gosync.WaitGroup // running transfers

	mu      gosync.Mutex         // protects streams
	streams map[uint64][]*stream // running transfers per inode

	hotMu   gosync.Mutex // protects the following
	hot     [hotBlocks]hotBlock
	hotNext int // slot the next hot block replaces
}

// hotBlocks is how many recently read blocks the Fetcher keeps in memory.
// The kernel reads in pieces of 128 KiB; without them every piece would
// copy its whole 1 MiB block out of Badger again.
const hotBlocks = 8

type hotBlock struct {
	ino, gen uint64
	idx      int64
	data     []byte // nil: empty slot
}

// NewFetcher returns a Fetcher; Close stops its transfers.
func NewFetcher(opts FetchOptions) (*Fetcher, error) {
	if opts.Target == nil || opts.Cache == nil || opts.Log == nil {
		return nil, errors.New("sync: FetchOptions needs Target, Cache and Log")
	}
	if opts.ReadAhead <= 0 {
		opts.ReadAhead = 4
	}
	if opts.Idle <= 0 {
		opts.Idle = 5 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Fetcher{opts: opts, ctx: ctx, cancel: cancel, streams: make(map[uint64][]*stream)}, nil
}

// Close stops every transfer and waits for them to end.
func (f *Fetcher) Close() {
	f.cancel()
	f.wg.Wait()
}

// joinReach is how far ahead of a running transfer a read may be and still
// wait for it rather than start another: the kernel's readahead asks for
// several blocks at once, and streaming 32 MiB costs less than a new
// transfer (a round trip or two and a new data connection).
const joinReach = 32

// maxStaleRetries bounds how often a read starts over because the file's
// remote content changed under it.
const maxStaleRetries = 2

// ReadAt fills p with the content of file e at off and returns how many
// bytes it filled: fewer than len(p) only at the end of the file. If the
// remote content changes meanwhile, the read starts over on the new content.
func (f *Fetcher) ReadAt(ctx context.Context, e cache.Entry, p []byte, off int64) (int, error) {
	for attempt := 0; ; attempt++ {
		n, err := f.readAt(ctx, e, p, off)
		if !errors.Is(err, cache.ErrStale) || attempt >= maxStaleRetries {
			return n, err
		}
		e, err = f.opts.Cache.Get(e.Ino)
		if err != nil {
			return 0, err
		}
	}
}

func (f *Fetcher) readAt(ctx context.Context, e cache.Entry, p []byte, off int64) (int, error) {
	if off >= e.Size || len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), e.Size)
	n := 0
	for pos := off; pos < end; {
		idx := pos / cache.BlockSize
		data, err := f.block(ctx, e, idx)
		if err != nil {
			return n, err
		}
		in := pos - idx*cache.BlockSize
		if in >= int64(len(data)) {
			return n, fmt.Errorf("block %d of inode %d is short: %w", idx, e.Ino, cache.ErrStale)
		}
		c := copy(p[n:end-off], data[in:])
		n += c
		pos += int64(c)
	}
	return n, nil
}

// Span returns the cached range holding the content of file e from off, at
// most n bytes and clipped to the file's size, fetching what is missing;
// the caller releases it. The mount hands its file to the kernel, so the
// bytes are not copied through this process. A nil span with a nil error
// means the read is at or past the end of the file, or the blocks were
// evicted as they arrived (a cache smaller than the read-ahead): ReadAt
// then serves it from the transfer's memory. ErrStale says the remote
// content changed; ReadAt starts over on the new content.
func (f *Fetcher) Span(ctx context.Context, e cache.Entry, off int64, n int) (*cache.Span, int, error) {
	if off >= e.Size || n <= 0 {
		return nil, 0, nil
	}
	end := min(off+int64(n), e.Size)
	if s, ok := f.opts.Cache.Pin(e.Ino, off, end); ok {
		f.opts.CacheHits.Inc()
		return s, int(end - off), nil
	}
	f.opts.CacheMisses.Inc()
	for idx := off / cache.BlockSize; idx <= (end-1)/cache.BlockSize; idx++ {
		if f.opts.Cache.Has(e.Ino, idx) {
			continue
		}
		s, err := f.streamFor(e, idx)
		if err != nil {
			return nil, 0, err
		}
		if _, err := s.wait(ctx, idx); err != nil {
			return nil, 0, err
		}
	}
	if s, ok := f.opts.Cache.Pin(e.Ino, off, end); ok {
		return s, int(end - off), nil
	}
	return nil, 0, nil
}

// block returns one block of a file.
func (f *Fetcher) block(ctx context.Context, e cache.Entry, idx int64) ([]byte, error) {
	if data := f.hotGet(e, idx); data != nil {
		f.opts.CacheHits.Inc()
		return data, nil
	}
	data, err := f.fetchBlock(ctx, e, idx)
	if err == nil {
		f.hotPut(e, idx, data)
	}
	return data, err
}

func (f *Fetcher) hotGet(e cache.Entry, idx int64) []byte {
	f.hotMu.Lock()
	defer f.hotMu.Unlock()
	for _, h := range f.hot {
		if h.data != nil && h.ino == e.Ino && h.gen == e.Gen && h.idx == idx {
			return h.data
		}
	}
	return nil
}

func (f *Fetcher) hotPut(e cache.Entry, idx int64, data []byte) {
	f.hotMu.Lock()
	defer f.hotMu.Unlock()
	f.hot[f.hotNext] = hotBlock{ino: e.Ino, gen: e.Gen, idx: idx, data: data}
	f.hotNext = (f.hotNext + 1) % hotBlocks
}

// fetchBlock reads a block from the cache, or waits for a transfer to
// bring it.
func (f *Fetcher) fetchBlock(ctx context.Context, e cache.Entry, idx int64) ([]byte, error) {
	// A block stored and then evicted before this reader saw it sends the
	// reader round again; a handful of rounds is plenty.
	for round := 0; round < 4; round++ {
		data, err := f.opts.Cache.ReadBlock(e.Ino, idx)
		if err == nil {
			if round == 0 {
				f.opts.CacheHits.Inc()
			}
			return data, nil
		}
		if !errors.Is(err, cache.ErrNotFound) {
			return nil, err
		}
		if round == 0 {
			f.opts.CacheMisses.Inc()
		}
		s, err := f.streamFor(e, idx)
		if err != nil {
			return nil, err
		}
		data, err = s.wait(ctx, idx)
		if err != nil || data != nil {
			return data, err
		}
	}
	return nil, fmt.Errorf("block %d of inode %d: evicted as fast as it was fetched; raise --cache-max-size", idx, e.Ino)
}

// streamFor returns a transfer that will bring block idx soon: a running one
// of the same content that is at or a little before idx, else a new one
// starting at idx.
func (f *Fetcher) streamFor(e cache.Entry, idx int64) (*stream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx.Err() != nil {
		return nil, ErrFetchClosed
	}
	for _, s := range f.streams[e.Ino] {
		if s.gen == e.Gen && s.ask(idx, joinReach) {
			return s, nil
		}
	}
	path, err := f.opts.Cache.Path(e.Ino)
	if err != nil {
		return nil, err
	}
	// A reader jumped elsewhere: transfers of this file that wait for
	// demand are likely abandoned, and each holds a server connection.
	for _, x := range f.streams[e.Ino] {
		x.stopIfPaused()
	}
	s := newStream(f, e, path, idx)
	f.streams[e.Ino] = append(f.streams[e.Ino], s)
	f.wg.Add(1)
	go s.run()
	return s, nil
}

// ended removes a finished transfer.
func (f *Fetcher) ended(s *stream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := f.streams[s.ino]
	for i, x := range list {
		if x == s {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(f.streams, s.ino)
	} else {
		f.streams[s.ino] = list
	}
}
