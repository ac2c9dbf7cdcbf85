package sftp

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
)

// defaultKeys are the private keys ssh tries without -i, in ssh's order
// (DSA left out: OpenSSH no longer accepts it).
var defaultKeys = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// errNoPassword aborts password authentication when no source has one, so
// that the failure says where a password would come from.
var errNoPassword = errors.New("no key was accepted and no password is set: give a key (ssh-agent, ~/.ssh/id_ed25519, --identity) or a password (" + ftp.PasswordEnv + ", --password-file, ~/.netrc)")

// hostKeyError is what the host key check records, so that New can explain
// it instead of showing the handshake's generic error.
type hostKeyError struct {
	user, host, port string
	key              ssh.PublicKey
	files            []string
	known            []knownhosts.KnownKey // non-empty: the host is known with other keys
	err              error                 // another refusal (a revoked key, say)
}

func (e *hostKeyError) Error() string {
	fp := ssh.FingerprintSHA256(e.key)
	algo := e.key.Type()
	if e.err != nil {
		return fmt.Sprintf("host key of %s (%s %s) refused: %v", knownHostsName(e.host, e.port), algo, fp, e.err)
	}
	if len(e.known) > 0 {
		var lines []string
		for _, k := range e.known {
			lines = append(lines, fmt.Sprintf("%s:%d", k.Filename, k.Line))
		}
		return fmt.Sprintf("HOST KEY MISMATCH for %s: the server sent %s key %s, but %s records another key. "+
			"Someone may be intercepting the connection, or the server was reinstalled; check with its administrator, "+
			"then remove the old line (ssh-keygen -R %s) and accept the new key", e.host, algo, fp,
			strings.Join(lines, ", "), knownHostsName(e.host, e.port))
	}
	portFlag := ""
	if e.port != defaultPort {
		portFlag = " -p " + e.port
	}
	return fmt.Sprintf("unknown host %s: its %s key has fingerprint %s, which is in none of %s. "+
		"If that is the server's key (ask its administrator), accept it by logging in once with `ssh%s %s@%s`, "+
		"or add it with `ssh-keyscan%s %s >> ~/.ssh/known_hosts`, or give --known-hosts FILE",
		knownHostsName(e.host, e.port), algo, fp, strings.Join(e.files, ", "), portFlag, e.user, e.host, portFlag, e.host)
}

// knownHostsName is how known_hosts names a host: "[host]:port" off port 22.
func knownHostsName(host, port string) string {
	if port == defaultPort {
		return host
	}
	return "[" + host + "]:" + port
}

// hostKeyChecker checks server keys against known_hosts files and says
// which key types to ask for, so that a host known by its ed25519 key is
// not refused for offering an RSA key first.
type hostKeyChecker struct {
	files []string
	cb    ssh.HostKeyCallback
}

// newHostKeyChecker reads file, or ~/.ssh/known_hosts (and the system-wide
// /etc/ssh/ssh_known_hosts) when file is "". Missing default files are fine:
// every host is then unknown, and the message says how to add it.
func newHostKeyChecker(file string) (*hostKeyChecker, error) {
	var files []string
	if file != "" {
		if _, err := os.Stat(file); err != nil {
			return nil, fmt.Errorf("known hosts file %s: %w (give an existing file to --known-hosts)", file, err)
		}
		files = []string{file}
	} else {
		if home, err := os.UserHomeDir(); err == nil {
			files = append(files, filepath.Join(home, ".ssh", "known_hosts"))
		}
		files = append(files, "/etc/ssh/ssh_known_hosts")
	}
	var present []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			present = append(present, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("known hosts file %s: %w", f, err)
		}
	}
	c := &hostKeyChecker{files: files}
	if len(present) > 0 {
		cb, err := knownhosts.New(present...)
		if err != nil {
			return nil, fmt.Errorf("read known hosts: %w", err)
		}
		c.cb = cb
	}
	return c, nil
}

// callback returns the HostKeyCallback for ep; a refusal is stored in *refused.
func (c *hostKeyChecker) callback(ep Endpoint, refused **hostKeyError) ssh.HostKeyCallback {
	host, port := ep.hostName()
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		ke := &hostKeyError{user: ep.User, host: host, port: port, key: key, files: c.files}
		if c.cb == nil {
			*refused = ke
			return ke
		}
		err := c.cb(hostname, remote, key)
		if err == nil {
			return nil
		}
		var kerr *knownhosts.KeyError
		if errors.As(err, &kerr) {
			ke.known = kerr.Want
		} else {
			ke.err = err
		}
		*refused = ke
		return ke
	}
}

