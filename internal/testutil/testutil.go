// Package testutil holds test helpers that packages far apart need alike:
// the network targets and the command line both meet silent servers, and
// both want their logs in the test's output.
package testutil

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
)

// SilentServer listens on 127.0.0.1, accepts connections and never says a
// word, like a host behind a firewall that drops packets after the
// handshake. It returns the address; the listener and every accepted
// connection are closed when the test ends.
func SilentServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // protects conns
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// Log returns a logger at debug level that writes through t.Log, so that a
// failing test shows what the code under test did, next to the failure.
func Log(t testing.TB) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(testWriter{t})
	l.SetLevel(logrus.DebugLevel)
	return l
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
