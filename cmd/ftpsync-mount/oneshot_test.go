package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// runCLI runs the command line in-process and returns the exit status
// main would return, with everything printed.
func runCLI(t *testing.T, ctx context.Context, args ...string) (int, string) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--log-level", "error"}, args...))
	err := root.ExecuteContext(ctx)
	code := exitOK
	if err != nil {
		out.WriteString("error: " + err.Error() + "\n")
		var ee *exitError
		switch {
		case errors.As(err, &ee):
			code = ee.code
		case isUsageError(err):
			code = exitUsage
		default:
			code = exitFailure
		}
	}
	if testing.Verbose() {
		t.Logf("ftpsync-mount %s -> %d\n%s", strings.Join(args, " "), code, out.String())
	}
	return code, out.String()
}

func writeFileAt(t *testing.T, p, content string, mt time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var mt0 = time.Date(2025, 5, 4, 3, 2, 1, 0, time.UTC)

func TestSyncCommandFolders(t *testing.T) {
	base := t.TempDir()
	l, r, st := filepath.Join(base, "l"), filepath.Join(base, "r"), filepath.Join(base, "state")
	writeFileAt(t, filepath.Join(l, "a.txt"), "local", mt0)
	writeFileAt(t, filepath.Join(r, "sub", "b.txt"), "remote", mt0)
	ctx := t.Context()

	code, out := runCLI(t, ctx, "sync", l, r, "--state-dir", st, "-n")
	if code != exitOK || !strings.Contains(out, "would upload") || !strings.Contains(out, "nothing changed") {
		t.Fatalf("dry run: %d\n%s", code, out)
	}
	if _, err := os.Stat(st); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dry run created the state folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r, "a.txt")); err == nil {
		t.Error("the dry run uploaded")
	}

	code, out = runCLI(t, ctx, "sync", l, r, "--state-dir", st)
	if code != exitOK || !strings.Contains(out, "1 up (5 B), 1 down (6 B)") {
		t.Fatalf("sync: %d\n%s", code, out)
	}
	if mustRead(t, filepath.Join(l, "sub", "b.txt")) != "remote" || mustRead(t, filepath.Join(r, "a.txt")) != "local" {
		t.Error("the trees do not agree")
	}
	code, out = runCLI(t, ctx, "sync", l, r, "--state-dir", st)
	if code != exitOK || !strings.Contains(out, "0 up (0 B), 0 down (0 B)") || strings.Contains(out, "upload") {
		t.Errorf("second sync: %d\n%s", code, out)
	}

	// A conflict, skipped without a terminal; --report-problems says so.
	writeFileAt(t, filepath.Join(l, "a.txt"), "local 2", mt0.Add(time.Hour))
	writeFileAt(t, filepath.Join(r, "a.txt"), "remote 2", mt0.Add(time.Hour))
	code, out = runCLI(t, ctx, "sync", l, r, "--state-dir", st, "--report-problems")
	if code != exitProblems || !strings.Contains(out, "1 skipped") {
		t.Errorf("conflict with --report-problems: %d\n%s", code, out)
	}
	code, out = runCLI(t, ctx, "sync", l, r, "--state-dir", st, "--resolve", "keep-both", "--report-problems")
	if code != exitOK {
		t.Errorf("keep-both: %d\n%s", code, out)
	}
	if mustRead(t, filepath.Join(l, "a.txt")) != "remote 2" {
		t.Error("keep-both: the remote version does not keep the name")
	}
}

func TestOneshotUsageErrors(t *testing.T) {
	base := t.TempDir()
	for _, args := range [][]string{
		{"sync", base},
		{"sync", base, base, "--resolve", "maybe"},
		{"upload", base, base, "--resolve", "remote"},
		{"download", base, base, "--resolve", "keep-both"},
		{"sync", base, base, "--case", "upper"},
		{"sync", base, base, "--parallel", "0"},
		{"sync", base, base, "--match", "[x"},
		{"sync", base, base, "-q", "-v"},
		{"sync", base, base, "--delete"},
	} {
		if code, out := runCLI(t, t.Context(), args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, exitUsage, out)
		}
	}
	if code, out := runCLI(t, t.Context(), "sync", filepath.Join(base, "missing"), base, "--state-dir", filepath.Join(base, "s")); code != exitFailure || !strings.Contains(out, "does not exist") {
		t.Errorf("missing folder: %d\n%s", code, out)
	}
}

