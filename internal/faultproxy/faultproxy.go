// Package faultproxy is a fault-injecting TCP relay for tests. Its
// DialContext fits target/ftp's Options.DialContext, so it sits on every
// connection the FTP client opens, control and data alike: the client
// talks to a loopback socket whose other end the proxy pumps to the real
// server, and the pumps drop, stall, cut short or delay the stream. The
// client therefore sees real TCP behaviour (resets, early EOF, silence
// under its own deadlines), not a fake net.Conn.
//
// Faults are drawn from a seeded random source and bounded in number and
// duration, so a failing test can be re-run with the seed it logged and
// always ends.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is one sort of fault.
type Kind int

const (
	// Drop resets both sides after some bytes, like a dead route or a
	// server killed mid-transfer.
	Drop Kind = iota
	// Stall stops forwarding for a while after some bytes, then goes on;
	// a stall longer than the client's timeout makes the client give up.
	Stall
	// Cut ends the stream early with a clean FIN to the receiver and a
	// reset to the sender: a transfer cut short that the receiver may take
	// for a complete one.
	Cut
	// Delay holds every chunk after some bytes for a random while: slow
	// replies and slow transfers.
	Delay
	numKinds
)

// Kinds lists every fault kind.
var Kinds = []Kind{Drop, Stall, Cut, Delay}

func (k Kind) String() string {
	switch k {
	case Drop:
		return "drop"
	case Stall:
		return "stall"
	case Cut:
		return "cut"
	case Delay:
		return "delay"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Config sets what the proxy injects. Zero fields take the defaults noted.
type Config struct {
	Seed int64
	// Rate is the chance that a new connection carries a fault (0..1).
	Rate float64
	// MaxFaults bounds the faults planned over the proxy's life; later
	// connections pass untouched, so retries eventually succeed. Default 20.
	MaxFaults int
	// Kinds to draw from; default all.
	Kinds []Kind
	// MaxOffset: a fault strikes after a random number of bytes in
	// [0, MaxOffset] in one direction. Default 64 KiB.
	MaxOffset int64
	// MaxStall bounds one stall; default 1s.
	MaxStall time.Duration
	// MaxDelay bounds the delay of one chunk; default 20ms.
	MaxDelay time.Duration
	// Logf, if set, receives one line per fault as it strikes.
	Logf func(format string, args ...any)
}

// Stats counts what the proxy did.
type Stats struct {
	Conns    int          // connections relayed
	Planned  int          // connections that were given a fault
	Injected map[Kind]int // faults that struck, by kind
	Total    int          // sum of Injected
}

// Proxy relays connections and injects faults. Use one per test.
type Proxy struct {
	cfg  Config // read only
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex // protects the following
	rnd      *rand.Rand
	conns    map[net.Conn]struct{}
	closed   bool
	relayed  int
	planned  int
	injected [numKinds]int
}

// New returns a proxy with cfg's faults.
func New(cfg Config) *Proxy {
	if cfg.MaxFaults == 0 {
		cfg.MaxFaults = 20
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = Kinds
	}
	if cfg.MaxOffset <= 0 {
		cfg.MaxOffset = 64 << 10
	}
	if cfg.MaxStall <= 0 {
		cfg.MaxStall = time.Second
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = 20 * time.Millisecond
	}
	return &Proxy{cfg: cfg, stop: make(chan struct{}), rnd: rand.New(rand.NewSource(cfg.Seed)), conns: map[net.Conn]struct{}{}}
}

// fault is the plan for one connection.
type fault struct {
	kind   Kind
	at     int64 // after this many bytes in either direction
	stall  time.Duration
	struck atomic.Bool // set by the direction that reaches at first
	// delays is the connection's own source for Delay; only the direction
	// that struck uses it.
	delays *rand.Rand
}

// plan draws the fault for a new connection, or nil.
func (p *Proxy) plan() *fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.relayed++
	if p.planned >= p.cfg.MaxFaults || p.rnd.Float64() >= p.cfg.Rate {
		return nil
	}
	p.planned++
	// Offsets are spread evenly on a log scale, so that the few bytes of a
	// control reply are hit as often as the middle of a long transfer.
	at := int64(math.Exp(p.rnd.Float64()*math.Log(float64(p.cfg.MaxOffset)+1))) - 1
	return &fault{
		kind:   p.cfg.Kinds[p.rnd.Intn(len(p.cfg.Kinds))],
		at:     at,
		stall:  time.Duration(p.rnd.Int63n(int64(p.cfg.MaxStall))) + 1,
		delays: rand.New(rand.NewSource(p.rnd.Int63())),
	}
}

// DialContext connects to addr and returns the client's end of a relay to
// it. Its signature is that of net.Dialer.DialContext.
func (p *Proxy) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	up, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		up.Close()
		return nil, err
	}
	defer ln.Close()
	client, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		up.Close()
		return nil, err
	}
	relay, err := ln.Accept()
	if err != nil {
		up.Close()
		client.Close()
		return nil, err
	}
	if !p.track(up, relay) {
		up.Close()
		relay.Close()
		client.Close()
		return nil, net.ErrClosed
	}
	f := p.plan()
	var both sync.WaitGroup
	both.Add(2)
	p.wg.Add(3)
	go func() { defer both.Done(); p.pump(up, relay, f, true, addr) }()
	go func() { defer both.Done(); p.pump(relay, up, f, false, addr) }()
	go func() {
		// A stream ended by EOF is only half closed; the relay's sockets
		// go once both directions are done.
		defer p.wg.Done()
		both.Wait()
		p.finish(up, relay)
	}()
	return client, nil
}

