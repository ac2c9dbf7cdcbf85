package sync

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// cmdCounter counts the FTP commands sent on control connections (those
// dialled to addr), by name.
type cmdCounter struct {
	addr string
	mu   gosync.Mutex
	n    map[string]int
}

func (c *cmdCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil || addr != c.addr {
		return conn, err
	}
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 0 {
				c.mu.Lock()
				c.n[strings.ToUpper(f[0])]++
				c.mu.Unlock()
			}
		}
		io.Copy(io.Discard, pr) //nolint:errcheck // drains after a too long line
	}()
	return &countedConn{Conn: conn, w: pw}, nil
}

// take returns the commands counted since the last call, leaving out the
// ones every new connection sends to log in.
func (c *cmdCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = map[string]int{}
	for _, login := range []string{"USER", "PASS", "FEAT", "OPTS", "TYPE", "PWD", "SYST", "QUIT", "NOOP"} {
		delete(out, login)
	}
	return out
}

type countedConn struct {
	net.Conn
	w *io.PipeWriter
}

func (c *countedConn) Write(p []byte) (int, error) {
	c.w.Write(p) //nolint:errcheck // the counter never fails
	return c.Conn.Write(p)
}

func (c *countedConn) Close() error {
	c.w.Close()
	return c.Conn.Close()
}

// TestWritebackFTPCommandsPerFile uploads a new folder tree through the
// write-back to an FTP server and counts the commands: a staged bundle
// costs EPSV, STOR and MFMT per file plus a few per folder, where one
// upload at a time costs seven per file.
func TestWritebackFTPCommandsPerFile(t *testing.T) {
	servers := map[string]func(t *testing.T) (url, password string){
		"embedded": func(t *testing.T) (string, string) {
			srv := ftpdtest.Start(t)
			return srv.URL(), srv.Password
		},
		"proftpd": func(t *testing.T) (string, string) {
			u, pw := os.Getenv("FTPSYNC_TEST_PROFTPD_URL"), os.Getenv("FTPSYNC_TEST_PASSWORD")
			if u == "" || pw == "" {
				if os.Getenv("CI") == "true" {
					t.Fatal("FTPSYNC_TEST_PROFTPD_URL not set: a missing server is a failure in CI")
				}
				t.Skip("FTPSYNC_TEST_PROFTPD_URL not set; start the servers with scripts/test-servers.sh up")
			}
			return u, pw
		},
	}
	for name, start := range servers {
		t.Run(name, func(t *testing.T) {
			u, pw := start(t)
			testCommandsPerFile(t, u, pw)
		})
	}
}

func testCommandsPerFile(t *testing.T, u, pw string) {
	root, err := ftp.New(t.Context(), ftp.Options{URL: u, Password: pw, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	var b [6]byte
	rand.Read(b[:])
	dir := "wb-count-" + hex.EncodeToString(b[:])
	if err := root.Mkdir(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeAll(t, root, dir) })
	hostURL := strings.TrimSuffix(u, "/") + "/" + dir
	cc := &cmdCounter{addr: hostOf(t, u), n: map[string]int{}}
	tg, err := ftp.New(t.Context(), ftp.Options{URL: hostURL, Password: pw, Log: quietLog(), DialContext: cc.dial})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if !tg.Features().StagedWrites {
		t.Fatalf("%s does not stage writes", tg)
	}

	c, err := cache.Open(cache.Options{Dir: t.TempDir(), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const folders, perFolder = 3, 10
	top, err := c.Mkdir(cache.RootIno, "tree", 0o755, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	parent := top.Ino
	for i := range folders {
		if i > 0 {
			d, err := c.Mkdir(parent, fmt.Sprintf("sub%d", i), 0o755, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			parent = d.Ino
		}
		p, _ := c.Path(parent)
		for j := range perFolder {
			name := fmt.Sprintf("f%d", j)
			data := strings.Repeat(name, i+j)
			writeCached(t, c, parent, name, data)
			want[target.Join(p, name)] = data
		}
	}
	cc.take() // the connection's own setup
	wb, err := NewWriteback(WritebackOptions{Target: tg, Cache: c, Log: quietLog(), Delay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer wb.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sent := cc.take()
	total := 0
	for _, n := range sent {
		total += n
	}
	files := folders * perFolder
	// Three per file; per folder MKD, EPSV and MLSD; for the bundle two
	// MLSTs of the final folder, RNFR and RNTO.
	if limit := 3*files + 3*folders + 4; total > limit {
		t.Errorf("%d commands for %d files in %d folders (%.1f a file), want at most %d: %v", total, files, folders, float64(total)/float64(files), limit, sent)
	}
	if sent["STOR"] != files || sent["RNFR"] != 1 {
		t.Errorf("want one STOR a file and one rename: %v", sent)
	}
	for p, data := range want {
		if got := string(targettest.ReadFile(t, tg, p)); got != data {
			t.Errorf("/%s on the server = %q, want %q", p, got, data)
		}
	}
	t.Logf("%d commands for %d files (%.2f a file): %v", total, files, float64(total)/float64(files), sent)
}

// hostOf returns the host:port of an ftp:// URL.
func hostOf(t *testing.T, u string) string {
	t.Helper()
	rest := strings.TrimPrefix(u, "ftp://")
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// writeCached creates a closed file in the cache as the mount does.
func writeCached(t *testing.T, c *cache.Cache, parent uint64, name, data string) {
	t.Helper()
	ent, err := c.Create(parent, name, 0o644, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.OpenLocal(ent.Ino, true, true, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteLocal(ent.Ino, []byte(data), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(ent.Ino, false); err != nil {
		t.Fatal(err)
	}
	c.Release(ent.Ino, true)
}
