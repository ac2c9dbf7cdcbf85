// Package config reads the user's configuration file (named remotes and
// named one-shot tasks) and pyftpsync's pyftpsync.yaml, so that the command
// line can say "site" instead of a URL and flags.
//
// Values stay strings keyed by the command's flag names: the command line
// applies them through its own flag parsers, so a value means exactly what
// the same flag means, and this package needs no copy of the flag types.
// Every value keeps its line, so that a bad value is reported where it is.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Setting is one key of a remote or a task, named like the flag it sets.
type Setting struct {
	Key   string // the flag name, with dashes: "cache-max-size"
	Value string // a list is joined with commas, as the flag takes it
	Line  int
}

// Remote is a named remote: `ftpsync-mount mount site ~/site`.
type Remote struct {
	Name     string
	URL      string
	Settings []Setting // flags other than url, in file order
	File     string
	Line     int
}

// Task is a named one-shot command: `ftpsync-mount run deploy`.
type Task struct {
	Name     string
	Mode     string // sync, upload or download
	Local    string
	Remote   string // a named remote or a URL
	Settings []Setting
	File     string
	Line     int
}

// Config is the merged content of the files that were read.
type Config struct {
	Remotes     map[string]*Remote
	Tasks       map[string]*Task
	DefaultTask string // from pyftpsync.yaml's default_task
	DefaultFrom string // the file that named DefaultTask
	Files       []string
}

// remoteKeys are the flags a remote may set. The mount-only ones are
// ignored by the one-shot commands.
var remoteKeys = []string{
	"url", "password-file", "connections", "insecure-skip-verify", "ca-file", "timeout",
	"cache-dir", "cache-max-size", "dir-cache-time", "read-only", "allow-other",
}

// taskKeys are the flags a task may set, plus mode, local and remote.
var taskKeys = []string{
	"mode", "local", "remote", "delete", "delete-unmatched", "force", "resolve", "match", "exclude",
	"dry-run", "parallel", "case", "state-dir", "report-problems", "verbose", "quiet", "progress",
	"password-file", "connections", "insecure-skip-verify", "ca-file", "timeout",
}

// pathKeys hold file names; a leading ~/ is expanded as a shell would.
var pathKeys = map[string]bool{"password-file": true, "ca-file": true, "cache-dir": true, "state-dir": true, "local": true}

// secretKeys are refused wherever they appear: a config file is often
// copied, backed up and shared, and a password in it would travel along.
var secretKeys = map[string]bool{"password": true, "pass": true, "passwd": true, "pwd": true, "secret": true}

// ErrNotFound reports an explicitly named file that does not exist.
var ErrNotFound = errors.New("configuration file not found")

// New returns an empty configuration.
func New() *Config {
	return &Config{Remotes: map[string]*Remote{}, Tasks: map[string]*Task{}}
}

// DefaultPath is $XDG_CONFIG_HOME/ftpsync-mount/config.yaml, or
// ~/.config/ftpsync-mount/config.yaml when XDG_CONFIG_HOME is unset.
func DefaultPath() string {
	base := os.Getenv("XDG_CONFIG_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".config")
	}
	return filepath.Join(base, "ftpsync-mount", "config.yaml")
}

