// Package local implements target.Target over a folder on local disk. The
// one-shot sync commands use it for the local side, and the tests use it as
// the reference every other target is compared with.
//
// Symbolic links: no path is resolved through a link (at.go tells how), so
// no path can reach outside the root folder, whatever links the folder
// holds. A local target treats a symbolic link as if nothing were there:
// List leaves links out, Stat and Open report them as not found, and a path
// that passes through a linked directory is not found either. Write and Rename refuse to
// replace a link (ErrPermission) rather than silently destroy it. Devices,
// sockets and pipes are handled the same way. The reason is that the remote
// side of a sync has no links: following one locally would upload the same
// content twice or, for a link to a parent, forever.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Options configures a local target.
type Options struct {
	// Log receives debug messages about entries that List leaves out and
	// about failures that do not fail an operation. Nil discards them.
	Log logrus.FieldLogger
}

// Target is a folder on local disk. It is safe for concurrent use.
type Target struct {
	root    *os.File           // read only; the root folder, which every path is reached from (at.go)
	abs     string             // read only; absolute path of the root folder
	log     logrus.FieldLogger // read only
	tmpBase string             // read only; random per target, keeps temp names unique across processes
	tmpSeq  atomic.Uint64      // counter that keeps temp names unique within this target
	// noOpenat2 is set once the kernel turned out to lack openat2.
	noOpenat2 atomic.Bool
}

var _ target.Target = (*Target)(nil)

// New opens the folder root as a target. The folder must exist and be a
// directory: a sync into a mistyped path must fail, not create a new tree.
func New(root string, opts Options) (*Target, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("local target %q: %w", root, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("local target %s does not exist; create the folder first: %w", abs, target.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("local target %s: %w", abs, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("local target %s is not a folder; give the folder to sync: %w", abs, target.ErrNotDir)
	}
	r, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("local target %s: %w", abs, err)
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("local target %s: random temp name part: %w", abs, err)
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	return &Target{
		root:    r,
		abs:     abs,
		log:     log.WithField("target", "local:"+abs),
		tmpBase: hex.EncodeToString(rnd[:]),
	}, nil
}

// Features reports what a local folder supports: everything, with the
// filesystem's nanosecond times. MLSD is set because listings are exact, so
// callers never need to refine times as they must for FTP LIST output.
func (t *Target) Features() target.Features {
	return target.Features{
		MLSD:           true,
		MFMT:           true,
		REST:           true,
		APPE:           true,
		UTF8:           true,
		Chmod:          true,
		MtimePrecision: time.Nanosecond,
	}
}

// String is the absolute path of the root folder.
func (t *Target) String() string { return t.abs }

// ID is "local:" and the absolute path of the root folder.
func (t *Target) ID() string { return "local:" + t.abs }

// Close releases the root folder's descriptor; later calls fail.
func (t *Target) Close() error {
	if err := t.root.Close(); err != nil {
		return fmt.Errorf("close local target %s: %w", t.abs, err)
	}
	return nil
}

// resolve checks the context and the path and returns the cleaned,
// root-relative path; "" is the root.
func (t *Target) resolve(ctx context.Context, op, p string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", target.NewError(op, p, nil, err)
	}
	rel, err := target.CleanPath(p)
	if err != nil {
		return "", target.NewError(op, p, target.ErrInvalidName, err)
	}
	return rel, nil
}

// lstatIn describes name in the directory dir (rel is its path below the
// root) without following it. A link or special file counts as missing
// (see the package comment); the returned error says which it was.
func (t *Target) lstatIn(op, rel string, dir int, name string) (fs.FileInfo, error) {
	fi, err := lstatAt(dir, name)
	if err != nil {
		return nil, t.mapErr(op, rel, err)
	}
	if err := unsupportedType(fi); err != nil {
		return nil, target.NewError(op, rel, target.ErrNotFound, err)
	}
	return fi, nil
}

// unsupportedType says why fi is neither a regular file nor a directory.
func unsupportedType(fi fs.FileInfo) error {
	m := fi.Mode()
	switch {
	case m.IsRegular() || m.IsDir():
		return nil
	case m&fs.ModeSymlink != 0:
		return errors.New("a symbolic link, which local targets do not follow")
	}
	return fmt.Errorf("a special file (%s), which local targets do not read", m.Type())
}

// refuseLink fails if name in dir (rel below the root) is a link or
// special file, which Write and Rename would otherwise replace; a missing
// name is fine.
func (t *Target) refuseLink(op, rel string, dir int, name string) (fs.FileInfo, error) {
	fi, err := lstatAt(dir, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, t.mapErr(op, rel, err)
	}
	if err := unsupportedType(fi); err != nil {
		return nil, target.Errorf(op, rel, target.ErrPermission, "%s is %v; move it away to replace it", rel, err)
	}
	return fi, nil
}

// entry converts a FileInfo into the target's view of it.
func entry(name string, fi fs.FileInfo) target.Entry {
	e := target.Entry{
		Name:      name,
		IsDir:     fi.IsDir(),
		ModTime:   fi.ModTime().UTC(),
		Precision: time.Nanosecond,
		Mode:      fi.Mode().Perm(),
	}
	if !e.IsDir {
		e.Size = fi.Size()
	}
	return e
}

// mapErr wraps an error from the os package into a *target.Error whose kind
// is the matching sentinel. The cause keeps the local path, which is fine
// for a local folder and helps the user find it.
func (t *Target) mapErr(op, rel string, err error) error {
	var kind error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
	case errors.Is(err, syscall.ENOTEMPTY):
		kind = target.ErrNotEmpty
	case errors.Is(err, syscall.ENOTDIR):
		kind = target.ErrNotDir
	case errors.Is(err, syscall.EISDIR):
		kind = target.ErrIsDir
	case errors.Is(err, syscall.ELOOP), errors.Is(err, fs.ErrNotExist):
		kind = target.ErrNotFound
	case errors.Is(err, fs.ErrExist):
		kind = target.ErrExist
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		kind = target.ErrPermission
	}
	return target.NewError(op, rel, kind, err)
}
