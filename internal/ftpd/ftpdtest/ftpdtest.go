// Package ftpdtest starts the embedded FTP server for tests.
package ftpdtest

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd"
)

// Server is an embedded server serving a temporary folder.
type Server struct {
	*ftpd.Server
	Root     string // the served folder on local disk
	User     string
	Password string
}

// URL is the ftp:// URL of the server's root for User (no password).
func (s *Server) URL() string { return "ftp://" + s.User + "@" + s.Addr() + "/" }

// Start serves a new temporary folder on 127.0.0.1 and stops at the end of
// the test. Tests pass Password to the client through FTPSYNC_PASSWORD or
// the target options, never in the URL.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartRoot(t, t.TempDir())
}

// StartRoot serves the given folder.
func StartRoot(t testing.TB, root string) *Server {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	pw := hex.EncodeToString(b[:])
	srv, err := ftpd.Start(ftpd.Options{Root: root, Addr: "127.0.0.1:0", User: "tester", Password: pw})
	if err != nil {
		t.Fatalf("start embedded FTP server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return &Server{Server: srv, Root: root, User: "tester", Password: pw}
}
