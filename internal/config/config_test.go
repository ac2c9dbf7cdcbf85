package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadRemotesAndTasks(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	p := write(t, t.TempDir(), "config.yaml", `# my sites
remotes:
  site:
    url: ftp://alice@files.example.com/site
    connections: 4
    cache-max-size: 10G
    password_file: ~/.ftp-pass
tasks:
  deploy:
    mode: upload
    local: ./public
    remote: site
    delete: true
    exclude: ["*.log", build/]
`)
	c, err := Load(p, true)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Remotes["site"]
	if r == nil || r.URL != "ftp://alice@files.example.com/site" || r.Line != 3 {
		t.Fatalf("remote site = %+v", r)
	}
	want := []Setting{
		{Key: "connections", Value: "4", Line: 5},
		{Key: "cache-max-size", Value: "10G", Line: 6},
		{Key: "password-file", Value: filepath.Join(home, ".ftp-pass"), Line: 7},
	}
	if !reflect.DeepEqual(r.Settings, want) {
		t.Errorf("settings = %+v, want %+v", r.Settings, want)
	}
	task := c.Tasks["deploy"]
	if task == nil || task.Mode != "upload" || task.Local != "./public" || task.Remote != "site" {
		t.Fatalf("task deploy = %+v", task)
	}
	wantTask := []Setting{{Key: "delete", Value: "true", Line: 13}, {Key: "exclude", Value: "*.log,build/", Line: 14}}
	if !reflect.DeepEqual(task.Settings, wantTask) {
		t.Errorf("task settings = %+v, want %+v", task.Settings, wantTask)
	}
	if got := c.TaskNames(); !reflect.DeepEqual(got, []string{"deploy"}) {
		t.Errorf("TaskNames = %v", got)
	}
}

func TestLoadMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "none.yaml")
	c, err := Load(p, false)
	if err != nil || len(c.Remotes) != 0 {
		t.Fatalf("optional missing file: %v, %+v", err, c)
	}
	if _, err := Load(p, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("required missing file: %v, want ErrNotFound", err)
	}
	empty := write(t, t.TempDir(), "empty.yaml", "# nothing yet\n")
	if c, err := Load(empty, true); err != nil || len(c.Tasks) != 0 {
		t.Fatalf("empty file: %v", err)
	}
}

