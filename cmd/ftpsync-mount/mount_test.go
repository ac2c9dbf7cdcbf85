package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "512K": 512 << 10, "10G": 10 << 30, "1.5g": 3 << 29, "2MiB": 2 << 20, "1T": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ten", "-1G", "5X"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestCacheName(t *testing.T) {
	a, b := cacheName("ftp://alice@host:21/a b"), cacheName("ftp://alice@host:21/a_b")
	if a == b || strings.ContainsAny(a, "/ :@") {
		t.Fatalf("cache names %q and %q", a, b)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	if got := unescapeMountinfo(`/tmp/a\040b\134c`); got != `/tmp/a b\c` {
		t.Fatalf("got %q", got)
	}
}

func quietGlobal() *globalOptions {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
	}
	return &globalOptions{log: l}
}

// mountInProcess runs runMount until the returned stop is called, which
// unmounts as a signal would and checks the outcome.
func mountInProcess(t *testing.T, mf *mountFlags, remote, mnt string) (stop func()) {
	t.Helper()
	return mountInProcessWith(t, quietGlobal(), mf, remote, mnt)
}

// mountInProcessWith is mountInProcess with the caller's options (a logger
// the test reads, say).
func mountInProcessWith(t *testing.T, g *globalOptions, mf *mountFlags, remote, mnt string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runMount(ctx, g, mf, remote, mnt, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("mount failed: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("mount not ready after 10s")
	}
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("unmount: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("unmount did not finish within 10s")
		}
	}
}

// TestMountOfflineWithWarmCache mounts a cache while its server is down:
// what was cached is there, the rest fails with EIO.
func TestMountOfflineWithWarmCache(t *testing.T) {
	srv := ftpdtest.Start(t)
	t.Setenv("FTPSYNC_PASSWORD", srv.Password)
	os.WriteFile(filepath.Join(srv.Root, "read"), []byte("cached"), 0o644)
	os.WriteFile(filepath.Join(srv.Root, "unread"), []byte("not cached"), 0o644)
	mnt := t.TempDir()
	mf := &mountFlags{cacheDir: t.TempDir(), cacheMaxSize: "0", dirCacheTime: time.Minute}
	mf.target.connections, mf.target.timeout = 2, 2*time.Second

	stop := mountInProcess(t, mf, srv.URL(), mnt)
	if got, err := os.ReadFile(filepath.Join(mnt, "read")); err != nil || string(got) != "cached" {
		t.Fatalf("read: %q, %v", got, err)
	}
	stop()
	srv.Close()

	stop = mountInProcess(t, mf, srv.URL(), mnt)
	defer stop()
	if got, err := os.ReadFile(filepath.Join(mnt, "read")); err != nil || string(got) != "cached" {
		t.Fatalf("cached read with the server down: %q, %v", got, err)
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "unread")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("uncached read with the server down: %v, want EIO", err)
	}
}

// TestMountForeground mounts the embedded server in-process, reads through
// the mount, and unmounts by ending the context as a signal would.
func TestMountForeground(t *testing.T) {
	srv := ftpdtest.Start(t)
	t.Setenv("FTPSYNC_PASSWORD", srv.Password)
	os.MkdirAll(filepath.Join(srv.Root, "dir with space"), 0o755)
	os.WriteFile(filepath.Join(srv.Root, "dir with space", "ünï.txt"), []byte("through FTP"), 0o644)
	mnt := t.TempDir()
	mf := &mountFlags{cacheDir: t.TempDir(), cacheMaxSize: "1G", dirCacheTime: time.Minute}
	mf.target.connections, mf.target.timeout = 2, 5*time.Second

	stop := mountInProcess(t, mf, srv.URL(), mnt)
	got, err := os.ReadFile(filepath.Join(mnt, "dir with space", "ünï.txt"))
	if err != nil || string(got) != "through FTP" {
		t.Fatalf("read through the mount: %q, %v", got, err)
	}
	if ok, err := isOurMount(mnt); !ok || err != nil {
		t.Fatalf("isOurMount = %v, %v", ok, err)
	}
	stop()
	if ok, _ := isOurMount(mnt); ok {
		t.Fatal("still mounted")
	}
}