func TestOneshotAborted(t *testing.T) {
	base := t.TempDir()
	l, r := filepath.Join(base, "l"), filepath.Join(base, "r")
	writeFileAt(t, filepath.Join(l, "a"), "a", mt0)
	os.MkdirAll(r, 0o755)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if code, out := runCLI(t, ctx, "upload", l, r, "--state-dir", filepath.Join(base, "s")); code != exitAborted {
		t.Errorf("cancelled run: exit %d, want %d\n%s", code, exitAborted, out)
	}
}

func TestUploadDownloadCommandsFTP(t *testing.T) {
	srv := ftpdtest.Start(t)
	t.Setenv("FTPSYNC_PASSWORD", srv.Password)
	base := t.TempDir()
	l, st := filepath.Join(base, "l"), filepath.Join(base, "state")
	writeFileAt(t, filepath.Join(l, "index.html"), "<h1>hi</h1>", mt0)
	writeFileAt(t, filepath.Join(l, "img", "a b.png"), "png", mt0)
	writeFileAt(t, filepath.Join(l, "debug.log"), "noise", mt0)
	writeFileAt(t, filepath.Join(srv.Root, "stale.html"), "old", mt0)
	ctx := t.Context()

	code, out := runCLI(t, ctx, "upload", l, srv.URL(), "--state-dir", st, "--exclude", "*.log", "--delete")
	if code != exitOK || !strings.Contains(out, "2 up") || !strings.Contains(out, "1 deleted remotely") {
		t.Fatalf("upload: %d\n%s", code, out)
	}
	if mustRead(t, filepath.Join(srv.Root, "img", "a b.png")) != "png" {
		t.Error("not uploaded")
	}
	for _, p := range []string{"debug.log", "stale.html"} {
		if _, err := os.Stat(filepath.Join(srv.Root, p)); err == nil {
			t.Errorf("%s is on the server", p)
		}
	}
	code, out = runCLI(t, ctx, "upload", l, srv.URL(), "--state-dir", st, "--exclude", "*.log")
	if code != exitOK || !strings.Contains(out, "0 up") {
		t.Errorf("second upload: %d\n%s", code, out)
	}
	// The server's copy changes; download brings it back.
	writeFileAt(t, filepath.Join(srv.Root, "index.html"), "<h1>changed</h1>", mt0.Add(time.Hour))
	code, out = runCLI(t, ctx, "download", l, srv.URL(), "--state-dir", st, "--exclude", "*.log")
	if code != exitOK || !strings.Contains(out, "1 down") || mustRead(t, filepath.Join(l, "index.html")) != "<h1>changed</h1>" {
		t.Errorf("download: %d\n%s", code, out)
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("/dev/null is not a terminal, though it is a character device")
	}
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to check the positive case: %v", err)
	}
	defer pty.Close()
	if !isTerminal(pty) {
		t.Error("a pseudo-terminal is not recognised")
	}
}

// TestHelperOneshotChild is not a test: TestKilledRunResumes starts the
// test binary again with FTPSYNC_TEST_CHILD_ARGS set, to run the command
// line in a process it can kill -9.
func TestHelperOneshotChild(t *testing.T) {
	args := os.Getenv("FTPSYNC_TEST_CHILD_ARGS")
	if args == "" {
		return
	}
	os.Exit(run(strings.Split(args, "\n")))
}

// startChild runs the command line args in a child process that the test
// can kill -9, and returns it with its standard output.
func startChild(t *testing.T, args []string) (*exec.Cmd, io.ReadCloser) {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestHelperOneshotChild$")
	child.Env = append(os.Environ(), "FTPSYNC_TEST_CHILD_ARGS="+strings.Join(args, "\n"))
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	return child, stdout
}

