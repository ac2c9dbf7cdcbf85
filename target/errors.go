package target

import (
	"errors"
	"fmt"
)

// Sentinel errors: every target maps its failures onto these so that callers
// decide with errors.Is and never parse reply text.
var (
	ErrNotFound    = errors.New("not found")
	ErrExist       = errors.New("already exists")
	ErrPermission  = errors.New("permission denied")
	ErrNotEmpty    = errors.New("directory not empty")
	ErrNotDir      = errors.New("not a directory")
	ErrIsDir       = errors.New("is a directory")
	ErrUnsupported = errors.New("not supported by the server")
	ErrTemporary   = errors.New("temporary failure")
	ErrAuth        = errors.New("login failed")
	ErrInvalidName = errors.New("invalid name")
	ErrShortWrite  = errors.New("source changed size during transfer")
)

// Error is the error type targets return: what was done, to which path, the
// kind (one of the sentinels above, or nil if unknown) and the cause.
type Error struct {
	Op   string // "stat", "list", "read", "write", ...
	Path string // target-relative path
	Kind error  // a sentinel of this package, or nil
	Err  error  // the underlying cause
}

func (e *Error) Error() string {
	p := e.Path
	if p == "" {
		p = "/"
	}
	msg := e.Op + " " + p
	switch {
	case e.Err != nil:
		return msg + ": " + e.Err.Error()
	case e.Kind != nil:
		return msg + ": " + e.Kind.Error()
	}
	return msg
}

// Unwrap lets errors.Is find both the kind and the cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// NewError builds an *Error; a nil err with a kind is fine.
func NewError(op, path string, kind, err error) error {
	return &Error{Op: op, Path: path, Kind: kind, Err: err}
}

// Errorf builds an *Error whose cause is a formatted message.
func Errorf(op, path string, kind error, format string, args ...any) error {
	return &Error{Op: op, Path: path, Kind: kind, Err: fmt.Errorf(format, args...)}
}

// IsRetriable reports whether trying the same operation again may succeed.
func IsRetriable(err error) bool { return errors.Is(err, ErrTemporary) }
