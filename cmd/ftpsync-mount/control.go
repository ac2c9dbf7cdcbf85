package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	gosync "sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/sync"
)

// The running mount answers the status, flush and unmount commands over a
// unix socket in its cache directory (mode 0600: only its user may ask).
// The commands find the socket from the mount point through the root's
// extended attribute user.ftpsync.socket. Each connection sends one JSON
// request line and reads JSON lines back: a status, or progress lines and a
// final result.

const controlSocketName = "control.sock"

// controlRequest is what a command asks.
type controlRequest struct {
	Op string `json:"op"` // "status", "flush", "unmount", "refresh" or "resolve"
	// Path is, for refresh and resolve, a path in the mount relative to its
	// root ("" is the root).
	Path      string `json:"path,omitempty"`
	Recursive bool   `json:"recursive,omitempty"` // refresh: the folders below too
	Keep      string `json:"keep,omitempty"`      // resolve: local, remote or both
}

// controlReply is one line of an answer.
type controlReply struct {
	Status *mountStatus `json:"status,omitempty"` // for status, and as progress
	Done   bool         `json:"done,omitempty"`   // the last line of flush and unmount
	Error  string       `json:"error,omitempty"`  // with Done: what did not reach the server
	Info   string       `json:"info,omitempty"`   // with Done: what refresh or resolve did
}

// mountStatus is what `ftpsync-mount status` shows.
type mountStatus struct {
	Mountpoint string               `json:"mountpoint"`
	Remote     string               `json:"remote"`
	PID        int                  `json:"pid"`
	CacheDir   string               `json:"cache_dir"`
	CacheUsed  int64                `json:"cache_used"`
	CacheTotal int64                `json:"cache_total"`
	Queue      sync.WritebackStatus `json:"queue"`
	// Unresolved are the conflicts kept until 'ftpsync-mount resolve'.
	Unresolved []cache.ConflictRecord `json:"unresolved"`
}

// controlServer serves the socket for one mount.
type controlServer struct {
	ln     net.Listener
	path   string
	log    logrus.FieldLogger
	status func() mountStatus              // read only
	flush  func(ctx context.Context) error // read only
	unmnt  func(ctx context.Context) error // read only: unmount, then the final flush
	// refresh and resolve answer the commands of those names (read only).
	refresh func(ctx context.Context, p string, recursive bool) (string, error)
	resolve func(ctx context.Context, p, keep string) (string, error)
	wg      gosync.WaitGroup // connections
	ctx     context.Context  // cancelled by close
	cancel  context.CancelFunc
}

// listenControl creates the socket. A long cache path does not fit a
// socket address (108 bytes), so the address goes through /proc/self/fd
// of the opened directory; the socket is still created in it.
func listenControl(dir string, log logrus.FieldLogger) (*controlServer, error) {
	p := filepath.Join(dir, controlSocketName)
	os.Remove(p) // left by a killed mount; the cache lock says we own the directory
	ln, err := listenUnix(dir, p)
	if err != nil {
		return nil, fmt.Errorf("status socket %s: %w", p, err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("status socket %s: %w", p, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &controlServer{ln: ln, path: p, log: log, ctx: ctx, cancel: cancel}, nil
}

func listenUnix(dir, p string) (net.Listener, error) {
	if len(p) < 100 {
		return net.Listen("unix", p)
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return net.Listen("unix", "/proc/self/fd/"+strconv.Itoa(int(d.Fd()))+"/"+controlSocketName)
}

// dialControl connects to a socket path, however long.
func dialControl(p string) (net.Conn, error) {
	if len(p) < 100 {
		return net.Dial("unix", p)
	}
	d, err := os.Open(filepath.Dir(p))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return net.Dial("unix", "/proc/self/fd/"+strconv.Itoa(int(d.Fd()))+"/"+filepath.Base(p))
}

func (s *controlServer) serve() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.handle(conn)
		}()
	}
}

// close stops accepting and waits (a little) for answers being written,
// such as the final line of an unmount.
func (s *controlServer) close() {
	s.ln.Close()
	os.Remove(s.path)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cancel()
		<-done
	}
}

func (s *controlServer) handle(conn net.Conn) {
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return
	}
	conn.SetReadDeadline(time.Time{})
	var req controlRequest
	enc := json.NewEncoder(conn)
	if err := json.Unmarshal(line, &req); err != nil {
		enc.Encode(controlReply{Done: true, Error: "bad request: " + err.Error()})
		return
	}
	switch req.Op {
	case "status":
		st := s.status()
		enc.Encode(controlReply{Status: &st})
	case "flush", "unmount":
		f := s.flush
		if req.Op == "unmount" {
			f = s.unmnt
		}
		s.longRun(conn, enc, f)
	case "refresh":
		info, err := s.refresh(s.ctx, req.Path, req.Recursive)
		enc.Encode(doneReply(info, err))
	case "resolve":
		info, err := s.resolve(s.ctx, req.Path, req.Keep)
		enc.Encode(doneReply(info, err))
	default:
		enc.Encode(controlReply{Done: true, Error: fmt.Sprintf("unknown request %q", req.Op)})
	}
}

