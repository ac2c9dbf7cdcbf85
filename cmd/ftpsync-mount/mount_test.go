package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- runMount(ctx, quietGlobal(), mf, srv.URL(), mnt, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("mount failed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("mount not ready after 10s")
	}
	got, err := os.ReadFile(filepath.Join(mnt, "dir with space", "ünï.txt"))
	if err != nil || string(got) != "through FTP" {
		t.Fatalf("read through the mount: %q, %v", got, err)
	}
	if ok, err := isOurMount(mnt); !ok || err != nil {
		t.Fatalf("isOurMount = %v, %v", ok, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("unmount: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("unmount did not finish within 10s")
	}
	if ok, _ := isOurMount(mnt); ok {
		t.Fatal("still mounted")
	}
}

// TestMountDaemonAndUnmount runs the real binary as a user would.
func TestMountDaemonAndUnmount(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ftpsync-mount")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
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
	out, err := run("mount", "--daemon", "--cache-dir", cacheDir, "--log-file", filepath.Join(t.TempDir(), "log"), srv.URL(), mnt)
	if err != nil {
		t.Fatalf("mount --daemon: %v\n%s", err, out)
	}
	t.Cleanup(func() { run("unmount", mnt) })
	if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(got) != "daemon" {
		t.Fatalf("read: %q, %v", got, err)
	}
	// A second mount of the same cache fails, and says why.
	out, err = run("mount", "--daemon", "--cache-dir", cacheDir, srv.URL(), t.TempDir())
	if err == nil || !strings.Contains(out, "in use by another ftpsync-mount process") {
		t.Fatalf("second mount of the cache: %v\n%s", err, out)
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
}