// buildBinary builds the command for tests that run it as a user would.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ftpsync-mount")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// TestMountForegroundSIGTERM runs the mount in the foreground, waits for
// the line that says it is mounted, and stops it with SIGTERM.
func TestMountForegroundSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	srv := ftpdtest.Start(t)
	os.WriteFile(filepath.Join(srv.Root, "f"), []byte("fg"), 0o644)
	mnt := t.TempDir()
	cmd := exec.Command(bin, "mount", "--cache-dir", t.TempDir(), srv.URL(), mnt)
	cmd.Env = append(os.Environ(), "FTPSYNC_PASSWORD="+srv.Password)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	mounted := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		found := false
		for sc.Scan() {
			if !found && strings.Contains(sc.Text(), "mounted ") {
				found = true
				mounted <- true
			}
		}
		if !found {
			mounted <- false
		}
	}()
	select {
	case ok := <-mounted:
		if !ok {
			t.Fatal("mount exited without mounting")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no mounted line after 10s")
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(got) != "fg" {
		t.Fatalf("read: %q, %v", got, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mount after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mount still running 10s after SIGTERM")
	}
	if ok, _ := isOurMount(mnt); ok {
		t.Fatal("still mounted after SIGTERM")
	}
}

// TestMountDaemonAndUnmount runs the real binary as a user would.
func TestMountDaemonAndUnmount(t *testing.T) {
	bin := buildBinary(t)
	srv := ftpdtest.Start(t)
	os.WriteFile(filepath.Join(srv.Root, "f"), []byte("daemon"), 0o644)
	mnt, cacheDir := t.TempDir(), t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "FTPSYNC_PASSWORD="+srv.Password)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	// A mount that cannot become ready makes --daemon fail with the reason.
	out, err := run("mount", "--daemon", "--cache-dir", t.TempDir(), srv.URL(), filepath.Join(mnt, "missing"))
	if err == nil || !strings.Contains(out, "must be an existing directory") {
		t.Fatalf("daemon mount on a missing directory: %v\n%s", err, out)
	}
	// The background mount refuses as the foreground one does, with the
	// same exit status: 2 for a bad flag (checked before the fork), 1 for a
	// mount point that is not empty (found by the child).
	nonEmpty := t.TempDir()
	os.WriteFile(filepath.Join(nonEmpty, "x"), []byte("x"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--cache-max-size", "lots", srv.URL(), mnt}, exitUsage, "is not a size"},
		{[]string{"--poll-interval=-1s", srv.URL(), mnt}, exitUsage, "--poll-interval must not be negative"},
		{[]string{"--resolve=ask", srv.URL(), mnt}, exitUsage, "a mount settles conflicts without asking"},
		{[]string{srv.URL(), nonEmpty}, exitFailure, "mount point " + nonEmpty + " is not empty"},
	} {
		out, err := run(append([]string{"mount", "--daemon", "--cache-dir", t.TempDir()}, c.args...)...)
		if code := exitCodeOf(err); code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("mount --daemon %s: exit %d, want %d and %q\n%s", strings.Join(c.args, " "), code, c.code, c.want, out)
		}
	}
	out, err = run("mount", "--daemon", "--cache-dir", cacheDir, srv.URL(), mnt)
	if err != nil {
		t.Fatalf("mount --daemon: %v\n%s", err, out)
	}
	logPath := filepath.Join(cacheDir, "mount.log")
	if !strings.Contains(out, "log: "+logPath) {
		t.Fatalf("mount --daemon does not say where it logs:\n%s", out)
	}
	if data, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(data), "mounted ") {
		t.Fatalf("daemon log %s: %q, %v", logPath, data, err)
	}
	t.Cleanup(func() { run("unmount", mnt) })
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(got) != "daemon" {
		t.Fatalf("read: %q, %v", got, err)
	}
	// Everything in the cache is private to the user.
	filepath.WalkDir(cacheDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fi, err := d.Info(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no access for group and others", p, fi.Mode().Perm())
		}
		return nil
	})
	// A second mount of the same cache fails, and says why.
	out, err = run("mount", "--daemon", "--cache-dir", cacheDir, srv.URL(), t.TempDir())
	if err == nil || !strings.Contains(out, "in use by another ftpsync-mount process") {
		t.Fatalf("second mount of the cache: %v\n%s", err, out)
	}
	// So does a second mount on the same mount point.
	out, err = run("mount", "--daemon", "--cache-dir", t.TempDir(), srv.URL(), mnt)
	if exitCodeOf(err) != exitFailure || !strings.Contains(out, "is already an ftpsync-mount mount of") {
		t.Fatalf("second mount on the mount point: %v\n%s", err, out)
	}
	if out, err := run("unmount", mnt); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	if ok, _ := isOurMount(mnt); ok {
		t.Fatal("still mounted after unmount")
	}
	if out, err := run("unmount", mnt); err == nil || !strings.Contains(out, "not an ftpsync-mount mount point") {
		t.Fatalf("unmount of a plain directory: %v\n%s", err, out)
	}

	// A mount whose process was killed stays in the table, dead: a new
	// mount there is refused with what to do, and doing it frees the
	// mount point.
	out, err = run("mount", "--daemon", "--cache-dir", cacheDir, srv.URL(), mnt)
	m := regexp.MustCompile(`\(pid (\d+)\)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("mount --daemon: %v\n%s", err, out)
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitExit(pid, 10*time.Second) {
		t.Fatalf("the mount process %d outlived SIGKILL", pid)
	}
	out, err = run("mount", "--daemon", "--cache-dir", cacheDir, srv.URL(), mnt)
	if exitCodeOf(err) != exitFailure || !strings.Contains(out, "its mount process has ended; detach it with 'ftpsync-mount unmount "+mnt+"'") {
		t.Fatalf("mount on a dead mount: %v\n%s", err, out)
	}
	if out, err := run("unmount", mnt); err != nil {
		t.Fatalf("unmount of the dead mount: %v\n%s", err, out)
	}
	if ok, _ := isOurMount(mnt); ok {
		t.Fatal("the dead mount is still there after unmount")
	}
}

// exitCodeOf is the exit status of a finished command.
func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
