package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// mountProc is the binary mounting in the foreground, as a user runs it.
type mountProc struct {
	cmd    *exec.Cmd
	mnt    string
	done   chan error  // receives the exit
	lines  chan string // its log lines after "mounted", for waitLine
	mu     gosync.Mutex
	stderr *bytes.Buffer // guarded by mu
}

func (m *mountProc) log() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stderr.String()
}

// waitLine waits for a log line holding s.
func (m *mountProc) waitLine(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l := <-m.lines:
			if strings.Contains(l, s) {
				return
			}
		case <-timeout:
			t.Fatalf("no log line with %q after 30s:\n%s", s, m.log())
		}
	}
}

// startMount runs `ftpsync-mount mount ARGS... URL MNT` and returns once it
// logged that it is mounted.
func startMount(t *testing.T, bin string, srv *ftpdtest.Server, mnt string, args ...string) *mountProc {
	t.Helper()
	return startMountURL(t, bin, srv.URL(), srv.Password, mnt, args...)
}

func startMountURL(t *testing.T, bin, url, password, mnt string, args ...string) *mountProc {
	t.Helper()
	all := append([]string{"mount"}, args...)
	cmd := exec.Command(bin, append(all, url, mnt)...)
	cmd.Env = append(os.Environ(), "FTPSYNC_PASSWORD="+password)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &mountProc{cmd: cmd, mnt: mnt, done: make(chan error, 1), stderr: &bytes.Buffer{}, lines: make(chan string, 4096)}
	mounted := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			m.mu.Lock()
			m.stderr.WriteString(sc.Text() + "\n")
			m.mu.Unlock()
			if found {
				select {
				case m.lines <- sc.Text():
				default:
				}
			}
			if !found && strings.Contains(sc.Text(), "mounted ") {
				found = true
				close(mounted)
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		m.done <- err
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		exec.Command("umount", "-l", mnt).Run()
	})
	select {
	case <-mounted:
	case err := <-m.done:
		t.Fatalf("mount exited before it was ready: %v\n%s", err, m.log())
	case <-time.After(15 * time.Second):
		t.Fatal("mount not ready after 15s")
	}
	return m
}

// wait waits for the mount process to exit.
func (m *mountProc) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-m.done:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("mount still running after 60s\n%s", m.log())
		return nil
	}
}

// makeTarball writes a tar of n files in a few folders with random content,
// and the same tree unpacked into ref.
func makeTarball(t *testing.T, n int, seed int64) (tarPath, ref string) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	ref = t.TempDir()
	tarPath = filepath.Join(t.TempDir(), "tree.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	mtime := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("d%d/s%d/f%03d.txt", i%7, i%3, i)
		data := make([]byte, rng.Intn(40000))
		rng.Read(data)
		tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg})
		tw.Write(data)
		os.MkdirAll(filepath.Dir(filepath.Join(ref, p)), 0o755)
		os.WriteFile(filepath.Join(ref, p), data, 0o644)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return tarPath, ref
}

