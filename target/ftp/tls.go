package ftp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// errNoTLS marks a refused AUTH TLS: the server has no FTPS.
var errNoTLS = errors.New("server refused AUTH TLS")

// tlsSessionCacheSize is how many TLS sessions a connection remembers. One
// server name is all it talks to, so a few entries are plenty.
const tlsSessionCacheSize = 16

// newTLSConfig builds the tls.Config of a target: verification on unless
// the user turned it off, the user's CA if given. connTLSConfig derives
// each connection's copy, with its own session cache, from it.
func newTLSConfig(ep Endpoint, opts Options) (*tls.Config, error) {
	if ep.TLS == TLSNone {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(ep.Host)
	if err != nil {
		host = ep.Host
	}
	cfg := &tls.Config{
		ServerName:         host,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: opts.InsecureSkipVerify, //nolint:gosec // the user asked for it, and the command line warns
	}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read --ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate: give the CA certificate (-----BEGIN CERTIFICATE-----)", opts.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// connTLSConfig returns the TLS configuration for one control connection
// and its data connections, or nil without TLS. Each control connection
// gets its own session cache: proftpd accepts a data connection only if it
// resumes the TLS session of its own control connection, and a cache shared
// by the pool would hand it another connection's session.
func (t *Target) connTLSConfig() *tls.Config {
	if t.tlsCfg == nil {
		return nil
	}
	cfg := t.tlsCfg.Clone()
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(tlsSessionCacheSize)
	return cfg
}

// Handshake lets jlaffaye/ftp start TLS on an empty upload, where no Write
// would trigger it (proftpd refuses the transfer otherwise).
func (d *dataConn) Handshake() error {
	if tc, ok := d.Conn.(*tls.Conn); ok {
		return tc.Handshake()
	}
	return nil
}

// isTLSVerifyError reports whether err says the server's certificate was not
// trusted (as opposed to a network failure during the handshake).
func isTLSVerifyError(err error) bool {
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ce x509.CertificateInvalidError
	var ve *tls.CertificateVerificationError
	return errors.As(err, &ue) || errors.As(err, &he) || errors.As(err, &ce) || errors.As(err, &ve)
}

// tlsVerifyError explains a refused certificate and the two ways out.
func tlsVerifyError(host string, err error) error {
	return &setupError{
		msg: fmt.Sprintf("TLS certificate of %s is not trusted (%v): pass --ca-file with the certificate of the CA "+
			"that signed it (or the server's own self-signed certificate), or --insecure-skip-verify to skip the check "+
			"(anyone on the path can then read the password)", host, err),
		err: err,
	}
}
