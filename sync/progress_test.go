package sync

import (
	"bytes"
	"io"
	"strings"
	gosync "sync"
	"testing"
	"time"
)

// lockedBuffer lets the progress goroutine and the test share a buffer.
type lockedBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestProgressCountsAndClears(t *testing.T) {
	var out lockedBuffer
	p := NewProgress(&out, true)
	p.every = time.Hour // the test draws by hand
	p.Start()
	n, err := io.Copy(io.Discard, p.reader(strings.NewReader(strings.Repeat("x", 3000))))
	if err != nil || n != 3000 {
		t.Fatal(n, err)
	}
	p.fileDone()
	p.draw()
	p.above(func() { out.Write([]byte("line\n")) })
	p.draw()
	p.Stop()
	s := out.String()
	if !strings.Contains(s, "1 files, 2.9 KiB transferred") {
		t.Errorf("no progress line: %q", s)
	}
	if !strings.Contains(s, "\r\033[Kline\n") {
		t.Errorf("the progress line was not cleared before a printed line: %q", s)
	}
	if !strings.HasSuffix(s, "\r\033[K") {
		t.Errorf("Stop left the progress line on screen: %q", s)
	}
}

func TestProgressNilIsSafe(t *testing.T) {
	var p *Progress
	p.Start()
	p.fileDone()
	called := false
	p.above(func() { called = true })
	r := strings.NewReader("x")
	if p.reader(r) != io.Reader(r) || !called {
		t.Error("a nil Progress must pass everything through")
	}
	p.Stop()
}
