package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
	"github.com/ftpsync-mount/ftpsync-mount/target/sftp"
)

// targetFlags are the flags of every command that opens a remote side.
type targetFlags struct {
	passwordFile string
	connections  int
	insecure     bool
	caFile       string
	timeout      time.Duration
	identity     string // sftp:// only
	knownHosts   string // sftp:// only
}

func (t *targetFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&t.passwordFile, "password-file", "", "read the FTP password from the first line of this file")
	fs.IntVar(&t.connections, "connections", 4, "at most this many connections to the server")
	fs.BoolVar(&t.insecure, "insecure-skip-verify", false, "accept any TLS certificate (unsafe: anyone on the path can read the password)")
	fs.StringVar(&t.caFile, "ca-file", "", "trust the TLS certificates signed by the CA in this PEM file")
	fs.DurationVar(&t.timeout, "timeout", 30*time.Second, "give up on a server that does not answer for this long")
	fs.StringVar(&t.identity, "identity", "", "sftp://: log in with this private key file (default: ssh-agent, ~/.ssh/id_ed25519, id_ecdsa, id_rsa)")
	fs.StringVar(&t.knownHosts, "known-hosts", "", "sftp://: check the server's host key against this file (default ~/.ssh/known_hosts)")
}

// isRemoteSpec tells URLs from local paths: anything with a scheme is a URL
// (so a typo like "ftp:/host" is reported, not taken as a folder).
func isRemoteSpec(spec string) bool {
	i := strings.Index(spec, ":")
	if i <= 0 {
		return false
	}
	scheme := spec[:i]
	for _, r := range scheme {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return false
		}
	}
	return !strings.ContainsRune(scheme, '/')
}

// openTarget opens one side given on the command line: a local folder, an
// ftp://, ftps:// or ftpes:// URL, or an sftp:// URL.
func openTarget(ctx context.Context, g *globalOptions, t *targetFlags, spec string) (target.Target, error) {
	if spec == "" {
		return nil, &usageError{msg: "empty folder or URL"}
	}
	if !isRemoteSpec(spec) {
		tg, err := local.New(spec, local.Options{Log: g.log})
		if err != nil {
			return nil, fmt.Errorf("open local folder: %w", err)
		}
		return tg, nil
	}
	if t.connections < 1 {
		return nil, &usageError{msg: fmt.Sprintf("--connections %d: must be at least 1", t.connections)}
	}
	if strings.HasPrefix(strings.ToLower(spec), "sftp:") {
		// A URL as typed that cannot work is a usage error, as for ftp://
		// (whose errors match ftp.ErrBadURL); the message never holds the
		// password.
		if _, err := sftp.ParseURL(spec); err != nil {
			return nil, &usageError{msg: err.Error()}
		}
		tg, err := sftp.New(ctx, sftp.Options{URL: spec, PasswordFile: t.passwordFile, IdentityFile: t.identity,
			KnownHostsFile: t.knownHosts, Connections: t.connections, Timeout: t.timeout, Log: g.log})
		if err != nil {
			return nil, err
		}
		return tg, nil
	}
	if t.insecure {
		g.log.Warn("--insecure-skip-verify: TLS certificates are not checked; the password and data can be intercepted")
	}
	tg, err := ftp.New(ctx, ftp.Options{
		URL:                spec,
		PasswordFile:       t.passwordFile,
		Connections:        t.connections,
		InsecureSkipVerify: t.insecure,
		CAFile:             t.caFile,
		Timeout:            t.timeout,
		Log:                g.log,
	})
	if err != nil {
		return nil, err
	}
	return tg, nil
}

// xdgDir returns $env, or $HOME/fallback when it is unset (the XDG base
// directory rules), joined with the rest.
func xdgDir(env, fallback string, rest ...string) string {
	base := os.Getenv(env)
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, fallback)
	}
	return filepath.Join(append([]string{base}, rest...)...)
}
