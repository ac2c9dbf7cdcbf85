// Package ftp is the FTP, FTPS and FTPES implementation of target.Target,
// on github.com/jlaffaye/ftp. It adds what the library leaves to its
// callers: a bounded connection pool, context cancellation and idle
// timeouts on every socket, exact listings (our own parser on the raw
// MLSD/LIST bytes), atomic uploads and error kinds.
package ftp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	jftp "github.com/jlaffaye/ftp"
	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/internal/remote"
)

// Options configure New. The command line fills them from its flags.
type Options struct {
	URL          string // ftp://, ftpes:// or ftps:// URL, see ParseURL
	PasswordFile string // --password-file
	// Password, if not empty, is used as is; otherwise ResolvePassword
	// looks in FTPSYNC_PASSWORD, PasswordFile, ~/.netrc and the URL.
	Password           string
	Connections        int  // pool size; default 4
	InsecureSkipVerify bool // --insecure-skip-verify
	CAFile             string
	// Timeout bounds connecting and every wait for the server (a reply, or
	// the next bytes of a transfer); default 30s.
	Timeout time.Duration
	// IdleClose closes pooled connections idle for longer; default 60s.
	IdleClose time.Duration
	// DialContext opens TCP connections, control and data; nil means a
	// net.Dialer. Tests pass fault-injecting or byte-counting dialers.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	Log         logrus.FieldLogger
}

const (
	defaultConnections = 4
	defaultTimeout     = 30 * time.Second
	defaultIdleClose   = 60 * time.Second
)

// serverFeatures is what FEAT said, read once at the first login.
type serverFeatures struct {
	mlst, mfmt, mdtm, utf8, rest bool
}

// mdtmWrite states: vsftpd's "MDTM time path" is tried once and remembered.
const (
	mdtmWriteUnknown int32 = iota
	mdtmWriteWorks
	mdtmWriteRefused
)

// Target is an FTP folder. It is safe for concurrent use; at most
// Options.Connections control connections are open at once.
type Target struct {
	ep Endpoint // read only; Root is absolute once New returns
	// given is the endpoint as the URL named it (read only). String and ID
	// use it, so that neither depends on the server's PWD answer: a mount of
	// the login folder finds the same cache dir with the server down.
	given    Endpoint
	password string // read only; never logged
	tlsCfg   *tls.Config
	timeout  time.Duration
	dialer   func(ctx context.Context, network, addr string) (net.Conn, error) // control connections
	dataDial func(ctx context.Context, network, addr string) (net.Conn, error) // data connections
	log      logrus.FieldLogger
	pool     *pool

	// Set in New before the pool is shared, read only afterwards.
	feat        serverFeatures
	listHidden  bool // dial with LIST -a: the server has no MLSD
	writingMDTM bool // dial with vsftpd's MDTM-write: MDTM but no MFMT

	mdtmWrite     atomic.Int32 // mdtmWrite* state
	renameRefused atomic.Bool  // the server refuses RNFR/RNTO: upload in place
	tempPrefix    string       // random per target, so that two processes never share a temp name
	tempSeq       atomic.Uint64
}

var _ target.Target = (*Target)(nil)

