package sftp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path"
	"strconv"
	"strings"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

const defaultPort = "22"

// Endpoint is a parsed sftp:// URL: where to connect, as whom, and which
// remote directory is the root of the tree.
type Endpoint struct {
	// Host is host:port with the port always present (22 by default); the
	// host name is lower-cased, IPv6 in brackets.
	Host string
	// User is the login name; the local user's name when the URL has none,
	// as ssh does.
	User string
	// URLPassword is the password given in the URL, if any. It is never
	// printed by String or ID; ResolvePassword warns when it is used.
	URLPassword string
	// Root is the absolute remote directory that is the root of the tree
	// ("/srv/site", or "/" for the server's top), or "" for the login
	// directory, which New resolves to an absolute path.
	Root string
}

// Messages of ParseURL that echo nothing from the URL, so that a password
// typed in the wrong place is never shown.
var (
	errMalformedURL = errors.New("malformed URL: use sftp://[user@]host[:port]/path")
	errNoHost       = errors.New("URL has no host: use sftp://[user@]host[:port]/path")
	errBadHost      = errors.New("URL host is not a host name or address (an IPv6 address goes in brackets: sftp://[::1]/)")
	errBadPort      = errors.New("URL port must be a number from 1 to 65535")
	errBadUser      = errors.New("URL user name holds a control character")
	errBadPassword  = errors.New("URL password holds a control character")
	errQuery        = errors.New("sftp URLs take no ?parameters or #fragment; percent-encode '?' and '#' in a password (%3F, %23), or better drop the password from the URL")
	errSlashInPath  = errors.New("URL path element holds an encoded slash (%2F); only a leading %2F is allowed")
	errAtInPath     = errors.New("URL path holds '@': percent-encode '/' in a password as %2F, or '@' in the path as %40")
	errTilde        = errors.New("URL path starts with ~, which is not expanded: give the absolute path (sftp://user@host/home/user/site), or no path for the login folder")
)

// ParseURL parses sftp://[user[:password]@]host[:port][/path].
//
// The path is an absolute remote directory ("/srv/site"). As for ftp:// URLs,
// no path (or "/") is the login directory, and "/%2F" is the server's "/".
// Every path element must pass target.ValidName, so ".." and NUL, CR or LF
// are refused. Errors never hold the password.
func ParseURL(raw string) (Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return Endpoint{}, errMalformedURL
	}
	switch u.Scheme {
	case "sftp":
	case "":
		return Endpoint{}, errMalformedURL
	default:
		return Endpoint{}, fmt.Errorf("unknown scheme %q (use sftp://)", u.Scheme)
	}
	if u.RawQuery != "" || u.ForceQuery || strings.Contains(raw, "#") {
		return Endpoint{}, errQuery
	}
	var ep Endpoint
	if ep.Host, err = parseHost(u); err != nil {
		return Endpoint{}, err
	}
	if u.User != nil {
		ep.User = u.User.Username()
		if hasControl(ep.User) {
			return Endpoint{}, errBadUser
		}
		if pw, ok := u.User.Password(); ok {
			if hasControl(pw) {
				return Endpoint{}, errBadPassword
			}
			ep.URLPassword = pw
		}
	}
	if ep.User == "" {
		if ep.User, err = localUser(); err != nil {
			return Endpoint{}, err
		}
	}
	if strings.Contains(u.EscapedPath(), "@") {
		return Endpoint{}, errAtInPath
	}
	if ep.Root, err = parseRoot(u.EscapedPath()); err != nil {
		return Endpoint{}, err
	}
	return ep, nil
}

// localUser is the login ssh would use without user@ in the URL.
func localUser() (string, error) {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username, nil
	}
	if name := os.Getenv("USER"); name != "" {
		return name, nil
	}
	return "", errors.New("URL names no user and the local user name is unknown: use sftp://user@host/path")
}

func parseHost(u *url.URL) (string, error) {
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", errNoHost
	}
	for _, r := range host {
		if r <= ' ' || r == 0x7f {
			return "", errBadHost
		}
	}
	if strings.Contains(host, ":") {
		addr, _, _ := strings.Cut(host, "%")
		if !strings.HasPrefix(u.Host, "[") || net.ParseIP(addr) == nil {
			return "", errBadHost
		}
	}
	port := u.Port()
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return "", errBadPort
		}
		port = defaultPort
	} else {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", errBadPort
		}
		port = strconv.Itoa(n)
	}
	return net.JoinHostPort(host, port), nil
}

// parseRoot decodes the escaped URL path element by element, so that an
// encoded slash cannot smuggle a separator past the checks.
func parseRoot(escaped string) (string, error) {
	rest := strings.TrimLeft(escaped, "/")
	top := false
	if len(rest) >= 3 && strings.EqualFold(rest[:3], "%2F") {
		top = true
		rest = rest[3:]
	}
	var elems []string
	for _, el := range strings.Split(rest, "/") {
		if el == "" {
			continue
		}
		name, err := url.PathUnescape(el)
		if err != nil {
			return "", errMalformedURL
		}
		if strings.Contains(name, "/") {
			return "", errSlashInPath
		}
		if err := target.ValidName(name); err != nil {
			return "", fmt.Errorf("URL path: %w", err)
		}
		if len(elems) == 0 && !top && strings.HasPrefix(name, "~") {
			return "", errTilde
		}
		elems = append(elems, name)
	}
	if len(elems) == 0 {
		if top {
			return "/", nil
		}
		return "", nil
	}
	return "/" + strings.Join(elems, "/"), nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return true
		}
	}
	return false
}

// String is the URL without any password, in a form ParseURL reads back to
// the same endpoint.
func (e Endpoint) String() string {
	u := url.URL{Scheme: "sftp", User: url.User(e.User), Host: e.Host}
	switch e.Root {
	case "":
	case "/":
		u.RawPath = "/%2F"
		u.Path = "//"
	default:
		elems := strings.Split(strings.TrimPrefix(e.Root, "/"), "/")
		esc := make([]string, len(elems))
		for i, el := range elems {
			esc[i] = strings.ReplaceAll(url.PathEscape(el), "@", "%40")
		}
		u.Path = e.Root
		u.RawPath = "/" + strings.Join(esc, "/")
	}
	return u.String()
}

// ID identifies the remote tree for stored state: "sftp:" (so that an FTP
// and an SFTP view of one host never share state), the host (with the port
// only if it is not 22) and the root; "host/~user" for the login directory.
func (e Endpoint) ID() string {
	host := e.Host
	if h, p, err := net.SplitHostPort(e.Host); err == nil && p == defaultPort {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	if e.Root == "" {
		return "sftp:" + host + "/~" + e.User
	}
	return "sftp:" + host + e.Root
}

// hostName is the host without the port, for messages and known_hosts hints.
func (e Endpoint) hostName() (host, port string) {
	h, p, err := net.SplitHostPort(e.Host)
	if err != nil {
		return e.Host, defaultPort
	}
	return h, p
}

// remotePath maps a target-relative path (as target.CleanPath returns it)
// to the absolute path sent to the server; Root must be absolute by now.
func (e Endpoint) remotePath(rel string) string {
	if rel == "" {
		return e.Root
	}
	return path.Join(e.Root, rel)
}
