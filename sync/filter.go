package sync

import (
	"fmt"
	"path"
	"strings"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// MetaFileName is pyftpsync's per-folder state file. It is never synced as
// content: its meaning differs on each side.
const MetaFileName = ".pyftpsync-meta.json"

// DefaultExcludes are names never synced: version-control and NAS litter,
// and pyftpsync's own files.
var DefaultExcludes = []string{".DS_Store", ".git", ".hg", ".svn", "#recycle", MetaFileName, ".pyftpsync-lock.json"}

// Filter decides which paths take part in a run, from --match and
// --exclude globs.
//
// A pattern without a slash is matched against the base name at any depth
// ("*.log", ".git"); one with a slash against the whole path from the root
// ("docs/*.md"), where "**" stands for any number of folders ("**/*.log").
// A trailing slash limits a pattern to folders ("build/"). --match patterns
// select files only (folders are always entered); --exclude patterns apply
// to both and skip a folder's whole subtree.
type Filter struct {
	match    []pattern
	exclude  []pattern
	defaults map[string]bool
}

type pattern struct {
	elems   []string // path elements, "**" included; one element for base-name patterns
	base    bool     // match the base name at any depth
	dirOnly bool
}

// NewFilter checks the patterns and builds the filter. The default
// excludes are always added.
func NewFilter(match, exclude []string) (*Filter, error) {
	f := &Filter{defaults: map[string]bool{}}
	for _, n := range DefaultExcludes {
		f.defaults[n] = true
	}
	var err error
	if f.match, err = compile("--match", match); err != nil {
		return nil, err
	}
	if f.exclude, err = compile("--exclude", exclude); err != nil {
		return nil, err
	}
	return f, nil
}

func compile(flag string, pats []string) ([]pattern, error) {
	var out []pattern
	for _, raw := range pats {
		s := strings.TrimSpace(raw)
		if s == "" {
			continue
		}
		p := pattern{}
		if strings.HasSuffix(s, "/") {
			p.dirOnly = true
			s = strings.TrimRight(s, "/")
		}
		s = strings.TrimPrefix(s, "/")
		if s == "" {
			return nil, fmt.Errorf("%s %q: the pattern names nothing", flag, raw)
		}
		if !strings.Contains(s, "/") && !strings.HasPrefix(raw, "/") {
			p.base = true
		}
		p.elems = strings.Split(s, "/")
		for _, el := range p.elems {
			if _, err := path.Match(el, ""); err != nil {
				return nil, fmt.Errorf("%s %q: %w; use *, ?, [...] and ** only", flag, raw, err)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// Result says whether and why a path is left out.
type Result int

// The results of Filter.Check.
const (
	Included  Result = iota
	ByDefault        // a default exclude or a temp name: never touched
	ByUser           // excluded by --exclude or not selected by --match
)

// Check decides about one path (slash-separated, relative to the root).
// The caller checks each folder on the way down, so only the last element
// is tested against folder-level rules.
func (f *Filter) Check(p string, isDir bool) Result {
	name := path.Base("/" + p)
	if f.defaults[name] || target.IsTempName(name) {
		return ByDefault
	}
	for _, pat := range f.exclude {
		if pat.matches(p, name, isDir) {
			return ByUser
		}
	}
	if isDir || len(f.match) == 0 {
		return Included
	}
	for _, pat := range f.match {
		if pat.matches(p, name, false) {
			return Included
		}
	}
	return ByUser
}

func (pat pattern) matches(p, name string, isDir bool) bool {
	if pat.dirOnly && !isDir {
		return false
	}
	if pat.base {
		ok, _ := path.Match(pat.elems[0], name)
		return ok
	}
	return matchElems(pat.elems, strings.Split(p, "/"))
}

// matchElems matches path elements against pattern elements, where "**"
// matches zero or more elements. Both lists are short, and the recursion
// depth is bounded by the number of pattern elements.
func matchElems(pat, els []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			rest := pat[1:]
			if len(rest) == 0 {
				return true
			}
			for i := 0; i <= len(els); i++ {
				if matchElems(rest, els[i:]) {
					return true
				}
			}
			return false
		}
		if len(els) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], els[0]); !ok {
			return false
		}
		pat, els = pat[1:], els[1:]
	}
	return len(els) == 0
}
