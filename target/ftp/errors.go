package ftp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"syscall"

	jftp "github.com/jlaffaye/ftp"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// FTP reply codes we decide on (RFC 959, RFC 3659).
const (
	codeNotAvailable   = 421 // service closing: too many connections, idle timeout, shutdown
	codeCantOpenData   = 425
	codeAborted        = 426
	codeFileBusy       = 450
	codeLocalError     = 451
	codeNoSpace        = 452
	codeSyntax         = 500
	codeBadArguments   = 501
	codeNotImplemented = 502
	codeBadSequence    = 503
	codeNotImplParam   = 504
	codeNotLoggedIn    = 530
	codeNeedAccount    = 532
	codeFileUnavail    = 550
	codeNameNotAllowed = 553
)

// replyCode returns the FTP reply code inside err, or 0 if the server did not
// answer with one (a network error, a local refusal).
func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// isConnError reports whether err leaves the control connection in an unknown
// state, so that the connection must be discarded: network errors, timeouts,
// a closed stream, a 421 (the server is closing it), or a reply out of step
// with the commands: one that is not a reply line, or a positive reply where
// the command failed, which answers another command (a command cut short on
// the way leaves every later reply one behind).
func isConnError(err error) bool {
	if err == nil {
		return false
	}
	if c := replyCode(err); c == codeNotAvailable || outOfStep(c) {
		return true
	}
	var pe textproto.ProtocolError
	if errors.As(err, &pe) {
		return true
	}
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &ne), errors.As(err, &oe),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return true
	}
	var re tls.RecordHeaderError
	return errors.As(err, &re)
}

// outOfStep reports whether a failed command's reply code is a positive
// one: the reply of another command (see isConnError).
func outOfStep(code int) bool { return code > 0 && code < 400 }

// classify maps err to one of the target sentinels, or nil when the kind is
// unknown. It reads the reply code first and the text only to split 550,
// which servers use for every kind of refusal; callers that can check with a
// Stat do so (see disambiguate) instead of trusting the text.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, jftp.ErrInvalidCommand) {
		return target.ErrInvalidName
	}
	code := replyCode(err)
	switch {
	case code == codeNotLoggedIn || code == codeNeedAccount:
		return target.ErrAuth
	case code == codeNotAvailable || code == codeCantOpenData || code == codeAborted ||
		code == codeFileBusy || code == codeLocalError || code == codeNoSpace,
		outOfStep(code): // again on another connection
		return target.ErrTemporary
	case code == codeNotImplemented || code == codeNotImplParam:
		return target.ErrUnsupported
	case code == codeNameNotAllowed:
		if mentionsPermission(err) {
			return target.ErrPermission
		}
		return target.ErrInvalidName
	case code == codeFileUnavail:
		return classify550(err)
	case code >= 500:
		if mentionsPermission(err) {
			return target.ErrPermission
		}
		return nil
	case code != 0:
		return nil
	}
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ce x509.CertificateInvalidError
	if errors.As(err, &ue) || errors.As(err, &he) || errors.As(err, &ce) {
		return nil // not worth retrying: the certificate will not change
	}
	if isConnError(err) {
		return target.ErrTemporary
	}
	return nil
}

// classify550 reads the text of a 550 reply. The phrases are those of
// proftpd, vsftpd, pure-ftpd and goftp's server.
func classify550(err error) error {
	msg := strings.ToLower(replyReason(err))
	switch {
	case strings.Contains(msg, "no such file"), strings.Contains(msg, "not found"),
		strings.Contains(msg, "does not exist"), strings.Contains(msg, "cannot find"):
		return target.ErrNotFound
	case strings.Contains(msg, "not a directory"):
		return target.ErrNotDir
	case strings.Contains(msg, "is a directory"), strings.Contains(msg, "not a regular file"), strings.Contains(msg, "not a plain file"):
		return target.ErrIsDir
	case strings.Contains(msg, "not empty"):
		return target.ErrNotEmpty
	case strings.Contains(msg, "exists"):
		return target.ErrExist
	case mentionsPermission(err):
		return target.ErrPermission
	}
	return nil
}

// replyReason is a reply's text without the path the server echoes in it
// ("/d/x: No such file or directory", "'/d/x' cannot be listed"), so that
// a file named exists_unix.go or mod_permissions.txt is not read as the
// reason.
func replyReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	for {
		i := strings.IndexByte(msg, '\'')
		if i < 0 {
			return msg
		}
		j := strings.IndexByte(msg[i+1:], '\'')
		if j < 0 {
			return msg
		}
		msg = msg[:i] + msg[i+1+j+1:]
	}
}

