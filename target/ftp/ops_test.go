package ftp

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jftp "github.com/jlaffaye/ftp"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/internal/testutil"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

func TestClassify(t *testing.T) {
	reply := func(code int, msg string) error { return &textproto.Error{Code: code, Msg: msg} }
	for _, c := range []struct {
		err  error
		want error
	}{
		{reply(550, "/x: No such file or directory"), target.ErrNotFound},
		{reply(550, "Permission denied"), target.ErrPermission},
		{reply(550, "/x: Not a directory"), target.ErrNotDir},
		{reply(550, "Directory not empty"), target.ErrNotEmpty},
		{reply(550, "Could not do it"), nil},
		{reply(550, "'/d/exists_unix.go' cannot be listed"), nil},
		{reply(550, "'/d/mod_permissions.txt' cannot be listed"), nil},
		{reply(550, "/d/exists.go: No such file or directory"), target.ErrNotFound},
		{reply(550, "/d/x: File exists"), target.ErrExist},
		{reply(530, "Login incorrect."), target.ErrAuth},
		{reply(421, "Too many connections"), target.ErrTemporary},
		{reply(425, "Can't open data connection"), target.ErrTemporary},
		{reply(426, "Transfer aborted"), target.ErrTemporary},
		{reply(451, "Local error"), target.ErrTemporary},
		{reply(452, "Insufficient storage"), target.ErrTemporary},
		{reply(553, "Permission denied"), target.ErrPermission},
		{reply(553, "File name not allowed"), target.ErrInvalidName},
		{reply(502, "Command not implemented"), target.ErrUnsupported},
		{reply(501, "Syntax error"), nil},
		{reply(227, "Entering Passive Mode (127,0,0,1,122,219)"), target.ErrTemporary},
		{textproto.ProtocolError("short response: 21"), target.ErrTemporary},
		{io.EOF, target.ErrTemporary},
		{&net.OpError{Op: "read", Err: errors.New("connection reset")}, target.ErrTemporary},
		{jftp.ErrInvalidCommand, target.ErrInvalidName},
		{errors.New("something else"), nil},
	} {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// onlyReader hides a reader's other methods (Seek, WriteTo).
type onlyReader struct{ io.Reader }

// TestRenameRefused: a server without RNFR gets the upload in place, from
// a rewound source or from a spool of the temporary file, with no
// temporary file left.
func TestRenameRefused(t *testing.T) {
	for _, seekable := range []bool{true, false} {
		srv := ftpdtest.Start(t)
		px := startFilterProxy(t, srv.Addr(), 0, func(cmd string) string {
			if strings.HasPrefix(strings.ToUpper(cmd), "RNFR ") {
				return "502 RNFR not implemented"
			}
			return ""
		})
		tg := newTarget(t, srv, Options{URL: "ftp://tester@" + px.addr() + "/"})
		for i := range 2 {
			data := bytes.Repeat([]byte{byte('a' + i)}, 100000+i)
			var src io.Reader = bytes.NewReader(data)
			if !seekable {
				src = onlyReader{src}
			}
			e, err := tg.Write(t.Context(), "f", src, target.WriteOptions{Size: int64(len(data))})
			if err != nil {
				t.Fatalf("write %d (seekable %v) without rename: %v", i, seekable, err)
			}
			if e.Size != int64(len(data)) {
				t.Errorf("write returned %+v, want %d bytes", e, len(data))
			}
			if got, _ := os.ReadFile(filepath.Join(srv.Root, "f")); !bytes.Equal(got, data) {
				t.Errorf("disk holds %d bytes, want %d", len(got), len(data))
			}
		}
		if !tg.renameRefused.Load() {
			t.Error("the target did not learn that renames are refused")
		}
		names, _ := os.ReadDir(srv.Root)
		if len(names) != 1 {
			t.Errorf("server folder holds %v, want only f", names)
		}
		err := tg.Rename(t.Context(), "f", "g")
		if !errors.Is(err, target.ErrUnsupported) {
			t.Errorf("rename on a server without RNFR: %v, want ErrUnsupported", err)
		}
	}
}

// TestRenameOverRefused: a server that will not rename over an existing
// file gets the old file deleted first.
func TestRenameOverRefused(t *testing.T) {
	srv := ftpdtest.Start(t)
	px := startFilterProxy(t, srv.Addr(), 0, func(cmd string) string {
		verb, arg, _ := strings.Cut(cmd, " ")
		if strings.EqualFold(verb, "RNTO") {
			if _, err := os.Stat(filepath.Join(srv.Root, filepath.FromSlash(arg))); err == nil {
				return "550 " + arg + ": File exists"
			}
		}
		return ""
	})
	tg := newTarget(t, srv, Options{URL: "ftp://tester@" + px.addr() + "/"})
	for _, content := range []string{"old", "new content"} {
		if _, err := tg.Write(t.Context(), "f", strings.NewReader(content), target.WriteOptions{Size: int64(len(content))}); err != nil {
			t.Fatalf("write %q: %v", content, err)
		}
	}
	if got := readAll(t, tg, "f"); string(got) != "new content" {
		t.Errorf("f holds %q after a write over it", got)
	}
	if _, err := tg.Write(t.Context(), "g", strings.NewReader("g"), target.WriteOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if err := tg.Rename(t.Context(), "g", "f"); err != nil {
		t.Fatalf("rename over f: %v", err)
	}
	if got := readAll(t, tg, "f"); string(got) != "g" {
		t.Errorf("f holds %q after rename over it", got)
	}
	if tg.renameRefused.Load() {
		t.Error("a refused rename over a file was taken for no rename at all")
	}
}

// TestRefineModTime: MDTM gives the time to the second.
func TestRefineModTime(t *testing.T) {
	srv := ftpdtest.Start(t)
	tg := newTarget(t, srv, Options{})
	mt := time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)
	if _, err := tg.Write(t.Context(), "f", strings.NewReader("x"), target.WriteOptions{Size: 1, ModTime: mt}); err != nil {
		t.Fatal(err)
	}
	got, err := tg.RefineModTime(t.Context(), "f")
	if err != nil || !got.Equal(mt) {
		t.Errorf("RefineModTime = %v, %v; want %v", got, err, mt)
	}
	if _, err := tg.RefineModTime(t.Context(), "missing"); !errors.Is(err, target.ErrNotFound) {
		t.Errorf("RefineModTime of a missing file: %v, want ErrNotFound", err)
	}
}

// TestRefineModTimeVsftpd: vsftpd's LIST gives minutes at best; MDTM gives
// the seconds, and MDTM-write sets them. Write describes the file it stored
// with MDTM, so the record taken after an upload is exact to the second,
// which lets a later same-minute change be told apart.
func TestRefineModTimeVsftpd(t *testing.T) {
	u, _, pw := targettest.RealServer(t, vsftpd.envPrefix)
	tg, err := New(t.Context(), Options{URL: u, Password: pw, Log: testutil.Log(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if f := tg.Features(); f.MLSD || !f.MDTMWrite || f.MtimePrecision != time.Minute {
		t.Errorf("vsftpd features %+v: want LIST only, MDTM-write, minute precision", f)
	}
	name := "refine-" + time.Now().Format("150405.000000")
	mt := time.Date(2022, 1, 2, 3, 4, 5, 0, time.UTC)
	e, err := tg.Write(t.Context(), name, strings.NewReader("x"), target.WriteOptions{Size: 1, ModTime: mt})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Remove(t.Context(), name)
	if e.Precision != time.Second || !e.ModTime.Equal(mt) || e.Size != 1 {
		t.Errorf("Write's entry %+v: want size 1, time %v to the second", e, mt)
	}
	es, err := tg.List(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range es {
		if le.Name == name && le.Precision <= time.Second {
			t.Errorf("LIST entry %+v claims second precision", le)
		}
	}
	got, err := tg.RefineModTime(t.Context(), name)
	if err != nil || !got.Equal(mt) {
		t.Errorf("RefineModTime = %v, %v; want %v", got, err, mt)
	}
}

// TestPasswordFromEnvironment: without Options.Password, New finds it the
// way the command line does.
func TestPasswordFromEnvironment(t *testing.T) {
	srv := ftpdtest.Start(t)
	t.Setenv(PasswordEnv, srv.Password)
	tg, err := New(t.Context(), Options{URL: srv.URL(), Log: testutil.Log(t)})
	if err != nil {
		t.Fatalf("New with %s: %v", PasswordEnv, err)
	}
	tg.Close()
}

// recordCommands opens a target on srv through a proxy that notes the
// commands it sends; sent returns those since the last call, by name.
func recordCommands(t *testing.T, srv *ftpdtest.Server) (tg *Target, sent func() string) {
	var mu sync.Mutex
	var cmds []string
	px := startFilterProxy(t, srv.Addr(), 0, func(cmd string) string {
		mu.Lock()
		cmds = append(cmds, strings.Fields(cmd)[0])
		mu.Unlock()
		return ""
	})
	tg = newTarget(t, srv, Options{URL: "ftp://tester@" + px.addr() + "/"})
	return tg, func() string {
		mu.Lock()
		defer mu.Unlock()
		s := strings.Join(cmds, " ")
		cmds = nil
		return s
	}
}

// TestStagedWrite: a staged write is STOR and MFMT straight under the
// name, with no temporary file, check or rename, and describes what was
// sent.
func TestStagedWrite(t *testing.T) {
	srv := ftpdtest.Start(t)
	tg, sent := recordCommands(t, srv)
	if err := tg.Mkdir(t.Context(), "staged"); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2021, 3, 4, 5, 6, 7, 800, time.UTC)
	sent()
	e, err := tg.Write(t.Context(), "staged/f", strings.NewReader("staged data"), target.WriteOptions{ModTime: mt, Size: 11, Staged: true})
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "f" || e.Size != 11 || !e.ModTime.Equal(mt.Truncate(time.Second)) {
		t.Errorf("staged write returned %+v", e)
	}
	if got := sent(); got != "EPSV STOR MFMT" && got != "PASV STOR MFMT" {
		t.Errorf("staged write sent %q, want only the data connection, STOR and MFMT", got)
	}
	if b, _ := os.ReadFile(filepath.Join(srv.Root, "staged", "f")); string(b) != "staged data" {
		t.Errorf("disk holds %q", b)
	}
	if fi, err := os.Stat(filepath.Join(srv.Root, "staged", "f")); err != nil || !fi.ModTime().Equal(mt.Truncate(time.Second)) {
		t.Errorf("mtime on disk: %v, %v", fi, err)
	}
	if names, _ := os.ReadDir(filepath.Join(srv.Root, "staged")); len(names) != 1 {
		t.Errorf("folder holds %v, want only f", names)
	}
}

// TestListMLSDTakesThePath: with MLSD a listing is one command on the
// control connection, the path its argument and nothing globbed; a file is
// not a folder even where the server lists it.
func TestListMLSDTakesThePath(t *testing.T) {
	srv := ftpdtest.Start(t)
	tg, sent := recordCommands(t, srv)
	for _, d := range []string{"a [b]*", "a b", "ab"} {
		if err := os.MkdirAll(filepath.Join(srv.Root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(srv.Root, d, "in "+d), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sent()
	es, err := tg.List(t.Context(), "a [b]*")
	if err != nil || len(es) != 1 || es[0].Name != "in a [b]*" {
		t.Fatalf("list = %+v, %v; want the one file in the folder", es, err)
	}
	if got := sent(); got != "EPSV MLSD" {
		t.Errorf("listing sent %q, want EPSV MLSD", got)
	}
	if _, err := tg.List(t.Context(), "ab/in ab"); !errors.Is(err, target.ErrNotDir) {
		t.Errorf("list of a file: %v, want ErrNotDir", err)
	}
}
