package main

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
)

// Exit statuses, as pyftpsync uses them so that scripts can switch over.
const (
	exitOK       = 0
	exitFailure  = 1 // something failed; the message says what
	exitUsage    = 2 // bad arguments or flags
	exitAborted  = 3 // the user stopped it
	exitProblems = 10
)

// exitError carries a specific exit status up to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError marks a bad command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// isUsageError recognises our usage errors, a URL that cannot be parsed,
// and cobra's errors, which are plain errors with recognisable text.
func isUsageError(err error) bool {
	if _, ok := err.(*usageError); ok {
		return true
	}
	if errors.Is(err, ftp.ErrBadURL) {
		return true
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return false // EINVAL's text is "invalid argument" too
	}
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand flag", "unknown command", "accepts ", "requires at least", "requires exactly", `invalid argument "`, "flag needs an argument", "bad flag syntax", "required flag(s)"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// unwritableHint adds what to do to an error about a folder we must write
// in (the cache or the state folder) that the system refused: flag names
// the option that picks another.
func unwritableHint(err error, flag string) error {
	for _, e := range []syscall.Errno{syscall.EACCES, syscall.EPERM, syscall.EROFS, syscall.ENOTDIR} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: give a folder you can write to with %s", err, flag)
		}
	}
	return err
}