// algorithms lists the host key algorithms known_hosts has for ep, or nil
// (the library's default order) for an unknown host.
func (c *hostKeyChecker) algorithms(ep Endpoint) []string {
	if c.cb == nil {
		return nil
	}
	// Asking about a key no line can match makes the callback list the
	// keys it knows for the host.
	probe, err := ssh.NewPublicKey(probeKey)
	if err != nil {
		return nil
	}
	addr := &net.TCPAddr{IP: net.IPv4zero}
	if h, _ := ep.hostName(); net.ParseIP(h) != nil {
		addr.IP = net.ParseIP(h)
	}
	var kerr *knownhosts.KeyError
	if !errors.As(c.cb(ep.Host, addr, probe), &kerr) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range kerr.Want {
		for _, a := range algorithmsFor(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// algorithmsFor maps a key type to the signature algorithms that use it.
func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// probeKey is a public key no known_hosts line holds (all zero bytes).
var probeKey = ed25519.PublicKey(make([]byte, ed25519.PublicKeySize))

// authConfig is what authMethods needs to know.
type authConfig struct {
	ep           Endpoint
	identityFile string
	password     string // Options.Password; "" means resolve on demand
	passwordFile string
	log          logrus.FieldLogger
}

// authMethods returns the ways to log in, in ssh's order: the agent's keys
// and key files first, then the password, which is resolved only if the
// server asks for it (a key login needs no password source). The returned
// closer releases the agent connection.
func authMethods(cfg authConfig) ([]ssh.AuthMethod, func(), error) {
	var methods []ssh.AuthMethod
	closer := func() {}
	var signers []ssh.Signer
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if conn, err := net.Dial("unix", sock); err != nil {
			cfg.log.WithError(err).Warn("ssh-agent (SSH_AUTH_SOCK) does not answer; trying key files")
		} else {
			closer = func() { _ = conn.Close() }
			ag := agent.NewClient(conn)
			if s, err := ag.Signers(); err != nil {
				cfg.log.WithError(err).Warn("ssh-agent would not list its keys")
			} else {
				signers = append(signers, s...)
			}
		}
	}
	files, explicit := keyFiles(cfg.identityFile)
	for _, f := range files {
		s, err := loadKey(f, explicit)
		if err != nil {
			closer()
			return nil, nil, err
		}
		if s != nil {
			cfg.log.WithField("key", f).Debug("offering key")
			signers = append(signers, s)
		}
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	resolve := func() (string, error) {
		pw := cfg.password
		if pw == "" {
			var err error
			if pw, err = resolvePassword(cfg); err != nil {
				return "", err
			}
		}
		if pw == "" {
			return "", errNoPassword
		}
		return pw, nil
	}
	methods = append(methods, ssh.PasswordCallback(resolve),
		// Servers set to keyboard-interactive ask the same question.
		ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
			if len(questions) == 0 {
				return nil, nil
			}
			pw, err := resolve()
			if err != nil {
				return nil, err
			}
			answers := make([]string, len(questions))
			for i := range answers {
				answers[i] = pw
			}
			return answers, nil
		}))
	return methods, closer, nil
}

// resolvePassword uses target/ftp's lookup (FTPSYNC_PASSWORD, the password
// file, ~/.netrc, the URL), so that both protocols find a password alike.
func resolvePassword(cfg authConfig) (string, error) {
	netrc := ""
	if home, err := os.UserHomeDir(); err == nil {
		netrc = filepath.Join(home, ".netrc")
	}
	ep := ftp.Endpoint{Scheme: "sftp", Host: cfg.ep.Host, User: cfg.ep.User, URLPassword: cfg.ep.URLPassword}
	return ftp.ResolvePassword(ep, cfg.passwordFile, os.Getenv, netrc, cfg.log)
}

// keyFiles lists the key files to try: --identity alone when given (and
// then it must load), else the default ones that exist.
func keyFiles(identity string) (files []string, explicit bool) {
	if identity != "" {
		return []string{identity}, true
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, false
	}
	for _, k := range defaultKeys {
		files = append(files, filepath.Join(home, ".ssh", k))
	}
	return files, false
}

// loadKey reads a private key. A default key that is missing or protected
// by a passphrase is skipped (nil, nil); an explicit one is an error.
func loadKey(name string, explicit bool) (ssh.Signer, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read private key %s: %w", name, err)
	}
	s, err := ssh.ParsePrivateKey(data)
	var pass *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pass) && !explicit:
		return nil, nil
	case errors.As(err, &pass):
		return nil, fmt.Errorf("private key %s is protected by a passphrase: add it to ssh-agent (ssh-add %s) instead", name, name)
	case err != nil && explicit:
		return nil, fmt.Errorf("private key %s: %w", name, err)
	case err != nil:
		return nil, nil
	}
	return s, nil
}

// authError explains a refused login, naming user@host.
func authError(ep Endpoint, err error) error {
	return target.NewError("login", "", target.ErrAuth,
		fmt.Errorf("%s@%s refused the login (%v): check the user name, the key (--identity, ssh-agent) or the password (%s, --password-file, ~/.netrc)",
			ep.User, ep.Host, err, ftp.PasswordEnv))
}
