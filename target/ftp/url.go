package ftp

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/ftpsync-mount/ftpsync-mount/target/internal/remote"
)

// TLSMode says whether and how the control and data channels are encrypted.
type TLSMode int

const (
	// TLSNone is plain FTP: credentials and data cross the network in clear.
	TLSNone TLSMode = iota
	// TLSExplicit upgrades a plain connection with AUTH TLS (ftpes://).
	TLSExplicit
	// TLSImplicit speaks TLS from the first byte, on port 990 by default (ftps://).
	TLSImplicit
)

func (m TLSMode) String() string {
	switch m {
	case TLSNone:
		return "none"
	case TLSExplicit:
		return "explicit"
	case TLSImplicit:
		return "implicit"
	}
	return "TLSMode(" + strconv.Itoa(int(m)) + ")"
}

// scheme is the canonical URL scheme of a mode; String writes it so that a
// printed endpoint parses back to the same endpoint.
func (m TLSMode) scheme() string {
	switch m {
	case TLSExplicit:
		return "ftpes"
	case TLSImplicit:
		return "ftps"
	}
	return "ftp"
}

func (m TLSMode) defaultPort() string {
	if m == TLSImplicit {
		return "990"
	}
	return "21"
}

// anonymousUser is the login used when the URL names none (RFC 1635).
const anonymousUser = "anonymous"

// Endpoint is a parsed ftp://, ftpes:// or ftps:// URL: where to connect, as
// whom, and which remote directory is the root of the tree.
type Endpoint struct {
	// Scheme is the canonical scheme of TLS: "ftp", "ftpes" or "ftps"
	// ("ftp://...?tls=explicit" gives "ftpes").
	Scheme string
	TLS    TLSMode
	// Host is host:port with the port always present (21, or 990 for
	// implicit TLS); the host name is lower-cased, IPv6 in brackets.
	Host string
	// User is the login name, percent-decoded; "anonymous" if the URL has none.
	User string
	// URLPassword is the password given in the URL, if any. It is visible in
	// ps and shell history, so ResolvePassword warns when it is used. It is
	// never printed by String or ID.
	URLPassword string
	// Root is the absolute remote directory that is the root of the tree,
	// cleaned ("/site", or "/" for the server's top), or "" for the login
	// directory. A pool resolves "" with PWD after login and calls WithRoot,
	// because relative paths break as soon as a connection changes directory.
	Root string
}

// Messages of ParseURL that echo nothing from the URL, so that a password
// typed in the wrong place (ftp://alice:pa#ss@host) is never shown.
var (
	errMalformedURL = errors.New("malformed URL: use ftp://[user@]host[:port]/path (ftps:// or ftpes:// for TLS)")
	errNoHost       = errors.New("URL has no host: use ftp://[user@]host[:port]/path")
	errBadHost      = errors.New("URL host is not a host name or address (an IPv6 address goes in brackets: ftp://[::1]/)")
	errBadPassword  = errors.New("URL password holds a control character (CR, LF or NUL would inject FTP commands)")
	errFragment     = errors.New("URL has a #fragment; percent-encode '#' in a password as %23, or better drop the password from the URL")
	errBadTLS       = errors.New("URL parameter tls must be explicit, implicit or none")
	errTLSConflict  = errors.New("URL parameter tls contradicts the scheme (ftps:// is implicit TLS, ftpes:// is explicit)")
	errUnknownParam = errors.New("unknown URL parameter (only tls=explicit|implicit|none is known); percent-encode '?' in a password as %3F")
)

// rules are the shared URL checks in FTP's words. A leading ~ in the path
// is sent as it is: some FTP servers expand it, and the user asked for it.
var rules = remote.Rules{Malformed: errMalformedURL, NoHost: errNoHost, BadHost: errBadHost, BadPassword: errBadPassword}

// ParseURL parses the remote URL given on the command line.
//
// Accepted: ftp://[user[:password]@]host[:port][/path][?tls=explicit|implicit|none],
// ftpes:// (explicit AUTH TLS, port 21) and ftps:// (implicit TLS, port 990).
// The path names an absolute remote directory ("/site"), as pyftpsync reads
// it; no path (or "/") is the login directory, and "/%2F" (RFC 1738's escape
// for the top) is the server's "/". Every path element must pass
// target.ValidName, so ".." and NUL, CR or LF are refused.
//
// Errors never hold the password, nor any part of the URL a misplaced password
// could end up in. Every error matches ErrBadURL.
func ParseURL(raw string) (Endpoint, error) {
	ep, err := parseURL(raw)
	if err != nil {
		return Endpoint{}, &urlError{err: err}
	}
	return ep, nil
}

