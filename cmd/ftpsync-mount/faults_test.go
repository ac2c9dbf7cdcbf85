package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	gosync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd"
	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// tmpfsDir mounts a tmpfs of the given size in a new temporary folder and
// unmounts it at the end of the test (after the mounts using it stop,
// since cleanups run last-registered first).
func tmpfsDir(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount a tmpfs (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestCacheDiskFull runs the mount with its cache on a 16 MiB tmpfs and
// fills it: the write that does not fit fails with ENOSPC, the files
// closed before read back intact and reach the server, and once a big
// file is deleted through the mount, writes work again.
func TestCacheDiskFull(t *testing.T) {
	bin := buildBinary(t)
	cacheDir := tmpfsDir(t, "16m")
	srv := ftpdtest.Start(t)
	mnt, ref := t.TempDir(), t.TempDir()
	m := startMount(t, bin, srv, mnt, "--cache-dir", cacheDir, "--write-back", "1h")
	rng := rand.New(rand.NewSource(4))
	write := func(name string, n int) error {
		data := make([]byte, n)
		rng.Read(data)
		if err := os.WriteFile(filepath.Join(mnt, name), data, 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(ref, name), data, 0o644)
	}
	for i := 0; i < 4; i++ {
		if err := write(fmt.Sprintf("small%d", i), 1<<20); err != nil {
			t.Fatalf("write before the disk is full: %v", err)
		}
	}
	// The big file cannot fit: some write or the close fails with ENOSPC.
	big, err := os.Create(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	var werr error
	written := 0
	for i := 0; i < 32 && werr == nil; i++ {
		_, werr = big.Write(chunk)
		if werr == nil {
			written++
		}
	}
	if cerr := big.Close(); werr == nil {
		werr = cerr
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("writing 32 MiB into a 16 MiB cache: %v after %d MiB, want ENOSPC", werr, written)
	}
	if err := write("after-full", 100<<10); !errors.Is(err, syscall.ENOSPC) {
		t.Logf("a new file while the cache is full: %v", err)
	}
	os.Remove(filepath.Join(ref, "after-full"))
	os.Remove(filepath.Join(mnt, "after-full"))
	targettest.CompareDirs(t, filepath.Join(mnt), withBig(t, ref, mnt))
	if out, err := exec.Command(bin, "flush", mnt).CombinedOutput(); err != nil {
		t.Fatalf("flush with the cache full: %v\n%s", err, out)
	}
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("small%d", i)
		want, _ := os.ReadFile(filepath.Join(ref, name))
		if got, err := os.ReadFile(filepath.Join(srv.Root, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s on the server after the flush: %d bytes, %v", name, len(got), err)
		}
	}
	// Deleting is how a user frees space.
	if err := os.Remove(filepath.Join(mnt, "big")); err != nil {
		t.Fatalf("delete the big file: %v", err)
	}
	if err := write("after-delete", 4<<20); err != nil {
		t.Fatalf("write after space returned: %v", err)
	}
	if out, err := exec.Command(bin, "unmount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	if err := m.wait(t); err != nil {
		t.Fatalf("mount exit: %v\n%s", err, m.log())
	}
	countTempFiles(t, srv.Root)
	targettest.CompareDirs(t, srv.Root, ref)
	t.Logf("fault figures: cache 16 MiB, ENOSPC after %d MiB of the big file, bytes compared %d, data lost: 0", written, treeBytes(t, ref))
}

// withBig copies ref into a new folder with the mount's partial "big"
// file added, so the mount can be compared while it holds that file.
func withBig(t *testing.T, ref, mnt string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", ref+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatalf("read the big file the disk could not hold: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestServerRestartMidUploads stops the server while tar extracts into
// the mount, with uploads in flight: every session is cut and the server
// stops listening. Tar finishes into the cache, the mount serves the whole
// tree from the cache while the server is down, and once the server is
// back the queue empties and the server holds the tarball's tree.
func TestServerRestartMidUploads(t *testing.T) {
	bin := buildBinary(t)
	srv := ftpdtest.Start(t)
	relay := startRelay(t, srv.Addr())
	relayAddr := relay.addr()
	mnt, cacheDir := t.TempDir(), t.TempDir()
	tarPath, ref := makeTarball(t, 300, 2)
	m := startMountURL(t, bin, "ftp://"+srv.User+"@"+relayAddr+"/", srv.Password, mnt,
		"--cache-dir", cacheDir, "--write-back", "20ms", "--timeout", "2s")
	tarCmd := exec.Command("tar", "xvf", tarPath, "-C", mnt)
	out, err := tarCmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tarCmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for n := 0; n < 100 && sc.Scan(); n++ {
	}
	// Stop: cut every session (through the relay) and the listener.
	relay.close()
	if err := srv.Close(); err != nil {
		t.Fatalf("stop the server: %v", err)
	}
	onServer := countFiles(t, srv.Root)
	go io.Copy(io.Discard, out)
	if err := tarCmd.Wait(); err != nil {
		t.Fatalf("tar with the server down: %v", err)
	}
	// Reads come from the cache while the server is down.
	targettest.CompareDirs(t, mnt, ref)
	if out, err := exec.Command("ls", "-lR", mnt).CombinedOutput(); err != nil {
		t.Fatalf("ls -lR with the server down: %v\n%s", err, out)
	}
	time.Sleep(time.Second) // the server stays down a while: the queue retries meanwhile
	restart := time.Now()
	back, err := ftpd.Start(ftpd.Options{Root: srv.Root, Addr: srv.Addr(), User: srv.User, Password: srv.Password})
	if err != nil {
		t.Fatalf("restart the server on %s: %v", srv.Addr(), err)
	}
	t.Cleanup(func() { back.Close() })
	startRelayAt(t, relayAddr, srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "flush", mnt).CombinedOutput(); err != nil {
		t.Fatalf("flush after the restart: %v\n%s\n%s", err, out, m.log())
	}
	drained := time.Since(restart)
	if out, err := exec.Command(bin, "unmount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	if err := m.wait(t); err != nil {
		t.Fatalf("mount exit: %v\n%s", err, m.log())
	}
	temps := countTempFiles(t, srv.Root)
	targettest.CompareDirs(t, srv.Root, ref)
	t.Logf("fault figures: server stopped with %d of 300 files on it, down 1s, queue empty %v after the restart, cut uploads left %d temporary files, bytes compared %d, data lost: 0",
		onServer, drained.Round(100*time.Millisecond), temps, treeBytes(t, ref))
}

// countFiles is how many files are under root.
func countFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !target.IsTempName(d.Name()) {
			n++
		}
		return nil
	})
	return n
}

// limitProxy relays control connections to an FTP server and, like a
// server's per-user limit, answers "421 Too many connections" to any
// connection beyond max open at once.
type limitProxy struct {
	ln       net.Listener
	max      int
	mu       gosync.Mutex // guards open, peak, refused, conns
	open     int
	peak     int
	refused  int
	accepted int
	conns    []net.Conn
}

func startLimitProxy(t *testing.T, to string, limit int) *limitProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &limitProxy{ln: ln, max: limit}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.open >= p.max {
				p.refused++
				p.mu.Unlock()
				c.Write([]byte("421 Too many connections for this user\r\n"))
				c.Close()
				continue
			}
			p.open++
			p.accepted++
			p.peak = max(p.peak, p.open)
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			go p.relay(c, to)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

// relay copies both ways until either side closes, then frees the slot.
func (p *limitProxy) relay(c net.Conn, to string) {
	defer func() {
		p.mu.Lock()
		p.open--
		p.mu.Unlock()
	}()
	s, err := net.Dial("tcp", to)
	if err != nil {
		c.Close()
		return
	}
	done := make(chan struct{})
	go func() { io.Copy(s, c); s.Close(); close(done) }()
	io.Copy(c, s)
	c.Close()
	<-done
}

func (p *limitProxy) figures() (accepted, refused, peak int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.refused, p.peak
}

// TestServerAllowsTwoConnections mounts with 8 connections and 8
// transfers a server that allows 2 per user: cp -r of 300 files into the
// mount with ls -R running alongside completes, nothing deadlocks, and the
// server ends with the copied tree.
func TestServerAllowsTwoConnections(t *testing.T) {
	bin := buildBinary(t)
	srv := ftpdtest.Start(t)
	px := startLimitProxy(t, srv.Addr(), 2)
	mnt, cacheDir := t.TempDir(), t.TempDir()
	_, src := makeTarball(t, 300, 3)
	m := startMountURL(t, bin, "ftp://"+srv.User+"@"+px.ln.Addr().String()+"/", srv.Password, mnt,
		"--cache-dir", cacheDir, "--connections", "8", "--transfers", "8", "--write-back", "20ms", "--timeout", "5s")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	stop := make(chan struct{})
	lsDone := make(chan error, 1)
	lsRuns := 0
	go func() {
		for {
			select {
			case <-stop:
				lsDone <- nil
				return
			default:
			}
			if out, err := exec.CommandContext(ctx, "ls", "-lR", mnt).CombinedOutput(); err != nil {
				lsDone <- fmt.Errorf("ls -lR: %v\n%s", err, out)
				return
			}
			lsRuns++
		}
	}()
	start := time.Now()
	if out, err := exec.CommandContext(ctx, "cp", "-r", src+"/.", mnt).CombinedOutput(); err != nil {
		t.Fatalf("cp -r: %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, bin, "flush", mnt).CombinedOutput(); err != nil {
		t.Fatalf("flush: %v\n%s\n%s", err, out, m.log())
	}
	took := time.Since(start)
	close(stop)
	if err := <-lsDone; err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, bin, "unmount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	if err := m.wait(t); err != nil {
		t.Fatalf("mount exit: %v\n%s", err, m.log())
	}
	targettest.CompareDirs(t, srv.Root, src)
	accepted, refused, peak := px.figures()
	if peak > 2 {
		t.Errorf("the proxy let %d connections in at once", peak)
	}
	t.Logf("fault figures: 300 files copied and uploaded in %v with %d ls -lR alongside, connections accepted %d, refused with 421 %d, at most %d at once, bytes compared %d, data lost: 0",
		took.Round(100*time.Millisecond), lsRuns, accepted, refused, peak, treeBytes(t, src))
}
