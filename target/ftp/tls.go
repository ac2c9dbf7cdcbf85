package ftp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// tlsSessionCacheSize is how many TLS sessions a target remembers. One
// server name is all we talk to, so a few entries are plenty.
const tlsSessionCacheSize = 16

// newTLSConfig builds the one tls.Config a target uses for its control and
// data connections. The shared ClientSessionCache matters: proftpd (and
// other servers with "TLSOptions" requiring reuse) refuses a data connection
// that does not resume the control connection's TLS session.
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
		ClientSessionCache: tls.NewLRUClientSessionCache(tlsSessionCacheSize),
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

// isTLSNotOffered reports the reply of a server without FTPS to AUTH TLS.
func isTLSNotOffered(err error) bool {
	code := replyCode(err)
	if code == codeSyntax || code == codeNotImplemented || code == codeNotImplParam || code == codeBadArguments {
		return true
	}
	return code == 534 || code == 431 || (code >= 500 && strings.Contains(strings.ToLower(err.Error()), "auth"))
}