// Each bad file must fail with the file, the line and the words that tell
// the user what to change.
func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string
	}{
		{"password key", "remotes:\n  site:\n    url: ftp://a@h/\n    password: hunter2\n",
			[]string{":4:", `"password" refused`, "FTPSYNC_PASSWORD", "netrc", "password-file"}},
		{"pass key in a task", "tasks:\n  t:\n    mode: upload\n    remote: ftp://h/\n    pass: x\n",
			[]string{":5:", `"pass" refused`, "FTPSYNC_PASSWORD"}},
		{"password in the URL", "remotes:\n  site:\n    url: ftp://alice:hunter2@h/\n",
			[]string{":3:", "holds a password", "FTPSYNC_PASSWORD"}},
		{"unknown key", "remotes:\n  site:\n    url: ftp://h/\n    conections: 4\n",
			[]string{":4:", `unknown key "conections"`, `remote "site"`, "connections"}},
		{"unknown top key", "remote:\n  site: {}\n", []string{":1:", `unknown key "remote"`, "remotes"}},
		{"no url", "remotes:\n  site:\n    connections: 2\n", []string{":2:", "no url"}},
		{"no mode", "tasks:\n  t:\n    remote: site\n", []string{":2:", `task "t" has no mode`}},
		{"bad mode", "tasks:\n  t:\n    mode: mirror\n    remote: site\n", []string{`mode "mirror"`}},
		{"no remote", "tasks:\n  t:\n    mode: sync\n", []string{"has no remote"}},
		{"duplicate key", "remotes:\n  s:\n    url: ftp://h/\n    url: ftp://i/\n", []string{":4:", "already given on line 3"}},
		{"nested value", "remotes:\n  s:\n    url: {a: b}\n", []string{":3:", "expected a value or a list"}},
		{"bad yaml", "remotes:\n  s: [\n", []string{"config.yaml"}},
		{"not a mapping", "- a\n- b\n", []string{":1:", "top level"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, t.TempDir(), "config.yaml", tc.text)
			_, err := Load(p, true)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(tc.want, p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadProject(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "pyftpsync.yaml", `default_task: deploy
common_config:
    progress: true
    remote: ftp://example.com/my_project
    exclude: build,node_modules
    root: true
tasks:
    sync_all:
        command: sync
    deploy:
        command: upload
        local: public
        delete_unmatched: true
        exclude: .*,_*
        verbose: 4
        dry_run: true
`)
	c, err := LoadProject(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.DefaultTask != "deploy" {
		t.Errorf("DefaultTask = %q", c.DefaultTask)
	}
	all := c.Tasks["sync_all"]
	if all == nil || all.Mode != "sync" || all.Remote != "ftp://example.com/my_project" || all.Local != dir {
		t.Fatalf("sync_all = %+v", all)
	}
	d := c.Tasks["deploy"]
	if d == nil || d.Mode != "upload" || d.Local != filepath.Join(dir, "public") {
		t.Fatalf("deploy = %+v", d)
	}
	want := []Setting{
		{Key: "progress", Value: "true", Line: 3},
		{Key: "delete-unmatched", Value: "true", Line: 13},
		{Key: "exclude", Value: ".*,_*", Line: 14}, // replaces common_config's, not appended
		{Key: "verbose", Value: "true", Line: 15},
		{Key: "dry-run", Value: "true", Line: 16},
	}
	if !reflect.DeepEqual(d.Settings, want) {
		t.Errorf("deploy settings =\n%+v\nwant\n%+v", d.Settings, want)
	}
}

func TestLoadProjectErrors(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, ".pyftpsync.yaml", "tasks:\n  t:\n    command: upload\n    remote: ftp://h/\n    no_keyring: true\n")
	_, err := LoadProject(dir)
	if err == nil || !strings.Contains(err.Error(), p+":5:") || !strings.Contains(err.Error(), `unknown key "no_keyring"`) {
		t.Fatalf("err = %v", err)
	}
	if c, err := LoadProject(t.TempDir()); err != nil || len(c.Tasks) != 0 {
		t.Fatalf("no project file: %v", err)
	}
}

func TestMergeRefusesTwoDefinitions(t *testing.T) {
	a := write(t, t.TempDir(), "config.yaml", "tasks:\n  deploy:\n    mode: upload\n    remote: ftp://h/\n")
	dir := t.TempDir()
	b := write(t, dir, "pyftpsync.yaml", "tasks:\n  deploy:\n    command: sync\n    remote: ftp://h/\n")
	ca, err := Load(a, true)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := LoadProject(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = ca.Merge(cb)
	if err == nil || !strings.Contains(err.Error(), a+":2") || !strings.Contains(err.Error(), b+":2") {
		t.Fatalf("Merge = %v, want both places named", err)
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/x/conf")
	if got := DefaultPath(); got != "/x/conf/ftpsync-mount/config.yaml" {
		t.Errorf("DefaultPath = %q", got)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "/home/al")
	if got := DefaultPath(); got != "/home/al/.config/ftpsync-mount/config.yaml" {
		t.Errorf("DefaultPath = %q", got)
	}
}

// The example shipped in contrib/ (and in the .deb) must stay valid.
func TestContribExample(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "contrib", "config.yaml"), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Remotes) == 0 || len(c.Tasks) == 0 {
		t.Fatalf("example has %d remotes and %d tasks", len(c.Remotes), len(c.Tasks))
	}
	for _, task := range c.Tasks {
		if _, ok := c.Remotes[task.Remote]; !ok && !strings.Contains(task.Remote, "://") {
			t.Errorf("task %s names remote %q, which the example does not define", task.Name, task.Remote)
		}
	}
}
