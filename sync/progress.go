package sync

import (
	"fmt"
	"io"
	gosync "sync"
	"sync/atomic"
	"time"
)

// Progress shows how far a run is: on a terminal one line redrawn in
// place with files, bytes and rate; otherwise a plain line every few
// seconds, which suits log files and cron mail. A nil *Progress shows
// nothing, so the engine calls it unconditionally.
type Progress struct {
	out   io.Writer // read only
	tty   bool      // read only
	every time.Duration

	files atomic.Int64
	bytes atomic.Int64
	start time.Time // read only after Start

	mu    gosync.Mutex // protects shown and serializes writes to out
	shown bool         // a terminal line is on screen and must be cleared first

	stop chan struct{}
	done chan struct{}
}

// NewProgress writes to out; tty selects the redrawn line.
func NewProgress(out io.Writer, tty bool) *Progress {
	every := 5 * time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	return &Progress{out: out, tty: tty, every: every}
}

// Start begins drawing; Stop ends it.
func (p *Progress) Start() {
	if p == nil {
		return
	}
	p.start = time.Now()
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.done)
		t := time.NewTicker(p.every)
		defer t.Stop()
		var last int64 = -1
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				if b := p.bytes.Load() + p.files.Load(); p.tty || b != last {
					last = b
					p.draw()
				}
			}
		}
	}()
}

// Stop ends drawing and removes the terminal line.
func (p *Progress) Stop() {
	if p == nil || p.stop == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	p._clear()
}

func (p *Progress) draw() {
	files, n := p.files.Load(), p.bytes.Load()
	el := time.Since(p.start)
	rate := 0.0
	if s := el.Seconds(); s > 0 {
		rate = float64(n) / s
	}
	line := fmt.Sprintf("%d files, %s transferred, %s/s, %s", files, humanSize(n), humanSize(int64(rate)), el.Round(time.Second))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprint(p.out, "\r\033[K"+line)
		p.shown = true
		return
	}
	fmt.Fprintln(p.out, "progress: "+line)
}

// _clear removes the terminal line; p.mu must be held.
func (p *Progress) _clear() {
	if p.shown {
		fmt.Fprint(p.out, "\r\033[K")
		p.shown = false
	}
}

// above runs fn (which prints a line, or asks the user) with the progress
// line out of the way and not redrawn until fn returns, so that the two
// never interleave on a terminal.
func (p *Progress) above(fn func()) {
	if p == nil {
		fn()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p._clear()
	fn()
}

// reader counts the bytes read through it.
func (p *Progress) reader(r io.Reader) io.Reader {
	if p == nil {
		return r
	}
	return &progressReader{r: r, n: &p.bytes}
}

func (p *Progress) fileDone() {
	if p != nil {
		p.files.Add(1)
	}
}

type progressReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *progressReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}