func TestKilledRunResumes(t *testing.T) {
	base := t.TempDir()
	l, r, st := filepath.Join(base, "l"), filepath.Join(base, "r"), filepath.Join(base, "state")
	const files = 300
	for i := range files {
		writeFileAt(t, filepath.Join(l, fmt.Sprintf("d%d", i%7), fmt.Sprintf("f%03d", i)), strings.Repeat("x", i), mt0)
	}
	os.MkdirAll(r, 0o755)
	args := []string{"upload", l, r, "--state-dir", st, "--parallel", "2"}
	child, stdout := startChild(t, args)
	// Kill it as soon as some uploads are recorded (each line is printed
	// after its record is stored).
	sc := bufio.NewScanner(stdout)
	printed := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "upload") {
			if printed++; printed == 20 {
				break
			}
		}
	}
	child.Process.Kill()
	io.Copy(io.Discard, stdout)
	child.Wait()
	if printed < 20 {
		t.Fatalf("the child finished or failed after %d uploads", printed)
	}

	// A dry run reads the state the killed run left.
	code, out := runCLI(t, t.Context(), append(args, "-n")...)
	if code != exitOK || !strings.Contains(out, "would upload") {
		t.Fatalf("dry run after the kill: %d\n%s", code, out)
	}
	code, out = runCLI(t, t.Context(), args...)
	if code != exitOK {
		t.Fatalf("resumed run: %d\n%s", code, out)
	}
	var redone int
	if _, err := fmt.Sscanf(out[strings.Index(out, "upload done"):], "upload done in %s %d up", new(string), &redone); err != nil {
		t.Fatalf("no summary: %v\n%s", err, out)
	}
	if redone > files-printed {
		t.Errorf("the resumed run uploaded %d files; at most %d were left", redone, files-printed)
	}
	if !strings.Contains(out, "0 conflicts, 0 skipped") {
		t.Errorf("the resumed run found conflicts:\n%s", out)
	}
	for i := range files {
		p := filepath.Join(fmt.Sprintf("d%d", i%7), fmt.Sprintf("f%03d", i))
		if got := mustRead(t, filepath.Join(r, p)); got != strings.Repeat("x", i) {
			t.Fatalf("%s: %d bytes on the remote side, want %d", p, len(got), i)
		}
	}
	if code, out := runCLI(t, t.Context(), args...); code != exitOK || !strings.Contains(out, "0 up") {
		t.Errorf("third run: %d\n%s", code, out)
	}
}

// TestKilledStagedUploadResumes kills an upload of new folders to an FTP
// server while they are staged (sync/oneshot_stage.go): the next run takes
// up the staging folders and sends only what had not arrived.
func TestKilledStagedUploadResumes(t *testing.T) {
	srv := ftpdtest.Start(t)
	t.Setenv("FTPSYNC_PASSWORD", srv.Password)
	base := t.TempDir()
	l, st := filepath.Join(base, "l"), filepath.Join(base, "state")
	const files = 300
	for i := range files {
		writeFileAt(t, filepath.Join(l, fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%03d", i)), strings.Repeat("x", 100*i), mt0)
	}
	args := []string{"upload", l, srv.URL(), "--state-dir", st, "--parallel", "2"}
	child, stdout := startChild(t, args)
	go io.Copy(io.Discard, stdout)
	// Kill it once some files are staged and none is in place yet.
	staged := 0
	for deadline := time.Now().Add(20 * time.Second); staged < 60 && time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		staged = countStaged(t, srv.Root)
	}
	child.Process.Kill()
	child.Wait()
	if staged < 60 {
		t.Fatalf("only %d files staged before the deadline", staged)
	}
	staged = countStaged(t, srv.Root)
	for i := range 3 {
		if _, err := os.Stat(filepath.Join(srv.Root, fmt.Sprintf("d%d", i))); err == nil {
			t.Fatalf("d%d is in place already; the kill came too late to test a resumed staging", i)
		}
	}

	code, out := runCLI(t, t.Context(), args...)
	if code != exitOK {
		t.Fatalf("resumed run: %d\n%s", code, out)
	}
	var sent int
	if _, err := fmt.Sscanf(out[strings.Index(out, "upload done"):], "upload done in %s %d up", new(string), &sent); err != nil {
		t.Fatalf("no summary: %v\n%s", err, out)
	}
	// Up to --parallel files may have been cut by the kill.
	if sent > files-staged+2 {
		t.Errorf("the resumed run uploaded %d files; %d of %d were staged", sent, staged, files)
	}
	if !strings.Contains(out, "0 conflicts, 0 skipped") {
		t.Errorf("the resumed run found conflicts:\n%s", out)
	}
	for i := range files {
		p := filepath.Join(fmt.Sprintf("d%d", i%3), fmt.Sprintf("f%03d", i))
		if got := mustRead(t, filepath.Join(srv.Root, p)); got != strings.Repeat("x", 100*i) {
			t.Fatalf("%s: %d bytes on the server, want %d", p, len(got), 100*i)
		}
	}
	if n := countStaged(t, srv.Root); n != 0 {
		t.Errorf("%d files left in staging folders", n)
	}
	if code, out := runCLI(t, t.Context(), args...); code != exitOK || !strings.Contains(out, "0 up") {
		t.Errorf("third run: %d\n%s", code, out)
	}
}

// countStaged counts the files in staging folders under root.
func countStaged(t *testing.T, root string) int {
	t.Helper()
	n := 0
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if e.IsDir() && target.IsTempName(e.Name()) {
			files, _ := os.ReadDir(filepath.Join(root, e.Name()))
			n += len(files)
		}
	}
	return n
}