// track registers the proxy's sockets so that Close can end them.
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

// pump copies src to dst, striking f if it belongs to this direction.
func (p *Proxy) pump(dst, src net.Conn, f *fault, upstream bool, addr string) {
	defer p.wg.Done()
	buf := make([]byte, 16<<10)
	var n int64
	struck := false
	for {
		m, err := src.Read(buf)
		chunk := buf[:m]
		if f != nil && !struck && n+int64(m) > f.at && f.struck.CompareAndSwap(false, true) {
			k := f.at - n
			if _, werr := dst.Write(chunk[:k]); werr != nil {
				p.finish(dst, src)
				return
			}
			n += k
			chunk = chunk[k:]
			struck = true
			p.count(f, upstream, addr, n)
			switch f.kind {
			case Drop:
				abort(dst)
				abort(src)
				p.untrack(dst, src)
				return
			case Cut:
				closeWrite(dst)
				abort(src)
				p.untrack(src)
				return
			case Stall:
				if !p.sleep(f.stall) {
					p.finish(dst, src)
					return
				}
			}
		}
		if struck && f.kind == Delay && len(chunk) > 0 {
			if !p.sleep(time.Duration(f.delays.Int63n(int64(p.cfg.MaxDelay)))) {
				p.finish(dst, src)
				return
			}
		}
		if len(chunk) > 0 {
			if _, werr := dst.Write(chunk); werr != nil {
				p.finish(dst, src)
				return
			}
			n += int64(len(chunk))
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				// Pass the end of the stream on and let the other
				// direction finish on its own.
				closeWrite(dst)
				return
			}
			p.finish(dst, src)
			return
		}
	}
}

// finish closes both sockets of a relay after an error.
func (p *Proxy) finish(a, b net.Conn) {
	a.Close()
	b.Close()
	p.untrack(a, b)
}

func (p *Proxy) count(f *fault, upstream bool, addr string, at int64) {
	p.mu.Lock()
	p.injected[f.kind]++
	p.mu.Unlock()
	if p.cfg.Logf != nil {
		dir := "server to client"
		if upstream {
			dir = "client to server"
		}
		extra := ""
		if f.kind == Stall {
			extra = " for " + f.stall.Round(time.Millisecond).String()
		}
		p.cfg.Logf("faultproxy: %s%s on %s, %s, after %d bytes", f.kind, extra, addr, dir, at)
	}
}

// sleep waits d or until Close; it reports whether the proxy still runs.
func (p *Proxy) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.stop:
		return false
	}
}

// abort closes c with a reset instead of a FIN.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		return
	}
	_ = c.Close()
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Conns: p.relayed, Planned: p.planned, Injected: map[Kind]int{}}
	for k, n := range p.injected {
		if n > 0 {
			s.Injected[Kind(k)] = n
			s.Total += n
		}
	}
	return s
}

// Close ends every relay, frees stalled pumps and waits for them.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.stop)
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}
