package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/cache"

	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// pullPoll is the poll interval of the pull tests: changes made on the
// server must show through the mount within it plus a second.
const pullPoll = time.Second

// eventually retries check until it passes or the deadline passes, and
// reports how long it took.
func eventually(t *testing.T, deadline time.Time, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %s", what, err, time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantContent(p, want string) error {
	got, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("%s reads %q, want %q", filepath.Base(p), got, want)
	}
	return nil
}

func wantGone(p string) error {
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %v, want it gone", filepath.Base(p), err)
	}
	return nil
}

// pullServer is one server the pull tests run against: a mount of it and
// a function that makes a file on its disk owned by the server's user.
type pullServer struct {
	name  string
	mount func(t *testing.T, o mountOpts) *testMount
	own   func(t *testing.T, dir string)
}

func pullServers() []pullServer {
	noop := func(*testing.T, string) {}
	real := func(env string) func(t *testing.T, o mountOpts) *testMount {
		return func(t *testing.T, o mountOpts) *testMount {
			v := targettest.NeedEnv(t, env+"_URL", env+"_ROOT", "FTPSYNC_TEST_PASSWORD")
			sub := fmt.Sprintf("fs-pull-%d", time.Now().UnixNano())
			dir := filepath.Join(v[1], sub)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			chownTree(t, dir)
			t.Cleanup(func() { os.RemoveAll(dir) })
			log := logrus.New()
			log.SetOutput(io.Discard)
			tg, err := ftp.New(t.Context(), ftp.Options{URL: v[0] + sub + "/", Password: v[2], Timeout: 10 * time.Second, Log: log})
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			o.target = tg
			m := mount(t, o)
			m.serverDir = dir
			return m
		}
	}
	return []pullServer{
		{"embedded", mountWritableFTPWith, noop},
		{"proftpd", real("FTPSYNC_TEST_PROFTPD"), chownTree},
		{"vsftpd", real("FTPSYNC_TEST_VSFTPD"), chownTree},
	}
}

