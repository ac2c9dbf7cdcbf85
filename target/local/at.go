package local

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// How a path is reached without following links: the directory holding
// the element an operation works on is opened with one openat2 call that
// refuses every symbolic link on the way and anything outside the root
// (RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS); the operation then works on the
// last element through that directory's descriptor with the *at calls and
// AT_SYMLINK_NOFOLLOW or O_NOFOLLOW, so a link swapped in meanwhile is
// refused as well. A kernel without openat2 (before 5.6, or a sandbox
// that forbids it) gets the same guarantee from a walk that opens one
// component at a time with O_NOFOLLOW; that walk also explains a failed
// openat2 (which element is a link, a file or missing).

// resolveFlags are the openat2 resolution rules: no links at all, nothing
// outside the root.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// dirFlags open a directory only to reach what is inside it.
const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDir opens the directory rel ("" is the root) with flags, which must
// include O_DIRECTORY; the caller closes the descriptor. Errors are
// *target.Error for op on rel.
func (t *Target) openDir(op, rel string, flags int) (int, error) {
	return t.openDirFor(op, rel, rel, flags)
}

// openDirFor is openDir of dir for an operation on rel, which its errors
// name.
func (t *Target) openDirFor(op, rel, dir string, flags int) (int, error) {
	name := dir
	if name == "" {
		name = "."
	}
	fd, err := -1, error(nil)
	ctlErr := t.withRoot(func(root int) {
		if !t.noOpenat2.Load() {
			how := unix.OpenHow{Flags: uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC), Resolve: resolveFlags}
			for range 3 {
				fd, err = unix.Openat2(root, name, &how)
				if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
					break
				}
			}
			if err == nil {
				return
			}
			if errors.Is(err, unix.ENOSYS) {
				t.noOpenat2.Store(true)
				t.log.Debug("no openat2 in this kernel; reaching paths one element at a time")
			}
		}
		fd, err = t.walkDir(op, rel, root, dir, flags)
	})
	if ctlErr != nil {
		return -1, t.mapErr(op, rel, ctlErr)
	}
	return fd, err
}

// withRoot runs f with the root's descriptor, which stays open until f
// returns even if Close runs meanwhile.
func (t *Target) withRoot(f func(root int)) error {
	rc, err := t.root.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}

// walkDir reaches the directory dir one element at a time, each opened
// with O_NOFOLLOW, and says which element is in the way if one is.
func (t *Target) walkDir(op, rel string, root int, dir string, flags int) (int, error) {
	cur, err := openat(root, ".", dirFlags, 0)
	if err != nil {
		return -1, t.mapErr(op, rel, err)
	}
	done := ""
	for rest := dir; rest != ""; {
		var el string
		el, rest, _ = strings.Cut(rest, "/")
		at := target.Join(done, el)
		next, err := openat(cur, el, dirFlags, 0)
		if err != nil {
			err = t.explain(op, rel, cur, el, at, err)
			unix.Close(cur)
			return -1, err
		}
		unix.Close(cur)
		cur, done = next, at
	}
	if flags == dirFlags {
		return cur, nil
	}
	fd, err := openat(cur, ".", flags|unix.O_CLOEXEC, 0)
	unix.Close(cur)
	if err != nil {
		return -1, t.mapErr(op, rel, err)
	}
	return fd, nil
}

// explain turns the failure to open the directory element el (at, below
// the root) on the way to rel into the error the operation reports.
func (t *Target) explain(op, rel string, dir int, el, at string, openErr error) error {
	st, err := lstatAt(dir, el)
	switch {
	case err != nil:
		return t.mapErr(op, rel, err)
	case st.Mode()&fs.ModeSymlink != 0:
		return target.Errorf(op, rel, target.ErrNotFound, "%s is a symbolic link, which local targets do not follow", at)
	case !st.IsDir():
		return target.Errorf(op, rel, target.ErrNotDir, "%s is not a directory", at)
	}
	return t.mapErr(op, rel, openErr)
}

// openat retries an interrupted open.
func openat(dir int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, flags, mode)
		if !errors.Is(err, unix.EINTR) {
			return fd, wrapSys("openat", name, err)
		}
	}
}

// parentOf opens the directory holding rel's last element and returns its
// descriptor and that element's name; rel must not be the root.
func (t *Target) parentOf(op, rel string) (int, string, error) {
	dir, name := target.Split(rel)
	fd, err := t.openDirFor(op, rel, dir, dirFlags)
	return fd, name, err
}

// lstatAt describes name in dir without following it.
func lstatAt(dir int, name string) (*statInfo, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, wrapSys("lstat", name, err)
		}
		return newStatInfo(name, &st), nil
	}
}

// fstat describes an open descriptor.
func fstat(fd int, name string) (*statInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, wrapSys("fstat", name, err)
	}
	return newStatInfo(name, &st), nil
}

// wrapSys gives a system call's error the *fs.PathError form the os
// package uses, so that errors.Is finds fs.ErrNotExist and the like.
func wrapSys(op, name string, err error) error {
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// statInfo is an fs.FileInfo built from a stat buffer, the way the os
// package builds its own.
type statInfo struct {
	name string
	mode fs.FileMode
	st   unix.Stat_t
}

var _ fs.FileInfo = (*statInfo)(nil)

func newStatInfo(name string, st *unix.Stat_t) *statInfo {
	m := fs.FileMode(st.Mode & 0o777)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return &statInfo{name: name, mode: m, st: *st}
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.st.Size }
func (s *statInfo) Mode() fs.FileMode  { return s.mode }
func (s *statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }
func (s *statInfo) IsDir() bool        { return s.mode.IsDir() }
func (s *statInfo) Sys() any           { return &s.st }

// newFile wraps a descriptor the package opened in an *os.File.
func newFile(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }
