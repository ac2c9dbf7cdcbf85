// Package fakeftp is a scripted FTP server for tests of how the client
// copes with hostile and broken servers: it speaks just enough of the
// control protocol and passive data connections for jlaffaye/ftp and
// target/ftp to log in, list, stat, read and store, and lets a test replace
// any reply, the listing bytes, file contents and the pace at which replies
// trickle out. It listens on 127.0.0.1 only and keeps nothing on disk.
package fakeftp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"path"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options script a server. Zero fields take the defaults noted.
type Options struct {
	// Greeting is the first reply; default "220 fake FTP ready".
	Greeting string
	// Feat lists the FEAT features; nil means MLST, MFMT, SIZE, UTF8,
	// REST STREAM and EPSV. An empty non-nil slice answers FEAT with 502.
	Feat []string
	// Listing returns the raw bytes MLSD or LIST (cmd says which) sends
	// for the folder dir. It may generate them lazily. Nil: empty.
	Listing func(cmd, dir string) io.Reader
	// Files are served by RETR, SIZE and MLST, by absolute path.
	Files map[string][]byte
	// Sizes, if set for a path, is what SIZE and MLST report instead of
	// the length of Files[path].
	Sizes map[string]int64
	// Reply sees each command before the default handling; a non-empty
	// return is sent instead (several lines joined with "\r\n"). A reply
	// starting with 421 also closes the session, as servers do.
	Reply func(cmd, arg string) string
	// Chunk writes control replies in pieces of this many bytes, each its
	// own TCP segment (Go sets TCP_NODELAY); 0 writes whole replies.
	Chunk int
	// Pace waits this long before each piece of a control reply.
	Pace time.Duration
}

// Server is a running fake server. Close it at the end of the test (Start
// registers that).
type Server struct {
	opts Options // read only
	ln   net.Listener
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex // protects the following
	conns    map[net.Conn]struct{}
	commands []string
	stored   map[string][]byte
}

// Start serves opts on 127.0.0.1 until the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Greeting == "" {
		opts.Greeting = "220 fake FTP ready"
	}
	if opts.Feat == nil {
		opts.Feat = []string{"MLST type*;size*;modify*;", "MFMT", "SIZE", "UTF8", "REST STREAM", "EPSV"}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{opts: opts, ln: ln, stop: make(chan struct{}), conns: map[net.Conn]struct{}{}, stored: map[string][]byte{}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Addr is the control address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is an ftp:// URL of the root for user "u".
func (s *Server) URL() string { return "ftp://u@" + s.Addr() + "/" }

// Commands returns every command received so far, arguments included.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// Stored returns what STOR received, by absolute path.
func (s *Server) Stored() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range s.stored {
		out[k] = v
	}
	return out
}

// Close stops the server and ends every session.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		return
	default:
	}
	close(s.stop)
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		c.Close()
		return false
	default:
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			(&session{s: s, c: c, cwd: "/"}).run()
		}()
	}
}

// session is one control connection.
type session struct {
	s    *Server
	c    net.Conn
	cwd  string
	pasv net.Listener // the listener of the last EPSV/PASV, if any
	rest int64
	from string // RNFR argument
}

// send writes a reply (lines joined by "\r\n"), in pieces if scripted.
func (ss *session) send(reply string) error {
	b := []byte(reply + "\r\n")
	step := ss.s.opts.Chunk
	if step <= 0 {
		step = len(b)
	}
	for len(b) > 0 {
		if ss.s.opts.Pace > 0 {
			select {
			case <-time.After(ss.s.opts.Pace):
			case <-ss.s.stop:
				return net.ErrClosed
			}
		}
		n := min(step, len(b))
		if _, err := ss.c.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (ss *session) run() {
	defer func() {
		if ss.pasv != nil {
			ss.pasv.Close()
		}
	}()
	if ss.send(ss.s.opts.Greeting) != nil || strings.HasPrefix(ss.s.opts.Greeting, "421") {
		return
	}
	r := bufio.NewReader(ss.c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		cmd, arg, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		ss.s.mu.Lock()
		ss.s.commands = append(ss.s.commands, line)
		ss.s.mu.Unlock()
		reply := ""
		if ss.s.opts.Reply != nil {
			reply = ss.s.opts.Reply(cmd, arg)
		}
		if reply == "" {
			reply = ss.handle(cmd, arg)
		}
		if reply == "" {
			continue // the handler sent its replies itself
		}
		if ss.send(reply) != nil || strings.HasPrefix(reply, "421") || cmd == "QUIT" {
			return
		}
	}
}

// abs resolves a path argument against the working folder.
func (ss *session) abs(p string) string {
	if p == "" {
		return ss.cwd
	}
	if !strings.HasPrefix(p, "/") {
		p = ss.cwd + "/" + p
	}
	return path.Clean(p)
}

func (ss *session) size(p string) (int64, bool) {
	if n, ok := ss.s.opts.Sizes[p]; ok {
		return n, true
	}
	if b, ok := ss.s.opts.Files[p]; ok {
		return int64(len(b)), true
	}
	// What a client stored is there for it to check, as on a real server.
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	b, ok := ss.s.stored[p]
	return int64(len(b)), ok
}

// handle gives the default reply to one command.
func (ss *session) handle(cmd, arg string) string {
	switch cmd {
	case "USER":
		return "331 password please"
	case "PASS":
		return "230 logged in"
	case "FEAT":
		if len(ss.s.opts.Feat) == 0 {
			return "502 no FEAT"
		}
		return "211-Features:\r\n " + strings.Join(ss.s.opts.Feat, "\r\n ") + "\r\n211 End"
	case "TYPE", "OPTS", "NOOP", "MODE", "STRU":
		return "200 ok"
	case "PWD":
		return `257 "` + ss.cwd + `" is the current folder`
	case "CWD":
		ss.cwd = ss.abs(arg)
		return "250 ok"
	case "CDUP":
		ss.cwd = path.Dir(ss.cwd)
		return "250 ok"
	case "EPSV", "PASV":
		return ss.passive(cmd)
	case "REST":
		if _, err := fmt.Sscan(arg, &ss.rest); err != nil {
			return "501 bad offset"
		}
		return "350 restarting"
	case "SIZE":
		if n, ok := ss.size(ss.abs(arg)); ok {
			return fmt.Sprintf("213 %d", n)
		}
		return "550 no such file"
	case "MDTM":
		if _, ok := ss.size(ss.abs(arg)); ok {
			return "213 20250102030405"
		}
		return "550 no such file"
	case "MLST":
		p := ss.abs(arg)
		if n, ok := ss.size(p); ok {
			return fmt.Sprintf("250-Listing\r\n type=file;size=%d;modify=20250102030405; %s\r\n250 End", n, p)
		}
		return "250-Listing\r\n type=dir;modify=20250102030405; " + p + "\r\n250 End"
	case "MLSD", "LIST", "NLST":
		var src io.Reader = strings.NewReader("")
		if ss.s.opts.Listing != nil {
			src = ss.s.opts.Listing(cmd, ss.abs(listArg(arg)))
		}
		return ss.transfer(func(dc net.Conn) error { _, err := io.Copy(dc, src); return err })
	case "RETR":
		p := ss.abs(arg)
		b, ok := ss.s.opts.Files[p]
		if !ok {
			return "550 no such file"
		}
		off := min(ss.rest, int64(len(b)))
		ss.rest = 0
		return ss.transfer(func(dc net.Conn) error { _, err := dc.Write(b[off:]); return err })
	case "STOR", "APPE":
		p := ss.abs(arg)
		return ss.transfer(func(dc net.Conn) error {
			var buf bytes.Buffer
			_, err := io.Copy(&buf, dc)
			ss.s.mu.Lock()
			ss.s.stored[p] = buf.Bytes()
			ss.s.mu.Unlock()
			return err
		})
	case "RNFR":
		ss.from = ss.abs(arg)
		return "350 ready"
	case "RNTO":
		ss.s.mu.Lock()
		if b, ok := ss.s.stored[ss.from]; ok {
			delete(ss.s.stored, ss.from)
			ss.s.stored[ss.abs(arg)] = b
		}
		ss.s.mu.Unlock()
		return "250 renamed"
	case "DELE", "RMD", "MFMT", "SITE":
		return "250 ok"
	case "MKD":
		return `257 "` + ss.abs(arg) + `" created`
	case "QUIT":
		return "221 bye"
	}
	return "502 " + cmd + " not implemented"
}

// listArg drops LIST options such as -a.
func listArg(arg string) string {
	if strings.HasPrefix(arg, "-") {
		_, rest, _ := strings.Cut(arg, " ")
		return rest
	}
	return arg
}

// passive opens a data listener and names its port.
func (ss *session) passive(cmd string) string {
	if ss.pasv != nil {
		ss.pasv.Close()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "425 cannot open a data port"
	}
	ss.pasv = ln
	port := ln.Addr().(*net.TCPAddr).Port
	if cmd == "EPSV" {
		return fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)", port)
	}
	return fmt.Sprintf("227 Entering Passive Mode (127,0,0,1,%d,%d)", port>>8, port&0xff)
}

// transfer accepts the data connection, runs fn on it and sends the
// replies around it itself; it returns "" when it did.
func (ss *session) transfer(fn func(dc net.Conn) error) string {
	ln := ss.pasv
	ss.pasv = nil
	if ln == nil {
		return "425 use EPSV or PASV first"
	}
	defer ln.Close()
	if tl, ok := ln.(*net.TCPListener); ok {
		_ = tl.SetDeadline(time.Now().Add(5 * time.Second))
	}
	dc, err := ln.Accept()
	if err != nil {
		return "425 no data connection"
	}
	if !ss.s.track(dc) {
		return "421 shutting down"
	}
	if ss.send("150 opening data connection") != nil {
		ss.s.untrack(dc)
		return "421 control connection lost"
	}
	err = fn(dc)
	ss.s.untrack(dc)
	if err != nil {
		return "426 transfer aborted: " + err.Error()
	}
	return "226 transfer complete"
}
