package ftp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// The pool bounds the control connections of a target. A connection is
// either busy (held by one operation, or by an Open reader until its Close)
// or idle. Lock order: pool.mu before conn.mu.
//
// Slots are tokens in a buffered channel: an operation takes one before it
// takes an idle connection or dials, and gives it back after putting the
// connection back, so that at most cap(slots) connections exist and waiting
// callers queue on the channel (with their context) instead of spinning.

const (
	// staleAfter is how long a connection may sit idle before we check it
	// with NOOP before use: servers drop idle sessions, and a failed first
	// command is costlier (a retry, or an error for an unseekable upload).
	staleAfter = 15 * time.Second
	// tooManyAttempts bounds the logins tried while the server answers 421
	// with the pool already down to one connection.
	tooManyAttempts = 6
	tooManyBackoff  = 200 * time.Millisecond
	tooManyMaxWait  = 3 * time.Second
)

var errPoolClosed = errors.New("target is closed")

type pool struct {
	dial      func(ctx context.Context) (*conn, error) // read only
	idleClose time.Duration                            // read only
	log       logrus.FieldLogger                       // read only
	slots     chan struct{}                            // one token per allowed connection

	mu      sync.Mutex // protects the following
	idle    []*conn    // most recently used last
	open    int        // busy + idle connections
	peak    int        // most connections open at once (tests read it)
	retired int        // slots withheld after the server said 421 at login
	dialing int        // logins in progress (counted in open)
	// livePeak is the most logged-in connections the server has let us hold
	// at once, lowered when a refusal comes below it (see retire).
	livePeak int
	closed   bool
}

func newPool(size int, idleClose time.Duration, log logrus.FieldLogger, dial func(context.Context) (*conn, error)) *pool {
	return &pool{dial: dial, idleClose: idleClose, log: log, slots: make(chan struct{}, size)}
}

// get returns a connection for the caller's exclusive use, waiting for a
// free slot as long as ctx allows.
func (p *pool) get(ctx context.Context) (*conn, error) {
	backoff := tooManyBackoff
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, err // select would pick a free slot half the time
		}
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c, err := p.getWithSlot(ctx)
		if err == nil {
			return c, nil
		}
		if replyCode(err) != codeNotAvailable || ctx.Err() != nil {
			<-p.slots
			return nil, err
		}
		// 421 at login: the server caps connections per user or address.
		// Keep this slot out of circulation so that we stop asking for
		// more than the server allows, and wait for a busy one.
		if n, ok := p.retire(); ok {
			p.log.WithField("connections", n).Warnf("server refused a connection (%v); using at most %d from now on", err, n)
			continue
		}
		<-p.slots
		if attempt >= tooManyAttempts {
			return nil, fmt.Errorf("server refuses even a single connection after %d attempts: %w", attempt, err)
		}
		p.log.WithField("wait", backoff).Infof("server refused a connection (%v); waiting", err)
		if err := sleepCtx(ctx, backoff); err != nil {
			return nil, err
		}
		backoff = min(2*backoff, tooManyMaxWait)
	}
}

// getWithSlot takes an idle connection (checking it if it may be stale) or
// dials a new one. The caller holds a slot.
func (p *pool) getWithSlot(ctx context.Context) (*conn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.open++
			p.dialing++
			p.peak = max(p.peak, p.open)
			p.mu.Unlock()
			c, err := p.dial(ctx)
			p.mu.Lock()
			p.dialing--
			if err != nil {
				p.open--
			} else {
				p.livePeak = max(p.livePeak, p.open-p.dialing)
			}
			p.mu.Unlock()
			return c, err
		}
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		c.idleTimer.Stop()
		check := c.checkFirst || time.Since(c.lastUsed) > staleAfter
		p.mu.Unlock()
		if !check || p.healthy(ctx, c) {
			c.checkFirst = false
			return c, nil
		}
		c.close()
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// healthy sends NOOP. A stray reply left by an aborted transfer, or a session
// the server dropped, shows up as an error here rather than in the caller's
// operation.
func (p *pool) healthy(ctx context.Context, c *conn) bool {
	c.begin(ctx)
	err := c.sc.NoOp()
	return c.end() && err == nil
}

// retire withholds the caller's slot for good unless only one is left. It
// returns the number of connections still allowed, and false when it kept
// the slot: then the caller waits and tries again.
//
// A refusal while fewer connections are open than the server has accepted
// before is not believed the first time: a server's count often still
// includes a connection we closed a moment ago, and shrinking for it would
// leave the pool smaller than the server allows, or waiting on itself.
func (p *pool) retire() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	left := cap(p.slots) - p.retired
	if live := p.open - p.dialing; live < p.livePeak {
		p.livePeak = live
		return left, false
	}
	if left <= 1 {
		return left, false
	}
	p.retired++
	return left - 1, true
}

// put gives back a connection got from get. A dead connection is closed and
// its slot freed, so that the next caller dials a fresh one.
func (p *pool) put(c *conn) {
	p.mu.Lock()
	if c.isDead() || p.closed {
		p.open--
		p.mu.Unlock()
		c.close()
		<-p.slots
		return
	}
	c.lastUsed = time.Now()
	c.idleTimer = time.AfterFunc(p.idleClose, func() { p.expire(c) })
	p.idle = append(p.idle, c)
	p.mu.Unlock()
	<-p.slots
}

// expire closes c if it is still idle when its idle timer fires.
func (p *pool) expire(c *conn) {
	p.mu.Lock()
	found := false
	for i, ic := range p.idle {
		if ic == c {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			p.open--
			found = true
			break
		}
	}
	p.mu.Unlock()
	if found {
		p.log.Debug("closing an idle FTP connection")
		c.close()
	}
}

// close closes the idle connections; busy ones are closed when put back.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.open -= len(idle)
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		c.idleTimer.Stop()
		wg.Go(c.close)
	}
	wg.Wait()
}

// stats reports the open connections, the most ever open at once and the
// connections still allowed (tests and debug logs).
func (p *pool) stats() (open, peak, allowed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open, p.peak, cap(p.slots) - p.retired
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
