package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// The local files live in data/<xx>/<ino>, xx the inode number's low byte
// in hex, not all in data/ itself. On ext4 a new file's inode is taken
// from its folder's block group, and every creation scans that group's
// bitmap past each inode freed in the last minutes (without a journal ext4
// does not reuse them at once): tar x into a mount whose previous cache was
// just removed then spent most of each create(2) in that scan, 0.4-0.8 ms,
// all in one group. Folders under data/, which is marked as the top of a
// tree (chattr +T), are spread over groups like top-level folders, and so
// are the files: 11,478 creations right after removing as many files took
// 4-7 s in one folder and 0.3 s over 256 of them.
const dataShards = 256

func (c *Cache) shardDir(ino uint64) string {
	return filepath.Join(c.dataDir(), shardNames[ino%dataShards])
}

// shardNames are the subfolders' names, 00 to ff.
var shardNames = func() (n [dataShards]string) {
	for i := range n {
		n[i] = fmt.Sprintf("%02x", i)
	}
	return n
}()

// makeShards creates data/ and its subfolders, and moves the local files of
// a cache that kept them in data/ itself into their subfolders. It runs in
// Open, before the recovery, which finds files only in the subfolders.
func (c *Cache) makeShards() error {
	if err := os.MkdirAll(c.dataDir(), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", c.dataDir(), err)
	}
	if _, err := os.Stat(c.shardDir(dataShards - 1)); err == nil {
		return c.moveFlatFiles()
	}
	markTopDir(c.dataDir())
	for i := range uint64(dataShards) {
		if err := os.Mkdir(c.shardDir(i), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create %s: %w", c.shardDir(i), err)
		}
	}
	return c.moveFlatFiles()
}

// moveFlatFiles moves files left in data/ itself into their subfolders:
// <ino> and a truncation's <ino>.trunc-<random> by their inode number. A
// name without one is a copy from the server cut short (fill-*), which
// nothing needs once the cache is open again.
func (c *Cache) moveFlatFiles() error {
	ents, err := os.ReadDir(c.dataDir())
	if err != nil {
		return fmt.Errorf("check the local files: %w", err)
	}
	for _, d := range ents {
		if d.IsDir() {
			continue
		}
		p := filepath.Join(c.dataDir(), d.Name())
		ino, ok := leadingIno(d.Name())
		if !ok {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove %s: %w", p, err)
			}
			continue
		}
		if err := os.Rename(p, filepath.Join(c.shardDir(ino), d.Name())); err != nil {
			return fmt.Errorf("move %s into its folder: %w", p, err)
		}
	}
	return nil
}

// leadingIno parses the inode number a local file's name starts with.
func leadingIno(name string) (uint64, bool) {
	n := 0
	for n < len(name) && name[n] >= '0' && name[n] <= '9' {
		n++
	}
	ino, err := strconv.ParseUint(name[:n], 10, 64)
	return ino, err == nil
}

// fsTopDirFlag is FS_TOPDIR_FL of linux/fs.h (chattr +T), which x/sys/unix
// does not name.
const fsTopDirFlag = 0x00020000

// markTopDir sets ext4's top-of-tree flag on dir, so that its subfolders
// are spread over block groups. Elsewhere the flag does not exist, and the
// files are merely spread over folders.
func markTopDir(dir string) {
	f, err := os.Open(dir)
	if err != nil {
		return
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil || flags&fsTopDirFlag != 0 {
		return
	}
	_ = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsTopDirFlag))
}