// Load reads the configuration file at path. A missing file is an error
// only if required (the user named it with --config).
func Load(path string, required bool) (*Config, error) {
	c := New()
	if path == "" {
		return c, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !required {
		return c, nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	if err := c.parse(path, data); err != nil {
		return nil, err
	}
	return c, nil
}

// parse reads one config.yaml into c.
func (c *Config) parse(file string, data []byte) error {
	top, err := document(file, data)
	if err != nil || top == nil {
		return err
	}
	c.Files = append(c.Files, file)
	return eachKey(file, top, "the top level", []string{"remotes", "tasks"}, func(key string, k, v *yaml.Node) error {
		switch key {
		case "remotes":
			return eachEntry(file, v, "remotes", func(name string, k, body *yaml.Node) error {
				r, err := parseRemote(file, name, k, body)
				if err != nil {
					return err
				}
				c.Remotes[name] = r
				return nil
			})
		default:
			return eachEntry(file, v, "tasks", func(name string, k, body *yaml.Node) error {
				t, err := parseTask(file, name, k, body, nil, nil)
				if err != nil {
					return err
				}
				return c.addTask(t)
			})
		}
	})
}

func parseRemote(file, name string, k, body *yaml.Node) (*Remote, error) {
	r := &Remote{Name: name, File: file, Line: k.Line}
	what := fmt.Sprintf("remote %q", name)
	err := eachKey(file, body, what, remoteKeys, func(key string, k, v *yaml.Node) error {
		val, err := scalar(file, what, key, v)
		if err != nil {
			return err
		}
		if key == "url" {
			r.URL = val
			return nil
		}
		r.Settings = append(r.Settings, Setting{Key: key, Value: val, Line: v.Line})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if r.URL == "" {
		return nil, fmt.Errorf("%s:%d: remote %q has no url; add url: ftp://user@host/folder", file, k.Line, name)
	}
	return r, nil
}

// parseTask reads a task's keys. rename maps foreign key names (pyftpsync's)
// to ours; base holds settings inherited from pyftpsync's common_config.
func parseTask(file, name string, k, body *yaml.Node, rename map[string]string, base []Setting) (*Task, error) {
	t := &Task{Name: name, File: file, Line: k.Line}
	own, err := settingsOf(file, fmt.Sprintf("task %q", name), body, rename)
	if err != nil {
		return nil, err
	}
	// A task's own key replaces the common one: list flags append on a
	// second Set, so both must not reach the flag.
	mine := map[string]bool{}
	for _, s := range own {
		mine[s.Key] = true
	}
	var settings []Setting
	for _, s := range base {
		if !mine[s.Key] {
			settings = append(settings, s)
		}
	}
	for _, s := range append(settings, own...) {
		switch s.Key {
		case "mode":
			t.Mode = s.Value
		case "local":
			t.Local = s.Value
		case "remote":
			t.Remote = s.Value
		default:
			t.Settings = append(t.Settings, s)
		}
	}
	switch {
	case t.Mode == "":
		return nil, fmt.Errorf("%s:%d: task %q has no mode; add mode: upload, download or sync", file, k.Line, name)
	case t.Mode != "sync" && t.Mode != "upload" && t.Mode != "download":
		return nil, fmt.Errorf("%s:%d: task %q: mode %q: use upload, download or sync", file, k.Line, name, t.Mode)
	case t.Remote == "":
		return nil, fmt.Errorf("%s:%d: task %q has no remote; add remote: a named remote or an ftp:// URL", file, k.Line, name)
	}
	if t.Local == "" {
		t.Local = "."
	}
	return t, nil
}

// Merge adds other's remotes and tasks; a name defined twice is an error
// naming both places, since silently preferring one would run the wrong
// task.
func (c *Config) Merge(other *Config) error {
	for name, r := range other.Remotes {
		if old, ok := c.Remotes[name]; ok {
			return fmt.Errorf("remote %q is defined in %s:%d and in %s:%d; rename one", name, old.File, old.Line, r.File, r.Line)
		}
		c.Remotes[name] = r
	}
	for _, t := range other.Tasks {
		if err := c.addTask(t); err != nil {
			return err
		}
	}
	if other.DefaultTask != "" {
		c.DefaultTask, c.DefaultFrom = other.DefaultTask, other.DefaultFrom
	}
	c.Files = append(c.Files, other.Files...)
	return nil
}

func (c *Config) addTask(t *Task) error {
	if old, ok := c.Tasks[t.Name]; ok {
		return fmt.Errorf("task %q is defined in %s:%d and in %s:%d; rename one", t.Name, old.File, old.Line, t.File, t.Line)
	}
	c.Tasks[t.Name] = t
	return nil
}

// TaskNames lists the tasks, sorted, for messages and completion.
func (c *Config) TaskNames() []string { return sortedKeys(c.Tasks) }

// RemoteNames lists the remotes, sorted.
func (c *Config) RemoteNames() []string { return sortedKeys(c.Remotes) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// settingsOf reads the keys of a task (or of pyftpsync's common_config).
func settingsOf(file, what string, body *yaml.Node, rename map[string]string) ([]Setting, error) {
	allowed := taskKeys
	if rename != nil {
		allowed = append(append([]string{}, taskKeys...), sortedKeys(rename)...)
	}
	var settings []Setting
	err := eachKey(file, body, what, allowed, func(key string, k, v *yaml.Node) error {
		if to, ok := rename[key]; ok {
			if to == "" { // accepted for compatibility, means nothing here
				return nil
			}
			key = to
		}
		val, err := scalar(file, what, key, v)
		if err != nil {
			return err
		}
		settings = append(settings, Setting{Key: key, Value: val, Line: v.Line})
		return nil
	})
	return settings, err
}

// ExpandHome turns a leading ~/ into the home directory.
func ExpandHome(p string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~"))
}
