package fs

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
)

// controlProxy forwards FTP control connections to a server; Close plays a
// server that went down: open connections drop and new ones are refused.
// (Data connections go to the server directly, as PASV replies say.)
type controlProxy struct {
	ln    net.Listener
	to    string
	mu    gosync.Mutex // protects conns
	conns []net.Conn
	wg    gosync.WaitGroup
}

func startProxy(t *testing.T, to string) *controlProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &controlProxy{ln: ln, to: to}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

func (p *controlProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { io.Copy(s, c); s.Close() }()
		go func() { io.Copy(c, s); c.Close() }()
	}
}

func (p *controlProxy) Close() {
	p.ln.Close()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// mountFTP mounts the embedded FTP server, through a control proxy, over a
// new temp folder.
func mountFTP(t *testing.T, timeout time.Duration) (*testMount, *ftpdtest.Server, *controlProxy) {
	t.Helper()
	srv := ftpdtest.Start(t)
	proxy := startProxy(t, srv.Addr())
	log := logrus.New()
	log.SetOutput(io.Discard)
	url := "ftp://" + srv.User + "@" + proxy.ln.Addr().String() + "/"
	tg, err := ftp.New(t.Context(), ftp.Options{URL: url, Password: srv.Password, Timeout: timeout, Log: log})
	if err != nil {
		t.Fatalf("connect to the embedded server: %v", err)
	}
	return mount(t, mountOpts{target: tg}), srv, proxy
}

func TestReadTreeOverFTP(t *testing.T) {
	m, srv, _ := mountFTP(t, 5*time.Second)
	files := sampleTree()
	writeTree(t, srv.Root, files)
	checkTreeMode(t, m.dir, files, 0o644)
}

// TestServerDownOverFTP takes the server away under a mounted tree: what
// was read stays readable, what was not fails with EIO within the timeout.
func TestServerDownOverFTP(t *testing.T) {
	m, srv, proxy := mountFTP(t, 2*time.Second)
	writeTree(t, srv.Root, map[string][]byte{"read": []byte("cached"), "unread": []byte("never fetched"), "d/x": []byte("x")})
	if got, err := os.ReadFile(filepath.Join(m.dir, "read")); err != nil || string(got) != "cached" {
		t.Fatalf("read: %q, %v", got, err)
	}
	if _, err := os.ReadDir(filepath.Join(m.dir, "d")); err != nil {
		t.Fatal(err)
	}
	proxy.Close()

	if got, err := os.ReadFile(filepath.Join(m.dir, "read")); err != nil || string(got) != "cached" {
		t.Fatalf("cached read with the server down: %q, %v", got, err)
	}
	if ents, err := os.ReadDir(filepath.Join(m.dir, "d")); err != nil || len(ents) != 1 {
		t.Fatalf("cached directory with the server down: %v, %v", ents, err)
	}
	start := time.Now()
	_, err := os.ReadFile(filepath.Join(m.dir, "unread"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("uncached read with the server down: %v, want EIO", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the failing read took %v, beyond the 2s timeout", d)
	}
}
