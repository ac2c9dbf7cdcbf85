package fakeftp_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/internal/fakeftp"
	syncpkg "github.com/ftpsync-mount/ftpsync-mount/sync"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
)

// replyOn answers cmd with reply and leaves every other command to the
// defaults.
func replyOn(cmd, reply string) func(string, string) string {
	return func(c, _ string) string {
		if c == cmd {
			return reply
		}
		return ""
	}
}

// TestRefusalsAtOddMoments: 530, 550 and 421 where a client may not
// expect them each end in a clear error within the timeout.
func TestRefusalsAtOddMoments(t *testing.T) {
	files := map[string][]byte{"/f.txt": []byte("content")}
	one := listing("type=file;size=7;modify=20250102030405; f.txt\r\n")
	for _, tc := range []struct {
		name  string
		reply func(string, string) string
		greet string
		op    string // what to do after connecting: list, read, write
		want  string // in the error
		kind  error  // the error matches it, if set
	}{
		{name: "421 greeting", greet: "421 too many users", want: "refuses connections", kind: target.ErrTemporary},
		// jlaffaye/ftp drops the code of a refused USER: the server's
		// words are all the message can give (docs/guarantees.md, gaps).
		{name: "530 after USER", reply: replyOn("USER", "530 no such user"), want: "no such user"},
		{name: "530 after PASS", reply: replyOn("PASS", "530 login incorrect"), want: "check the password", kind: target.ErrAuth},
		{name: "421 after PASS", reply: replyOn("PASS", "421 shutting down"), want: "refuses connections", kind: target.ErrTemporary},
		// MLST says the root is a folder, so the refusal is a permission.
		{name: "550 root", reply: replyOn("CWD", "550 no such folder"), want: "cannot enter remote folder /"},
		{name: "421 on FEAT", reply: replyOn("FEAT", "421 going away"), want: "closed the connection", kind: target.ErrTemporary},
		{name: "530 on MLSD", reply: replyOn("MLSD", "530 not logged in"), op: "list", want: "530"},
		{name: "421 on MLSD", reply: replyOn("MLSD", "421 timeout"), op: "list", want: "421", kind: target.ErrTemporary},
		// jlaffaye/ftp falls back to PASV on the closed connection.
		{name: "421 on EPSV", reply: replyOn("EPSV", "421 no more data ports"), op: "list", want: "EOF", kind: target.ErrTemporary},
		{name: "550 on RETR", reply: replyOn("RETR", "550 permission denied"), op: "read", want: "550"},
		{name: "421 on RETR", reply: replyOn("RETR", "421 bye"), op: "read", want: "421", kind: target.ErrTemporary},
		{name: "550 on STOR", reply: replyOn("STOR", "550 quota exceeded"), op: "write", want: "550"},
		{name: "421 on RNTO", reply: replyOn("RNTO", "421 bye"), op: "write", want: "421", kind: target.ErrTemporary},
		{name: "530 on RNFR", reply: replyOn("RNFR", "530 session expired"), op: "write", want: "530"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeftp.Start(t, fakeftp.Options{Greeting: tc.greet, Reply: tc.reply, Listing: one, Files: files})
			start := time.Now()
			tg, _, err := connect(t, srv, time.Second)
			if err == nil {
				switch tc.op {
				case "list":
					_, err = tg.List(t.Context(), "")
				case "read":
					var r io.ReadCloser
					if r, err = tg.Open(t.Context(), "f.txt", 0, -1); err == nil {
						_, err = io.ReadAll(r)
						if cerr := r.Close(); err == nil {
							err = cerr
						}
					}
				case "write":
					_, err = tg.Write(t.Context(), "new.txt", strings.NewReader("data"), target.WriteOptions{Size: 4})
				default:
					t.Fatal("connected; want the connection refused")
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.kind != nil && !errors.Is(err, tc.kind)) {
				t.Errorf("%s: %v; want an error with %q (kind %v)", tc.name, err, tc.want, tc.kind)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("took %v", took)
			}
			if _, ok := srv.Stored()["/new.txt"]; ok {
				t.Error("a failed write left new.txt under its final name")
			}
		})
	}
}

// downloadEnv runs one-shot downloads from a fake server into dst, a folder
// inside its own parent so that anything written beside it shows.
type downloadEnv struct {
	t        *testing.T
	parent   string
	dst      string
	stateDir string
}

