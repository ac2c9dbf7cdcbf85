package sync

import (
	"context"
	"errors"
	"fmt"
	"io"
	gosync "sync"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
)

// errStreamIdle ends a transfer nobody asked to continue. Readers never see
// it: a reader that asked for a block keeps its transfer busy.
var errStreamIdle = errors.New("transfer idle")

// stream is one running transfer of a file from a block onwards. It reads
// blocks in order, stores each in the cache and hands it to waiting readers;
// it pauses when it is ReadAhead blocks past the furthest block asked for,
// and ends after Idle without a new request, at the end of the file, or on
// the first error.
type stream struct {
	f     *Fetcher // read only
	ino   uint64   // read only
	gen   uint64   // read only: the content generation being fetched
	size  int64    // read only
	path  string   // read only
	start int64    // read only: first block

	asked  chan struct{}      // capacity 1: a reader raised want
	ctx    context.Context    // the transfer's; cancelled when it ends or is stopped
	cancel context.CancelFunc // read only

	mu       gosync.Mutex // protects the following
	next     int64        // blocks [start, next) are stored
	want     int64        // furthest block a reader asked for
	done     bool         // the transfer ended; err says why
	err      error
	recent   map[int64][]byte // the last blocks stored, for waiting readers
	progress chan struct{}    // closed and replaced when next or done change
	paused   bool             // waiting for demand in awaitDemand
	stopped  bool             // ended by stopIfPaused
}

func newStream(f *Fetcher, e cache.Entry, path string, idx int64) *stream {
	ctx, cancel := context.WithCancel(f.ctx)
	return &stream{
		f: f, ino: e.Ino, gen: e.Gen, size: e.Size, path: path, start: idx,
		asked: make(chan struct{}, 1), ctx: ctx, cancel: cancel, next: idx, want: idx,
		recent: make(map[int64][]byte), progress: make(chan struct{}),
	}
}

// stopIfPaused ends the transfer if no reader is waiting for it.
func (s *stream) stopIfPaused() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused && !s.done {
		s.stopped = true
		s.cancel()
	}
}

// ask records that a reader needs block idx and reports whether this
// transfer will bring it: it is running and idx lies between its position
// and at most reach blocks ahead.
func (s *stream) ask(idx, reach int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.recent[idx]; ok {
		return true // arrived; maybe not yet in the cache
	}
	if s.done || idx < s.next || idx > s.next+reach {
		return false
	}
	if idx > s.want {
		s.want = idx
	}
	select {
	case s.asked <- struct{}{}:
	default:
	}
	return true
}

// wait blocks until block idx arrives, returning its data, or nil data and
// nil error if it was stored before this reader could be handed it (the
// reader reads the cache again), or the transfer's error.
func (s *stream) wait(ctx context.Context, idx int64) ([]byte, error) {
	for {
		s.mu.Lock()
		if d, ok := s.recent[idx]; ok {
			s.mu.Unlock()
			return d, nil
		}
		if idx < s.next {
			s.mu.Unlock()
			return nil, nil
		}
		if s.done {
			err := s.err
			s.mu.Unlock()
			if err == nil || errors.Is(err, errStreamIdle) {
				return nil, fmt.Errorf("read %s block %d: transfer ended early", s.path, idx)
			}
			return nil, err
		}
		ch := s.progress
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// finish ends the transfer and wakes every waiting reader.
func (s *stream) finish(err error) {
	s.mu.Lock()
	s.done, s.err = true, err
	close(s.progress)
	s.progress = make(chan struct{})
	s.mu.Unlock()
	s.f.ended(s)
}

func (s *stream) run() {
	defer s.f.wg.Done()
	err := s.transfer()
	if err != nil && !errors.Is(err, errStreamIdle) && s.f.ctx.Err() == nil {
		s.f.opts.Log.WithError(err).WithField("path", s.path).Warn("fetching file content failed")
	}
	s.finish(err)
}

func (s *stream) transfer() error {
	ctx, cancel := s.ctx, s.cancel
	defer cancel()
	blocks := (s.size + cache.BlockSize - 1) / cache.BlockSize
	if s.start >= blocks {
		return nil
	}
	// The watchdog bounds opening and every block's arrival; when it fires
	// the transfer's context is cancelled. Cancelling (also by Close or
	// stopIfPaused) closes the reader, which unblocks a read from a
	// stalled server even if the target ignores the context mid-transfer.
	var rcMu gosync.Mutex
	var rc io.ReadCloser // set once Open returned
	stalled := false
	closeOnce := gosync.OnceFunc(func() {
		rcMu.Lock()
		defer rcMu.Unlock()
		if rc != nil {
			rc.Close()
		}
	})
	watchdog := time.AfterFunc(s.f.opts.Timeout, func() {
		rcMu.Lock()
		stalled = true
		rcMu.Unlock()
		cancel()
	})
	defer watchdog.Stop()
	timedOut := func(err error) error {
		rcMu.Lock()
		defer rcMu.Unlock()
		if stalled {
			return fmt.Errorf("read %s: no data for %v: %w", s.path, s.f.opts.Timeout, err)
		}
		return err
	}

	r, err := s.f.opts.Target.Open(ctx, s.path, s.start*cache.BlockSize, -1)
	if err != nil {
		return timedOut(fmt.Errorf("open %s at block %d: %w", s.path, s.start, err))
	}
	rcMu.Lock()
	rc = r
	rcMu.Unlock()
	defer closeOnce()
	stopClose := context.AfterFunc(ctx, closeOnce)
	defer stopClose()
	s.f.opts.Log.WithFields(map[string]any{"path": s.path, "block": s.start}).Debug("transfer started")

	// Blocks are handed to readers as they arrive and stored in the cache by
	// a goroutine of their own, so that the network and Badger work at once.
	w := newBlockWriter(s)
	for idx := s.start; idx < blocks; idx++ {
		watchdog.Stop()
		if err := s.awaitDemand(ctx, idx); err != nil {
			return errors.Join(err, w.close())
		}
		if err := w.failed(); err != nil {
			return errors.Join(err, w.close())
		}
		watchdog.Reset(s.f.opts.Timeout)
		data := make([]byte, min(cache.BlockSize, s.size-idx*cache.BlockSize))
		if _, err := io.ReadFull(r, data); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w (the file is shorter than listed)", cache.ErrStale)
			}
			return errors.Join(timedOut(fmt.Errorf("read %s block %d: %w", s.path, idx, err)), w.close())
		}
		// Written to the cache file before readers hear of it: they read
		// it from there. Its record in Badger follows off this path.
		if err := s.f.opts.Cache.WriteBlock(s.ino, s.gen, idx, data); err != nil {
			return errors.Join(err, w.close())
		}
		s.stored(idx, data)
		w.put(idx, data)
	}
	return w.close()
}

