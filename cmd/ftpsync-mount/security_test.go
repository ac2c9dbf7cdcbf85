package main

import (
	"bytes"
	"crypto/tls"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd"
	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/internal/testutil"
)

// checkPrivate fails for a folder under root that is not 0700 or a file
// that is not 0600: the cache and the state hold the user's files and
// their names.
func checkPrivate(t *testing.T, root string) (files int) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// grepTree fails for any file under root holding secret.
func grepTree(t *testing.T, root, secret string) (files int) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the password", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestSecretsAndModes mounts the embedded server with the real binary in
// the background (a child process), reads through it with trace logging,
// then runs a one-shot sync likewise, and checks that the cache and state
// folders are private and that the password appears in no argument list,
// log line, error message or file the program wrote.
func TestSecretsAndModes(t *testing.T) {
	bin := buildBinary(t)
	srv := ftpdtest.Start(t)
	pw := srv.Password
	if err := os.WriteFile(filepath.Join(srv.Root, "f.txt"), []byte("private content"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	cacheDir, stateDir, local, mnt := filepath.Join(base, "cache"), filepath.Join(base, "state"), filepath.Join(base, "local"), filepath.Join(base, "mnt")
	for _, d := range []string{local, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mountLog, syncLog := filepath.Join(base, "mount.log"), filepath.Join(base, "sync.log")
	run := func(env string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "FTPSYNC_PASSWORD="+env, "HOME="+base)
		out, err := cmd.CombinedOutput()
		if strings.Contains(string(out), pw) {
			t.Errorf("ftpsync-mount %s printed the password:\n%s", strings.Join(args, " "), out)
		}
		return string(out), err
	}

	out, err := run(pw, "--log-level", "trace", "--log-file", mountLog, "mount", "--daemon", "--cache-dir", cacheDir, srv.URL(), mnt)
	if err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() { run(pw, "unmount", mnt) })
	// The background mount is a child process: its argument list must not
	// hold the password (its environment does, readable by the user only).
	m := regexp.MustCompile(`\(pid (\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no pid in %q", out)
	}
	pid, _ := strconv.Atoi(m[1])
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || len(cmdline) == 0 {
		t.Fatalf("argv of the mount process %d: %v", pid, err)
	}
	if bytes.Contains(cmdline, []byte(pw)) {
		t.Errorf("the mount process's argv holds the password: %q", cmdline)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "f.txt")); err != nil || string(got) != "private content" {
		t.Fatalf("read through the mount: %q, %v", got, err)
	}
	if out, err := run(pw, "unmount", mnt); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}

	out, err = run(pw, "--log-level", "trace", "--log-file", syncLog, "sync", "--state-dir", stateDir, local, srv.URL())
	if err != nil {
		t.Fatalf("sync: %v\n%s", err, out)
	}
	// Error messages: a wrong password is not echoed either.
	const wrong = "wrong-Pa55word"
	out, err = run(wrong, "download", "--state-dir", filepath.Join(base, "state2"), local, srv.URL())
	if err == nil || strings.Contains(out, wrong) || !strings.Contains(out, "check the password") {
		t.Errorf("wrong password: %v\n%s", err, out)
	}

	cacheFiles := checkPrivate(t, cacheDir)
	stateFiles := checkPrivate(t, stateDir)
	n := grepTree(t, cacheDir, pw) + grepTree(t, stateDir, pw)
	for _, log := range []string{mountLog, syncLog} {
		b, err := os.ReadFile(log)
		if err != nil || len(b) == 0 {
			t.Fatalf("log %s: %v (%d bytes)", log, err, len(b))
		}
		if bytes.Contains(b, []byte(pw)) {
			t.Errorf("%s holds the password", log)
		}
		if !bytes.Contains(b, []byte("level=trace")) && !bytes.Contains(b, []byte("level=debug")) {
			t.Errorf("%s has no trace or debug lines; the check would prove nothing", log)
		}
	}
	t.Logf("checked %d cache files and %d state files (modes), %d files and 2 trace logs (password)", cacheFiles, stateFiles, n)
}

// TestSelfSignedFTPSRefused: a server with a certificate nobody vouches for
// is refused by default, with a message that names both ways out; each way
// out then works.
func TestSelfSignedFTPSRefused(t *testing.T) {
	ss := testutil.NewSelfSigned(t)
	cert, certPEM := ss.Cert, ss.PEM
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "f.txt"), []byte("over TLS"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := ftpd.Start(ftpd.Options{Root: root, Addr: "127.0.0.1:0", User: "u", Password: "tls-pw",
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv("FTPSYNC_PASSWORD", "tls-pw")
	t.Setenv("HOME", t.TempDir())
	url := "ftpes://u@" + srv.Addr() + "/"
	base := t.TempDir()
	caFile := filepath.Join(base, "ca.pem")
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	dst := filepath.Join(base, "refused")
	os.Mkdir(dst, 0o755)
	code, out := runCLI(t, t.Context(), "download", "--state-dir", filepath.Join(base, "s0"), dst, url)
	if code != exitFailure || !strings.Contains(out, "--insecure-skip-verify") || !strings.Contains(out, "--ca-file") ||
		!strings.Contains(out, "not trusted") {
		t.Errorf("self-signed server: exit %d\n%s\nwant exit 1 and a message naming --ca-file and --insecure-skip-verify", code, out)
	}
	if _, err := os.Stat(filepath.Join(dst, "f.txt")); err == nil {
		t.Error("downloaded from an untrusted server")
	}

	for i, extra := range [][]string{{"--ca-file", caFile}, {"--insecure-skip-verify"}} {
		dst := filepath.Join(base, "ok"+strconv.Itoa(i))
		os.Mkdir(dst, 0o755)
		args := append([]string{"download", "--state-dir", filepath.Join(base, "s"+strconv.Itoa(i+1))}, extra...)
		code, out := runCLI(t, t.Context(), append(args, dst, url)...)
		if code != exitOK {
			t.Errorf("download with %v: exit %d\n%s", extra, code, out)
			continue
		}
		if got, err := os.ReadFile(filepath.Join(dst, "f.txt")); err != nil || string(got) != "over TLS" {
			t.Errorf("download with %v: %q, %v", extra, got, err)
		}
	}
}
