package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mounted is one FUSE mount started by the bench, ours or rclone's.
type mounted struct {
	dir string
	pid int // our mount process; 0 for rclone
}

// mountOurs starts the built binary as a daemon on a new folder under the
// work dir, with its own cache dir; the password goes through the
// environment.
func (e *env) mountOurs(ctx context.Context, remotePath, cacheDir string) (*mounted, error) {
	return e.mountOursWith(ctx, remotePath, cacheDir)
}

// mountOursWith is mountOurs with extra mount flags; they come after the
// defaults, so that a flag given again (--log-file) overrides.
func (e *env) mountOursWith(ctx context.Context, remotePath, cacheDir string, extra ...string) (*mounted, error) {
	bin, err := e.binary(ctx)
	if err != nil {
		return nil, err
	}
	mp, err := os.MkdirTemp(e.work, "mnt-ours-")
	if err != nil {
		return nil, err
	}
	url := strings.TrimSuffix(e.url, "/") + "/" + remotePath
	args := append([]string{"mount", "--daemon", "--cache-dir", cacheDir,
		"--log-file", filepath.Join(e.work, "mount.log")}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url, mp)...)
	cmd.Env = append(os.Environ(), "FTPSYNC_PASSWORD="+e.password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ftpsync-mount mount: %w\n%s", err, tail(out, 2000))
	}
	m := regexp.MustCompile(`\(pid (\d+)\)`).FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("ftpsync-mount mount printed no pid: %s", out)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	return &mounted{dir: mp, pid: pid}, nil
}

// rcloneEnv configures the remote "bench:" through rclone's environment
// variables; the password is obscured by rclone itself from stdin, so that
// it appears in no argument list. It is made once per run (see env).
func (e *env) rcloneEnv(ctx context.Context) ([]string, error) {
	e.rcloneOnce.Do(func() { e.rcloneVars, e.rcloneErr = e.makeRcloneEnv(ctx) })
	return e.rcloneVars, e.rcloneErr
}

func (e *env) makeRcloneEnv(ctx context.Context) ([]string, error) {
	cmd := exec.CommandContext(ctx, "rclone", "obscure", "-")
	cmd.Stdin = strings.NewReader(e.password)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("rclone obscure: %w", err)
	}
	host, port := e.hostPort(), "21"
	if i := strings.LastIndex(host, ":"); i > 0 {
		host, port = host[:i], host[i+1:]
	}
	return append(os.Environ(),
		"RCLONE_CONFIG_BENCH_TYPE=ftp",
		"RCLONE_CONFIG_BENCH_HOST="+host,
		"RCLONE_CONFIG_BENCH_PORT="+port,
		"RCLONE_CONFIG_BENCH_USER="+e.user,
		"RCLONE_CONFIG_BENCH_PASS="+strings.TrimSpace(string(out)),
	), nil
}

// mountRclone runs Debian's rclone mount with its full VFS cache, the
// configuration the reference figures were taken with.
func (e *env) mountRclone(ctx context.Context, remotePath, cacheDir string) (*mounted, error) {
	envv, err := e.rcloneEnv(ctx)
	if err != nil {
		return nil, err
	}
	mp, err := os.MkdirTemp(e.work, "mnt-rclone-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"mount", "bench:" + remotePath, mp}, rcloneFlags...)
	cmd := exec.CommandContext(ctx, "rclone", append(args, "--cache-dir", cacheDir, "--daemon",
		"--log-file", filepath.Join(e.work, "rclone.log"))...)
	cmd.Env = envv
	// The daemon inherits the parent's standard output: a pipe would keep
	// CombinedOutput waiting until the unmount, so it writes to a file.
	out, err := os.Create(filepath.Join(e.work, "rclone.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(out.Name())
		return nil, fmt.Errorf("rclone mount: %w\n%s", err, tail(b, 2000))
	}
	return &mounted{dir: mp}, nil
}

// unmount detaches the mount and, for ours, waits until the process has
// ended (its cache is closed), bounded by a minute.
func (m *mounted) unmount() error {
	var err error
	if os.Geteuid() == 0 {
		err = syscall.Unmount(m.dir, 0)
	} else {
		err = exec.Command("fusermount3", "-u", m.dir).Run()
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", m.dir, err)
	}
	if m.pid > 0 {
		if err := waitExit(m.pid, time.Minute); err != nil {
			return err
		}
	}
	return os.Remove(m.dir)
}

// waitExit waits for a process that is not our child through a pidfd,
// which becomes readable when the process ends.
func waitExit(pid int, timeout time.Duration) error {
	const sysPidfdOpen = 434 // the same number on every Linux architecture
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
	if errno == syscall.ESRCH {
		return nil
	}
	if errno != 0 {
		return fmt.Errorf("pidfd_open %d: %w", pid, errno)
	}
	defer syscall.Close(int(fd))
	var set syscall.FdSet
	set.Bits[fd/64] |= 1 << (fd % 64)
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	n, err := syscall.Select(int(fd)+1, &set, nil, nil, &tv)
	if err != nil {
		return fmt.Errorf("wait for pid %d: %w", pid, err)
	}
	if n == 0 {
		return fmt.Errorf("mount process %d still runs %s after unmount", pid, timeout)
	}
	return nil
}

// peakRSS reads a process's high-water resident set size in MiB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// lsLR runs ls -lR on dir with its output discarded.
func lsLR(ctx context.Context, dir string) (time.Duration, error) {
	return timed(func() error {
		cmd := exec.CommandContext(ctx, "ls", "-lR", dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("ls -lR %s: %w\n%s", dir, err, tail(stderr.Bytes(), 2000))
		}
		return nil
	})
}

// readAll reads a file with 1 MiB reads, as cat does, and checks the size.
func readAll(path string, want int64) (time.Duration, error) {
	buf := make([]byte, 1<<20)
	return timed(func() error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.CopyBuffer(onlyWriter{io.Discard}, onlyReader{f}, buf)
		if err == nil && n != want {
			err = fmt.Errorf("read %d bytes of %s, want %d", n, path, want)
		}
		return err
	})
}

// onlyReader hides WriteTo and onlyWriter hides ReadFrom, so that
// io.CopyBuffer really reads in calls of its buffer's size: io.Discard's
// ReadFrom reads in 8 KiB calls of its own.
type onlyReader struct{ io.Reader }

type onlyWriter struct{ io.Writer }

// mountKind names a mount implementation for the loops below.
type mountKind struct {
	name  string
	mount func(ctx context.Context, remotePath, cacheDir string) (*mounted, error)
}

func (e *env) mountKinds() []mountKind {
	return []mountKind{{"rclone", e.mountRclone}, {"ours", e.mountOurs}}
}

// freshCache returns an empty cache folder for one mount.
func (e *env) freshCache(name string) (string, error) {
	return os.MkdirTemp(e.work, "cache-"+name+"-")
}
