package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// ProjectFiles are the names pyftpsync looks for in a project folder; its
// sample configuration suggests the hidden spelling.
var ProjectFiles = []string{"pyftpsync.yaml", ".pyftpsync.yaml"}

// pyftpsyncKeys maps pyftpsync's task keys to ours where they differ.
// root and here choose between the project root and the current folder;
// the project file is read from the current folder only, so both name the
// same folder and are accepted without effect.
var pyftpsyncKeys = map[string]string{"command": "mode", "root": "", "here": ""}

// LoadProject reads pyftpsync.yaml (or .pyftpsync.yaml) in dir, if there
// is one. As in pyftpsync, a task's local folder is relative to the file's
// folder and defaults to it.
func LoadProject(dir string) (*Config, error) {
	c := New()
	for _, name := range ProjectFiles {
		file := filepath.Join(dir, name)
		data, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		if err := c.parseProject(file, data); err != nil {
			return nil, err
		}
		return c, nil
	}
	return c, nil
}

func (c *Config) parseProject(file string, data []byte) error {
	top, err := document(file, data)
	if err != nil || top == nil {
		return err
	}
	c.Files = append(c.Files, file)
	var common []Setting
	var tasks *yaml.Node
	err = eachKey(file, top, "the top level", []string{"default-task", "common-config", "tasks"}, func(key string, k, v *yaml.Node) error {
		switch key {
		case "default-task":
			if v.Kind != yaml.ScalarNode {
				return fmt.Errorf("%s:%d: default_task: expected a task name", file, v.Line)
			}
			c.DefaultTask, c.DefaultFrom = v.Value, file
		case "common-config":
			s, err := settingsOf(file, "common_config", v, pyftpsyncKeys)
			if err != nil {
				return err
			}
			common = s
		default:
			tasks = v // read after common_config, wherever it stands in the file
		}
		return nil
	})
	if err != nil || tasks == nil {
		return err
	}
	dir := filepath.Dir(file)
	return eachEntry(file, tasks, "tasks", func(name string, k, body *yaml.Node) error {
		t, err := parseTask(file, name, k, body, pyftpsyncKeys, common)
		if err != nil {
			return err
		}
		if !filepath.IsAbs(t.Local) {
			t.Local = filepath.Join(dir, t.Local)
		}
		if t.Settings, err = verbosity(file, t.Name, t.Settings); err != nil {
			return err
		}
		return c.addTask(t)
	})
}

// verbosity turns pyftpsync's numeric verbose (3 is the default, more is
// chattier) into our -v and -q; true and false pass through.
func verbosity(file, task string, in []Setting) ([]Setting, error) {
	out := in[:0:0]
	for _, s := range in {
		if s.Key != "verbose" {
			out = append(out, s)
			continue
		}
		n, err := strconv.Atoi(s.Value)
		switch {
		case err != nil:
			out = append(out, s) // true or false, checked by the flag
		case n < 0 || n > 6:
			return nil, fmt.Errorf("%s:%d: task %q: verbose: %d is not a pyftpsync verbosity (0 to 6)", file, s.Line, task, n)
		case n > 3:
			out = append(out, Setting{Key: "verbose", Value: "true", Line: s.Line})
		case n < 3:
			out = append(out, Setting{Key: "quiet", Value: "true", Line: s.Line})
		}
	}
	return out, nil
}
