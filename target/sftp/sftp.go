// Package sftp is the SFTP implementation of target.Target, on
// github.com/pkg/sftp and golang.org/x/crypto/ssh. It adds what the
// libraries leave to their callers: key, agent and password logins with
// host keys checked against known_hosts, one SSH connection carrying a few
// SFTP sessions that is redialled when it breaks, keepalives that bound how
// long a silent server can hold a call, context cancellation, atomic
// uploads and error kinds.
package sftp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/internal/remote"
)

// Options configure New. The command line fills them from its flags.
type Options struct {
	URL          string // sftp://user@host[:port]/path, see ParseURL
	PasswordFile string // --password-file
	// Password, if not empty, is used as is; otherwise, when the server
	// asks for one, target/ftp's ResolvePassword looks in
	// FTPSYNC_PASSWORD, PasswordFile, ~/.netrc and the URL.
	Password string
	// IdentityFile is --identity: the one private key file to offer besides
	// ssh-agent's keys. Empty means ~/.ssh/id_ed25519, id_ecdsa and id_rsa.
	IdentityFile string
	// KnownHostsFile is --known-hosts; empty means ~/.ssh/known_hosts and
	// /etc/ssh/ssh_known_hosts.
	KnownHostsFile string
	// Connections is the number of SFTP sessions on the one SSH connection;
	// the server works on each in parallel. Default 4, at most 8.
	Connections int
	// Timeout bounds connecting and how long the server may stay silent
	// (checked with SSH keepalives); default 30s.
	Timeout time.Duration
	Log     logrus.FieldLogger
}

const (
	defaultSessions = 4
	// maxSessions stays under OpenSSH's default MaxSessions (10).
	maxSessions    = 8
	defaultTimeout = 30 * time.Second
)

// Target is an SFTP folder. It is safe for concurrent use.
type Target struct {
	ep       Endpoint // read only; Root is absolute once New returns
	timeout  time.Duration
	sessions int
	log      logrus.FieldLogger
	auth     authConfig
	hostKeys *hostKeyChecker

	links linkCache // the SSH connection, redialled when it breaks

	// Set in New from the first connection, read only afterwards.
	posixRename bool

	tempPrefix string // random per target, so that two processes never share a temp name
	tempSeq    atomic.Uint64
}

var _ target.Target = (*Target)(nil)

// New connects once to check the URL, the host key, the login and the root
// folder, and returns a target ready for use.
func New(ctx context.Context, opts Options) (*Target, error) {
	opts.Log = remote.Log(opts.Log)
	ep, err := ParseURL(opts.URL)
	if err != nil {
		return nil, err
	}
	t := &Target{ep: ep, timeout: opts.Timeout, sessions: opts.Connections}
	t.log = opts.Log.WithField("remote", ep.String())
	if t.timeout <= 0 {
		t.timeout = defaultTimeout
	}
	if t.sessions <= 0 {
		t.sessions = defaultSessions
	}
	t.sessions = min(t.sessions, maxSessions)
	if opts.IdentityFile != "" {
		// Fail now, not at the first login, on a key that cannot be used.
		if _, err := loadKey(opts.IdentityFile, true); err != nil {
			return nil, err
		}
	}
	if t.hostKeys, err = newHostKeyChecker(opts.KnownHostsFile); err != nil {
		return nil, err
	}
	t.auth = authConfig{ep: ep, identityFile: opts.IdentityFile, password: opts.Password,
		passwordFile: opts.PasswordFile, log: t.log}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	t.tempPrefix = hex.EncodeToString(rnd[:])
	t.links.init(t.dial)

	l, err := t.links.get(ctx)
	if err != nil {
		return nil, err
	}
	if err := t.setup(ctx, l); err != nil {
		t.links.close()
		return nil, err
	}
	return t, nil
}

// setup learns the server's extensions, resolves the login folder and
// checks that the root is a folder.
func (t *Target) setup(ctx context.Context, l *link) error {
	_, t.posixRename = l.sessions[0].HasExtension("posix-rename@openssh.com")
	if t.ep.Root == "" {
		var home string
		err := t.do(ctx, "connect", "", true, func(c *client) (err error) {
			home, err = c.RealPath(".")
			return err
		})
		if err != nil {
			return fmt.Errorf("ask %s for the login folder: %w", t.ep.Host, err)
		}
		if home == "" || home[0] != '/' {
			return fmt.Errorf("%s gave the login folder as %q, not an absolute path: give the folder in the URL", t.ep.Host, home)
		}
		t.ep.Root = home
	}
	e, err := t.Stat(ctx, "")
	switch {
	case errors.Is(err, target.ErrNotFound):
		return target.Errorf("connect", "", target.ErrNotFound,
			"remote folder %s does not exist on %s: create it, or fix the path in the URL", t.ep.Root, t.ep.Host)
	case err != nil:
		return fmt.Errorf("check remote folder %s on %s: %w", t.ep.Root, t.ep.Host, err)
	case !e.IsDir:
		return target.Errorf("connect", "", target.ErrNotDir,
			"remote path %s on %s is a file, not a folder: give the folder in the URL", t.ep.Root, t.ep.Host)
	}
	t.log.WithFields(logrus.Fields{"root": t.ep.Root, "posix-rename": t.posixRename, "sessions": len(l.sessions)}).Debug("connected")
	return nil
}

// Features reports what SFTP offers: second-precision times that can be
// set (SETSTAT; reported as MFMT, the flag callers test), offsets for reads
// and writes, permission bits. Names are bytes; OpenSSH passes UTF-8 as is.
func (t *Target) Features() target.Features {
	return target.Features{
		MLSD:           true, // exact names and times, as MLSD gives
		MFMT:           true,
		REST:           true,
		APPE:           true,
		UTF8:           true,
		TLS:            true, // SSH encrypts everything
		Chmod:          true,
		MtimePrecision: time.Second,
	}
}

// String is the URL without the password.
func (t *Target) String() string { return t.ep.String() }

// ID identifies the remote tree (host and root) for stored state.
func (t *Target) ID() string { return t.ep.ID() }

// Close closes the SSH connection. Readers still open fail afterwards.
func (t *Target) Close() error {
	t.links.close()
	return nil
}

// tempName returns a temporary name beside p, unique to this target and
// this call.
func (t *Target) tempName(p string) string {
	dir, name := target.Split(p)
	unique := fmt.Sprintf("%s-%d-%d", t.tempPrefix, os.Getpid(), t.tempSeq.Add(1))
	return target.Join(dir, target.TempName(name, unique))
}
