package ftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// TestPoolOfOneManyCallers: fifty callers share one connection without a
// deadlock, and never more than one connection is open.
func TestPoolOfOneManyCallers(t *testing.T) {
	srv := ftpdtest.Start(t)
	data := bytes.Repeat([]byte("0123456789"), 20000)
	if err := os.WriteFile(filepath.Join(srv.Root, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, srv, Options{Connections: 1})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			var err error
			switch i % 4 {
			case 0:
				_, err = tg.Stat(ctx, "f")
			case 1:
				_, err = tg.List(ctx, "")
			case 2:
				var rc io.ReadCloser
				if rc, err = tg.Open(ctx, "f", int64(i), 1000); err == nil {
					var b []byte
					b, err = io.ReadAll(rc)
					rc.Close()
					if err == nil && !bytes.Equal(b, data[i:i+1000]) {
						err = fmt.Errorf("caller %d read the wrong bytes", i)
					}
				}
			case 3:
				p := fmt.Sprintf("w%d", i)
				_, err = tg.Write(ctx, p, strings.NewReader(p), target.WriteOptions{Size: int64(len(p))})
			}
			if err != nil {
				errs <- fmt.Errorf("caller %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, peak, _ := tg.pool.stats(); peak != 1 {
		t.Errorf("%d connections were open at once, want 1", peak)
	}
}

// TestOpenReaderHoldsConnection: with one connection held by an open reader,
// another caller waits for its Close (no deadlock), and a caller whose
// context ends gives up with the context's error.
func TestOpenReaderHoldsConnection(t *testing.T) {
	srv := ftpdtest.Start(t)
	if err := os.WriteFile(filepath.Join(srv.Root, "f"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, srv, Options{Connections: 1})
	rc, err := tg.Open(t.Context(), "f", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	within(t, 2*time.Second, "a waiting Stat with a short context", func() {
		_, err = tg.Stat(short, "f")
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stat while the only connection is held: %v, want context.DeadlineExceeded", err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := tg.Stat(t.Context(), "f")
		done <- err
	}()
	if _, err := io.CopyN(io.Discard, rc, 4096); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("stat finished (%v) while the reader held the only connection", err)
	default:
	}
	within(t, 5*time.Second, "closing a reader early", func() {
		if err := rc.Close(); err != nil {
			t.Errorf("early close: %v", err)
		}
	})
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stat after the reader closed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stat still waits after the reader closed")
	}
	if _, peak, _ := tg.pool.stats(); peak != 1 {
		t.Errorf("%d connections were open at once, want 1 (the early-closed one reused)", peak)
	}
}

// TestDeadConnectionReplaced: when the server drops every session (a
// restart), the next operation dials anew instead of failing.
func TestDeadConnectionReplaced(t *testing.T) {
	srv := ftpdtest.Start(t)
	px := startProxy(t, srv.Addr(), 0)
	tg := newTarget(t, srv, Options{URL: "ftp://tester@" + px.addr() + "/", Connections: 2})
	if err := tg.Mkdir(t.Context(), "d"); err != nil {
		t.Fatal(err)
	}
	before, _ := px.counts()
	px.dropAll()
	st, err := tg.Stat(t.Context(), "d")
	if err != nil || !st.IsDir {
		t.Fatalf("stat after the server dropped the sessions: %+v, %v", st, err)
	}
	if after, _ := px.counts(); after <= before {
		t.Errorf("no new connection after the drop (%d before, %d after)", before, after)
	}
	// A write from a source that cannot rewind still succeeds: the drop
	// shows before the source is read, so the retry is safe.
	px.dropAll()
	e, err := tg.Write(t.Context(), "d/f", onlyReader{strings.NewReader("data")}, target.WriteOptions{Size: 4})
	if err != nil || e.Size != 4 {
		t.Errorf("write after a drop: %+v, %v", e, err)
	}
}

// TestTooManyConnections: a server that answers 421 beyond two sessions
// shrinks the pool to two; the refused caller waits for a free connection.
func TestTooManyConnections(t *testing.T) {
	srv := ftpdtest.Start(t)
	if err := os.WriteFile(filepath.Join(srv.Root, "f"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, srv.Addr(), 2)
	tg := newTarget(t, srv, Options{URL: "ftp://tester@" + px.addr() + "/", Connections: 4})
	var readers []io.ReadCloser
	for range 2 {
		rc, err := tg.Open(t.Context(), "f", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, rc)
	}
	done := make(chan error, 1)
	go func() {
		_, err := tg.Stat(t.Context(), "f")
		done <- err
	}()
	// The third connection is refused, twice, until the pool allows only
	// two; then the Stat waits for a reader to finish.
	for range 2 {
		select {
		case <-px.refusals:
		case <-time.After(10 * time.Second):
			t.Fatal("the stat never tried a third connection")
		}
	}
	select {
	case err := <-done:
		t.Fatalf("stat finished (%v) while both allowed connections were held", err)
	default:
	}
	if err := readers[0].Close(); err != nil {
		t.Error(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stat after a 421: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stat still waits after a reader closed")
	}
	readers[1].Close()
	if _, refused := px.counts(); refused == 0 {
		t.Error("the proxy refused no connection: the test did not exercise 421")
	}
	if _, _, allowed := tg.pool.stats(); allowed != 2 {
		t.Errorf("pool allows %d connections after 421s, want 2", allowed)
	}
	// The pool keeps working at its new size.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := tg.List(t.Context(), ""); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// TestIdleConnectionsClosed: connections idle longer than IdleClose are
// closed.
func TestIdleConnectionsClosed(t *testing.T) {
	srv := ftpdtest.Start(t)
	d := newFaultDialer(t, srv.Addr())
	tg := newTarget(t, srv, Options{IdleClose: 50 * time.Millisecond, DialContext: d.dial})
	if _, err := tg.List(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	// One close for the listing's data connection, one for the control
	// connection when it expires.
	for range 2 {
		select {
		case <-d.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("idle connection not closed")
		}
	}
	if open, _, _ := tg.pool.stats(); open != 0 {
		t.Errorf("%d connections open after the idle time", open)
	}
	if _, err := tg.Stat(t.Context(), ""); err != nil {
		t.Errorf("stat after the idle close: %v", err)
	}
}

// TestStallMidTransfer: a server that stops sending mid-file makes Read
// fail within the timeout, or at once when the context is cancelled, and
// the connection is replaced.
func TestStallMidTransfer(t *testing.T) {
	srv := ftpdtest.Start(t)
	const size = 64 << 20
	if err := os.WriteFile(filepath.Join(srv.Root, "big"), bytes.Repeat([]byte("y"), size), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newFaultDialer(t, srv.Addr())
	tg := newTarget(t, srv, Options{Timeout: 300 * time.Millisecond, DialContext: d.dial, Connections: 1})

	rc, err := tg.Open(t.Context(), "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, rc, 64<<10); err != nil {
		t.Fatal(err)
	}
	d.stalled.Store(true)
	var n int64
	within(t, 5*time.Second, "reading from a stalled server", func() {
		n, err = io.Copy(io.Discard, rc)
	})
	if err == nil || !errors.Is(err, target.ErrTemporary) {
		t.Errorf("read from a stalled server: %d bytes, error %v; want ErrTemporary", n, err)
	}
	within(t, 5*time.Second, "closing the stalled reader", func() { rc.Close() })
	d.stalled.Store(false)

	// Cancellation mid-read.
	d2 := newFaultDialer(t, srv.Addr())
	tg2 := newTarget(t, srv, Options{Timeout: time.Minute, DialContext: d2.dial, Connections: 1})
	ctx, cancel := context.WithCancel(t.Context())
	rc, err = tg2.Open(ctx, "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, rc, 64<<10); err != nil {
		t.Fatal(err)
	}
	d2.stalled.Store(true)
	time.AfterFunc(100*time.Millisecond, cancel)
	within(t, 5*time.Second, "reading a stalled transfer until cancelled", func() {
		_, err = io.Copy(io.Discard, rc)
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled read: %v, want context.Canceled", err)
	}
	rc.Close()
	d2.stalled.Store(false)
	if _, err := tg2.Stat(t.Context(), "big"); err != nil {
		t.Errorf("stat after a cancelled read (a fresh connection): %v", err)
	}
}

// TestEarlyCloseOfLargeRead: closing a reader after a few bytes of a large
// file is quick and keeps the connection usable.
func TestEarlyCloseOfLargeRead(t *testing.T) {
	srv := ftpdtest.Start(t)
	const size = 64 << 20
	if err := os.WriteFile(filepath.Join(srv.Root, "big"), bytes.Repeat([]byte("z"), size), 0o644); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, srv, Options{Connections: 1})
	for i := range 3 {
		rc, err := tg.Open(t.Context(), "big", int64(i)*1000, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, rc)
		if err != nil || n != 1<<20 {
			t.Errorf("ranged read: %d bytes, %v; want %d", n, err, 1<<20)
		}
		within(t, 4*time.Second, "closing a ranged read of a large file", func() {
			if err := rc.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
	if _, err := tg.Stat(t.Context(), "big"); err != nil {
		t.Errorf("stat after early closes: %v", err)
	}
}

// TestRefusalFromALaggingCountDoesNotShrink: a server may still count a
// connection we closed a moment ago and refuse the next login with 421.
// Below the number of connections it accepted before, that refusal is
// waited out, not taken as a new, lower limit (which once left the pool
// smaller than the server allowed and waiting on its own reader).
func TestRefusalFromALaggingCountDoesNotShrink(t *testing.T) {
	srv := ftpdtest.Start(t)
	if err := os.WriteFile(filepath.Join(srv.Root, "f"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, srv.Addr(), 3)
	tg := newTarget(t, srv, Options{URL: "ftp://tester@" + px.addr() + "/", Connections: 4, IdleClose: 50 * time.Millisecond})
	var readers []io.ReadCloser
	for range 3 {
		rc, err := tg.Open(t.Context(), "f", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, rc)
	}
	defer readers[0].Close()
	defer readers[1].Close()
	// Reader 2 goes away and its idle connection expires, but the "server"
	// keeps counting a connection until it has refused once.
	phantom, other := net.Pipe()
	defer other.Close()
	px.mu.Lock()
	px.sessions[phantom] = nil
	px.mu.Unlock()
	readers[2].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if open, _, _ := tg.pool.stats(); open == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle connection never expired")
		}
		time.Sleep(10 * time.Millisecond)
	}
	go func() {
		<-px.refusals
		px.mu.Lock()
		delete(px.sessions, phantom)
		px.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := tg.Stat(ctx, "f"); err != nil {
		t.Fatalf("stat after a refusal from a lagging count: %v", err)
	}
	if _, refused := px.counts(); refused == 0 {
		t.Error("the proxy refused nothing: the test did not exercise the lagging count")
	}
	if _, _, allowed := tg.pool.stats(); allowed != 4 {
		t.Errorf("pool allows %d connections after one lagging refusal, want all 4", allowed)
	}
}
