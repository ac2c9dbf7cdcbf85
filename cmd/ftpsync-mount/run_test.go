package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/internal/config"
	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
)

// isolateConfig points the default configuration at an empty folder, so
// that no test reads the user's own file, and returns the default path.
func isolateConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	return filepath.Join(dir, "ftpsync-mount", "config.yaml")
}

func writeConfig(t *testing.T, p, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRunTaskFolders runs a task between two local folders from the
// default config file: dry run first, then for real with --delete and an
// exclude list from the task.
func TestRunTaskFolders(t *testing.T) {
	cfg := isolateConfig(t)
	base := t.TempDir()
	l, r := filepath.Join(base, "site"), filepath.Join(base, "www")
	writeFileAt(t, filepath.Join(l, "index.html"), "home", mt0)
	writeFileAt(t, filepath.Join(l, "debug.log"), "noise", mt0)
	writeFileAt(t, filepath.Join(r, "old.html"), "gone", mt0)
	writeConfig(t, cfg, fmt.Sprintf(`tasks:
  deploy:
    mode: upload
    local: %s
    remote: %s
    delete: true
    exclude: ["*.log"]
`, l, r))

	code, out := runCLI(t, t.Context(), "run", "deploy", "--dry-run")
	if code != exitOK || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run: %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(r, "index.html")); err == nil {
		t.Fatal("the dry run uploaded")
	}
	code, out = runCLI(t, t.Context(), "run", "deploy")
	if code != exitOK {
		t.Fatalf("run deploy: %d\n%s", code, out)
	}
	if mustRead(t, filepath.Join(r, "index.html")) != "home" {
		t.Error("index.html was not uploaded")
	}
	if _, err := os.Stat(filepath.Join(r, "debug.log")); err == nil {
		t.Error("the excluded debug.log was uploaded")
	}
	if _, err := os.Stat(filepath.Join(r, "old.html")); err == nil {
		t.Error("delete: true did not remove old.html")
	}
	code, out = runCLI(t, t.Context(), "run", "--list")
	if code != exitOK || !strings.Contains(out, "deploy") || !strings.Contains(out, cfg+":2") {
		t.Errorf("run --list: %d\n%s", code, out)
	}
}

// TestRunTaskNamedRemote uploads to the embedded FTP server through a
// named remote, with the password from the environment, from a
// pyftpsync.yaml in the current folder (its default task, its command key).
func TestRunTaskNamedRemote(t *testing.T) {
	isolateConfig(t)
	srv := ftpdtest.Start(t)
	t.Setenv("FTPSYNC_PASSWORD", srv.Password)
	other := filepath.Join(t.TempDir(), "other.yaml")
	writeConfig(t, other, fmt.Sprintf("remotes:\n  site:\n    url: %s\n    connections: 2\n    cache-max-size: 1G\n", srv.URL()))
	project := t.TempDir()
	writeFileAt(t, filepath.Join(project, "public", "a.txt"), "to the server", mt0)
	writeConfig(t, filepath.Join(project, "pyftpsync.yaml"), `default_task: deploy
tasks:
  deploy:
    command: upload
    local: public
    remote: site
`)
	t.Chdir(project)
	code, out := runCLI(t, t.Context(), "--config", other, "run")
	if code != exitOK || !strings.Contains(out, "1 up") {
		t.Fatalf("run: %d\n%s", code, out)
	}
	if got := mustRead(t, filepath.Join(srv.Root, "a.txt")); got != "to the server" {
		t.Errorf("server has %q", got)
	}
	// upload with the remote's name directly, as a user would type it.
	writeFileAt(t, filepath.Join(project, "public", "b.txt"), "typed", mt0)
	code, out = runCLI(t, t.Context(), "--config", other, "upload", filepath.Join(project, "public"), "site")
	if code != exitOK || mustRead(t, filepath.Join(srv.Root, "b.txt")) != "typed" {
		t.Fatalf("upload to a named remote: %d\n%s", code, out)
	}
}

func TestRunErrors(t *testing.T) {
	cfg := isolateConfig(t)
	t.Chdir(t.TempDir())
	code, out := runCLI(t, t.Context(), "run", "deploy")
	if code != exitUsage || !strings.Contains(out, `no task "deploy"`) || !strings.Contains(out, "no configuration file") {
		t.Errorf("no config: %d\n%s", code, out)
	}
	code, out = runCLI(t, t.Context(), "--config", filepath.Join(t.TempDir(), "nope.yaml"), "run", "x")
	if code != exitFailure || !strings.Contains(out, "not found") {
		t.Errorf("missing --config file: %d\n%s", code, out)
	}
	base := t.TempDir()
	writeConfig(t, cfg, fmt.Sprintf(`tasks:
  twoway:
    mode: sync
    local: %[1]s
    remote: %[1]s
    delete: true
  badnum:
    mode: upload
    local: %[1]s
    remote: %[1]s
    parallel: many
`, base))
	for _, tc := range []struct{ task, want string }{
		{"twoway", cfg + ":6: task \"twoway\": delete is not a flag of sync"},
		{"badnum", cfg + ":11: task \"badnum\": parallel:"},
		{"nosuch", "known tasks: badnum, twoway"},
	} {
		code, out := runCLI(t, t.Context(), "run", tc.task)
		if code == exitOK || !strings.Contains(out, tc.want) {
			t.Errorf("run %s: %d, want %q in\n%s", tc.task, code, tc.want, out)
		}
	}
	writeConfig(t, cfg, "remotes:\n  site:\n    url: ftp://alice@127.0.0.1:1/\n    password: x\n")
	code, out = runCLI(t, t.Context(), "mount", "site", t.TempDir())
	if code == exitOK || !strings.Contains(out, cfg+":4") || !strings.Contains(out, "FTPSYNC_PASSWORD") {
		t.Errorf("password in the config: %d\n%s", code, out)
	}
}

// The command line's -v replaces a task's quiet: true instead of
// contradicting it, and the positional arguments come after "--".
func TestTaskArgsOverrides(t *testing.T) {
	g := &globalOptions{}
	task := &config.Task{Name: "t", Mode: "download", Local: "-odd", Remote: "ftp://h/", File: "c.yaml",
		Settings: []config.Setting{{Key: "quiet", Value: "true", Line: 6}, {Key: "exclude", Value: "a,b", Line: 7}}}
	got, err := taskArgs(newRunCmd(g), g, task, &runFlags{verbose: true, dryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"download", "--exclude=a,b", "--verbose", "--dry-run", "--", "-odd", "ftp://h/"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("taskArgs = %q, want %q", got, want)
	}
}
