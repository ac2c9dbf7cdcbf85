package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// sender serves one fixed payload to each connection, then closes it.
func sender(t *testing.T, payload []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = c.Write(payload)
			}()
		}
	}()
	return ln.Addr().String()
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// fetch reads everything the server sends through the proxy, with a read
// deadline so that a stalled relay cannot hang the test.
func fetch(t *testing.T, p *Proxy, addr string, timeout time.Duration) ([]byte, error) {
	t.Helper()
	c, err := p.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	return io.ReadAll(c)
}

// forceEarly returns a config whose one fault strikes within the first
// 1000 bytes of the server's stream (the client sends nothing).
func forceEarly(t *testing.T, k Kind) Config {
	t.Helper()
	for seed := int64(1); seed < 100; seed++ {
		cfg := Config{Seed: seed, Rate: 1, MaxFaults: 1, Kinds: []Kind{k}, MaxOffset: 1000, MaxStall: 300 * time.Millisecond, MaxDelay: 2 * time.Millisecond}
		if f := New(cfg).plan(); f != nil && f.at < 1000 {
			return cfg
		}
	}
	t.Fatal("no seed below 100 plans an early fault")
	return Config{}
}

func TestKinds(t *testing.T) {
	data := payload(200 << 10)
	addr := sender(t, data)
	for _, k := range Kinds {
		t.Run(k.String(), func(t *testing.T) {
			p := New(forceEarly(t, k))
			defer p.Close()
			start := time.Now()
			got, err := fetch(t, p, addr, 5*time.Second)
			took := time.Since(start)
			switch k {
			case Drop:
				if err == nil || len(got) > 1000 {
					t.Errorf("drop: %d bytes, err %v; want a reset within the first 1000 bytes", len(got), err)
				}
			case Cut:
				if err != nil || len(got) > 1000 {
					t.Errorf("cut: %d bytes, err %v; want a clean EOF within the first 1000 bytes", len(got), err)
				}
			case Stall, Delay:
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s: %d bytes, err %v; want all %d", k, len(got), err, len(data))
				}
			}
			if k == Stall && took < time.Millisecond {
				t.Errorf("stall took %v", took)
			}
			if s := p.Stats(); s.Total != 1 || s.Injected[k] != 1 || s.Conns != 1 {
				t.Errorf("stats %+v, want one %s", s, k)
			}
			// MaxFaults is reached: the next connection is clean.
			if got, err := fetch(t, p, addr, 5*time.Second); err != nil || !bytes.Equal(got, data) {
				t.Errorf("after the last fault: %d bytes, %v", len(got), err)
			}
		})
	}
}

// TestStallOutlivesDeadline checks that a client deadline fires during a
// stall: the client sees a real timeout, not a hang.
func TestStallOutlivesDeadline(t *testing.T) {
	addr := sender(t, payload(100<<10))
	cfg := forceEarly(t, Stall)
	cfg.MaxStall = 10 * time.Second
	p := New(cfg)
	start := time.Now()
	_, err := fetch(t, p, addr, 200*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read through a long stall: %v, want a timeout", err)
	}
	// Close frees the stalled pump at once.
	p.Close()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v; Close should end a stall", took)
	}
}

// TestSeedRepeats checks that one seed gives the same plans.
func TestSeedRepeats(t *testing.T) {
	cfg := Config{Seed: 42, Rate: 0.5, MaxFaults: 50}
	a, b := New(cfg), New(cfg)
	for i := 0; i < 100; i++ {
		fa, fb := a.plan(), b.plan()
		if (fa == nil) != (fb == nil) || (fa != nil && (fa.kind != fb.kind || fa.at != fb.at || fa.stall != fb.stall)) {
			t.Fatalf("plan %d differs: %+v vs %+v", i, fa, fb)
		}
	}
	if s := a.Stats(); s.Planned == 0 || s.Planned > 50 {
		t.Errorf("planned %d faults of 100 at rate 0.5", s.Planned)
	}
}

func TestClosedProxyRefuses(t *testing.T) {
	addr := sender(t, payload(10))
	p := New(Config{})
	p.Close()
	if _, err := p.DialContext(context.Background(), "tcp", addr); !errors.Is(err, net.ErrClosed) {
		t.Errorf("dial after Close: %v", err)
	}
}
