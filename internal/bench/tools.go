package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// timed runs f and returns how long it took.
func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// alternate runs setup (if any), then ours and ref, n rounds in turn, and
// returns each side's best time. Taking turns gives both the same server and
// page-cache conditions; the best round is the least disturbed one.
func alternate(n int, setup, ours, ref func() error) (dOurs, dRef time.Duration, err error) {
	for i := 0; i < n; i++ {
		if setup != nil {
			if err := setup(); err != nil {
				return 0, 0, err
			}
		}
		d, err := timed(ours)
		if err != nil {
			return 0, 0, err
		}
		if i == 0 || d < dOurs {
			dOurs = d
		}
		d, err = timed(ref)
		if err != nil {
			return 0, 0, err
		}
		if i == 0 || d < dRef {
			dRef = d
		}
	}
	return dOurs, dRef, nil
}

// run runs a reference tool with its output captured for the error message.
func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, tail(out, 2000))
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// netrcFile writes a netrc for curl so the password never appears in the
// argument list of a child process.
func (e *env) netrcFile() (string, error) {
	host := e.hostPort()
	if i := strings.LastIndex(host, ":"); i > 0 {
		host = host[:i]
	}
	p := filepath.Join(e.work, "netrc")
	content := fmt.Sprintf("machine %s login %s password %s\n", host, e.user, e.password)
	return p, os.WriteFile(p, []byte(content), 0o600)
}

// lftpScript writes an lftp command file that opens the server and runs
// cmds; lftp reads it with -f, keeping the password out of argv.
func (e *env) lftpScript(name string, cmds ...string) (string, error) {
	p := filepath.Join(e.work, name+".lftp")
	var b strings.Builder
	b.WriteString("set cmd:fail-exit yes\nset net:max-retries 2\nset net:timeout 30\n")
	b.WriteString("set ftp:ssl-allow no\n")
	fmt.Fprintf(&b, "open -u %s,%s ftp://%s\n", e.user, e.password, e.hostPort())
	for _, c := range cmds {
		b.WriteString(c + "\n")
	}
	b.WriteString("quit\n")
	return p, os.WriteFile(p, []byte(b.String()), 0o600)
}

// hostPort is host:port of the server URL.
func (e *env) hostPort() string {
	u := strings.TrimPrefix(e.url, "ftp://")
	if at := strings.Index(u, "@"); at >= 0 {
		u = u[at+1:]
	}
	if i := strings.Index(u, "/"); i >= 0 {
		u = u[:i]
	}
	return u
}

// makeBigFile writes size pseudo-random bytes (incompressible, so that no
// layer can cheat) unless the file already has that size.
func makeBigFile(path string, size int64) error {
	if fi, err := os.Stat(path); err == nil && fi.Size() == size {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for written := int64(0); written < size; {
		// Vary each block so that blocks differ without paying for a fresh
		// random MiB every time.
		buf[0], buf[1], buf[2], buf[3] = byte(written>>20), byte(written>>28), byte(written>>36), 0xa5
		n := int64(len(buf))
		if size-written < n {
			n = size - written
		}
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		written += n
	}
	return f.Close()
}

// copyTree copies a folder (regular files and folders only).
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(out, 0o755)
		case fi.Mode().IsRegular():
			return copyFile(p, out, fi)
		}
		return nil
	})
}

func copyFile(src, dst string, fi os.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}

// dropCaches asks the kernel to forget clean page cache, so that "cold"
// means cold for the server's disk reads too. It needs root; without it the
// figures are warmer than they say, and the note tells.
func dropCaches() bool {
	exec.Command("sync").Run()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200) == nil
}

func goroot() string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "/usr/local/go"
	}
	return strings.TrimSpace(string(out))
}