func mentionsPermission(err error) bool {
	msg := strings.ToLower(replyReason(err))
	return strings.Contains(msg, "permission") || strings.Contains(msg, "operation not permitted") ||
		strings.Contains(msg, "access denied") || strings.Contains(msg, "read-only")
}

// wrapErr turns err into a *target.Error for op on path, keeping an existing
// *target.Error (already classified by a disambiguating Stat) and reporting a
// cancelled context as the context's error rather than the "use of closed
// network connection" its cancellation caused.
func wrapErr(ctx context.Context, op, path string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return target.NewError(op, path, nil, cerr)
	}
	var te *target.Error
	if errors.As(err, &te) {
		return err
	}
	return target.NewError(op, path, classify(err), err)
}

// kindError is a target error whose kind was decided by looking (a Stat or a
// List after a refusal), not by reading the reply text.
func kindError(op, path string, kind, err error) error {
	return target.NewError(op, path, kind, err)
}

// setupError is an error of New: a full sentence for the user that still
// matches its kind and cause with errors.Is.
type setupError struct {
	msg  string
	kind error
	err  error
}

func (e *setupError) Error() string { return e.msg }

func (e *setupError) Unwrap() []error {
	var errs []error
	for _, x := range []error{e.kind, e.err} {
		if x != nil {
			errs = append(errs, x)
		}
	}
	return errs
}

// explainConnect turns a failure to connect or log in into a sentence that
// names the server and what to check. It never includes the password: none
// of the library's errors carry it.
func (t *Target) explainConnect(ctx context.Context, err error) error {
	host := t.ep.Host
	var dnsErr *net.DNSError
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &setupError{msg: "connect to " + host + ": connection refused — is the server running and the port right?",
			kind: target.ErrTemporary, err: err}
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return &setupError{msg: "connect to " + host + ": unknown host " + dnsErr.Name + " — check the host name in the URL", err: err}
	case isTLSVerifyError(err):
		return tlsVerifyError(host, err)
	case t.password == "" && replyCode(err) >= codeSyntax && !errors.Is(err, errNoTLS):
		// Servers refuse an empty PASS in their own words (goftp: 553
		// "required param missing"); the cause is the missing password.
		return &setupError{msg: "login as " + t.ep.User + " at " + host + " failed: " + err.Error() +
			" — no password was found: set " + PasswordEnv + ", use --password-file or put the host in ~/.netrc", kind: target.ErrAuth, err: err}
	case replyCode(err) == codeNotLoggedIn || replyCode(err) == codeNeedAccount:
		return &setupError{msg: "login as " + t.ep.User + " at " + host + " failed: " + err.Error() +
			" — check the password (" + PasswordEnv + ", --password-file or ~/.netrc)", kind: target.ErrAuth, err: err}
	case replyCode(err) == codeNotAvailable:
		return &setupError{msg: "connect to " + host + ": the server refuses connections: " + err.Error() +
			" — try again later, or with fewer --connections", kind: target.ErrTemporary, err: err}
	case errors.Is(err, errNoTLS):
		return &setupError{msg: "connect to " + host + ": the server does not offer TLS (" + err.Error() +
			"); use ftp:// only if you accept sending the password in clear", kind: target.ErrUnsupported, err: err}
	case ctx.Err() != nil:
		return &setupError{msg: "connect to " + host + ": " + ctx.Err().Error(), err: ctx.Err()}
	case errors.As(err, &ne) && ne.Timeout():
		return &setupError{msg: fmt.Sprintf("connect to %s: no answer within %v — is the host reachable, the port "+
			"an FTP server's, and no firewall dropping the connection?", host, t.timeout), kind: target.ErrTemporary, err: err}
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		return &setupError{msg: "connect to " + host + ": the server closed the connection (" + err.Error() +
			") — is it an FTP server, and is the scheme (ftp://, ftps://, ftpes://) right?", kind: target.ErrTemporary, err: err}
	}
	return &setupError{msg: "connect to " + host + ": " + err.Error(), kind: classify(err), err: err}
}

// refused reports a reply that refuses the request itself (45x, 5xx), as
// opposed to a network failure: worth a look at the path to name the kind.
// goftp's server, for one, answers 450 to a STOR into a missing folder.
func refused(err error) bool { return replyCode(err) >= codeFileBusy }
