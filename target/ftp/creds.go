package ftp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/sirupsen/logrus"
)

// PasswordEnv is the environment variable ResolvePassword reads first. An
// environment variable is not visible in ps output, unlike an argument.
const PasswordEnv = "FTPSYNC_PASSWORD"

// anonymousPassword is the conventional password of anonymous logins
// (RFC 1635 asks for an e-mail address; servers accept this form).
const anonymousPassword = "anonymous@"

// maxSecretFile bounds what we read from a password or netrc file: both are
// tiny, and a mistaken path to a huge file must not eat memory.
const maxSecretFile = 1 << 20

// ResolvePassword finds the password for ep.User at ep.Host, trying in order:
// the environment variable FTPSYNC_PASSWORD (read through env), the first line
// of passwordFile (if not ""), the netrc file at netrcPath (if not "" and
// present), and the password given in the URL, which works but is logged as a
// warning because ps and shell history show it. An anonymous login (user
// "anonymous" or "ftp") with none of these gets "anonymous@"; any other user
// gets "" and no error, since some servers take an empty password.
//
// The password never appears in an error or a log line; log may be nil.
func ResolvePassword(ep Endpoint, passwordFile string, env func(string) string, netrcPath string, log logrus.FieldLogger) (string, error) {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	log = log.WithField("remote", ep.String())
	found := func(source string, pw string) (string, error) {
		if ep.URLPassword != "" {
			log.WithField("source", source).Warn("password in URL ignored; it is visible in ps and shell history, remove it from the URL")
		}
		log.WithField("source", source).Debug("using password")
		return pw, nil
	}

	if env != nil {
		if pw := env(PasswordEnv); pw != "" {
			return found(PasswordEnv, pw)
		}
	}
	if passwordFile != "" {
		pw, err := readPasswordFile(passwordFile, log)
		if err != nil {
			return "", err
		}
		return found("password file "+passwordFile, pw)
	}
	if netrcPath != "" {
		pw, ok, err := netrcPassword(netrcPath, ep, log)
		if err != nil {
			return "", err
		}
		if ok {
			return found("netrc "+netrcPath, pw)
		}
	}
	if ep.URLPassword != "" {
		log.Warn("password in URL is visible in ps and shell history; use " + PasswordEnv + ", --password-file or ~/.netrc")
		return ep.URLPassword, nil
	}
	if isAnonymous(ep.User) {
		return anonymousPassword, nil
	}
	log.WithField("user", ep.User).Info("no password found (" + PasswordEnv + ", --password-file, ~/.netrc); trying an empty one")
	return "", nil
}

func isAnonymous(user string) bool {
	return strings.EqualFold(user, anonymousUser) || strings.EqualFold(user, "ftp")
}

// readSecretFile reads a small file and warns when group or others may read
// it: a warning, not a refusal, because some setups (a shared service
// account, a read-only secrets mount) have no choice.
func readSecretFile(name, what string, log logrus.FieldLogger) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		if fi.IsDir() {
			return nil, fmt.Errorf("%s %s is a directory: give the file itself", what, name)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			log.WithField("file", name).Warnf("%s is readable by group or others; run chmod 600 %s", what, name)
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", what, name, err)
	}
	if len(data) > maxSecretFile {
		return nil, fmt.Errorf("%s %s is larger than %d bytes: is it the right file?", what, name, maxSecretFile)
	}
	return data, nil
}

// readPasswordFile returns the first line of the file, without its line end.
func readPasswordFile(name string, log logrus.FieldLogger) (string, error) {
	data, err := readSecretFile(name, "password file", log)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("password file %s does not exist: create it with the password on its first line (chmod 600), or drop --password-file", name)
		}
		if errors.Is(err, fs.ErrPermission) {
			return "", fmt.Errorf("password file %s cannot be read (permission denied): make it readable by this user", name)
		}
		return "", err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return "", fmt.Errorf("password file %s has an empty first line: put the password on it (for an empty password, give no password source)", name)
	}
	if bytes.ContainsAny(line, "\x00\r") {
		return "", fmt.Errorf("password file %s: the first line holds a NUL or CR character, which FTP cannot send", name)
	}
	return string(line), nil
}

// netrcPassword looks up ep in a netrc file. A missing file is not an error:
// most users have none.
func netrcPassword(name string, ep Endpoint, log logrus.FieldLogger) (string, bool, error) {
	data, err := readSecretFile(name, "netrc file", log)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", false, nil
		}
		if errors.Is(err, fs.ErrPermission) {
			return "", false, fmt.Errorf("netrc file %s cannot be read (permission denied): fix its owner or mode (chmod 600)", name)
		}
		return "", false, err
	}
	host := ep.Host
	if h, _, err := net.SplitHostPort(ep.Host); err == nil {
		host = h
	}
	entries, err := parseNetrc(data)
	if err != nil {
		return "", false, fmt.Errorf("netrc file %s: %w", name, err)
	}
	pw, ok := lookupNetrc(entries, host, ep.User)
	if ok && strings.ContainsAny(pw, "\x00\r\n") {
		return "", false, fmt.Errorf("netrc file %s: the password for %s holds a control character that FTP cannot send", name, host)
	}
	return pw, ok, nil
}

