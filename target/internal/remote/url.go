// Package remote holds what the network targets (target/ftp and
// target/sftp) share: the checks on the host, user and path of their URLs,
// the form String prints, and the default logger of New. Each scheme
// keeps its own ParseURL, its own messages that show its URL form, and its
// own rules where they differ on purpose (FTP's ?tls= parameter and
// anonymous login, SFTP's refusal of a leading ~).
package remote

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Messages that are the same for every scheme. Like all URL errors they
// echo nothing from the URL, so that a misplaced password is never shown.
var (
	ErrBadPort     = errors.New("URL port must be a number from 1 to 65535")
	ErrBadUser     = errors.New("URL user name holds a control character")
	ErrSlashInPath = errors.New("URL path element holds an encoded slash (%2F); only a leading %2F is allowed")
	// A '/' in a password ends the host part early: ftp://alice:12/ss@host
	// parses as host "alice", port 12, path "/ss@host".
	ErrAtInPath = errors.New("URL path holds '@': percent-encode '/' in a password as %2F, or '@' in the path as %40")
)

// Rules are what differ between the schemes in the shared checks: errors
// whose messages show the scheme's URL form, and the path rule SFTP adds.
type Rules struct {
	Malformed   error // a path element that does not percent-decode
	NoHost      error
	BadHost     error
	BadPassword error // a password with a control character
	// Tilde, if not nil, refuses a path whose first element starts with
	// "~": SFTP servers do not expand it, so sftp://host/~/site would name a
	// folder called "~". FTP leaves it nil and sends such a name as it is.
	Tilde error
}

// HostPort checks u's host and port and returns them as host:port, the
// host lower-cased, IPv6 in brackets, the port always present
// (defaultPort when the URL has none) and without leading zeros.
func (r Rules) HostPort(u *url.URL, defaultPort string) (string, error) {
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return "", r.NoHost
	}
	for _, c := range host {
		if c <= ' ' || c == 0x7f {
			return "", r.BadHost
		}
	}
	// A colon belongs only in a bracketed IPv6 address; url.Parse takes
	// "ftp://a::21" as host "a:" and port 21.
	if strings.Contains(host, ":") {
		addr, _, _ := strings.Cut(host, "%")
		if !strings.HasPrefix(u.Host, "[") || net.ParseIP(addr) == nil {
			return "", r.BadHost
		}
	}
	port := u.Port()
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return "", ErrBadPort
		}
		port = defaultPort
	} else {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", ErrBadPort
		}
		port = strconv.Itoa(n)
	}
	return net.JoinHostPort(host, port), nil
}

// UserInfo returns the user name and password of u, percent-decoded; both
// are "" when the URL has none, and each scheme picks its own default user.
// A control character in either is refused: CR, LF or NUL would inject
// protocol commands.
func (r Rules) UserInfo(u *url.URL) (user, password string, err error) {
	if u.User == nil {
		return "", "", nil
	}
	user = u.User.Username()
	if HasControl(user) {
		return "", "", ErrBadUser
	}
	if pw, ok := u.User.Password(); ok {
		if HasControl(pw) {
			return "", "", r.BadPassword
		}
		password = pw
	}
	return user, password, nil
}

// Root returns the remote directory u's path names: "" for no path or "/"
// (the login directory), "/" for "/%2F" (RFC 1738's escape for the top),
// otherwise the cleaned absolute path. The escaped path is decoded element
// by element, so that an encoded slash cannot smuggle a separator past the
// checks, and every element must pass target.ValidName.
func (r Rules) Root(u *url.URL) (string, error) {
	escaped := u.EscapedPath()
	if strings.Contains(escaped, "@") {
		return "", ErrAtInPath
	}
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
			return "", r.Malformed
		}
		if strings.Contains(name, "/") {
			return "", ErrSlashInPath
		}
		if err := target.ValidName(name); err != nil {
			return "", fmt.Errorf("URL path: %w", err)
		}
		if r.Tilde != nil && len(elems) == 0 && !top && strings.HasPrefix(name, "~") {
			return "", r.Tilde
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

// HasControl says whether s holds a C0 control character or DEL.
func HasControl(s string) bool {
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return true
		}
	}
	return false
}

// Format writes an endpoint as a URL without a password, in the form Root
// reads back to the same root: "" gives no path, "/" gives "/%2F", and '@'
// in a path element is escaped so that it cannot look like userinfo.
func Format(scheme, user, hostPort, root string) string {
	u := url.URL{Scheme: scheme, User: url.User(user), Host: hostPort}
	switch root {
	case "":
	case "/":
		u.RawPath = "/%2F"
		u.Path = "//"
	default:
		elems := strings.Split(strings.TrimPrefix(root, "/"), "/")
		esc := make([]string, len(elems))
		for i, el := range elems {
			esc[i] = strings.ReplaceAll(url.PathEscape(el), "@", "%40")
		}
		u.Path = root
		u.RawPath = "/" + strings.Join(esc, "/")
	}
	return u.String()
}

// HostID is hostPort without the port when it is the default one, IPv6 in
// brackets, as the stored-state IDs name a host: a URL written with or
// without ":21" must find the same state.
func HostID(hostPort, defaultPort string) string {
	h, p, err := net.SplitHostPort(hostPort)
	if err != nil || p != defaultPort {
		return hostPort
	}
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}
