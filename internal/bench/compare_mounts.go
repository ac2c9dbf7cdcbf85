package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Issue 8's behaviour scenarios run the same steps on our mount and on
// rclone's and report what each did. Only our side is judged; rclone's
// outcome is what the README's comparison table quotes.

// behaviour is one scenario's outcome on both mounts.
type behaviour struct {
	ours   string // what our mount did
	rclone string // what rclone mount did, reported only
	expect string // what our mount must do
	ok     bool   // ours did what expect says
}

// rcloneFlags are the flags every rclone mount of the bench gets, the
// configuration of the issue's reference figures. Chunked reads (128 MiB
// ranges by default) end each RETR early; proftpd answers 426 and rclone
// 1.60 counts that as an error until the read fails with EIO. One RETR per
// file avoids it.
var rcloneFlags = []string{"--vfs-cache-mode", "full", "--vfs-read-chunk-size", "0"}

// rcloneProc is an rclone mount run in the foreground as the bench's
// child, so that the bench can signal it, kill it and read its exit status.
type rcloneProc struct {
	dir  string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process ended; err then holds Wait's result
	err  error
}

// startRclone mounts bench:remotePath with rcloneFlags plus extra on a new
// folder and returns once the kernel lists the mount, within 30 s.
func (e *env) startRclone(ctx context.Context, remotePath, cacheDir, name string, extra ...string) (*rcloneProc, error) {
	envv, err := e.rcloneEnv(ctx)
	if err != nil {
		return nil, err
	}
	mp, err := os.MkdirTemp(e.work, "mnt-rclone-")
	if err != nil {
		return nil, err
	}
	p := &rcloneProc{dir: mp, log: filepath.Join(e.work, "rclone-"+name+".log"), done: make(chan struct{})}
	args := append([]string{"mount", "bench:" + remotePath, mp, "--cache-dir", cacheDir, "--log-file", p.log, "-v"}, rcloneFlags...)
	// Not CommandContext: the scenarios stop rclone themselves, by the
	// means each one tests.
	p.cmd = exec.Command("rclone", append(args, extra...)...)
	p.cmd.Env = envv
	out, err := os.Create(p.log + ".out")
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start rclone mount: %w", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		out.Close()
		close(p.done)
	}()
	if err := waitMounted(ctx, mp, p.done, 30*time.Second); err != nil {
		p.cleanup()
		b, _ := os.ReadFile(p.log)
		return nil, fmt.Errorf("rclone mount %s: %w\n%s", remotePath, err, tail(b, 2000))
	}
	return p, nil
}