// netrcEntry is one "machine" (or "default") block of a netrc file.
type netrcEntry struct {
	machine     string // "" for default
	isDefault   bool
	login       string
	password    string
	hasPassword bool
}

// parseNetrc reads the netrc format of ftp(1): whitespace-separated tokens
// "machine NAME", "default", "login NAME", "password PW", "account PW" and
// "macdef NAME" (whose body runs to the next empty line). As curl does, it
// also takes double-quoted tokens with backslash escapes, skips lines whose
// first token starts with '#', and ignores keywords it does not know, so a
// file written for another tool still works.
func parseNetrc(data []byte) ([]netrcEntry, error) {
	t := netrcTokenizer{data: data}
	var entries []netrcEntry
	cur := -1
	for {
		tok, ok, err := t.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return entries, nil
		}
		switch tok {
		case "machine":
			name, err := t.value(tok)
			if err != nil {
				return nil, err
			}
			entries = append(entries, netrcEntry{machine: name})
			cur = len(entries) - 1
		case "default":
			entries = append(entries, netrcEntry{isDefault: true})
			cur = len(entries) - 1
		case "login", "password", "account":
			val, err := t.value(tok)
			if err != nil {
				return nil, err
			}
			if cur < 0 {
				continue // before any machine: applies to nothing
			}
			switch tok {
			case "login":
				entries[cur].login = val
			case "password":
				entries[cur].password = val
				entries[cur].hasPassword = true
			}
		case "macdef":
			if _, err := t.value(tok); err != nil {
				return nil, err
			}
			t.skipMacro()
		}
	}
}

// lookupNetrc picks the first machine entry for host whose login is user (or
// absent), else the first default entry, as ftp(1) does.
func lookupNetrc(entries []netrcEntry, host, user string) (string, bool) {
	match := func(e netrcEntry) bool { return e.login == "" || e.login == user }
	for _, e := range entries {
		if !e.isDefault && strings.EqualFold(e.machine, host) && match(e) {
			return e.password, e.hasPassword
		}
	}
	for _, e := range entries {
		if e.isDefault && match(e) {
			return e.password, e.hasPassword
		}
	}
	return "", false
}

type netrcTokenizer struct {
	data []byte
	pos  int
}

func isNetrcSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// next returns the next token; ok is false at the end of the data.
func (t *netrcTokenizer) next() (string, bool, error) {
	for {
		for t.pos < len(t.data) && isNetrcSpace(t.data[t.pos]) {
			t.pos++
		}
		if t.pos >= len(t.data) {
			return "", false, nil
		}
		if t.data[t.pos] == '#' && t.atLineStart() {
			t.skipLine()
			continue
		}
		break
	}
	if t.data[t.pos] == '"' {
		return t.quoted()
	}
	start := t.pos
	for t.pos < len(t.data) && !isNetrcSpace(t.data[t.pos]) {
		t.pos++
	}
	return string(t.data[start:t.pos]), true, nil
}

// value reads the argument of keyword kw; the argument may not be missing.
// The message names the keyword only, never the value.
func (t *netrcTokenizer) value(kw string) (string, error) {
	v, ok, err := t.next()
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("%q at the end of the file has no value", kw)
	}
	return v, nil
}

func (t *netrcTokenizer) quoted() (string, bool, error) {
	var b strings.Builder
	for t.pos++; t.pos < len(t.data); t.pos++ {
		c := t.data[t.pos]
		switch {
		case c == '"':
			t.pos++
			return b.String(), true, nil
		case c == '\\' && t.pos+1 < len(t.data):
			t.pos++
			b.WriteByte(t.data[t.pos])
		default:
			b.WriteByte(c)
		}
	}
	return "", false, errors.New("a quoted token has no closing '\"'")
}

// atLineStart reports whether only blanks precede pos on its line.
func (t *netrcTokenizer) atLineStart() bool {
	for i := t.pos - 1; i >= 0; i-- {
		switch t.data[i] {
		case '\n':
			return true
		case ' ', '\t', '\r', '\f', '\v':
		default:
			return false
		}
	}
	return true
}

func (t *netrcTokenizer) skipLine() {
	if i := bytes.IndexByte(t.data[t.pos:], '\n'); i >= 0 {
		t.pos += i + 1
	} else {
		t.pos = len(t.data)
	}
}

// skipMacro skips the rest of the macdef line and the macro body, which ends
// at an empty line or at the end of the file.
func (t *netrcTokenizer) skipMacro() {
	t.skipLine()
	for t.pos < len(t.data) {
		start := t.pos
		t.skipLine()
		line := bytes.TrimRight(t.data[start:t.pos], "\r\n")
		if len(line) == 0 {
			return
		}
	}
}