// TestKill9MidTarThenRemount kills the mount with SIGKILL while tar
// extracts into it; the next mount of the same cache resumes the queue:
// every file tar had finished reaches the server, and extracting again
// then unmounting leaves the server identical to the tarball.
func TestKill9MidTarThenRemount(t *testing.T) {
	bin := buildBinary(t)
	srv := ftpdtest.Start(t)
	mnt, cacheDir := t.TempDir(), t.TempDir()
	tarPath, ref := makeTarball(t, 300, 1)

	m := startMount(t, bin, srv, mnt, "--cache-dir", cacheDir, "--write-back", "20ms")
	tarCmd := exec.Command("tar", "xvf", tarPath, "-C", mnt)
	out, err := tarCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tarCmd.Start(); err != nil {
		t.Fatal(err)
	}
	var started []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		started = append(started, sc.Text())
		if len(started) == 150 {
			m.cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	go io.Copy(io.Discard, out)
	tarCmd.Wait() // fails: the mount is gone
	m.wait(t)
	exec.Command("umount", "-l", mnt).Run()

	start := time.Now()
	m = startMount(t, bin, srv, mnt, "--cache-dir", cacheDir, "--write-back", "20ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("remount took %v", d)
	}
	if out, err := exec.Command(bin, "flush", mnt).CombinedOutput(); err != nil {
		t.Fatalf("flush after the restart: %v\n%s", err, out)
	}
	// Every member tar finished (all but the last it named) is there.
	for _, p := range started[:len(started)-1] {
		if strings.HasSuffix(p, "/") {
			continue
		}
		want, _ := os.ReadFile(filepath.Join(ref, p))
		got, err := os.ReadFile(filepath.Join(srv.Root, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s on the server after the restart: %d bytes, %v; want %d bytes", p, len(got), err, len(want))
		}
	}
	if out, err := exec.Command("tar", "xf", tarPath, "-C", mnt).CombinedOutput(); err != nil {
		t.Fatalf("tar again: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "unmount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	if err := m.wait(t); err != nil {
		t.Fatalf("mount exit: %v\n%s", err, m.log())
	}
	removeTempFiles(t, srv.Root)
	targettest.CompareDirs(t, srv.Root, ref)
}

// removeTempFiles deletes the temporary files of uploads that SIGKILL
// interrupted. They never appear under a final name or in any listing the
// mount shows, but the target cannot list them to clean them up yet.
func removeTempFiles(t *testing.T, root string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && target.IsTempName(d.Name()) {
			t.Logf("left by an interrupted upload: %s", p)
			os.Remove(p)
		}
		return nil
	})
}

// TestUnmountUploadsPendingAndReportsFailures queues writes that wait an
// hour, unmounts (everything goes up first), then does the same with the
// server gone: unmount names what did not get there and exits non-zero,
// and the next mount uploads it.
func TestUnmountUploadsPendingAndReportsFailures(t *testing.T) {
	bin := buildBinary(t)
	root := t.TempDir()
	srv := ftpdtest.StartRoot(t, root)
	mnt, cacheDir := t.TempDir(), t.TempDir()
	m := startMount(t, bin, srv, mnt, "--cache-dir", cacheDir, "--write-back", "1h")
	os.MkdirAll(filepath.Join(mnt, "a/b"), 0o755)
	os.WriteFile(filepath.Join(mnt, "a/b/one"), []byte("first"), 0o644)
	out, err := exec.Command(bin, "status", mnt, "--json").CombinedOutput()
	// The folders go up at once (or soon); the upload waits for --write-back.
	var st mountStatus
	if err != nil || json.Unmarshal(out, &st) != nil || st.Queue.Pending < 1 || st.Mountpoint != mnt {
		t.Fatalf("status before unmount: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "status", mnt).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "operations pending") || !strings.Contains(string(out), "cache: ") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "unmount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	if err := m.wait(t); err != nil {
		t.Fatalf("mount exit: %v\n%s", err, m.log())
	}
	if got, err := os.ReadFile(filepath.Join(root, "a/b/one")); err != nil || string(got) != "first" {
		t.Fatalf("after unmount the server holds %q, %v", got, err)
	}

	// The second mount goes through a relay of the control connection;
	// closing it plays a server that went down.
	relay := startRelay(t, srv.Addr())
	m = startMountURL(t, bin, "ftp://"+srv.User+"@"+relay.addr()+"/", srv.Password, mnt, "--cache-dir", cacheDir, "--write-back", "1h", "--timeout", "2s")
	os.WriteFile(filepath.Join(mnt, "a/two"), []byte("second"), 0o644)
	relay.close()
	out, err = exec.Command(bin, "unmount", mnt).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "upload /a/two") {
		t.Fatalf("unmount with the server gone: %v\n%s", err, out)
	}
	if err := m.wait(t); err == nil {
		t.Fatalf("the mount exited 0 with an upload left\n%s", m.log())
	}

	m = startMount(t, bin, srv, mnt, "--cache-dir", cacheDir)
	if _, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("umount: %v\n%s", err, out)
		}
	}
	if err := m.wait(t); err != nil {
		t.Fatalf("mount exit after umount: %v\n%s", err, m.log())
	}
	if got, err := os.ReadFile(filepath.Join(root, "a/two")); err != nil || string(got) != "second" {
		t.Fatalf("the queued upload after a remount: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, "control.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the status socket outlived the mount: %v", err)
	}
}

// relay forwards FTP control connections to a server; close plays a server
// that went down: open connections drop and new ones are refused. (Data
// connections go to the server directly, as PASV replies say.)
type relay struct {
	ln    net.Listener
	mu    gosync.Mutex // protects conns
	conns []net.Conn
}

func startRelay(t *testing.T, to string) *relay {
	t.Helper()
	return startRelayAt(t, "127.0.0.1:0", to)
}

// startRelayAt is startRelay on a given address, so a relay closed to play
// a server that went down can come back where the mount looks for it.
func startRelayAt(t *testing.T, at, to string) *relay {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old listener's port may linger a moment
		if ln, err = net.Listen("tcp", at); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("relay on %s: %v", at, err)
	}
	r := &relay{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, s)
			r.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) close() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

// TestSecondSIGINTKeepsTheQueue stops a mount whose server is gone: the
// first SIGINT unmounts and tries to upload, the second exits at once with
// status 3, and the next mount uploads what was queued.
func TestSecondSIGINTKeepsTheQueue(t *testing.T) {
	bin := buildBinary(t)
	srv := ftpdtest.Start(t)
	mnt, cacheDir := t.TempDir(), t.TempDir()
	relay := startRelay(t, srv.Addr())
	m := startMountURL(t, bin, "ftp://"+srv.User+"@"+relay.addr()+"/", srv.Password, mnt, "--cache-dir", cacheDir, "--write-back", "1h", "--timeout", "2s")
	if err := os.WriteFile(filepath.Join(mnt, "kept"), []byte("queued"), 0o644); err != nil {
		t.Fatal(err)
	}
	relay.close()
	m.cmd.Process.Signal(syscall.SIGINT)
	m.waitLine(t, "uploading 1 pending operations before exit")
	start := time.Now()
	m.cmd.Process.Signal(syscall.SIGINT)
	err := m.wait(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitAborted {
		t.Fatalf("exit after the second SIGINT: %v, want status %d\n%s", err, exitAborted, m.log())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the second SIGINT took %v to end the process", d)
	}
	m = startMount(t, bin, srv, mnt, "--cache-dir", cacheDir)
	if out, err := exec.Command(bin, "unmount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	m.wait(t)
	if got, err := os.ReadFile(filepath.Join(srv.Root, "kept")); err != nil || string(got) != "queued" {
		t.Fatalf("after the remount the server holds %q, %v", got, err)
	}
}
