// Package ftpd runs the embedded FTP server (goftp.io/server/v2) over a local
// folder. It serves `ftpsync-mount serve`, `make demo` and the in-process
// tests, so it behaves like a careful real server: MLSD, MFMT, REST, APPE,
// rename over existing files, no recursive RMD, UTC times.
package ftpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/sirupsen/logrus"
	server "goftp.io/server/v2"
)

// Options configure a Server.
type Options struct {
	Root     string // folder to serve; must exist
	Addr     string // listen address, "127.0.0.1:0" picks a free port
	User     string // the one account
	Password string
	// TLS, when set, offers explicit AUTH TLS. (goftp's implicit TLS never
	// marks a session as secure, so PROT P fails; it is not offered.)
	TLS *tls.Config
	// PassivePorts is a range "from-to"; empty picks from 30000-40000.
	PassivePorts string
	Log          logrus.FieldLogger
}

// Server is a running embedded FTP server.
type Server struct {
	srv  *server.Server
	addr string
	done chan struct{}
	err  error // set before done is closed
	once sync.Once
}

// Start listens and serves in the background until Close.
func Start(opts Options) (*Server, error) {
	if opts.Log == nil {
		l := logrus.New()
		l.SetLevel(logrus.WarnLevel)
		opts.Log = l
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", opts.Root, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", opts.Root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("serve %s: not a directory", opts.Root)
	}
	if opts.User == "" {
		return nil, errors.New("serve: a user name is required")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:2121"
	}
	host, portStr, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("serve: listen address %q: %w (use HOST:PORT, e.g. 127.0.0.1:2121)", opts.Addr, err)
	}
	if _, err := strconv.Atoi(portStr); err != nil {
		return nil, fmt.Errorf("serve: listen address %q: bad port", opts.Addr)
	}
	if opts.PassivePorts == "" {
		opts.PassivePorts = "30000-40000"
	}
	d := &driver{root: root}
	cmds := commands(d)
	so := &server.Options{
		Driver:         d,
		Auth:           &server.SimpleAuth{Name: opts.User, Password: opts.Password},
		Perm:           server.NewSimplePerm("ftp", "ftp"),
		Name:           "ftpsync-mount embedded server",
		Hostname:       host,
		PassivePorts:   opts.PassivePorts,
		Commands:       cmds,
		Logger:         &logAdapter{log: opts.Log},
		WelcomeMessage: "ftpsync-mount embedded FTP server ready",
	}
	if opts.TLS != nil {
		so.TLS = true
		so.TLSConfig = opts.TLS
		so.ExplicitFTPS = true
	}
	srv, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("serve: listen on %s: %w", opts.Addr, err)
	}
	if opts.TLS != nil {
		if err := armTLS(srv, opts.TLS); err != nil {
			ln.Close()
			return nil, err
		}
	}
	rl := &readyListener{Listener: ln, ready: make(chan struct{})}
	s := &Server{srv: srv, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() { s.finish(srv.Serve(rl)) }()
	select {
	case <-rl.ready:
	case <-s.done:
		return nil, fmt.Errorf("serve: %w", s.err)
	}
	return s, nil
}

// finish records why Serve returned.
func (s *Server) finish(err error) {
	if errors.Is(err, server.ErrServerClosed) {
		err = nil
	}
	s.err = err
	close(s.done)
}

// armTLS sets goftp's unexported TLS configuration, which AUTH TLS and
// PROT P data channels read. goftp fills it only inside ListenAndServe, which
// owns its listener, cannot pick a free port and races with Shutdown; Serve
// on our own listener is what tests need. The pinned goftp version is the
// one this was written against; TestServerTLS fails if the field moves.
func armTLS(srv *server.Server, cfg *tls.Config) error {
	f := reflect.ValueOf(srv).Elem().FieldByName("tlsConfig")
	if !f.IsValid() || f.Type() != reflect.TypeOf(cfg) {
		return errors.New("serve: this goftp version has no tlsConfig field; TLS is unavailable")
	}
	reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Set(reflect.ValueOf(cfg))
	return nil
}

// readyListener reports the first Accept: by then Serve has set up what
// Shutdown reads, so Close after Start never races with it.
type readyListener struct {
	net.Listener
	once  sync.Once
	ready chan struct{}
}

func (l *readyListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.ready) })
	return l.Listener.Accept()
}

// Addr is the address the server listens on (host:port).
func (s *Server) Addr() string { return s.addr }

// Wait blocks until the server stops and returns why.
func (s *Server) Wait() error {
	<-s.done
	return s.err
}

// Close stops accepting connections. Sessions in progress end with their
// client; a test that needs them gone closes its clients first.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.srv.Shutdown()
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
		}
	})
	return err
}

// logAdapter sends goftp's log lines to logrus at debug level, with the
// password hidden.
type logAdapter struct{ log logrus.FieldLogger }

func (l *logAdapter) Print(sess string, msg interface{}) {
	l.log.WithField("session", sess).Debug(msg)
}

func (l *logAdapter) Printf(sess string, format string, v ...interface{}) {
	l.log.WithField("session", sess).Debugf(format, v...)
}

func (l *logAdapter) PrintCommand(sess string, cmd string, params string) {
	if cmd == "PASS" {
		params = "****"
	}
	l.log.WithField("session", sess).Debugf("> %s %s", cmd, params)
}

func (l *logAdapter) PrintResponse(sess string, code int, msg string) {
	l.log.WithField("session", sess).Debugf("< %d %s", code, msg)
}
