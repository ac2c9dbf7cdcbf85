package sftp

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ftpsync-mount/ftpsync-mount/internal/testutil"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// proxy forwards TCP connections to a server and can freeze the ones open
// (they stay up but carry nothing, like a dead route) or cut them.
type proxy struct {
	addr    string
	ln      net.Listener
	backend string

	mu    sync.Mutex // protects pairs
	pairs []*pair
	wg    sync.WaitGroup
}

// pair is one forwarded connection.
type pair struct {
	client, server net.Conn
	frozen         chan struct{} // closed to stop forwarding
	once           sync.Once
}

func (p *pair) freeze() { p.once.Do(func() { close(p.frozen) }) }

func (p *pair) close() {
	p.freeze()
	_ = p.client.Close()
	_ = p.server.Close()
}

func startProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), ln: ln, backend: backend}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.backend)
		if err != nil {
			_ = c.Close()
			continue
		}
		pr := &pair{client: c, server: s, frozen: make(chan struct{})}
		p.mu.Lock()
		p.pairs = append(p.pairs, pr)
		p.mu.Unlock()
		p.wg.Go(func() { pr.pipe(s, c) })
		p.wg.Go(func() { pr.pipe(c, s) })
	}
}

// pipe copies until either side closes; once frozen it reads and drops,
// so that the sender sees no error and no answer.
func (p *pair) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			_ = dst.Close()
			return
		}
		select {
		case <-p.frozen:
			continue
		default:
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			_ = src.Close()
			return
		}
	}
}

// freeze silences every connection open now; new ones work.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		pr.freeze()
	}
}

// cut closes every connection open now.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		pr.close()
	}
	p.pairs = nil
}

// proxiedURL is srv's URL for folder sub, through p.
func proxiedURL(srv *testServer, p *proxy, sub string) string {
	return strings.Replace(srv.URL(sub), srv.Addr, p.addr, 1)
}

// proxiedKnownHosts writes a known_hosts file that names the proxy's
// address with the server's key.
func proxiedKnownHosts(t *testing.T, srv *testServer, p *proxy) string {
	f := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(p.addr)}, srv.HostKey) + "\n"
	if err := os.WriteFile(f, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSilentServer: a server that accepts but never speaks fails New
// within the timeout, and a cancelled context ends the wait at once.
func TestSilentServer(t *testing.T) {
	isolate(t)
	addr := testutil.SilentServer(t)
	url := "sftp://alice@" + addr + "/x"
	start := time.Now()
	_, err := New(t.Context(), Options{URL: url, Password: "pw", Timeout: 500 * time.Millisecond, Log: testutil.Log(t)})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("New against a silent server took %v with a 500ms timeout", d)
	}
	if !errors.Is(err, target.ErrTemporary) {
		t.Errorf("New against a silent server: %v, want ErrTemporary", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(200*time.Millisecond, cancel)
	start = time.Now()
	_, err = New(ctx, Options{URL: url, Password: "pw", Timeout: time.Minute, Log: testutil.Log(t)})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("New cancelled after 200ms took %v", d)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("New cancelled midway: %v, want context.Canceled", err)
	}
}

// TestServerGoesSilent: once the connection stops carrying anything, a
// call fails within the keepalive bounds with ErrTemporary, and the next
// call works on a new connection.
func TestServerGoesSilent(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	p := startProxy(t, srv.Addr)
	tg, err := New(t.Context(), Options{URL: proxiedURL(srv, p, ""), Password: srv.Password,
		KnownHostsFile: proxiedKnownHosts(t, srv, p), Timeout: time.Second, Log: testutil.Log(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	p.freeze()
	start := time.Now()
	_, err = tg.Stat(t.Context(), "")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stat on a frozen connection took %v with a 1s timeout", d)
	}
	if !errors.Is(err, target.ErrTemporary) {
		t.Errorf("stat on a frozen connection: %v, want ErrTemporary", err)
	}
	if _, err := tg.Stat(t.Context(), ""); err != nil {
		t.Errorf("stat after the connection was replaced: %v", err)
	}
}

// TestReconnect: a connection cut between calls or under a running read
// fails those calls with ErrTemporary (or not at all), and later calls
// redial.
func TestReconnect(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	p := startProxy(t, srv.Addr)
	sub := targettest.FreshDir(t, srv.Root)
	data := make([]byte, 16<<20)
	if err := os.WriteFile(filepath.Join(srv.Root, sub, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tg, err := New(t.Context(), Options{URL: proxiedURL(srv, p, sub), Password: srv.Password,
		KnownHostsFile: proxiedKnownHosts(t, srv, p), Timeout: 5 * time.Second, Log: testutil.Log(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	rc, err := tg.Open(t.Context(), "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	p.cut()
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, target.ErrTemporary) {
		t.Errorf("read of a cut connection: %v, want ErrTemporary", err)
	}
	rc.Close()
	if _, err := tg.Stat(t.Context(), "big"); err != nil && !errors.Is(err, target.ErrTemporary) {
		t.Errorf("first call after the cut: %v, want success or ErrTemporary", err)
	}
	st, err := tg.Stat(t.Context(), "big")
	if err != nil || st.Size != int64(len(data)) {
		t.Errorf("stat on a new connection: %+v, %v", st, err)
	}
}
