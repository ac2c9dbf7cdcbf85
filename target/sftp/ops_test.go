package sftp

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/testutil"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// newInProcess opens a target on a fresh folder of srv and returns it with
// the folder's path on disk.
func newInProcess(t *testing.T, srv *testServer) (*Target, string) {
	t.Helper()
	sub := targettest.FreshDir(t, srv.Root)
	tg, err := New(t.Context(), Options{URL: srv.URL(sub), Password: srv.Password,
		KnownHostsFile: srv.KnownHosts, Log: testutil.Log(t), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg, filepath.Join(srv.Root, sub)
}

// TestListFilters: links are followed (dangling ones left out), special
// files, temp files and names a server could abuse are left out.
func TestListFilters(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	tg, dir := newInProcess(t, srv)
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("file", "12345")
	write("bad\nname", "x")
	write("bad\rname", "x")
	write(target.TempName("file", "123"), "partial")
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{"to-file": "file", "to-dir": "sub", "dangling": "nowhere"} {
		if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	es, err := tg.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		kind := "file"
		if e.IsDir {
			kind = "dir"
		}
		got = append(got, e.Name+":"+kind)
		if e.Name == "to-file" && e.Size != 5 {
			t.Errorf("a link to a 5-byte file lists with size %d", e.Size)
		}
		if e.Precision != time.Second || e.ModTime.IsZero() {
			t.Errorf("entry %+v: want a time at second precision", e)
		}
	}
	sort.Strings(got)
	if want := "file:file sub:dir to-dir:dir to-file:file"; strings.Join(got, " ") != want {
		t.Errorf("list = %v, want %s", got, want)
	}
}

// TestWriteKeepsMode: replacing a file keeps its permission bits.
func TestWriteKeepsMode(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	tg, dir := newInProcess(t, srv)
	targettest.WriteFile(t, tg, "script.sh", []byte("#!/bin/sh\n"))
	if err := os.Chmod(filepath.Join(dir, "script.sh"), 0o751); err != nil {
		t.Fatal(err)
	}
	e := targettest.WriteFile(t, tg, "script.sh", []byte("#!/bin/sh\necho hi\n"))
	if e.Mode != 0o751 {
		t.Errorf("entry after replacing has mode %v, want 0751", e.Mode)
	}
	fi, err := os.Stat(filepath.Join(dir, "script.sh"))
	if err != nil || fi.Mode().Perm() != 0o751 {
		t.Errorf("on disk after replacing: %v, %v; want mode 0751", fi.Mode(), err)
	}
}

// TestLoginDirectory: a URL without a path serves the login folder, and
// String and ID name it without the password.
func TestLoginDirectory(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	if err := os.WriteFile(filepath.Join(srv.Root, "marker"), []byte("m"), 0o644); err != nil {
		t.Fatal(err)
	}
	u := "sftp://" + srv.User + ":" + "Secr3t@" + srv.Addr
	tg, err := New(t.Context(), Options{URL: u, Password: srv.Password, KnownHostsFile: srv.KnownHosts, Log: testutil.Log(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if _, err := tg.Stat(t.Context(), "marker"); err != nil {
		t.Errorf("the login folder (the server's working folder) has no marker: %v", err)
	}
	// Like the FTP target, New pins the login folder it found, so that the
	// ID names the tree even if the account's home moves.
	if s, id := tg.String(), tg.ID(); strings.Contains(s+id, "Secr3t") || s != srv.URL("") || id != "sftp:"+srv.Addr+srv.Root {
		t.Errorf("String() = %q, ID() = %q", s, id)
	}
}

// TestRootChecks: a root that is missing or a file is refused at New.
func TestRootChecks(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	if err := os.WriteFile(filepath.Join(srv.Root, "plain"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for sub, kind := range map[string]error{"missing": target.ErrNotFound, "plain": target.ErrNotDir} {
		_, err := New(t.Context(), Options{URL: srv.URL(sub), Password: srv.Password, KnownHostsFile: srv.KnownHosts, Log: testutil.Log(t)})
		if err == nil || !strings.Contains(err.Error(), filepath.Join(srv.Root, sub)) {
			t.Errorf("root %s: %v, want an error naming the folder", sub, err)
		}
		if !errors.Is(err, kind) {
			t.Errorf("root %s: %v, want %v", sub, err, kind)
		}
	}
}
