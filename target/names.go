package target

import (
	"fmt"
	"path"
	"strings"
)

// ValidName checks a single name that came from a target's listing or from a
// user. A hostile server must not be able to make us touch paths outside the
// tree, so ".", "..", empty names and names holding "/", NUL, CR or LF are
// refused.
func ValidName(name string) error {
	switch name {
	case "":
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	case ".", "..":
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	if i := strings.IndexAny(name, "/\x00\r\n"); i >= 0 {
		return fmt.Errorf("%w: %q holds %q", ErrInvalidName, name, name[i])
	}
	return nil
}

// CleanPath validates a target-relative path and returns it in canonical form:
// no leading or trailing slash, no empty, "." or ".." elements; "" for the
// root. Every element must pass ValidName.
func CleanPath(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" || p == "." {
		return "", nil
	}
	for _, el := range strings.Split(p, "/") {
		if err := ValidName(el); err != nil {
			return "", fmt.Errorf("path %q: %w", p, err)
		}
	}
	return p, nil
}

// Join joins a directory and a name into a target path.
func Join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Split returns the parent directory and base name of a target path.
func Split(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// Base is the last element of a target path.
func Base(p string) string { return path.Base("/" + p) }

// tempPrefix marks the temporary files targets write before renaming them
// into place. Listings leave such names out: they are never user content.
const tempPrefix = ".ftpsync-tmp-"

// TempName returns a temporary name beside name for an atomic write. unique
// must differ between concurrent writers (a counter or random string).
func TempName(name, unique string) string { return tempPrefix + unique + "-" + name }

// IsTempName reports whether name was made by TempName.
func IsTempName(name string) bool { return strings.HasPrefix(name, tempPrefix) }