// Changes made on the server's disk by someone else show through the mount
// within --poll-interval plus a second: an edit, an append, a same-size
// edit in the same minute (a LIST-only server's listing cannot tell it),
// a delete, a rename, a new folder, and a folder deleted while a file in
// it has an edit here not uploaded yet (it stays, with that file only, and
// the upload makes the folder again).
func TestServerChangesShowThroughMount(t *testing.T) {
	for _, srv := range pullServers() {
		t.Run(srv.name, func(t *testing.T) {
			m := srv.mount(t, mountOpts{pollInterval: pullPoll, writeBack: time.Hour})
			base := time.Now().Truncate(time.Minute)
			if time.Since(base) > 50*time.Second {
				// Keep the same-size edit inside the minute of its original.
				time.Sleep(time.Until(base.Add(time.Minute + time.Second)))
				base = time.Now().Truncate(time.Minute)
			}
			old := base.Add(-time.Hour)
			writeTreeAt(t, m.serverDir, map[string][]byte{
				"edit.txt": []byte("v1"), "app.log": []byte("line 1\n"), "del.txt": []byte("d"),
				"ren.txt": []byte("r"), "gone/a.txt": []byte("a"), "gone/b.txt": []byte("b"),
			}, old)
			writeTreeAt(t, m.serverDir, map[string][]byte{"same.txt": []byte("aaaa")}, base)
			srv.own(t, m.serverDir)
			// Read everything once, so that the kernel and the cache hold it.
			for _, f := range []string{"edit.txt", "app.log", "same.txt", "del.txt", "ren.txt", "gone/a.txt", "gone/b.txt"} {
				if _, err := os.ReadFile(filepath.Join(m.dir, f)); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(m.dir, "gone/b.txt"), []byte("edited here"), 0o644); err != nil {
				t.Fatal(err)
			}

			s := m.serverDir
			os.WriteFile(filepath.Join(s, "edit.txt"), []byte("v2 from the server"), 0o644)
			f, err := os.OpenFile(filepath.Join(s, "app.log"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString("line 2\n")
			f.Close()
			os.WriteFile(filepath.Join(s, "same.txt"), []byte("bbbb"), 0o644)
			os.Chtimes(filepath.Join(s, "same.txt"), base.Add(time.Second), base.Add(time.Second))
			os.Remove(filepath.Join(s, "del.txt"))
			os.Rename(filepath.Join(s, "ren.txt"), filepath.Join(s, "renamed.txt"))
			writeTree(t, filepath.Join(s, "newdir"), map[string][]byte{"inner.txt": []byte("new")})
			os.RemoveAll(filepath.Join(s, "gone"))
			srv.own(t, s)
			changed := time.Now()

			d := m.dir
			took := eventually(t, changed.Add(pullPoll+time.Second), "server changes through the mount", func() error {
				for _, err := range []error{
					wantContent(filepath.Join(d, "edit.txt"), "v2 from the server"),
					wantContent(filepath.Join(d, "app.log"), "line 1\nline 2\n"),
					wantContent(filepath.Join(d, "same.txt"), "bbbb"),
					wantGone(filepath.Join(d, "del.txt")),
					wantGone(filepath.Join(d, "ren.txt")),
					wantContent(filepath.Join(d, "renamed.txt"), "r"),
					wantContent(filepath.Join(d, "newdir/inner.txt"), "new"),
					wantGone(filepath.Join(d, "gone/a.txt")),
					wantContent(filepath.Join(d, "gone/b.txt"), "edited here"),
				} {
					if err != nil {
						return err
					}
				}
				return nil
			})
			t.Logf("%s: every change showed %s after it was made", srv.name, took.Round(time.Millisecond))
			m.flush(t)
			if err := wantContent(filepath.Join(s, "gone/b.txt"), "edited here"); err != nil {
				t.Errorf("on the server after the flush: %v", err)
			}
			if err := wantGone(filepath.Join(s, "gone/a.txt")); err != nil {
				t.Errorf("on the server after the flush: %v", err)
			}
		})
	}
}

// user.ftpsync.state follows a file: pending while its upload waits, clean
// once uploaded, conflict while a conflict copy of it is unresolved.
func TestSyncStateXattr(t *testing.T) {
	m := mount(t, mountOpts{writeBack: time.Hour})
	state := func(name string) string {
		t.Helper()
		buf := make([]byte, 64)
		n, err := syscall.Getxattr(filepath.Join(m.dir, name), "user.ftpsync.state", buf)
		if err != nil {
			t.Fatalf("getxattr %s: %v", name, err)
		}
		return string(buf[:n])
	}
	p := filepath.Join(m.dir, "doc.txt")
	if err := os.WriteFile(p, []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := state("doc.txt"); got != "pending" {
		t.Errorf("state after a write: %q, want pending", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := state("doc.txt"); got != "clean" {
		t.Errorf("state after the upload: %q, want clean", got)
	}
	// The server's copy changes, then the local one: a conflict.
	writeTreeAt(t, m.serverDir, map[string][]byte{"doc.txt": []byte("server's")}, time.Now().Add(-time.Minute))
	if err := os.WriteFile(p, []byte("local v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.wb.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	var copyName string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "doc.conflict-") {
			copyName = e.Name()
		}
	}
	if copyName == "" {
		t.Fatalf("no conflict copy in %v", ents)
	}
	if got := state(copyName); got != "conflict" {
		t.Errorf("state of the conflict copy: %q, want conflict", got)
	}
	if got := state("doc.txt"); got != "conflict" {
		t.Errorf("state of the file in conflict: %q, want conflict", got)
	}
	if err := wantContent(p, "server's"); err != nil {
		t.Error(err)
	}
}

// A file held open (tail -f) reads what the server appended once the mount
// saw the change: the kernel drops its cached pages and size.
func TestOpenFileSeesServerAppend(t *testing.T) {
	m := mount(t, mountOpts{})
	writeTreeAt(t, m.serverDir, map[string][]byte{"app.log": []byte("one\n")}, time.Now().Add(-time.Hour))
	f, err := os.Open(filepath.Join(m.dir, "app.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if b, err := io.ReadAll(f); err != nil || string(b) != "one\n" {
		t.Fatalf("first read: %q, %v", b, err)
	}
	lf, err := os.OpenFile(filepath.Join(m.serverDir, "app.log"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	lf.WriteString("two\n")
	lf.Close()
	if _, err := m.lister.RefreshTree(t.Context(), cache.RootIno, false); err != nil {
		t.Fatal(err)
	}
	m.notifier.Sync(5 * time.Second)
	st, err := f.Stat()
	if err != nil || st.Size() != int64(len("one\ntwo\n")) {
		t.Fatalf("fstat of the open file after the server appended: %v, %v", st.Size(), err)
	}
	if b, err := io.ReadAll(f); err != nil || string(b) != "two\n" {
		t.Fatalf("reading on from the old end: %q, %v", b, err)
	}
}
