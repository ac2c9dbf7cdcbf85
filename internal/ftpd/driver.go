package ftpd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	server "goftp.io/server/v2"
)

// driver serves one local folder. It is our own rather than goftp's file
// driver because that one removes non-empty folders on RMD, creates parents on
// MKD, follows symlinks out of the root and reports local-time mtimes; a test
// server must behave like a careful real one (proftpd) instead.
type driver struct {
	root string // absolute, read only
}

var _ server.Driver = (*driver)(nil)

// realPath maps an FTP path (already cleaned and absolute, from the session)
// to a local path under root, refusing anything that would leave it.
func (d *driver) realPath(p string) (string, error) {
	clean := path.Clean("/" + p)
	if strings.ContainsAny(clean, "\x00\r\n") {
		return "", os.ErrInvalid
	}
	return filepath.Join(d.root, filepath.FromSlash(clean)), nil
}

// lstat maps an FTP path under root and describes what is there, without
// following a symlink.
func (d *driver) lstat(p string) (string, os.FileInfo, error) {
	rp, err := d.realPath(p)
	if err != nil {
		return "", nil, err
	}
	fi, err := os.Lstat(rp)
	return rp, fi, err
}

// utcInfo reports times in UTC: MLSD and MDTM print FileInfo times as they
// are, and the RFCs say UTC.
type utcInfo struct{ os.FileInfo }

func (i utcInfo) ModTime() time.Time { return i.FileInfo.ModTime().UTC() }

func (d *driver) Stat(_ *server.Context, p string) (os.FileInfo, error) {
	_, fi, err := d.lstat(p)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return nil, os.ErrNotExist
	}
	return utcInfo{fi}, nil
}

func (d *driver) ListDir(_ *server.Context, p string, cb func(os.FileInfo) error) error {
	rp, err := d.realPath(p)
	if err != nil {
		return err
	}
	entries, err := os.ReadDir(rp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type()&os.ModeSymlink != 0 {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed while listing
		}
		if err := cb(utcInfo{fi}); err != nil {
			return err
		}
	}
	return nil
}

func (d *driver) DeleteDir(_ *server.Context, p string) error {
	rp, fi, err := d.lstat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	return os.Remove(rp) // never recursive: RMD of a non-empty folder fails
}

func (d *driver) DeleteFile(_ *server.Context, p string) error {
	rp, fi, err := d.lstat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	return os.Remove(rp)
}

func (d *driver) Rename(_ *server.Context, from, to string) error {
	rf, err := d.realPath(from)
	if err != nil {
		return err
	}
	rt, err := d.realPath(to)
	if err != nil {
		return err
	}
	return os.Rename(rf, rt)
}

func (d *driver) MakeDir(_ *server.Context, p string) error {
	rp, err := d.realPath(p)
	if err != nil {
		return err
	}
	return os.Mkdir(rp, 0o755)
}

func (d *driver) GetFile(_ *server.Context, p string, offset int64) (int64, io.ReadCloser, error) {
	rp, err := d.realPath(p)
	if err != nil {
		return 0, nil, err
	}
	f, err := os.OpenFile(rp, os.O_RDONLY|noFollow, 0)
	if err != nil {
		return 0, nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		err = errors.New("is a directory")
	}
	if err == nil {
		_, err = f.Seek(offset, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return 0, nil, err
	}
	return fi.Size() - offset, f, nil
}

// PutFile writes in place, as FTP servers do: STOR creates or truncates,
// REST+STOR continues at the offset, APPE adds at the end. goftp passes APPE
// without REST as offset -1 (a truncating STOR), so the command decides here.
func (d *driver) PutFile(ctx *server.Context, p string, data io.Reader, offset int64) (int64, error) {
	rp, err := d.realPath(p)
	if err != nil {
		return 0, err
	}
	flags := os.O_WRONLY | os.O_CREATE | noFollow
	switch {
	case ctx != nil && ctx.Cmd == "APPE":
		flags |= os.O_APPEND
		offset = -1
	case offset < 0:
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(rp, flags, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if offset >= 0 {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		if offset > fi.Size() {
			return 0, fmt.Errorf("offset %d is beyond the file's size %d", offset, fi.Size())
		}
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			return 0, err
		}
		if err := f.Truncate(offset); err != nil {
			return 0, err
		}
	}
	n, err := io.Copy(f, data)
	if err != nil {
		return n, err
	}
	return n, f.Close()
}

// setModTime backs our MFMT command.
func (d *driver) setModTime(p string, t time.Time) error {
	rp, fi, err := d.lstat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return os.ErrNotExist
	}
	return os.Chtimes(rp, t, t)
}
