package config

import (
	"fmt"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"
)

// document parses data and returns its top-level mapping, or nil for an
// empty file. The node tree is walked by hand rather than decoded into
// structs: only the nodes know their line numbers, and an unknown or
// refused key must be reported with its line.
func document(file string, data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: expected keys like remotes: and tasks: at the top level", file, top.Line)
	}
	return top, nil
}

// normKey spells a key the way our flags are spelled: pyftpsync writes
// delete_unmatched where our flag is --delete-unmatched, and both are
// accepted.
func normKey(k string) string { return strings.ReplaceAll(strings.ToLower(k), "_", "-") }

// eachKey calls fn for every key of the mapping m, after refusing
// secrets, unknown keys and keys given twice.
func eachKey(file string, m *yaml.Node, what string, allowed []string, fn func(key string, k, v *yaml.Node) error) error {
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: %s: expected key: value lines", file, m.Line, what)
	}
	ok := map[string]bool{}
	for _, a := range allowed {
		ok[a] = true
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s:%d: %s: a key must be a plain name", file, k.Line, what)
		}
		key := normKey(k.Value)
		if secretKeys[key] {
			return fmt.Errorf("%s:%d: %s: key %q refused: passwords never go into the configuration file; "+
				"set FTPSYNC_PASSWORD, put the host in ~/.netrc, or name a file with password-file: FILE", file, k.Line, what, k.Value)
		}
		if !ok[key] {
			return fmt.Errorf("%s:%d: unknown key %q in %s (known keys: %s)", file, k.Line, k.Value, what, strings.Join(allowed, ", "))
		}
		if line, dup := seen[key]; dup {
			return fmt.Errorf("%s:%d: %s: key %q is already given on line %d", file, k.Line, what, k.Value, line)
		}
		seen[key] = k.Line
		if err := fn(key, k, v); err != nil {
			return err
		}
	}
	return nil
}

// eachEntry calls fn for every name: {body} entry of the section m.
func eachEntry(file string, m *yaml.Node, section string, fn func(name string, k, body *yaml.Node) error) error {
	if m.Kind == yaml.ScalarNode && m.Tag == "!!null" {
		return nil
	}
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: %s: expected one NAME: followed by its indented keys per entry", file, m.Line, section)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, body := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" || strings.ContainsAny(k.Value, "/:") {
			return fmt.Errorf("%s:%d: %s: a name must be a plain word, without / or : in it", file, k.Line, section)
		}
		if line, dup := seen[k.Value]; dup {
			return fmt.Errorf("%s:%d: %s: %q is already defined on line %d", file, k.Line, section, k.Value, line)
		}
		seen[k.Value] = k.Line
		if body.Kind != yaml.MappingNode {
			return fmt.Errorf("%s:%d: %s %q: expected indented key: value lines", file, body.Line, section, k.Value)
		}
		if err := fn(k.Value, k, body); err != nil {
			return err
		}
	}
	return nil
}

// scalar returns the value of key as the flag takes it: a list becomes
// comma-separated, paths get ~ expanded, and a URL with a password is
// refused like a password key.
func scalar(file, what, key string, v *yaml.Node) (string, error) {
	var val string
	switch v.Kind {
	case yaml.ScalarNode:
		val = v.Value
	case yaml.SequenceNode:
		parts := make([]string, 0, len(v.Content))
		for _, item := range v.Content {
			if item.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("%s:%d: %s: %s: a list may hold only plain values", file, item.Line, what, key)
			}
			if strings.Contains(item.Value, ",") {
				return "", fmt.Errorf("%s:%d: %s: %s: %q contains a comma, which would split it in two", file, item.Line, what, key, item.Value)
			}
			parts = append(parts, item.Value)
		}
		val = strings.Join(parts, ",")
	default:
		return "", fmt.Errorf("%s:%d: %s: %s: expected a value or a list", file, v.Line, what, key)
	}
	if pathKeys[key] {
		val = ExpandHome(val)
	}
	if key == "url" || key == "remote" {
		if u, err := url.Parse(val); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				return "", fmt.Errorf("%s:%d: %s: %s: the URL holds a password, which never goes into the configuration file; "+
					"remove it and set FTPSYNC_PASSWORD, put the host in ~/.netrc, or name a file with password-file: FILE", file, v.Line, what, key)
			}
		}
	}
	return val, nil
}