// ErrBadURL matches every error of ParseURL: the URL as typed is wrong,
// which the command line reports as a usage error (exit status 2).
var ErrBadURL = errors.New("bad URL")

// urlError keeps ParseURL's message and adds ErrBadURL to what it matches.
type urlError struct{ err error }

func (e *urlError) Error() string   { return e.err.Error() }
func (e *urlError) Unwrap() []error { return []error{e.err, ErrBadURL} }

func parseURL(raw string) (Endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return Endpoint{}, errMalformedURL
	}
	var ep Endpoint
	switch u.Scheme {
	case "ftp":
		ep.TLS = TLSNone
	case "ftpes":
		ep.TLS = TLSExplicit
	case "ftps":
		ep.TLS = TLSImplicit
	case "":
		return Endpoint{}, errMalformedURL
	default:
		return Endpoint{}, fmt.Errorf("unknown scheme %q (use ftp://, ftps:// or ftpes://)", u.Scheme)
	}
	if strings.Contains(raw, "#") {
		return Endpoint{}, errFragment
	}
	if ep.TLS, err = parseQuery(u, ep.TLS); err != nil {
		return Endpoint{}, err
	}
	ep.Scheme = ep.TLS.scheme()

	if ep.Host, err = rules.HostPort(u, ep.TLS.defaultPort()); err != nil {
		return Endpoint{}, err
	}
	if ep.User, ep.URLPassword, err = rules.UserInfo(u); err != nil {
		return Endpoint{}, err
	}
	if ep.User == "" {
		ep.User = anonymousUser
	}
	if ep.Root, err = rules.Root(u); err != nil {
		return Endpoint{}, err
	}
	return ep, nil
}

// parseQuery reads the only parameter we know, tls, and checks that it agrees
// with the scheme.
func parseQuery(u *url.URL, mode TLSMode) (TLSMode, error) {
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return mode, errMalformedURL
	}
	for key := range q {
		if key != "tls" {
			return mode, errUnknownParam
		}
	}
	vals, ok := q["tls"]
	if !ok {
		return mode, nil
	}
	if len(vals) != 1 {
		return mode, errBadTLS
	}
	var want TLSMode
	switch strings.ToLower(vals[0]) {
	case "none":
		want = TLSNone
	case "explicit":
		want = TLSExplicit
	case "implicit":
		want = TLSImplicit
	default:
		return mode, errBadTLS
	}
	if u.Scheme != "ftp" && want != mode {
		return mode, errTLSConflict
	}
	return want, nil
}

// String is the URL without any password, in a form ParseURL reads back to
// the same endpoint: "ftp://alice@files.example.com:21/site".
func (e Endpoint) String() string {
	return remote.Format(e.Scheme, e.User, e.Host, e.Root)
}

// ID identifies the remote tree for stored state, in pyftpsync's form: the
// host name (with the port only if it is not the default), then the root path:
// "files.example.com/site". The login directory depends on the user, so it is
// "host/~user". It holds no password.
func (e Endpoint) ID() string {
	host := remote.HostID(e.Host, e.TLS.defaultPort())
	if e.Root == "" {
		return host + "/~" + e.User
	}
	return host + e.Root
}

// WithRoot returns a copy whose Root is abs, the directory PWD reported after
// login when the URL named none. abs is cleaned; a relative answer is taken
// as relative to "/".
func (e Endpoint) WithRoot(abs string) Endpoint {
	e.Root = path.Clean("/" + abs)
	return e
}

// RemotePath maps a target-relative path (as target.CleanPath returns it; ""
// is the root) to the path to send in FTP commands. With a Root it is
// absolute. With Root "" it is relative to the login directory ("." for the
// root itself), which holds only while the connection never changes
// directory; a pool should call WithRoot after login instead.
func (e Endpoint) RemotePath(rel string) string {
	switch {
	case e.Root == "" && rel == "":
		return "."
	case e.Root == "":
		return rel
	case rel == "":
		return e.Root
	case e.Root == "/":
		return "/" + rel
	}
	return e.Root + "/" + rel
}
