package testutil

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestSilentServer: a connection is accepted, and a read waits for its
// deadline because the server sends nothing.
func TestSilentServer(t *testing.T) {
	addr := SilentServer(t)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read from the silent server: %d bytes, %v; want a timeout", n, err)
	}
}
