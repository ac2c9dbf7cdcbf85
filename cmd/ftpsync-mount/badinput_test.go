package main

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/internal/testutil"
)

// The bad-input catalogue: every command's wrong arguments, flags, URLs,
// mount points, cache and state folders, passwords and hosts, each with the
// one message and the exit status the user gets. docs/guarantees.md lists
// these cases by name; keep the two in step.

// badCase is one bad command line. Args may use the placeholders of
// badEnv.expand.
type badCase struct {
	name string
	args []string
	code int
	want string // in the one error line; may use the placeholders too
	env  map[string]string
}

// badEnv is the world the cases run in: an embedded server, a closed port,
// a silent server, a plain file, a missing path.
type badEnv struct {
	srv     *ftpdtest.Server
	dir     string // a fresh folder per run
	closed  string // 127.0.0.1:port with nothing listening
	silent  string // 127.0.0.1:port that accepts and never answers
	urlOK   string
	replace *strings.Replacer
}

func newBadEnv(t *testing.T) *badEnv {
	t.Helper()
	e := &badEnv{srv: ftpdtest.Start(t), dir: t.TempDir()}
	e.urlOK = e.srv.URL()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.closed = ln.Addr().String()
	ln.Close()
	e.silent = testutil.SilentServer(t)
	for _, d := range []string{"mnt", "local", "nonempty"} {
		if err := os.Mkdir(filepath.Join(e.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"file", "nonempty/x"} {
		if err := os.WriteFile(filepath.Join(e.dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.replace = strings.NewReplacer("$URL", e.urlOK, "$DIR", e.dir, "$CLOSED", e.closed, "$SILENT", e.silent,
		"$USER", e.srv.User)
	return e
}

func (e *badEnv) expand(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = e.replace.Replace(a)
	}
	return out
}

// runBad runs one case and checks the status, the message and that the
// message is one line without the password.
func runBad(t *testing.T, e *badEnv, c badCase) {
	t.Helper()
	t.Setenv("FTPSYNC_PASSWORD", e.srv.Password)
	t.Setenv("HOME", e.dir) // no ~/.netrc of the machine running the tests
	for k, v := range c.env {
		t.Setenv(k, e.replace.Replace(v))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	start := time.Now()
	code, out := runCLI(t, ctx, e.expand(c.args)...)
	if ctx.Err() != nil {
		t.Fatalf("%v: still running after %v", c.args, time.Since(start))
	}
	var errLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "error: ") {
			if errLine != "" {
				t.Errorf("more than one error line:\n%s", out)
			}
			errLine = strings.TrimPrefix(l, "error: ")
		}
	}
	if want := e.replace.Replace(c.want); code != c.code || !strings.Contains(errLine, want) {
		t.Errorf("ftpsync-mount %s: exit %d, message %q; want exit %d and a message with %q\n%s",
			strings.Join(c.args, " "), code, errLine, c.code, want, out)
	}
	if strings.Contains(out, e.srv.Password) {
		t.Errorf("the output holds the password:\n%s", out)
	}
}

func TestBadInputUsage(t *testing.T) {
	e := newBadEnv(t)
	for _, c := range []badCase{
		{"unknown command", []string{"bogus"}, exitUsage, `unknown command "bogus"`, nil},
		{"unknown global flag", []string{"--bogus", "version"}, exitUsage, "unknown flag: --bogus", nil},
		{"bad log level", []string{"--log-level", "loud", "version"}, exitUsage, `--log-level "loud"`, nil},
		{"version extra argument", []string{"version", "extra"}, exitUsage, `unknown command "extra"`, nil},
		{"serve no folder", []string{"serve"}, exitUsage, "serve needs the folder", nil},
		{"serve two folders", []string{"serve", "$DIR", "$DIR"}, exitUsage, "got 2", nil},
		{"serve unknown flag", []string{"serve", "--bogus", "$DIR"}, exitUsage, "unknown flag: --bogus", nil},
		{"mount no arguments", []string{"mount"}, exitUsage, "mount takes 2 argument(s), got 0", nil},
		{"mount one argument", []string{"mount", "$URL"}, exitUsage, "got 1", nil},
		{"mount three arguments", []string{"mount", "$URL", "$DIR/mnt", "extra"}, exitUsage, "got 3", nil},
		{"mount unknown flag", []string{"mount", "--bogus", "$URL", "$DIR/mnt"}, exitUsage, "unknown flag: --bogus", nil},
		{"mount bad size", []string{"mount", "--cache-max-size", "lots", "$URL", "$DIR/mnt"}, exitUsage, "is not a size", nil},
		{"mount bad duration", []string{"mount", "--dir-cache-time", "soon", "$URL", "$DIR/mnt"}, exitUsage, `invalid argument "soon"`, nil},
		{"mount zero connections", []string{"mount", "--connections", "0", "$URL", "$DIR/mnt"}, exitUsage, "must be at least 1", nil},
		{"mount unknown scheme", []string{"mount", "http://u@127.0.0.1/", "$DIR/mnt"}, exitUsage, `unknown scheme "http"`, nil},
		{"mount bad port", []string{"mount", "ftp://u@127.0.0.1:99999/", "$DIR/mnt"}, exitUsage, "port must be a number", nil},
		{"mount no host", []string{"mount", "ftp:///site", "$DIR/mnt"}, exitUsage, "no host", nil},
		{"mount traversal in URL", []string{"mount", "ftp://u@127.0.0.1/a/../b", "$DIR/mnt"}, exitUsage, `invalid name: ".."`, nil},
		{"mount CRLF in URL password", []string{"mount", "ftp://u:a%0D%0ADELE%20x@127.0.0.1/", "$DIR/mnt"}, exitUsage, "control character", nil},
		{"unmount no argument", []string{"unmount"}, exitUsage, "unmount takes 1 argument(s), got 0", nil},
		{"unmount two arguments", []string{"unmount", "$DIR/mnt", "$DIR"}, exitUsage, "got 2", nil},
		{"sync no arguments", []string{"sync"}, exitUsage, "sync needs a local and a remote side", nil},
		{"sync one argument", []string{"sync", "$DIR/local"}, exitUsage, "got 1", nil},
		{"upload three arguments", []string{"upload", "$DIR/local", "$URL", "x"}, exitUsage, "got 3", nil},
		{"download bad resolve", []string{"download", "--resolve", "coin", "$DIR/local", "$URL"}, exitUsage, `--resolve "coin"`, nil},
		{"sync zero parallel", []string{"sync", "--parallel", "0", "$DIR/local", "$URL"}, exitUsage, "--parallel 0", nil},
		{"sync bad URL", []string{"sync", "$DIR/local", "ftp://u@127.0.0.1:0/"}, exitUsage, "port must be a number", nil},
		{"demo extra argument", []string{"demo", "extra"}, exitUsage, "demo takes 0 argument(s)", nil},
		{"demo unknown flag", []string{"demo", "--bogus"}, exitUsage, "unknown flag: --bogus", nil},
		{"help unknown topic", []string{"help", "bogus"}, exitUsage, `help: no command "bogus"`, nil},
		{"mount sftp no host", []string{"mount", "sftp:///site", "$DIR/mnt"}, exitUsage, "URL has no host", nil},
		{"sync sftp bad port", []string{"sync", "$DIR/local", "sftp://u@127.0.0.1:99999/"}, exitUsage, "port must be a number", nil},
		{"upload sftp tilde path", []string{"upload", "$DIR/local", "sftp://u@127.0.0.1/~/site"}, exitUsage, "starts with ~", nil},
		{"unmount unknown flag", []string{"unmount", "--bogus", "$DIR/mnt"}, exitUsage, "unknown flag: --bogus", nil},
		{"status two arguments", []string{"status", "$DIR/mnt", "$DIR"}, exitUsage, "status takes at most 1 argument(s), got 2", nil},
		{"status unknown flag", []string{"status", "--bogus"}, exitUsage, "unknown flag: --bogus", nil},
		{"flush no argument", []string{"flush"}, exitUsage, "flush takes 1 argument(s), got 0", nil},
		{"flush two arguments", []string{"flush", "$DIR/mnt", "$DIR"}, exitUsage, "got 2", nil},
		{"sync unknown flag", []string{"sync", "--bogus", "$DIR/local", "$URL"}, exitUsage, "unknown flag: --bogus", nil},
		{"run two tasks", []string{"run", "a", "b"}, exitUsage, "run takes at most 1 argument(s), got 2", nil},
		{"run unknown flag", []string{"run", "--bogus"}, exitUsage, "unknown flag: --bogus", nil},
		{"completion no shell", []string{"completion"}, exitUsage, "completion takes 1 argument(s), got 0", nil},
		{"completion unknown shell", []string{"completion", "tcsh"}, exitUsage, `unknown shell "tcsh"`, nil},
		{"man no folder", []string{"man"}, exitUsage, "man takes 1 argument(s), got 0", nil},
		{"mount-helper no arguments", []string{"mount-helper"}, exitUsage, "takes REMOTE MOUNTPOINT, got 0", nil},
		{"mount-helper unknown option", []string{"mount-helper", "$URL", "$DIR/mnt", "-x"}, exitUsage, "unknown option -x", nil},
		{"mount-helper -o without value", []string{"mount-helper", "$URL", "$DIR/mnt", "-o"}, exitUsage, "-o needs a value", nil},
		{"mount-helper unknown mount option", []string{"mount-helper", "$URL", "$DIR/mnt", "-o", "rw,cache_sise=1G"}, exitUsage, `unknown mount option "cache_sise=1G"`, nil},
	} {
		t.Run(c.name, func(t *testing.T) { runBad(t, e, c) })
	}
}

func TestBadInputFailures(t *testing.T) {
	e := newBadEnv(t)
	for _, c := range []badCase{
		{"serve missing folder", []string{"serve", "$DIR/missing"}, exitFailure, "no such file or directory", nil},
		{"serve a file", []string{"serve", "$DIR/file"}, exitFailure, "not a directory", nil},
		{"serve bad address", []string{"serve", "--addr", "nohostport", "$DIR"}, exitFailure, "use HOST:PORT", nil},
		{"mount point missing", []string{"mount", "$URL", "$DIR/missing"}, exitFailure, "must be an existing directory", nil},
		{"mount point is a file", []string{"mount", "$URL", "$DIR/file"}, exitFailure, "must be an existing directory", nil},
		{"mount point not empty", []string{"mount", "$URL", "$DIR/nonempty"}, exitFailure,
			"mount point $DIR/nonempty is not empty, and mounting there would hide its files until the unmount: choose an empty folder, or pass --allow-non-empty", nil},
		{"mount cache dir is a file", []string{"mount", "--cache-dir", "$DIR/file", "$URL", "$DIR/mnt"}, exitFailure, "give a folder you can write to with --cache-dir", nil},
		{"mount cache dir under a file", []string{"mount", "--cache-dir", "$DIR/file/cache", "$URL", "$DIR/mnt"}, exitFailure, "create cache directory", nil},
		{"mount wrong password", []string{"mount", "--cache-dir", "$DIR/c1", "$URL", "$DIR/mnt"}, exitFailure, "check the password",
			map[string]string{"FTPSYNC_PASSWORD": "wrong"}},
		{"mount no password", []string{"mount", "--cache-dir", "$DIR/c2", "$URL", "$DIR/mnt"}, exitFailure, "no password was found",
			map[string]string{"FTPSYNC_PASSWORD": ""}},
		{"mount missing password file", []string{"mount", "--password-file", "$DIR/missing", "$URL", "$DIR/mnt"}, exitFailure,
			"password file", map[string]string{"FTPSYNC_PASSWORD": ""}},
		{"mount refused connection", []string{"mount", "--cache-dir", "$DIR/c3", "ftp://$USER@$CLOSED/", "$DIR/mnt"}, exitFailure, "connection refused", nil},
		{"mount silent host", []string{"mount", "--timeout", "300ms", "--cache-dir", "$DIR/c4", "ftp://$USER@$SILENT/", "$DIR/mnt"}, exitFailure, "no answer within", nil},
		{"mount missing remote folder", []string{"mount", "--cache-dir", "$DIR/c5", "$URL" + "missing", "$DIR/mnt"}, exitFailure, "does not exist", nil},
		{"unmount not a mount point", []string{"unmount", "$DIR/mnt"}, exitFailure, "is not an ftpsync-mount mount point", nil},
		{"unmount someone else's mount", []string{"unmount", "/proc"}, exitFailure, "is not an ftpsync-mount mount point", nil},
		{"unmount missing path", []string{"unmount", "$DIR/missing"}, exitFailure, "is not an ftpsync-mount mount point", nil},
		{"status not a mount point", []string{"status", "$DIR/mnt"}, exitFailure, "$DIR/mnt is not an ftpsync-mount mount point", nil},
		{"status missing path", []string{"status", "$DIR/missing"}, exitFailure, "is not an ftpsync-mount mount point", nil},
		{"status someone else's mount", []string{"status", "/proc"}, exitFailure, "/proc is not an ftpsync-mount mount point", nil},
		{"flush not a mount point", []string{"flush", "$DIR/mnt"}, exitFailure, "$DIR/mnt is not an ftpsync-mount mount point", nil},
		{"flush someone else's mount", []string{"flush", "/proc"}, exitFailure, "/proc is not an ftpsync-mount mount point", nil},
		{"man folder under a file", []string{"man", "$DIR/file/man"}, exitFailure, "not a directory", nil},
		{"sync sftp refused connection", []string{"sync", "--state-dir", "$DIR/s5", "$DIR/local", "sftp://$USER@$CLOSED/"}, exitFailure, "connection refused", nil},
		{"mount sftp silent host", []string{"mount", "--timeout", "300ms", "--cache-dir", "$DIR/c6", "sftp://$USER@$SILENT/", "$DIR/mnt"}, exitFailure, "within 300ms", nil},
		{"download sftp missing identity file", []string{"download", "--identity", "$DIR/missing", "--state-dir", "$DIR/s6", "$DIR/local", "sftp://$USER@$CLOSED/"}, exitFailure, "$DIR/missing", nil},
		{"sync missing local folder", []string{"sync", "$DIR/missing", "$URL"}, exitFailure, "does not exist", nil},
		{"upload local side is a file", []string{"upload", "$DIR/file", "$URL"}, exitFailure, "is not a folder", nil},
		{"sync state dir under a file", []string{"sync", "--state-dir", "$DIR/file/state", "$DIR/local", "$URL"}, exitFailure, "state folder", nil},
		{"download wrong password", []string{"download", "--state-dir", "$DIR/s1", "$DIR/local", "$URL"}, exitFailure, "check the password",
			map[string]string{"FTPSYNC_PASSWORD": "wrong"}},
		{"upload refused connection", []string{"upload", "--state-dir", "$DIR/s2", "$DIR/local", "ftp://$USER@$CLOSED/"}, exitFailure, "connection refused", nil},
		{"sync silent host", []string{"sync", "--timeout", "300ms", "--state-dir", "$DIR/s3", "$DIR/local", "ftp://$USER@$SILENT/"}, exitFailure, "no answer within", nil},
		{"download missing remote folder", []string{"download", "--state-dir", "$DIR/s4", "$DIR/local", "$URL" + "missing"}, exitFailure, "does not exist", nil},
	} {
		t.Run(c.name, func(t *testing.T) { runBad(t, e, c) })
	}
}

// TestBadInputCacheInUse: a mount of a cache directory another process
// holds is refused. The holder here is the cache itself, opened as a
// running mount opens it (TestMountDaemonAndUnmount does the same with two
// real mounts).
func TestBadInputCacheInUse(t *testing.T) {
	e := newBadEnv(t)
	c, err := cache.Open(cache.Options{Dir: filepath.Join(e.dir, "cache"), Log: quietGlobal().log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	runBad(t, e, badCase{"cache dir in use", []string{"mount", "--cache-dir", "$DIR/cache", "$URL", "$DIR/mnt"}, exitFailure,
		"cache directory is in use by another ftpsync-mount process", nil})
}

// TestBadInputMountedMountpoint: a mount point where something is mounted
// already is refused, ours even with --allow-non-empty.
func TestBadInputMountedMountpoint(t *testing.T) {
	e := newBadEnv(t)
	t.Setenv("FTPSYNC_PASSWORD", e.srv.Password)
	ours := filepath.Join(e.dir, "ours")
	if err := os.Mkdir(ours, 0o755); err != nil {
		t.Fatal(err)
	}
	mf := &mountFlags{cacheDir: filepath.Join(e.dir, "cache-ours"), cacheMaxSize: "0", dirCacheTime: time.Minute, readOnly: true}
	mf.target.connections, mf.target.timeout = 1, 5*time.Second
	stop := mountInProcess(t, mf, e.urlOK, ours)
	defer stop()
	other := tmpfsDir(t, "1m") // someone else's mount, empty
	for _, c := range []badCase{
		{"mount on our mount", []string{"mount", "--cache-dir", "$DIR/c1", "$URL", "$DIR/ours"}, exitFailure,
			"mount point $DIR/ours is already an ftpsync-mount mount of", nil},
		{"mount --allow-non-empty on our mount", []string{"mount", "--allow-non-empty", "--cache-dir", "$DIR/c2", "$URL", "$DIR/ours"}, exitFailure,
			"unmount it first with 'ftpsync-mount unmount $DIR/ours', or choose another folder", nil},
		{"mount on someone else's mount", []string{"mount", "--cache-dir", "$DIR/c3", "$URL", other}, exitFailure,
			"mount point " + other + " is already a mount point (tmpfs tmpfs) and mounting there would hide it: unmount it first, or choose another folder (--allow-non-empty", nil},
	} {
		t.Run(c.name, func(t *testing.T) { runBad(t, e, c) })
	}
	if ok, err := isOurMount(other); ok || err != nil {
		t.Errorf("isOurMount(%s) = %v, %v after the refusal", other, ok, err)
	}
}

// TestBadInputUnwritableFolders puts the cache and the state folder on a
// read-only filesystem, which refuses even root.
func TestBadInputUnwritableFolders(t *testing.T) {
	e := newBadEnv(t)
	ro := tmpfsDir(t, "1m")
	if err := os.Mkdir(filepath.Join(ro, "made"), 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "remount,ro", ro).CombinedOutput(); err != nil {
		t.Fatalf("remount read-only: %v: %s", err, out)
	}
	for _, c := range []badCase{
		{"mount cache dir on a read-only filesystem", []string{"mount", "--cache-dir", ro + "/cache", "$URL", "$DIR/mnt"}, exitFailure,
			"read-only file system: give a folder you can write to with --cache-dir", nil},
		{"mount existing cache dir on a read-only filesystem", []string{"mount", "--cache-dir", ro + "/made", "$URL", "$DIR/mnt"}, exitFailure,
			"read-only file system: give a folder you can write to with --cache-dir", nil},
		{"sync state dir on a read-only filesystem", []string{"sync", "--state-dir", ro + "/state", "$DIR/local", "$URL"}, exitFailure,
			"read-only file system: give a folder you can write to with --state-dir", nil},
	} {
		t.Run(c.name, func(t *testing.T) { runBad(t, e, c) })
	}
	// A dry run writes nothing, so an empty state folder it cannot write
	// to is no error: there is no state yet.
	t.Setenv("FTPSYNC_PASSWORD", e.srv.Password)
	code, out := runCLI(t, t.Context(), "sync", "--dry-run", "--state-dir", ro+"/made", e.dir+"/local", e.urlOK)
	if code != exitOK {
		t.Errorf("dry run with an empty read-only state folder: exit %d\n%s", code, out)
	}
}

// TestMountAllowNonEmpty mounts over a folder with a file in it and over
// someone else's mount: the server's files show, the folder's own are
// hidden until the unmount and then back, untouched.
func TestMountAllowNonEmpty(t *testing.T) {
	srv := ftpdtest.Start(t)
	t.Setenv("FTPSYNC_PASSWORD", srv.Password)
	if err := os.WriteFile(filepath.Join(srv.Root, "remote.txt"), []byte("from the server"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, under := range []struct{ name, dir string }{{"folder", t.TempDir()}, {"tmpfs", tmpfsDir(t, "1m")}} {
		t.Run(under.name, func(t *testing.T) {
			hidden := filepath.Join(under.dir, "hidden.txt")
			if err := os.WriteFile(hidden, []byte("mine"), 0o644); err != nil {
				t.Fatal(err)
			}
			mf := &mountFlags{cacheDir: t.TempDir(), cacheMaxSize: "0", dirCacheTime: time.Minute, nonEmpty: true}
			mf.target.connections, mf.target.timeout = 2, 5*time.Second
			stop := mountInProcess(t, mf, srv.URL(), under.dir)
			if got, err := os.ReadFile(filepath.Join(under.dir, "remote.txt")); err != nil || string(got) != "from the server" {
				t.Errorf("read through the mount: %q, %v", got, err)
			}
			if _, err := os.Stat(hidden); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the folder's own file shows through the mount: %v", err)
			}
			stop()
			if got, err := os.ReadFile(hidden); err != nil || string(got) != "mine" {
				t.Errorf("after the unmount the folder's file is %q, %v", got, err)
			}
			if _, err := os.Stat(filepath.Join(srv.Root, "hidden.txt")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the hidden file reached the server: %v", err)
			}
		})
	}
}
