package fs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// TestPosixFileOps runs go-fuse's POSIX tests of file content, truncation
// and open files against the writable mount, each in a folder of its own.
func TestPosixFileOps(t *testing.T) {
	m := mount(t, mountOpts{})
	for _, name := range []string{"FileBasic", "TruncateFile", "TruncateNoFile", "AppendWrite",
		"ParallelFileOpen", "FdLeak", "RenameOverwriteDestExist", "RenameOverwriteDestNoExist", "FileLarge"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(m.dir, name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			posixtest.All[name](t, dir)
		})
	}
}

// TestTruncationBelongsToHandle: open(O_TRUNC) and ftruncate show to every
// handle at once, but the cache commits them with the handle's writes at
// close (so a crash before the close leaves the file as last closed); a
// truncate(2) by path is committed at once.
func TestTruncationBelongsToHandle(t *testing.T) {
	m := mount(t, mountOpts{})
	p := filepath.Join(m.dir, "f")
	if err := os.WriteFile(p, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	// The file was created for writing, so opened for passthrough until
	// its release (TestPassthroughCreatedFile): what follows is about any
	// other file.
	for deadline := time.Now().Add(5 * time.Second); m.cache.Passthrough(ino); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still open for passthrough 5s after the close")
		}
	}
	committed := func(want int64) {
		t.Helper()
		e, err := m.cache.Get(ino)
		if err != nil {
			t.Fatal(err)
		}
		if e.Size != want {
			t.Errorf("the cache records %d bytes, want %d", e.Size, want)
		}
	}
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := r.ReadAt(buf, 0); string(buf[:n]) != "new" {
		t.Errorf("another handle reads %q (%v) before the close, want %q", buf[:n], err, "new")
	}
	committed(11)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	committed(3)

	w, err = os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(1); err != nil {
		t.Fatal(err)
	}
	if fi, err := r.Stat(); err != nil || fi.Size() != 1 {
		t.Errorf("after ftruncate another handle sees %v bytes (%v), want 1", fi.Size(), err)
	}
	committed(3)
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	committed(1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(p, []byte("again"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 2); err != nil {
		t.Fatal(err)
	}
	committed(2)
	r.Close()
	m.flush(t)
	if got, err := os.ReadFile(filepath.Join(m.serverDir, "f")); err != nil || string(got) != "ag" {
		t.Errorf("the server holds %q (%v), want %q", got, err, "ag")
	}
}
