package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/fs"
)

// ourFsType is the type our mounts have in the mount table (go-fuse's
// "fuse." and the name fs.Mount gives), the type fstab lines name.
const ourFsType = "fuse." + fs.FsName

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point  string // the mount point, unescaped
	fstype string // like ext4, tmpfs or fuse.ftpsync-mount
	source string // what is mounted, as the filesystem names it
}

// parseMountinfo reads the lines of /proc/self/mountinfo: mount ID, parent,
// dev, root, mount point, options, optional fields..., "-", type, source,
// super options. Later lines are mounted later, so over earlier ones.
func parseMountinfo(data string) []mountEntry {
	var out []mountEntry
	for _, line := range strings.Split(data, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 7 {
			continue
		}
		for i := 6; i+1 < len(fields); i++ {
			if fields[i] == "-" {
				e := mountEntry{point: unescapeMountinfo(fields[4]), fstype: fields[i+1]}
				if i+2 < len(fields) {
					e.source = unescapeMountinfo(fields[i+2])
				}
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) the kernel
// uses in mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountAt returns the topmost mount on the absolute path mp, if any. The
// path is looked up as given, then with symbolic links resolved; the table
// lists resolved paths. Neither lookup touches a mount there, which may
// hang (a FUSE process that stopped answering) or be dead (ENOTCONN).
func mountAt(mp string) (mountEntry, bool, error) {
	data, err := readMountinfo()
	if err != nil {
		return mountEntry{}, false, err
	}
	entries := parseMountinfo(data)
	find := func(p string) (mountEntry, bool) {
		for i := len(entries) - 1; i >= 0; i-- {
			if entries[i].point == p {
				return entries[i], true
			}
		}
		return mountEntry{}, false
	}
	if e, ok := find(mp); ok {
		return e, true, nil
	}
	if real, err := filepath.EvalSymlinks(mp); err == nil && real != mp {
		e, ok := find(real)
		return e, ok, nil
	}
	return mountEntry{}, false, nil
}

// isOurMount reports whether ftpsync-mount is mounted on mp (on top).
func isOurMount(mp string) (bool, error) {
	e, ok, err := mountAt(mp)
	return ok && e.fstype == ourFsType, err
}

// checkMountpoint refuses a mount point that would hide something: one
// where something is mounted already, or a folder that is not empty. Both
// would be mounted over without a word (FUSE allows it) and their files
// hidden until the unmount. allowNonEmpty (--allow-non-empty, -o nonempty)
// lets either through, as with rclone, except a mount of our own: two
// stacked mounts would leave unmount, status and flush unsure which one
// they mean. arg is the mount point as the user gave it, mp its absolute
// path. An autofs mount (systemd's x-systemd.automount) is the stand-in
// that mounts us on first access; it is neither refused nor read, as
// reading it would wait for the very mount being made.
func checkMountpoint(arg, mp string, allowNonEmpty bool) error {
	m, mounted, err := mountAt(mp)
	if err != nil {
		return err
	}
	automount := mounted && m.fstype == "autofs"
	if mounted && !automount {
		if m.fstype == ourFsType {
			how := "unmount it first with 'ftpsync-mount unmount " + arg + "'"
			if errors.Is(probeMount(mp), syscall.ENOTCONN) {
				how = "its mount process has ended; detach it with 'ftpsync-mount unmount " + arg + "'"
			}
			return fmt.Errorf("mount point %s is already an ftpsync-mount mount of %s: %s, or choose another folder", arg, m.source, how)
		}
		if !allowNonEmpty {
			return fmt.Errorf("mount point %s is already a mount point (%s %s) and mounting there would hide it: unmount it first, or choose another folder (--allow-non-empty mounts over it anyway)", arg, m.fstype, m.source)
		}
	}
	if st, err := os.Stat(mp); err != nil || !st.IsDir() {
		return fmt.Errorf("mount point %s must be an existing directory (create it with mkdir)", arg)
	}
	if allowNonEmpty || automount {
		return nil
	}
	empty, err := isEmptyDir(mp)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", arg, err)
	}
	if !empty {
		return fmt.Errorf("mount point %s is not empty, and mounting there would hide its files until the unmount: choose an empty folder, or pass --allow-non-empty (-o nonempty in fstab) to mount over them", arg)
	}
	return nil
}

// probeMount asks the filesystem mounted on mp for its statistics, which
// the kernel always forwards (a stat may be answered from its cache): a
// FUSE mount whose process ended fails with ENOTCONN. A process that
// stopped answering would hold the call forever, so it is abandoned after
// controlTimeout.
func probeMount(mp string) error {
	done := make(chan error, 1)
	go func() {
		var st syscall.Statfs_t
		done <- syscall.Statfs(mp, &st)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(controlTimeout):
		return fmt.Errorf("%s does not answer", mp)
	}
}

// isEmptyDir reports whether the folder dir has no entries.
func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); errors.Is(err, io.EOF) {
		return true, nil
	} else if err != nil {
		return false, fmt.Errorf("read %s: %w", dir, err)
	}
	return false, nil
}