// New connects to the server once to check the URL, the password, the TLS
// certificate and the root folder, and returns a target ready for use.
func New(ctx context.Context, opts Options) (*Target, error) {
	opts.Log = remote.Log(opts.Log)
	ep, err := ParseURL(opts.URL)
	if err != nil {
		return nil, err
	}
	t := &Target{ep: ep, given: ep, password: opts.Password, timeout: opts.Timeout, dialer: opts.DialContext, dataDial: opts.DialContext}
	t.log = opts.Log.WithField("remote", ep.String())
	if t.timeout <= 0 {
		t.timeout = defaultTimeout
	}
	if t.dialer == nil {
		d := &net.Dialer{Timeout: t.timeout, KeepAlive: 30 * time.Second}
		t.dialer = d.DialContext
		// A data connection carries one transfer, which idleConn's
		// deadlines watch; keep-alive probes would only cost four
		// setsockopt calls per file.
		dd := &net.Dialer{Timeout: t.timeout, KeepAlive: -1}
		t.dataDial = dd.DialContext
	}
	if t.password == "" {
		netrc := ""
		if home, err := os.UserHomeDir(); err == nil {
			netrc = filepath.Join(home, ".netrc")
		}
		if t.password, err = ResolvePassword(ep, opts.PasswordFile, os.Getenv, netrc, t.log); err != nil {
			return nil, err
		}
	}
	if t.tlsCfg, err = newTLSConfig(ep, opts); err != nil {
		return nil, err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	t.tempPrefix = hex.EncodeToString(rnd[:])
	size := opts.Connections
	if size <= 0 {
		size = defaultConnections
	}
	idle := opts.IdleClose
	if idle <= 0 {
		idle = defaultIdleClose
	}
	t.pool = newPool(size, idle, t.log, t.dialConn)

	c, err := t.pool.get(ctx)
	if err != nil {
		t.pool.close()
		return nil, t.explainConnect(ctx, err)
	}
	c.begin(ctx)
	err = t.setup(c)
	if err != nil {
		c.markDead()
	}
	c.end()
	if t.listHidden || t.writingMDTM {
		// The probe connection was dialed before we knew the features;
		// the next ones get the options that fit this server.
		c.close()
	}
	t.pool.put(c)
	if err != nil {
		t.pool.close()
		return nil, err
	}
	return t, nil
}

// setup reads the features learned at login, resolves and checks the root.
func (t *Target) setup(c *conn) error {
	t.feat = c.feat
	t.listHidden = !t.feat.mlst
	t.writingMDTM = !t.feat.mfmt && t.feat.mdtm
	if t.ep.Root == "" {
		pwd, err := c.sc.CurrentDir()
		if err != nil {
			return &setupError{msg: "ask " + t.ep.Host + " for the login folder (PWD): " + err.Error(), kind: classify(err), err: err}
		}
		t.ep = t.ep.WithRoot(strings.ReplaceAll(pwd, `""`, `"`))
	}
	err := c.sc.ChangeDir(t.ep.Root)
	if err == nil {
		t.log.WithFields(logrus.Fields{"mlsd": t.feat.mlst, "mfmt": t.feat.mfmt, "mdtm": t.feat.mdtm, "utf8": t.feat.utf8}).Debug("connected")
		return nil
	}
	if isConnError(err) {
		return &setupError{msg: "check root folder " + t.ep.Root + " on " + t.ep.Host + ": " + err.Error(), kind: target.ErrTemporary, err: err}
	}
	if e, serr := t.statAbs(c, t.ep.Root); serr == nil && !e.IsDir {
		return &setupError{msg: "remote path " + t.ep.Root + " on " + t.ep.Host + " is a file, not a folder: give the folder in the URL",
			kind: target.ErrNotDir, err: err}
	} else if serr == nil || !errors.Is(serr, target.ErrNotFound) {
		return &setupError{msg: "cannot enter remote folder " + t.ep.Root + " on " + t.ep.Host + ": " + err.Error() +
			" — check its permissions", kind: target.ErrPermission, err: err}
	}
	return &setupError{msg: "remote folder " + t.ep.Root + " does not exist on " + t.ep.Host + " (" + err.Error() +
		"): create it, or fix the path in the URL", kind: target.ErrNotFound, err: err}
}

// dialConn opens and logs in one control connection; the pool calls it.
func (t *Target) dialConn(ctx context.Context) (*conn, error) {
	c := &conn{trans: &transcript{}, ctx: ctx}
	tlsCfg := t.connTLSConfig()
	dialed := 0
	dialFunc := func(network, addr string) (net.Conn, error) {
		dial := t.dialer
		if dialed > 0 {
			dial = t.dataDial
		}
		raw, err := dial(c.ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if _, ok := raw.RemoteAddr().(*net.TCPAddr); !ok {
			_ = raw.Close()
			return nil, errNoTCPAddr
		}
		ic := newIdleConn(raw, t.timeout)
		dialed++
		if dialed == 1 { // the control connection
			c.mu.Lock()
			c.ctl = ic
			dead := c.dead
			c.mu.Unlock()
			if dead {
				_ = ic.Close()
				return nil, net.ErrClosed
			}
			if t.ep.TLS == TLSImplicit {
				return tls.Client(ic, tlsCfg), nil
			}
			return ic, nil
		}
		// A data connection: jlaffaye/ftp leaves TLS to us when we dial.
		// The handshake waits for the first Read or Write, after the
		// transfer command, as proftpd and pure-ftpd expect.
		var dc net.Conn = ic
		if tlsCfg != nil {
			dc = tls.Client(ic, tlsCfg)
		}
		d := &dataConn{Conn: dc, owner: c, raw: ic}
		if err := c.setData(d); err != nil {
			_ = d.Close()
			return nil, err
		}
		return d, nil
	}
	opts := []jftp.DialOption{jftp.DialWithDialFunc(dialFunc), jftp.DialWithDebugOutput(c.trans)}
	switch t.ep.TLS {
	case TLSExplicit:
		opts = append(opts, jftp.DialWithExplicitTLS(tlsCfg))
	case TLSImplicit:
		opts = append(opts, jftp.DialWithTLS(tlsCfg))
	}
	if t.listHidden {
		opts = append(opts, jftp.DialWithForceListHidden(true))
	}
	if t.writingMDTM {
		opts = append(opts, jftp.DialWithWritingMDTM(true))
	}

	c.begin(ctx)
	sc, err := jftp.Dial(t.ep.Host, opts...)
	if err != nil {
		c.end()
		c.kill()
		if t.ep.TLS == TLSExplicit && replyCode(err) >= codeSyntax {
			// Dial only reads the greeting and sends AUTH TLS.
			err = fmt.Errorf("%w: %w", errNoTLS, err)
		}
		return nil, err
	}
	c.sc = sc
	c.trans.start()
	err = sc.Login(t.ep.User, t.password)
	feat := c.trans.stop()
	if ok := c.end(); !ok || err != nil {
		c.kill()
		if err == nil {
			err = net.ErrClosed
		}
		return nil, err
	}
	c.feat = parseFeat(feat)
	return c, nil
}

// parseFeat reads the FEAT reply out of the login transcript.
func parseFeat(text string) serverFeatures {
	var f serverFeatures
	for _, line := range replyLines(text, 211) {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(name) {
		case "MLST":
			f.mlst = true
		case "MFMT":
			f.mfmt = true
		case "MDTM":
			f.mdtm = true
		case "UTF8":
			f.utf8 = true
		case "REST":
			f.rest = true
		}
	}
	return f
}

// Features reports what this server supports. REST and APPE are assumed:
// every server we know has them, and FEAT lists REST only if it does STREAM.
func (t *Target) Features() target.Features {
	f := target.Features{
		MLSD:           t.feat.mlst,
		MFMT:           t.feat.mfmt,
		MDTMWrite:      t.writingMDTM && t.mdtmWrite.Load() != mdtmWriteRefused,
		REST:           true,
		APPE:           true,
		UTF8:           t.feat.utf8,
		TLS:            t.ep.TLS != TLSNone,
		MtimePrecision: time.Minute,
	}
	if t.feat.mlst {
		f.MtimePrecision = time.Second
		f.StagedWrites = true
	}
	return f
}

// String is the URL without the password.
func (t *Target) String() string { return t.given.String() }

// ID identifies the remote tree (host and root) for stored state.
func (t *Target) ID() string { return t.given.ID() }

// Close closes the idle connections; connections held by open readers are
// closed when the readers are.
func (t *Target) Close() error {
	t.pool.close()
	return nil
}