// waitMounted checks the mount table every 100 ms until dir is a mount
// point; exited closes when the mount process ended, which ends the wait.
func waitMounted(ctx context.Context, dir string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := isMounted(dir)
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not mounted after %s", dir, limit)
		}
		select {
		case <-exited:
			return errors.New("the mount process ended before the mount was ready")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// isMounted says whether dir is a mount point in this process's namespace.
func isMounted(dir string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	return mountinfoHas(string(b), dir), nil
}

// mountinfoHas says whether a mountinfo text lists dir as a mount point
// (the fifth field, with spaces and such escaped as octal).
func mountinfoHas(mountinfo, dir string) bool {
	esc := strings.NewReplacer(" ", `\040`, "\t", `\011`, "\n", `\012`, `\`, `\134`).Replace(dir)
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == esc {
			return true
		}
	}
	return false
}

// stop sends sig and waits up to limit for rclone to end; it says how it
// ended and how long that took. A process still running then is killed.
func (p *rcloneProc) stop(sig syscall.Signal, limit time.Duration) (string, time.Duration) {
	start := time.Now()
	p.cmd.Process.Signal(sig)
	return p.wait(limit), time.Since(start)
}

// wait waits up to limit for rclone to end and describes its exit.
func (p *rcloneProc) wait(limit time.Duration) string {
	select {
	case <-p.done:
		return exitText(p.err)
	case <-time.After(limit):
		p.cleanup()
		return fmt.Sprintf("still running %s later, killed", limit)
	}
}

// exitText describes a Wait result: "exit 0", "exit 1", "killed by signal".
func exitText(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit 0"
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return fmt.Sprintf("exit %d", ee.ExitCode())
	case errors.As(err, &ee):
		return "ended by " + ee.String()
	}
	return err.Error()
}

// kill9 kills rclone at once and detaches its dead mount.
func (p *rcloneProc) kill9() {
	p.cmd.Process.Kill()
	<-p.done
	detach(p.dir)
}

// cleanup ends rclone if it still runs and removes its mount point; it is
// safe to call more than once.
func (p *rcloneProc) cleanup() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
	detach(p.dir)
	os.Remove(p.dir)
}

// detach unmounts dir lazily if it is still a mount point (a mount whose
// process died keeps answering ENOTCONN until then).
func detach(dir string) {
	if ok, _ := isMounted(dir); ok {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			exec.Command("fusermount3", "-u", "-z", dir).Run()
		}
	}
}

// logLine returns the first line of rclone's log that holds every one of
// words, or "".
func (p *rcloneProc) logLine(words ...string) string {
	b, _ := os.ReadFile(p.log)
	return findLine(string(b), words...)
}

func findLine(text string, words ...string) string {
	for _, line := range strings.Split(text, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// mountOursNamed mounts our binary with its own log file; the process is a
// daemon, so cleanupOurs ends it by pid.
func (e *env) mountOursNamed(ctx context.Context, remotePath, cacheDir, name string, extra ...string) (*mounted, error) {
	return e.mountOursWith(ctx, remotePath, cacheDir, append([]string{"--log-file", filepath.Join(e.work, "ours-"+name+".log")}, extra...)...)
}

// cleanupOurs detaches our mount if it is still there and makes sure its
// process has ended: detached, it uploads what it can and exits; after 30 s
// it is killed. It is safe to call more than once: the pid is forgotten,
// so that a later call cannot signal a process that reused it.
func cleanupOurs(m *mounted) {
	detach(m.dir)
	if m.pid > 0 {
		if err := waitExit(m.pid, 30*time.Second); err != nil {
			syscall.Kill(m.pid, syscall.SIGKILL)
			waitExit(m.pid, 10*time.Second)
		}
		m.pid = 0
	}
	os.Remove(m.dir)
}

// oursRun runs our binary and returns its combined output and exit status.
func (e *env) oursRun(ctx context.Context, args ...string) (string, int, error) {
	bin, err := e.binary(ctx)
	if err != nil {
		return "", 0, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "FTPSYNC_PASSWORD="+e.password)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), nil
	}
	return string(out), 0, err
}

// side is one mount of a scenario: a fresh folder on the server's disk, a
// fresh cache, and our mount or rclone's of that folder.
type side struct {
	disk     string // the folder on the server's disk
	cacheDir string
	dir      string // the mount point
	ours     *mounted
	rclone   *rcloneProc
}

// openSide seeds folder with name holding content (none if name is ""),
// mounts it with kind ("ours" or "rclone") and extra flags, and lists it
// and reads name through the mount, so that the mount has both cached
// before the scenario changes anything.
func (e *env) openSide(ctx context.Context, kind, folder, name, content string, extra ...string) (*side, error) {
	disk, err := e.seedRemote(folder, name, content)
	if err != nil {
		return nil, err
	}
	s := &side{disk: disk}
	if s.cacheDir, err = e.freshCache(folder); err != nil {
		return nil, err
	}
	if kind == "ours" {
		s.ours, err = e.mountOursNamed(ctx, folder, s.cacheDir, folder, extra...)
	} else {
		s.rclone, err = e.startRclone(ctx, folder, s.cacheDir, folder, extra...)
	}
	if err != nil {
		return nil, err
	}
	if s.ours != nil {
		s.dir = s.ours.dir
	} else {
		s.dir = s.rclone.dir
	}
	if err := prime(s.dir, name, content); err != nil {
		s.close()
		return nil, fmt.Errorf("%s: %w", folder, err)
	}
	return s, nil
}

// close ends the mount if the scenario has not; safe to call again.
func (s *side) close() {
	if s.ours != nil {
		cleanupOurs(s.ours)
	} else {
		s.rclone.cleanup()
	}
}

// prime lists a folder through a mount and reads name (if given).
func prime(dir, name, want string) error {
	if _, err := os.ReadDir(dir); err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	if name == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if string(b) != want {
		return fmt.Errorf("read %q through the mount, want %q", b, want)
	}
	return nil
}

// seedRemote makes a fresh folder on the server's disk holding name with
// content, an hour old, owned like the server's root.
func (e *env) seedRemote(folder, name, content string) (string, error) {
	dir, err := e.freshRemote(folder)
	if err != nil || name == "" {
		return dir, err
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		return "", err
	}
	chownLikeRoot(e.root, p)
	old := time.Now().Add(-time.Hour)
	return dir, os.Chtimes(p, old, old)
}

// serverPut replaces remotePath on the server through curl, a separate FTP
// client, logging in with the netrc file that e.netrcFile wrote.
func (e *env) serverPut(ctx context.Context, netrc, remotePath, content string) error {
	src, err := os.CreateTemp(e.work, "put-")
	if err != nil {
		return err
	}
	defer os.Remove(src.Name())
	if _, err := io.WriteString(src, content); err != nil {
		src.Close()
		return err
	}
	if err := src.Close(); err != nil {
		return err
	}
	return run(ctx, "curl", "-sS", "--netrc-file", netrc, "-T", src.Name(), "ftp://"+e.hostPort()+"/"+remotePath)
}

// folderFiles reads every regular file of a folder on the server's disk.
func folderFiles(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, en := range entries {
		if !en.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, en.Name()))
		if err != nil {
			return nil, err
		}
		files[en.Name()] = string(b)
	}
	return files, nil
}

// hasFile says whether the server's disk holds path with exactly content.
func hasFile(path, content string) bool {
	b, err := os.ReadFile(path)
	return err == nil && string(b) == content
}

// whereKept says which files of a folder hold the server's and the local
// version of a file changed on both sides.
func whereKept(files map[string]string, local, server string) (desc string, serverKept, localKept bool) {
	var s, l []string
	for name, content := range files {
		switch content {
		case server:
			s = append(s, name)
		case local:
			l = append(l, name)
		}
	}
	sort.Strings(s)
	sort.Strings(l)
	names := func(n []string) string {
		if len(n) == 0 {
			return "nowhere"
		}
		return strings.Join(n, ", ")
	}
	desc = fmt.Sprintf("server's version in %s, local in %s", names(s), names(l))
	if len(s) == 0 {
		desc = "server's version overwritten: " + desc
	}
	return desc, len(s) > 0, len(l) > 0
}

// seenText describes how long a change took to show, or that it did not.
func seenText(d time.Duration, seen bool, limit time.Duration) string {
	if !seen {
		return fmt.Sprintf("not within %.0f s", limit.Seconds())
	}
	return fmt.Sprintf("after %.1f s", d.Seconds())
}

// printBehaviour prints the scenarios as a second table: what each mount
// did, what ours must do and whether it did.
func printBehaviour(w io.Writer, results []result, rcloneVersion string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "issue\tbehaviour\tours\trclone mount (%s, %s)\texpected of ours\tresult\n",
		rcloneVersion, strings.Join(rcloneFlags, " "))
	for _, r := range results {
		verdict := "ok"
		if !r.pass() {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "#%d\t%s\t%s\t%s\t%s\t%s\n", r.issue, r.name, r.behave.ours, r.behave.rclone, r.behave.expect, verdict)
	}
	tw.Flush()
}
