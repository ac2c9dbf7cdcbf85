package ftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jftp "github.com/jlaffaye/ftp"
)

// Every TCP connection we open, control or data, goes through idleConn so
// that no Read or Write can block longer than the idle timeout, and through
// conn.kill when the operation's context ends. jlaffaye/ftp has no context
// support after Dial, so this is where cancellation happens.
//
// Layering of a data connection: TCP → idleConn → (tls.Client) → dataConn.
// dataConn sits above TLS so that the listing bytes it copies are plain text.

// idleConn sets a fresh deadline before each Read and Write: a transfer that
// keeps moving never times out, a silent peer does after timeout.
type idleConn struct {
	net.Conn
	timeout atomic.Int64 // time.Duration; 0 means none
}

func newIdleConn(c net.Conn, timeout time.Duration) *idleConn {
	ic := &idleConn{Conn: c}
	ic.timeout.Store(int64(timeout))
	return ic
}

func (c *idleConn) Read(p []byte) (int, error) {
	if d := time.Duration(c.timeout.Load()); d > 0 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(d)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if d := time.Duration(c.timeout.Load()); d > 0 {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(d)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

// dataConn is the data connection of the current operation. While the
// owning conn captures (during List), every byte read is also appended to
// its capture buffer.
type dataConn struct {
	net.Conn
	owner *conn
	raw   net.Conn // the TCP layer, closed by kill without any TLS goodbye
}

func (d *dataConn) Read(p []byte) (int, error) {
	n, err := d.Conn.Read(p)
	if buf := d.owner.capture; buf != nil && n > 0 {
		if buf.Len()+n > maxListing {
			return n, fmt.Errorf("listing larger than %d MiB: refused", maxListing>>20)
		}
		buf.Write(p[:n])
	}
	return n, err
}

// maxListing bounds the bytes one listing may take in memory: a hostile
// server must not exhaust it with an endless directory.
const maxListing = 256 << 20

// transcript receives what jlaffaye/ftp reads on the control connection
// (its debug output) while enabled. We read FEAT and MLST replies from it,
// the only replies the library parses without giving us the text. It sees
// our commands too, so a PASS line is dropped on arrival and the buffer is
// never logged.
type transcript struct {
	on  bool
	buf bytes.Buffer
}

func (t *transcript) Write(p []byte) (int, error) {
	if t.on && !bytes.HasPrefix(p, []byte("PASS ")) && t.buf.Len() < maxListing {
		t.buf.Write(p)
	}
	return len(p), nil
}

// start clears and enables the transcript; stop disables it and returns the
// text seen since start.
func (t *transcript) start() { t.buf.Reset(); t.on = true }

func (t *transcript) stop() string {
	t.on = false
	s := t.buf.String()
	t.buf.Reset()
	return s
}

// replyLines returns the inner lines of the multi-line reply with code in
// text (MLST's " type=file;... name", FEAT's " UTF8"), without the single
// leading space RFC 2389 and RFC 3659 put there (some servers omit it).
func replyLines(text string, code int) []string {
	first, last := fmt.Sprintf("%d-", code), fmt.Sprintf("%d ", code)
	var out []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		switch {
		case !in && strings.HasPrefix(line, first):
			in = true
		case in && strings.HasPrefix(line, last):
			return out
		case in:
			out = append(out, strings.TrimPrefix(line, " "))
		}
	}
	return out
}

// conn is one pooled control connection with what the current operation
// needs to cancel it.
type conn struct {
	sc    *jftp.ServerConn
	ctl   *idleConn   // the control connection's TCP layer
	trans *transcript // owned by the goroutine running the operation
	feat  serverFeatures

	// Set by begin, read by the dial function during the operation.
	ctx  context.Context
	stop func() bool

	capture *bytes.Buffer // non-nil while List reads; same goroutine as the operation

	mu   sync.Mutex // protects the following; kill runs on another goroutine
	data *dataConn  // the open data connection, closed by kill
	dead bool       // closed, or in an unknown state: never reuse

	// Owned by the pool (under pool.mu).
	lastUsed   time.Time
	checkFirst bool        // an early-closed transfer may have left a reply: NOOP before reuse
	idleTimer  *time.Timer // closes the connection after IdleClose in the idle list
}

// begin ties the connection to ctx: when ctx ends, kill closes both sockets
// so that whatever the library is blocked in returns at once.
func (c *conn) begin(ctx context.Context) {
	c.ctx = ctx
	c.stop = context.AfterFunc(ctx, c.kill)
}

// end unties the connection from the operation's context. It reports whether
// the connection is still usable.
func (c *conn) end() bool {
	if c.stop != nil && !c.stop() {
		c.markDead()
	}
	c.stop = nil
	c.ctx = context.Background()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data = nil
	return !c.dead
}

func (c *conn) kill() {
	c.mu.Lock()
	c.dead = true
	data := c.data
	c.mu.Unlock()
	if data != nil {
		_ = data.raw.Close()
	}
	if c.ctl != nil {
		_ = c.ctl.Close()
	}
}

func (c *conn) markDead() {
	c.mu.Lock()
	c.dead = true
	c.mu.Unlock()
}

func (c *conn) isDead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// setData records the data connection just dialed, refusing it if the
// operation was cancelled meanwhile.
func (c *conn) setData(d *dataConn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		return net.ErrClosed
	}
	c.data = d
	return nil
}

// close says goodbye to the server and closes the sockets. QUIT gets a short
// deadline: a server that does not answer is not worth waiting for.
func (c *conn) close() {
	if c.sc == nil {
		c.kill()
		return
	}
	if !c.isDead() && c.ctl != nil {
		c.ctl.timeout.Store(int64(quitTimeout))
		_ = c.sc.Quit()
	}
	c.kill()
}

// quitTimeout bounds the wait for the reply to QUIT.
const quitTimeout = 2 * time.Second

// errNoTCPAddr is returned if a dialer gives a connection whose address is
// not TCP: jlaffaye/ftp cannot open data connections without one.
var errNoTCPAddr = errors.New("dialer returned a connection without a TCP remote address")
