package sftp

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"syscall"

	"github.com/pkg/sftp"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// SFTP status codes beyond the three pkg/sftp turns into os errors. SFTP
// version 3, which OpenSSH speaks, has only the first ones: most failures
// arrive as the catch-all SSH_FX_FAILURE, and the operations find out the
// kind with a Stat. The later codes come from servers that speak version 5
// or 6 and are mapped where they appear.
const (
	fxFailure           = 4
	fxNoConnection      = 6
	fxConnectionLost    = 7
	fxOpUnsupported     = 8
	fxFileAlreadyExists = 11
	fxNoSpaceOnFS       = 14
	fxQuotaExceeded     = 15
	fxDirNotEmpty       = 18
	fxNotADirectory     = 19
	fxFileIsADirectory  = 24
)

// classify maps an error from pkg/sftp or the network to a target sentinel,
// or nil when the kind is unknown (SSH_FX_FAILURE).
func classify(err error) error {
	var te *target.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te) && te.Kind != nil:
		return te.Kind
	case errors.Is(err, fs.ErrNotExist):
		return target.ErrNotFound
	case errors.Is(err, fs.ErrPermission):
		return target.ErrPermission
	case isConnError(err):
		return target.ErrTemporary
	}
	var se *sftp.StatusError
	if !errors.As(err, &se) {
		return nil
	}
	switch se.Code {
	case fxOpUnsupported:
		return target.ErrUnsupported
	case fxFileAlreadyExists:
		return target.ErrExist
	case fxDirNotEmpty:
		return target.ErrNotEmpty
	case fxNotADirectory:
		return target.ErrNotDir
	case fxFileIsADirectory:
		return target.ErrIsDir
	case fxNoSpaceOnFS, fxQuotaExceeded:
		// Space may be freed; retrying later is the right reaction.
		return target.ErrTemporary
	}
	return nil
}

// isConnError reports whether err means the connection is gone, so that it
// is dropped and the next call redials.
func isConnError(err error) bool {
	if err == nil {
		return false
	}
	var se *sftp.StatusError
	if errors.As(err, &se) {
		return se.Code == fxNoConnection || se.Code == fxConnectionLost
	}
	var ne net.Error
	switch {
	case errors.Is(err, sftp.ErrSSHFxConnectionLost), errors.Is(err, sftp.ErrSSHFxNoConnection),
		errors.As(err, &ne), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	return false
}

// isFailure reports the catch-all SSH_FX_FAILURE, whose cause a Stat can tell.
func isFailure(err error) bool {
	var se *sftp.StatusError
	return errors.As(err, &se) && se.Code == fxFailure
}
