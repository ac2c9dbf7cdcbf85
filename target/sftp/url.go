package sftp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path"
	"strings"

	"github.com/ftpsync-mount/ftpsync-mount/target/internal/remote"
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
	errBadPassword  = errors.New("URL password holds a control character")
	errQuery        = errors.New("sftp URLs take no ?parameters or #fragment; percent-encode '?' and '#' in a password (%3F, %23), or better drop the password from the URL")
	errTilde        = errors.New("URL path starts with ~, which is not expanded: give the absolute path (sftp://user@host/home/user/site), or no path for the login folder")
)

// rules are the shared URL checks in SFTP's words. Unlike FTP they refuse
// a leading ~: SFTP servers take paths literally, so "~" would name a
// folder called "~" instead of the home folder.
var rules = remote.Rules{Malformed: errMalformedURL, NoHost: errNoHost, BadHost: errBadHost,
	BadPassword: errBadPassword, Tilde: errTilde}

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
	if ep.Host, err = rules.HostPort(u, defaultPort); err != nil {
		return Endpoint{}, err
	}
	if ep.User, ep.URLPassword, err = rules.UserInfo(u); err != nil {
		return Endpoint{}, err
	}
	if ep.User == "" {
		if ep.User, err = localUser(); err != nil {
			return Endpoint{}, err
		}
	}
	if ep.Root, err = rules.Root(u); err != nil {
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

// String is the URL without any password, in a form ParseURL reads back to
// the same endpoint.
func (e Endpoint) String() string {
	return remote.Format("sftp", e.User, e.Host, e.Root)
}

// ID identifies the remote tree for stored state: "sftp:" (so that an FTP
// and an SFTP view of one host never share state), the host (with the port
// only if it is not 22) and the root; "host/~user" for the login directory.
func (e Endpoint) ID() string {
	host := remote.HostID(e.Host, defaultPort)
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
