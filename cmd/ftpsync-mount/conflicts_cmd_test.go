package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
)

// run runs the binary and returns its exit status and output.
func runBin(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("run %s: %v", strings.Join(args, " "), err)
	return 0, ""
}

// A conflict made through a mount is listed by status with both versions,
// and resolve settles it on both sides; refresh brings a server change in
// at once.
func TestStatusResolveRefreshCommands(t *testing.T) {
	bin := buildBinary(t)
	root := t.TempDir()
	srv := ftpdtest.StartRoot(t, root)
	mnt := t.TempDir()
	m := startMount(t, bin, srv, mnt, "--cache-dir", t.TempDir(), "--write-back", "10ms", "--poll-interval", "1h")
	doc := filepath.Join(mnt, "doc.txt")
	if err := os.WriteFile(doc, []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runBin(t, bin, "flush", mnt); code != 0 {
		t.Fatalf("flush: %d\n%s", code, out)
	}

	// refresh: a change on the server shows at once.
	past := time.Now().Add(-time.Hour)
	if err := os.WriteFile(filepath.Join(root, "doc.txt"), []byte("server's v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(root, "doc.txt"), past, past)
	if code, out := runBin(t, bin, "refresh", mnt); code != 0 || !strings.Contains(out, "listed 1 folder") {
		t.Fatalf("refresh: %d\n%s", code, out)
	}
	if got, err := os.ReadFile(doc); err != nil || string(got) != "server's v2" {
		t.Fatalf("after refresh the mount shows %q, %v", got, err)
	}

	// A conflict: both sides change doc.txt.
	if err := os.WriteFile(filepath.Join(root, "doc.txt"), []byte("server's v3"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(filepath.Join(root, "doc.txt"), past.Add(time.Minute), past.Add(time.Minute))
	if err := os.WriteFile(doc, []byte("mine, v3"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runBin(t, bin, "flush", mnt); code != 0 {
		t.Fatalf("flush: %d\n%s", code, out)
	}
	code, out := runBin(t, bin, "status", mnt)
	if code != 0 || !strings.Contains(out, "unresolved conflicts (1)") || !strings.Contains(out, "/doc.txt: changed on both sides") ||
		!strings.Contains(out, "local version:  /doc.conflict-") || !strings.Contains(out, "server version: /doc.txt, 11 B") {
		t.Fatalf("status: %d\n%s", code, out)
	}
	if code, out := runBin(t, bin, "resolve", filepath.Join(mnt, "doc.txt"), "--keep=local"); code != 0 || !strings.Contains(out, "replaces the server's") {
		t.Fatalf("resolve --keep=local: %d\n%s", code, out)
	}
	if code, out := runBin(t, bin, "flush", mnt); code != 0 {
		t.Fatalf("flush: %d\n%s", code, out)
	}
	if got, err := os.ReadFile(filepath.Join(root, "doc.txt")); err != nil || string(got) != "mine, v3" {
		t.Errorf("after resolve --keep=local the server holds %q, %v", got, err)
	}
	if got, err := os.ReadFile(doc); err != nil || string(got) != "mine, v3" {
		t.Errorf("after resolve --keep=local the mount shows %q, %v", got, err)
	}
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".conflict-") {
			t.Errorf("the conflict copy %s is still on the server", e.Name())
		}
	}
	if code, out := runBin(t, bin, "status", mnt); code != 0 || strings.Contains(out, "unresolved") {
		t.Errorf("status after resolve: %d\n%s", code, out)
	}

	// Bad input, each with its message and status.
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"resolve", doc, "--keep=local"}, exitFailure, "no unresolved conflict"},
		{[]string{"resolve", doc, "--keep=mine"}, exitUsage, "use local, remote or both"},
		{[]string{"resolve", doc}, exitUsage, `"keep" not set`},
		{[]string{"resolve", filepath.Join(t.TempDir(), "x"), "--keep=both"}, exitFailure, "is not in an ftpsync-mount mount"},
		{[]string{"refresh", mnt, "../outside"}, exitUsage, "is not inside the mount"},
		{[]string{"refresh", mnt, "doc.txt"}, exitFailure, "is not a folder"},
		{[]string{"refresh", mnt, "missing"}, exitFailure, "file does not exist"},
		{[]string{"refresh", t.TempDir()}, exitFailure, "is not an ftpsync-mount mount point"},
		{[]string{"mount", "--resolve=ask", srv.URL(), t.TempDir()}, exitUsage, "a mount settles conflicts without asking"},
		{[]string{"mount", "--poll-interval=-1s", srv.URL(), t.TempDir()}, exitUsage, "--poll-interval must not be negative"},
	} {
		code, out := runBin(t, bin, c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("ftpsync-mount %s: status %d, want %d with %q:\n%s", strings.Join(c.args, " "), code, c.code, c.want, out)
		}
	}
	if code, out := runBin(t, bin, "unmount", mnt); code != 0 {
		t.Fatalf("unmount: %d\n%s", code, out)
	}
	if err := m.wait(t); err != nil {
		t.Fatalf("mount exit: %v\n%s", err, m.log())
	}
}
