package sftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// client is one SFTP session. pkg/sftp sessions take concurrent requests,
// so a session is shared, never checked out.
type client = sftp.Client

// link is one SSH connection and the SFTP sessions opened on it.
type link struct {
	ssh      *ssh.Client
	sessions []*client     // read only after dial
	next     atomic.Uint32 // round-robin over sessions
	dead     chan struct{} // closed once the SSH connection has ended
}

// session picks the next session, spreading work over the server's
// sftp-server processes.
func (l *link) session() *client {
	return l.sessions[int(l.next.Add(1))%len(l.sessions)]
}

func (l *link) alive() bool {
	select {
	case <-l.dead:
		return false
	default:
		return true
	}
}

// close ends the connection and every session on it; calls in flight fail
// with a connection error. The connection goes first: closing a session
// waits for the server to confirm, which a silent server never does.
func (l *link) close() {
	_ = l.ssh.Close()
	for _, s := range l.sessions {
		_ = s.Close()
	}
}

// keepalive asks the server for a reply every interval and closes the
// connection when none comes within timeout, so that calls waiting on a
// silent server (a dead route, a hung sshd) fail in bounded time. A reply,
// even a refusal of the request, proves the server is there.
func (l *link) keepalive(interval, timeout time.Duration, onDead func(error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-l.dead:
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := l.ssh.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		timer := time.NewTimer(timeout)
		select {
		case err := <-reply:
			timer.Stop()
			if err != nil {
				onDead(err)
				return
			}
		case <-timer.C:
			onDead(fmt.Errorf("no answer to a keepalive for %v", timeout))
			return
		case <-l.dead:
			timer.Stop()
			return
		}
	}
}

// linkCache holds the current connection and dials a new one when it is
// missing or broken; one dial at a time, waiting callers honour their
// contexts.
type linkCache struct {
	dialFn  func(ctx context.Context) (*link, error)
	dialing chan struct{} // a token: held by the one goroutine that dials

	mu     sync.Mutex // protects the following
	cur    *link
	closed bool
}

var errClosed = errors.New("target is closed")

func (c *linkCache) init(dial func(ctx context.Context) (*link, error)) {
	c.dialFn = dial
	c.dialing = make(chan struct{}, 1)
}

// get returns a live connection, dialling if need be.
func (c *linkCache) get(ctx context.Context) (*link, error) {
	if l, err := c.current(); l != nil || err != nil {
		return l, err
	}
	select {
	case c.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.dialing }()
	if l, err := c.current(); l != nil || err != nil {
		return l, err // another caller dialled while we waited
	}
	l, err := c.dialFn(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		l.close()
		return nil, errClosed
	}
	c.cur = l
	return l, nil
}

// current returns the live connection, or nil if there is none to use.
func (c *linkCache) current() (*link, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	if c.cur != nil && !c.cur.alive() {
		c.cur.close()
		c.cur = nil
	}
	return c.cur, nil
}

// drop closes l, so that the next call dials afresh.
func (c *linkCache) drop(l *link) {
	c.mu.Lock()
	if c.cur == l {
		c.cur = nil
	}
	c.mu.Unlock()
	l.close()
}

func (c *linkCache) close() {
	c.mu.Lock()
	l := c.cur
	c.cur, c.closed = nil, true
	c.mu.Unlock()
	if l != nil {
		l.close()
	}
}