func newDownloadEnv(t *testing.T) *downloadEnv {
	parent := t.TempDir()
	e := &downloadEnv{t: t, parent: parent, dst: filepath.Join(parent, "dst"), stateDir: t.TempDir()}
	if err := os.Mkdir(e.dst, 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *downloadEnv) run(srv *fakeftp.Server) (syncpkg.Summary, error) {
	e.t.Helper()
	tg, _ := mustConnect(e.t, srv)
	log := logrus.New()
	log.SetOutput(io.Discard)
	lt, err := local.New(e.dst, local.Options{Log: log})
	if err != nil {
		e.t.Fatal(err)
	}
	defer lt.Close()
	st, err := syncpkg.OpenStore(e.stateDir, lt.ID(), tg.ID(), log)
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	return syncpkg.Run(e.t.Context(), lt, tg, syncpkg.Options{Mode: syncpkg.ModeDownload, Parallel: 2, Store: st, Log: log})
}

// files lists every path under parent, relative to it.
func (e *downloadEnv) files() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(e.parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == e.parent {
			return err
		}
		rel, _ := filepath.Rel(e.parent, p)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// TestHostileNamesDownload: a one-shot download from a server listing
// traversal and unsafe names writes the safe files inside the destination
// and nothing anywhere else.
func TestHostileNamesDownload(t *testing.T) {
	for _, tc := range []struct {
		name    string
		feat    []string
		listing string
	}{
		{"MLSD", nil, hostileMLSD},
		{"LIST", noMLSD, hostileLIST},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string][]byte{"/ok.txt": []byte("ok"), "/sub/in.txt": []byte("in")}
			for _, bad := range []string{"/x", "/../x", "/a/b", "/etc/passwd", "/../../etc"} {
				files[bad] = []byte("must not be written")
			}
			srv := fakeftp.Start(t, fakeftp.Options{Feat: tc.feat, Files: files, Listing: func(cmd, dir string) io.Reader {
				switch dir {
				case "/":
					return strings.NewReader(tc.listing)
				case "/sub":
					if tc.feat == nil {
						return strings.NewReader("type=file;size=2;modify=20250102030405; in.txt\r\ntype=dir; ..\r\n")
					}
					return strings.NewReader("-rw-r--r--    1 0        0               2 Jan 15 10:30 in.txt\r\n")
				}
				return strings.NewReader("")
			}})
			e := newDownloadEnv(t)
			sum, err := e.run(srv)
			got := e.files()
			want := map[string]string{"dst/": "", "dst/ok.txt": "ok", "dst/sub/": "", "dst/sub/in.txt": "in"}
			if tc.feat == nil {
				// The phantom "lf" of an MLSD name holding LF fails to
				// download (the server has no such file): one failed path.
				if !errors.Is(err, syncpkg.ErrRunFailed) || sum.Errors != 1 {
					t.Errorf("download: %+v, %v; want the phantom lf to fail alone", sum, err)
				}
			} else if err != nil {
				t.Errorf("download: %+v, %v", sum, err)
			}
			for p, c := range got {
				if w, ok := want[p]; !ok || w != c {
					t.Errorf("found %s (%q) in the destination's parent", p, c)
				}
			}
			for p := range want {
				if _, ok := got[p]; !ok {
					t.Errorf("%s missing", p)
				}
			}
			for _, c := range srv.Commands() {
				if strings.Contains(c, "..") || strings.Contains(c, "etc") {
					t.Errorf("the server was sent %q", c)
				}
			}
		})
	}
}

// TestSizeDisagrees: a file whose transfer is shorter or longer than its
// listed size fails to download and leaves nothing under its name.
func TestSizeDisagrees(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"shorter", bytes.Repeat([]byte("s"), 50)},
		{"longer", bytes.Repeat([]byte("l"), 150)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeftp.Start(t, fakeftp.Options{
				Listing: listing("type=file;size=100;modify=20250102030405; f.bin\r\n"),
				Files:   map[string][]byte{"/f.bin": tc.data},
				Sizes:   map[string]int64{"/f.bin": 100},
			})
			e := newDownloadEnv(t)
			sum, err := e.run(srv)
			if !errors.Is(err, syncpkg.ErrRunFailed) || sum.FilesDown != 0 {
				t.Errorf("download: %+v, %v; want the file to fail", sum, err)
			}
			if got := e.files(); len(got) != 1 {
				t.Errorf("destination holds %v; want it empty", got)
			}
		})
	}
}