func doneReply(info string, err error) controlReply {
	r := controlReply{Done: true, Info: info}
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// longRun runs f, sending the status every half second, then the result.
// A client that goes away cancels nothing: the work goes on.
func (s *controlServer) longRun(conn net.Conn, enc *json.Encoder, f func(context.Context) error) {
	done := make(chan error, 1)
	go func() { done <- f(s.ctx) }()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			r := controlReply{Done: true}
			if err != nil {
				r.Error = err.Error()
			}
			enc.Encode(r)
			return
		case <-t.C:
			st := s.status()
			if enc.Encode(controlReply{Status: &st}) != nil {
				conn.Close()
			}
		}
	}
}

// askControl sends one request to the mount at mountpoint and calls each
// for every reply line until the last.
func askControl(mountpoint, op string, each func(controlReply) error) error {
	return askControlReq(mountpoint, controlRequest{Op: op}, each)
}

// askControlReq is askControl with a full request.
func askControlReq(mountpoint string, creq controlRequest, each func(controlReply) error) error {
	op := creq.Op
	sock, err := controlSocketOf(mountpoint)
	if err != nil {
		return err
	}
	conn, err := dialControl(sock)
	if err != nil {
		return fmt.Errorf("%s: connect to the mount process: %w", mountpoint, err)
	}
	defer conn.Close()
	req, _ := json.Marshal(creq)
	if _, err := conn.Write(append(req, '\n')); err != nil {
		return fmt.Errorf("%s: %w", mountpoint, err)
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var r controlReply
		if err := dec.Decode(&r); err != nil {
			return fmt.Errorf("%s: the mount process ended the conversation: %w", mountpoint, err)
		}
		if err := each(r); err != nil {
			return err
		}
		if r.Done || op == "status" {
			if r.Error != "" {
				return errors.New(r.Error)
			}
			return nil
		}
	}
}

// controlSocketOf reads the socket's path from the mount point. A mount
// whose process hangs or died would hang the read forever, so it is given
// a few seconds (the stuck read is abandoned; the command exits anyway).
func controlSocketOf(mountpoint string) (string, error) {
	if ours, err := isOurMount(mountpoint); err != nil {
		return "", err
	} else if !ours {
		return "", fmt.Errorf("%s is not an ftpsync-mount mount point", mountpoint)
	}
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		buf := make([]byte, 4096)
		n, err := syscall.Getxattr(mountpoint, "user.ftpsync.socket", buf)
		if err != nil {
			ch <- result{err: err}
			return
		}
		ch <- result{s: string(buf[:n])}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return "", fmt.Errorf("%s: ask the mount where its status socket is: %w", mountpoint, r.err)
		}
		return r.s, nil
	case <-time.After(controlTimeout):
		return "", fmt.Errorf("%s: the mount does not answer (its process may hang or have died; 'umount -l %s' detaches it)", mountpoint, mountpoint)
	}
}

// controlTimeout bounds waiting for a mount to say where its socket is.
const controlTimeout = 3 * time.Second

// statusOf gathers a mount's status.
func statusOf(mp, remote, dir string, c *cache.Cache, wb *sync.Writeback) mountStatus {
	st := mountStatus{Mountpoint: mp, Remote: remote, PID: os.Getpid(), CacheDir: dir, Queue: sync.WritebackStatus{Loaded: true}}
	if wb != nil {
		st.Queue = wb.Status()
	}
	if rs, err := c.Conflicts(); err == nil {
		st.Unresolved = rs
	}
	if u, err := c.Usage(); err == nil {
		st.CacheUsed, st.CacheTotal = u.Used, u.Total
	}
	return st
}

// exitFlush uploads what is pending once the mount is gone, logging
// progress; a signal stops it at once, keeping the queue. The error says
// what did not reach the server.
func exitFlush(g *globalOptions, wb *sync.Writeback, sig <-chan os.Signal) error {
	if wb == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	finished := make(chan struct{})
	defer close(finished)
	stopped := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-finished:
				return
			case <-sig:
				close(stopped)
				cancel()
				return
			case <-t.C:
				st := wb.Status()
				g.log.Infof("uploading before exit: %d operations pending, %d running (Ctrl-C again exits now and keeps them queued)", st.Pending, len(st.Running))
			}
		}
	}()
	if st := wb.Status(); st.Pending > 0 {
		g.log.Infof("uploading %d pending operations before exit", st.Pending)
	}
	err := wb.Flush(ctx)
	select {
	case <-stopped:
		return &exitError{code: exitAborted, err: fmt.Errorf("stopped with %d operations queued; the next mount of this cache uploads them", wb.Status().Pending)}
	default:
	}
	if err != nil {
		return fmt.Errorf("not everything reached the server: %w", err)
	}
	g.log.Info("everything is on the server")
	return nil
}