// dial connects, checks the host key, logs in and opens the sessions, all
// within t.timeout and ctx.
func (t *Target) dial(ctx context.Context) (*link, error) {
	d := net.Dialer{Timeout: t.timeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", t.ep.Host)
	if err != nil {
		if ctx.Err() != nil {
			return nil, target.NewError("connect", "", nil, ctx.Err())
		}
		return nil, target.NewError("connect", "", target.ErrTemporary, fmt.Errorf("connect to %s: %w", t.ep.Host, err))
	}
	// The deadline bounds the handshake and session setup; cancelling ctx
	// moves it to now.
	_ = raw.SetDeadline(time.Now().Add(t.timeout))
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	methods, closeAgent, err := authMethods(t.auth)
	if err != nil {
		_ = raw.Close()
		return nil, err
	}
	defer closeAgent()
	var refused *hostKeyError
	cfg := &ssh.ClientConfig{
		User:              t.ep.User,
		Auth:              methods,
		HostKeyCallback:   t.hostKeys.callback(t.ep, &refused),
		HostKeyAlgorithms: t.hostKeys.algorithms(t.ep),
		Timeout:           t.timeout,
	}
	sc, chans, reqs, err := ssh.NewClientConn(raw, t.ep.Host, cfg)
	if err != nil {
		_ = raw.Close()
		return nil, t.handshakeError(ctx, err, refused)
	}
	l := &link{ssh: ssh.NewClient(sc, chans, reqs), dead: make(chan struct{})}
	go func() {
		_ = l.ssh.Wait()
		close(l.dead)
	}()
	for i := range t.sessions {
		s, err := sftp.NewClient(l.ssh, sftp.UseConcurrentReads(true), sftp.UseConcurrentWrites(true),
			// Size a reader by its open handle, not by its path, which a
			// concurrent replace may point at another file.
			sftp.UseFstat(true))
		if err != nil {
			if i > 0 && ctx.Err() == nil && l.alive() {
				t.log.WithError(err).Infof("the server allows %d SFTP sessions per connection; using those", i)
				break
			}
			l.close()
			if ctx.Err() != nil {
				return nil, target.NewError("connect", "", nil, ctx.Err())
			}
			return nil, target.NewError("connect", "", target.ErrTemporary,
				fmt.Errorf("start SFTP on %s (is the sftp subsystem enabled in sshd_config?): %w", t.ep.Host, err))
		}
		l.sessions = append(l.sessions, s)
	}
	_ = raw.SetDeadline(time.Time{})
	interval := min(max(t.timeout/2, 500*time.Millisecond), 15*time.Second)
	go l.keepalive(interval, t.timeout, func(err error) {
		t.log.WithError(err).Warn("SSH connection lost; the next call reconnects")
		t.links.drop(l)
	})
	return l, nil
}

// handshakeError turns a failed SSH handshake into a message that says
// what to do: accept the host key, fix the login, or retry later.
func (t *Target) handshakeError(ctx context.Context, err error, refused *hostKeyError) error {
	switch {
	case refused != nil:
		return target.NewError("connect", "", target.ErrAuth, refused)
	case ctx.Err() != nil:
		return target.NewError("connect", "", nil, ctx.Err())
	case errors.Is(err, errNoPassword), strings.Contains(err.Error(), "unable to authenticate"):
		return authError(t.ep, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("no SSH handshake within %v: %w", t.timeout, err)
	}
	return target.NewError("connect", "", target.ErrTemporary, fmt.Errorf("SSH handshake with %s: %w", t.ep.Host, err))
}

// do runs fn on a session and drops the connection if fn found it broken,
// so that the next call redials. With detach (for calls that change
// nothing) it returns as soon as ctx is done and fn finishes in the
// background; otherwise it waits for fn, so that a change is either known
// to be made or known not to be, which the keepalive bounds in time.
func (t *Target) do(ctx context.Context, op, p string, detach bool, fn func(c *client) error) error {
	if err := ctx.Err(); err != nil {
		return target.NewError(op, p, nil, err)
	}
	l, err := t.links.get(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return target.NewError(op, p, nil, ctx.Err())
		}
		return wrapOp(op, p, err)
	}
	if detach {
		done := make(chan error, 1)
		go func() { done <- fn(l.session()) }()
		select {
		case err = <-done:
		case <-ctx.Done():
			return target.NewError(op, p, nil, ctx.Err())
		}
	} else {
		err = fn(l.session())
	}
	if isConnError(err) {
		t.links.drop(l)
	}
	return err
}

// wrapOp keeps an *target.Error as it is and wraps anything else.
func wrapOp(op, p string, err error) error {
	var te *target.Error
	if errors.As(err, &te) {
		return err
	}
	return target.NewError(op, p, classify(err), err)
}