// blockWriter checksums a transfer's written blocks and records them in
// Badger, in order, so that the network, the disk and Badger work at once.
type blockWriter struct {
	s    *stream
	in   chan blockData
	done chan struct{} // closed when the goroutine ends
	err  chan error    // capacity 1: the first failure
}

type blockData struct {
	idx  int64
	data []byte
}

func newBlockWriter(s *stream) *blockWriter {
	w := &blockWriter{s: s, in: make(chan blockData, 16), done: make(chan struct{}), err: make(chan error, 1)}
	go w.run()
	return w
}

// run records what arrived since the last round in one transaction: one
// per block would cost more than the blocks' writes.
func (w *blockWriter) run() {
	defer close(w.done)
	for b := range w.in {
		idxs, sums := []int64{b.idx}, []uint32{cache.Checksum(b.data)}
	drain:
		for len(idxs) < cap(w.in) {
			select {
			case b, ok := <-w.in:
				if !ok {
					break drain
				}
				idxs, sums = append(idxs, b.idx), append(sums, cache.Checksum(b.data))
			default:
				break drain
			}
		}
		if err := w.s.f.opts.Cache.RecordBlocks(w.s.ino, idxs, sums); err != nil {
			w.err <- err
			for range w.in {
			}
			return
		}
	}
}

func (w *blockWriter) put(idx int64, data []byte) { w.in <- blockData{idx, data} }

func (w *blockWriter) failed() error {
	select {
	case err := <-w.err:
		w.err <- err
		return err
	default:
		return nil
	}
}

// close waits until every block is stored and returns the first failure.
func (w *blockWriter) close() error {
	close(w.in)
	<-w.done
	return w.failed()
}

// awaitDemand pauses the transfer until a reader wants block idx or one
// within ReadAhead before it, or ends it after Idle without demand.
func (s *stream) awaitDemand(ctx context.Context, idx int64) error {
	var idle *time.Timer
	defer func() {
		s.mu.Lock()
		s.paused = false
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		ok := idx <= s.want+s.f.opts.ReadAhead
		s.paused = !ok
		stopped := s.stopped
		s.mu.Unlock()
		if stopped {
			return errStreamIdle
		}
		if ok {
			if idle != nil {
				idle.Stop()
			}
			return nil
		}
		if idle == nil {
			idle = time.NewTimer(s.f.opts.Idle)
			defer idle.Stop()
		}
		select {
		case <-s.asked:
		case <-idle.C:
			return errStreamIdle
		case <-ctx.Done():
			s.mu.Lock()
			stopped := s.stopped
			s.mu.Unlock()
			if stopped {
				return errStreamIdle
			}
			return fmt.Errorf("read %s: %w", s.path, ErrFetchClosed)
		}
	}
}

// stored publishes block idx to waiting readers and keeps the last few in
// memory, so that a tiny cache that evicts at once still serves them.
func (s *stream) stored(idx int64, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recent[idx] = data
	delete(s.recent, idx-2*s.f.opts.ReadAhead-1)
	s.next = idx + 1
	close(s.progress)
	s.progress = make(chan struct{})
}
