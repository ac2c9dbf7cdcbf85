package fs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
)

var mtime = time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)

// writeTree creates files (path → content) under root with a fixed mtime.
func writeTree(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	writeTreeAt(t, root, files, mtime)
}

func writeTreeAt(t *testing.T, root string, files map[string][]byte, mtime time.Time) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(full, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func sampleTree() map[string][]byte {
	rnd := rand.New(rand.NewSource(1))
	big := make([]byte, 3*cache.BlockSize+777)
	rnd.Read(big)
	return map[string][]byte{
		"hello.txt":                 []byte("hello, world\n"),
		"with space/a file.txt":     []byte("spaces"),
		"ünïcødé/日本語.txt":           []byte("unicode"),
		".hidden/.dotfile":          []byte("dot"),
		"deep/er/and/deeper/f.bin":  big,
		"empty":                     nil,
		"deep/er/and/deeper/g.txt":  []byte("g"),
		"with space/more space/ x ": []byte("leading and trailing space"),
	}
}

// checkTree walks the mount and compares it with the tree it was made from.
func checkTree(t *testing.T, mnt string, files map[string][]byte) {
	t.Helper()
	checkTreeMode(t, mnt, files, 0o640)
}

// checkTreeMode is checkTree for a target that reports files with mode
// perm (the embedded FTP server reports none, which shows as 0644).
func checkTreeMode(t *testing.T, mnt string, files map[string][]byte, perm os.FileMode) {
	t.Helper()
	checkTreeWith(t, mnt, files, mtime, perm, 0)
}

// checkTreeWith compares the mount with files written with mtime mt; perm 0
// skips the mode check, prec > 0 compares times at that precision.
func checkTreeWith(t *testing.T, mnt string, files map[string][]byte, mt time.Time, perm os.FileMode, prec time.Duration) {
	t.Helper()
	var got []string
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(mnt, p)
		got = append(got, rel)
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		want := files[rel]
		if fi.Size() != int64(len(want)) || !fi.ModTime().Truncate(prec).Equal(mt.Truncate(prec)) || perm != 0 && fi.Mode().Perm() != perm {
			t.Errorf("%s: size %d mtime %v mode %v; want %d, %v, %v", rel, fi.Size(), fi.ModTime(), fi.Mode(), len(want), mt, perm)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(data, want) {
			t.Errorf("%s: content differs", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	var want []string
	for p := range files {
		want = append(want, p)
	}
	sort.Strings(want)
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("files in the mount:\n%q\nwant\n%q", got, want)
	}
}

func TestReadTree(t *testing.T) {
	m := mount(t, mountOpts{})
	files := sampleTree()
	writeTree(t, m.serverDir, files)
	checkTree(t, m.dir, files)

	st, err := os.Stat(filepath.Join(m.dir, "with space"))
	if err != nil || !st.IsDir() {
		t.Fatalf("directory stat: %v, %v", st, err)
	}
	// mmap reads see the same bytes.
	f, err := os.Open(filepath.Join(m.dir, "deep/er/and/deeper/f.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := syscall.Mmap(int(f.Fd()), 0, len(files["deep/er/and/deeper/f.bin"]), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer syscall.Munmap(data)
	if !bytes.Equal(data, files["deep/er/and/deeper/f.bin"]) {
		t.Fatal("mmap content differs")
	}
}

func TestReadOnly(t *testing.T) {
	m := mount(t, mountOpts{readOnly: true})
	writeTree(t, m.serverDir, map[string][]byte{"f": []byte("x"), "d/g": []byte("y")})
	attempts := map[string]error{
		"create": os.WriteFile(filepath.Join(m.dir, "new"), []byte("x"), 0o644),
		"mkdir":  os.Mkdir(filepath.Join(m.dir, "nd"), 0o755),
		"remove": os.Remove(filepath.Join(m.dir, "f")),
		"rmdir":  os.Remove(filepath.Join(m.dir, "d/g")),
		"rename": os.Rename(filepath.Join(m.dir, "f"), filepath.Join(m.dir, "f2")),
		"chmod":  os.Chmod(filepath.Join(m.dir, "f"), 0o600),
	}
	if f, err := os.OpenFile(filepath.Join(m.dir, "f"), os.O_WRONLY, 0); err == nil {
		f.Close()
		attempts["open for writing"] = nil
	} else {
		attempts["open for writing"] = err
	}
	for what, err := range attempts {
		if !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", what, err)
		}
	}
}

func TestXattrAndStatfs(t *testing.T) {
	m := mount(t, mountOpts{maxSize: 1 << 30})
	writeTree(t, m.serverDir, map[string][]byte{"f": []byte("x")})
	p := filepath.Join(m.dir, "f")
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(p, "user.ftpsync.state", buf)
	if err != nil || string(buf[:n]) != "clean" {
		t.Fatalf("state xattr: %q, %v", buf[:n], err)
	}
	if _, err := syscall.Getxattr(p, "user.other", buf); !errors.Is(err, syscall.ENODATA) {
		t.Fatalf("other xattr: %v, want ENODATA", err)
	}
	// Security labels are unsupported, which must not hide our own name.
	if _, err := syscall.Getxattr(p, "security.selinux", buf); !errors.Is(err, syscall.ENOTSUP) {
		t.Fatalf("security.selinux: %v, want ENOTSUP", err)
	}
	if _, err := syscall.Getxattr(p, "system.posix_acl_access", buf); !errors.Is(err, syscall.ENOTSUP) {
		t.Fatalf("system.posix_acl_access: %v, want ENOTSUP", err)
	}
	if n, err := syscall.Getxattr(p, "user.ftpsync.state", buf); err != nil || string(buf[:n]) != "clean" {
		t.Fatalf("state xattr after security.selinux: %q, %v", buf[:n], err)
	}
	n, err = syscall.Listxattr(p, buf)
	if err != nil || string(buf[:n]) != "user.ftpsync.state\x00" {
		t.Fatalf("listxattr: %q, %v", buf[:n], err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.dir, &st); err != nil {
		t.Fatal(err)
	}
	if total := int64(st.Blocks) * st.Bsize; total != 1<<30 {
		t.Fatalf("statfs total %d, want the 1 GiB cache size", total)
	}
}

func TestPosixReadDirConsistency(t *testing.T) {
	m := mount(t, mountOpts{})
	files := map[string][]byte{}
	for i := 0; i < 200; i++ {
		files[fmt.Sprintf("file%036x", i)] = []byte("hello")
	}
	writeTree(t, m.serverDir, files)
	posixtest.ReadDirConsistency(t, m.dir)
}

func TestLargeDirectory(t *testing.T) {
	m := mount(t, mountOpts{})
	for i := 0; i < 10000; i++ {
		if err := os.WriteFile(filepath.Join(m.serverDir, fmt.Sprintf("entry %05d ü", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 10000 || ents[9999].Name() != "entry 09999 ü" {
		t.Fatalf("readdir gave %d entries", len(ents))
	}
	if _, err := os.Stat(filepath.Join(m.dir, "entry 04242 ü")); err != nil {
		t.Fatal(err)
	}
}

func TestRemountWarmCacheServerDown(t *testing.T) {
	serverDir, cacheDir := t.TempDir(), t.TempDir()
	files := sampleTree()
	writeTree(t, serverDir, files)
	m := mount(t, mountOpts{serverDir: serverDir, cacheDir: cacheDir})
	checkTree(t, m.dir, files)
	ino := func(p string) uint64 {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(m.dir, p), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	before := ino("deep/er/and/deeper/f.bin")
	m.close(t)

	// The same cache, the server down: the whole tree is there.
	m = mount(t, mountOpts{serverDir: serverDir, cacheDir: cacheDir, dirCacheTime: time.Millisecond})
	m.tgt.down.Store(true)
	checkTree(t, m.dir, files)
	if after := ino("deep/er/and/deeper/f.bin"); after != before {
		t.Fatalf("inode changed across remount: %d, then %d", before, after)
	}
	if o := m.tgt.opens.Load(); o != 0 {
		t.Fatalf("warm cache opened %d transfers", o)
	}
}

func TestServerDownUncachedReadFails(t *testing.T) {
	m := mount(t, mountOpts{})
	writeTree(t, m.serverDir, map[string][]byte{"f": []byte("content"), "d/g": []byte("g")})
	if _, err := os.Stat(filepath.Join(m.dir, "f")); err != nil {
		t.Fatal(err)
	}
	m.tgt.down.Store(true)
	start := time.Now()
	_, err := os.ReadFile(filepath.Join(m.dir, "f"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("uncached read with the server down: %v, want EIO", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("failing read took %v", d)
	}
}

func TestEvictionSmallCache(t *testing.T) {
	m := mount(t, mountOpts{maxSize: 2 * cache.BlockSize})
	rnd := rand.New(rand.NewSource(2))
	files := map[string][]byte{}
	for i := 0; i < 4; i++ {
		b := make([]byte, 2*cache.BlockSize+i)
		rnd.Read(b)
		files[fmt.Sprintf("f%d", i)] = b
	}
	writeTree(t, m.serverDir, files)
	checkTree(t, m.dir, files)
	if u, _ := m.cache.Usage(); u.Used > 2*cache.BlockSize {
		t.Fatalf("cache holds %d bytes, bound is %d", u.Used, 2*cache.BlockSize)
	}
}

func TestRemoteChangeReachesKernel(t *testing.T) {
	m := mount(t, mountOpts{})
	p := filepath.Join(m.serverDir, "f")
	writeTree(t, m.serverDir, map[string][]byte{"f": []byte("old content")})
	mp := filepath.Join(m.dir, "f")
	if got, err := os.ReadFile(mp); err != nil || string(got) != "old content" {
		t.Fatalf("first read: %q, %v", got, err)
	}
	if ents, err := os.ReadDir(m.dir); err != nil || len(ents) != 1 {
		t.Fatalf("first readdir: %v, %v", ents, err)
	}
	os.WriteFile(p, []byte("new content, longer"), 0o640)
	os.Chtimes(p, mtime.Add(time.Hour), mtime.Add(time.Hour))
	os.WriteFile(filepath.Join(m.serverDir, "added"), []byte("a"), 0o640)
	if err := m.lister.Refresh(t.Context(), cache.RootIno); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.sent:
	case <-time.After(5 * time.Second):
		t.Fatal("no kernel notification within 5s of the listing")
	}
	got, err := os.ReadFile(mp)
	if err != nil || string(got) != "new content, longer" {
		t.Fatalf("after a remote change the mount shows %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(m.dir, "added")); err != nil {
		t.Fatalf("added remote file: %v", err)
	}
	if ents, err := os.ReadDir(m.dir); err != nil || len(ents) != 2 {
		t.Fatalf("readdir after the change: %v, %v", ents, err)
	}
}

// TestRangedReadTransfersLittle reads 4 KiB at 900 MiB of an uncached
// 1 GiB file through the kernel and counts what crossed the target.
func TestRangedReadTransfersLittle(t *testing.T) {
	m := mount(t, mountOpts{})
	f, err := os.Create(filepath.Join(m.serverDir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 30)
	f.WriteAt([]byte("needle"), 900<<20)
	f.Close()
	g, err := os.Open(filepath.Join(m.dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	_, err = g.ReadAt(buf, 900<<20)
	g.Close()
	if err != nil || string(buf[:6]) != "needle" {
		t.Fatalf("ranged read: %q, %v", buf[:6], err)
	}
	m.close(t) // ends the transfer, so the count is final
	if b := m.tgt.bytes.Load(); b > 6<<20 {
		t.Fatalf("a 4 KiB read transferred %d bytes, want at most 6 MiB", b)
	}
	if o := m.tgt.opens.Load(); o != 1 {
		t.Fatalf("%d transfers, want 1", o)
	}
}
