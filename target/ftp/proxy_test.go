package ftp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxy forwards TCP connections to an FTP server's control port, so that a
// test can drop every session (as a server restart would) or refuse logins
// beyond a number of concurrent sessions with 421, as vsftpd's max_per_ip
// does. Data connections go straight to the server: jlaffaye/ftp connects
// them to the control connection's IP and the port the server names.
type proxy struct {
	ln       net.Listener
	upstream string
	limit    int           // refuse sessions beyond this many with 421; 0: no limit
	refusals chan struct{} // receives once per refused session
	// filter, if set, sees each command the client sends; a non-empty
	// return is sent to the client as the reply instead of forwarding the
	// command. Only for plain FTP: it reads the control stream as lines.
	filter func(cmd string) string

	mu       sync.Mutex // protects the following
	sessions map[net.Conn]net.Conn
	accepted int
	refused  int
	wg       sync.WaitGroup
}

func startProxy(t *testing.T, upstream string, limit int) *proxy {
	t.Helper()
	return startFilterProxy(t, upstream, limit, nil)
}

func startFilterProxy(t *testing.T, upstream string, limit int, filter func(string) string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, upstream: upstream, limit: limit, sessions: map[net.Conn]net.Conn{}, refusals: make(chan struct{}, 100), filter: filter}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.dropAll()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		if p.limit > 0 && len(p.sessions) >= p.limit {
			p.refused++
			p.mu.Unlock()
			_, _ = io.WriteString(c, "421 Too many connections from your address\r\n")
			c.Close()
			p.refusals <- struct{}{}
			continue
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.sessions[c] = up
		p.mu.Unlock()
		p.wg.Add(2)
		var toClient sync.Mutex
		go p.pump(c, up, &toClient)
		if p.filter == nil {
			go p.pump(up, c, nil)
		} else {
			go p.filterCommands(up, c, &toClient)
		}
	}
}

// pump copies one direction; when either side ends, the session ends.
// Writes hold mu, if given, so that filtered replies do not interleave.
func (p *proxy) pump(dst, src net.Conn, mu *sync.Mutex) {
	defer p.wg.Done()
	defer p.end(dst, src)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if mu != nil {
				mu.Lock()
			}
			_, werr := dst.Write(buf[:n])
			if mu != nil {
				mu.Unlock()
			}
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// filterCommands forwards the client's commands to up, except those the
// filter answers itself.
func (p *proxy) filterCommands(up, client net.Conn, toClient *sync.Mutex) {
	defer p.wg.Done()
	defer p.end(up, client)
	r := bufio.NewReader(client)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if reply := p.filter(strings.TrimRight(line, "\r\n")); reply != "" {
			toClient.Lock()
			_, err = io.WriteString(client, reply+"\r\n")
			toClient.Unlock()
		} else {
			_, err = io.WriteString(up, line)
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) end(a, b net.Conn) {
	a.Close()
	b.Close()
	p.mu.Lock()
	delete(p.sessions, a)
	delete(p.sessions, b)
	p.mu.Unlock()
}

// dropAll closes every session, as a server restart would.
func (p *proxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, up := range p.sessions {
		c.Close()
		up.Close()
	}
}

func (p *proxy) counts() (accepted, refused int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.refused
}

// faultDialer is an Options.DialContext that can stall data connections:
// each is relayed through a loopback socket pair whose pump stops
// forwarding once stalled, so that the client sees a silent server on a
// real TCP socket (with working deadlines). It also tells when connections
// close, so tests wait on a signal instead of polling.
type faultDialer struct {
	ctl     string // the control address; other addresses are data connections
	stalled atomic.Bool
	stop    chan struct{} // closed at cleanup: frees stalled pumps
	closed  chan struct{} // receives once per closed connection
	dials   atomic.Int32
	wg      sync.WaitGroup
}

func newFaultDialer(t *testing.T, ctl string) *faultDialer {
	d := &faultDialer{ctl: ctl, stop: make(chan struct{}), closed: make(chan struct{}, 1024)}
	t.Cleanup(func() {
		close(d.stop)
		d.wg.Wait()
	})
	return d
}

func (d *faultDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	real, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.dials.Add(1)
	if addr == d.ctl {
		return &notifyConn{Conn: real, closed: d.closed}, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		real.Close()
		return nil, err
	}
	defer ln.Close()
	client, err := nd.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		real.Close()
		return nil, err
	}
	relay, err := ln.Accept()
	if err != nil {
		real.Close()
		client.Close()
		return nil, err
	}
	d.wg.Add(2)
	go d.pump(relay, real)
	go d.pump(real, relay)
	return &notifyConn{Conn: client, closed: d.closed}, nil
}

// pump forwards until stalled; a stalled pump holds its data until the
// test ends, like a server that stopped sending.
func (d *faultDialer) pump(dst, src net.Conn) {
	defer d.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if d.stalled.Load() {
			<-d.stop
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

// notifyConn signals its first Close.
type notifyConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *notifyConn) Close() error {
	c.once.Do(func() { c.closed <- struct{}{} })
	return c.Conn.Close()
}

// within fails the test if fn takes longer than d.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	start := time.Now()
	fn()
	if took := time.Since(start); took > d {
		t.Errorf("%s took %v, want under %v", what, took, d)
	}
}
