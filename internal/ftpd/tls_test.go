package ftpd_test

import (
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd"
	"github.com/ftpsync-mount/ftpsync-mount/internal/testutil"
)

func TestServerTLS(t *testing.T) {
	ss := testutil.NewSelfSigned(t)
	cert, pool := ss.Cert, ss.Pool
	t.Run("explicit", func(t *testing.T) {
		root := t.TempDir()
		srv, err := ftpd.Start(ftpd.Options{Root: root, Addr: "127.0.0.1:0", User: "u", Password: "p",
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		c, err := ftp.Dial(srv.Addr(), ftp.DialWithExplicitTLS(cfg), ftp.DialWithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Quit()
		if err := c.Login("u", "p"); err != nil {
			t.Fatal(err)
		}
		if err := c.Stor("f.txt", strings.NewReader("over tls")); err != nil {
			t.Fatal(err)
		}
		r, err := c.Retr("f.txt")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if string(got) != "over tls" {
			t.Fatalf("read back %q", got)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "f.txt")); string(b) != "over tls" {
			t.Fatalf("on disk %q", b)
		}
	})
}
