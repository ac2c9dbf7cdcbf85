package ftpd_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
)

func dial(t *testing.T, s *ftpdtest.Server) *ftp.ServerConn {
	t.Helper()
	c, err := ftp.Dial(s.Addr(), ftp.DialWithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(s.User, s.Password); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Quit() })
	return c
}

func TestServerBehavesLikeACarefulServer(t *testing.T) {
	s := ftpdtest.Start(t)
	c := dial(t, s)
	if err := c.Stor("a.txt", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	if err := c.Append("a.txt", strings.NewReader(" world")); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(s.Root, "a.txt"))
	if string(got) != "hello world" {
		t.Fatalf("after STOR+APPE the file holds %q", got)
	}
	r, err := c.RetrFrom("a.txt", 6)
	if err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(r)
	r.Close()
	if string(tail) != "world" {
		t.Fatalf("REST 6 + RETR gave %q", tail)
	}
	want := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if !c.IsSetTimeSupported() {
		t.Fatal("MFMT not offered in FEAT")
	}
	if err := c.SetTime("a.txt", want); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetTime("a.txt"); err != nil || !got.Equal(want) {
		t.Fatalf("MDTM after MFMT: %v %v, want %v", got, err, want)
	}
	entries, err := c.List("")
	if err != nil || len(entries) != 1 || !entries[0].Time.Equal(want) || entries[0].Size != 11 {
		t.Fatalf("MLSD: %+v %v", entries, err)
	}

	if err := c.MakeDir("d"); err != nil {
		t.Fatal(err)
	}
	if err := c.MakeDir("d"); err == nil {
		t.Fatal("MKD of an existing folder succeeded")
	}
	if err := c.MakeDir("x/y"); err == nil {
		t.Fatal("MKD created missing parents")
	}
	if err := c.Stor("d/f", bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveDir("d"); err == nil {
		t.Fatal("RMD removed a non-empty folder")
	}
	if err := c.Rename("a.txt", "d/f"); err != nil {
		t.Fatalf("rename over an existing file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.Root, "d", "f")); err != nil {
		t.Fatal(err)
	}
}

func TestServerRefusesSymlinksOutOfRoot(t *testing.T) {
	s := ftpdtest.Start(t)
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o600)
	if err := os.Symlink(outside, filepath.Join(s.Root, "link")); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	if r, err := c.Retr("link"); err == nil {
		b, _ := io.ReadAll(r)
		r.Close()
		t.Fatalf("RETR followed a symlink out of the root: %q", b)
	}
	if err := c.Stor("link", strings.NewReader("x")); err == nil {
		t.Fatal("STOR wrote through a symlink")
	}
	if b, _ := os.ReadFile(outside); string(b) != "secret" {
		t.Fatalf("file outside the root changed: %q", b)
	}
	entries, _ := c.List("")
	if len(entries) != 0 {
		t.Fatalf("listing shows the symlink: %+v", entries)
	}
	if r, err := c.Retr("../../../../etc/passwd"); err == nil {
		r.Close()
		t.Fatal("RETR of a path outside the root succeeded")
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct{ name, root, addr, want string }{
		{"missing root", "/nonexistent/dir", "127.0.0.1:0", "no such file"},
		{"bad addr", t.TempDir(), "nonsense", "listen address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ftpdStart(tc.root, tc.addr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
