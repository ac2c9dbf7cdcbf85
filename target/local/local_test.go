package local

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

func newTarget(t *testing.T, dir string) *Target {
	t.Helper()
	tg, err := New(dir, Options{})
	if err != nil {
		t.Fatalf("New(%s): %v", dir, err)
	}
	return tg
}

// newWalkTarget is a target that reaches paths as on a kernel without
// openat2: one element at a time.
func newWalkTarget(t *testing.T, dir string) *Target {
	t.Helper()
	tg := newTarget(t, dir)
	tg.noOpenat2.Store(true)
	return tg
}

// constructors are the two ways a target may reach paths; the tests that
// guard against links run with both.
var constructors = map[string]func(*testing.T, string) *Target{"openat2": newTarget, "walk": newWalkTarget}

func TestContract(t *testing.T) {
	for name, newT := range constructors {
		t.Run(name, func(t *testing.T) {
			targettest.Run(t, targettest.Harness{
				New:   func(t *testing.T) target.Target { return newT(t, t.TempDir()) },
				Root:  func(t *testing.T, tg target.Target) string { return tg.(*Target).String() },
				Large: name == "openat2",
			})
		})
	}
}

func TestNewRefusesMissingRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	_, err := New(dir, Options{})
	if !errors.Is(err, target.ErrNotFound) || !strings.Contains(err.Error(), dir) {
		t.Errorf("New of a missing folder: %v; want ErrNotFound naming %s", err, dir)
	}
	if _, statErr := os.Stat(dir); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("New created the missing folder (stat: %v)", statErr)
	}
}

func TestNewRefusesFileRoot(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(f, Options{})
	if !errors.Is(err, target.ErrNotDir) || !strings.Contains(err.Error(), f) {
		t.Errorf("New of a file: %v; want ErrNotDir naming %s", err, f)
	}
}

func TestIDAndString(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("sub", 0o755); err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t, "sub")
	defer tg.Close()
	abs := filepath.Join(dir, "sub")
	if tg.String() != abs || tg.ID() != "local:"+abs {
		t.Errorf("String() = %q, ID() = %q; want the absolute path %s", tg.String(), tg.ID(), abs)
	}
}

func TestStatRoot(t *testing.T) {
	tg := newTarget(t, t.TempDir())
	defer tg.Close()
	e, err := tg.Stat(t.Context(), "/")
	if err != nil || !e.IsDir || e.Name != "" {
		t.Errorf("stat of the root = %+v, %v; want a directory with the empty name", e, err)
	}
}

func TestClosedTargetFails(t *testing.T) {
	tg := newTarget(t, t.TempDir())
	if err := tg.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Stat(t.Context(), ""); err == nil {
		t.Error("stat on a closed target succeeded")
	}
}

func TestErrorNamesOpAndPath(t *testing.T) {
	tg := newTarget(t, t.TempDir())
	defer tg.Close()
	_, err := tg.Stat(t.Context(), "some/missing")
	var te *target.Error
	if !errors.As(err, &te) || te.Op != "stat" || te.Path != "some/missing" || !strings.HasPrefix(err.Error(), "stat some/missing: ") {
		t.Errorf("stat error %q (%#v); want a *target.Error for stat of some/missing", err, te)
	}
}

func TestWriteKeepsMode(t *testing.T) {
	dir := t.TempDir()
	tg := newTarget(t, dir)
	defer tg.Close()
	targettest.WriteFile(t, tg, "new", []byte("x"))
	targettest.WriteFile(t, tg, "private", []byte("x"))
	if err := os.Chmod(filepath.Join(dir, "private"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := targettest.WriteFile(t, tg, "private", []byte("y"))
	for name, want := range map[string]os.FileMode{"new": 0o644, "private": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, want)
		}
	}
	if e.Mode != 0o600 {
		t.Errorf("entry mode %v, want 0600", e.Mode)
	}
}

func TestNanosecondModTime(t *testing.T) {
	tg := newTarget(t, t.TempDir())
	defer tg.Close()
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 987654321, time.UTC)
	e, err := tg.Write(t.Context(), "f", strings.NewReader("x"), target.WriteOptions{ModTime: mtime, Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !e.ModTime.Equal(mtime) || e.ModTime.Location() != time.UTC || e.Precision != time.Nanosecond {
		t.Errorf("entry time %v at precision %v; want exactly %v in UTC", e.ModTime, e.Precision, mtime)
	}
}

func TestLongNameWrite(t *testing.T) {
	dir := t.TempDir()
	tg := newTarget(t, dir)
	defer tg.Close()
	// 254 bytes ending in a 3-byte rune: the temp name must be cut to fit
	// the 255-byte limit without splitting the rune.
	name := strings.Repeat("a", 251) + "€"
	targettest.WriteFile(t, tg, name, []byte("long"))
	if got := targettest.ReadFile(t, tg, name); string(got) != "long" {
		t.Errorf("read back %q", got)
	}
}

func TestListLeavesOutForeignNames(t *testing.T) {
	dir := t.TempDir()
	tg := newTarget(t, dir)
	defer tg.Close()
	for _, n := range []string{"ok", "line\nbreak", "cr\rname", target.TempName("ok", "crashed")} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	es, err := tg.List(t.Context(), "")
	if err != nil || len(es) != 1 || es[0].Name != "ok" {
		t.Errorf("list = %+v, %v; want only ok", es, err)
	}
	// Opening a FIFO would block; it must be refused as not found.
	if _, err := tg.Open(t.Context(), "fifo", 0, -1); !errors.Is(err, target.ErrNotFound) {
		t.Errorf("open of a fifo: %v, want ErrNotFound", err)
	}
}

func TestOpenAndRemoveDir(t *testing.T) {
	tg := newTarget(t, t.TempDir())
	defer tg.Close()
	if err := tg.Mkdir(t.Context(), "d"); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Open(t.Context(), "d", 0, -1); !errors.Is(err, target.ErrIsDir) {
		t.Errorf("open of a directory: %v, want ErrIsDir", err)
	}
	if err := tg.Remove(t.Context(), "d"); !errors.Is(err, target.ErrIsDir) {
		t.Errorf("remove of a directory: %v, want ErrIsDir", err)
	}
	targettest.WriteFile(t, tg, "f", nil)
	if err := tg.Rmdir(t.Context(), "f"); !errors.Is(err, target.ErrNotDir) {
		t.Errorf("rmdir of a file: %v, want ErrNotDir", err)
	}
	if err := tg.Rmdir(t.Context(), ""); !errors.Is(err, target.ErrPermission) {
		t.Errorf("rmdir of the root: %v, want ErrPermission", err)
	}
	if _, err := tg.List(t.Context(), "f/x"); !errors.Is(err, target.ErrNotDir) {
		t.Errorf("list below a file: %v, want ErrNotDir", err)
	}
}

func TestNegativeOffset(t *testing.T) {
	tg := newTarget(t, t.TempDir())
	defer tg.Close()
	targettest.WriteFile(t, tg, "f", []byte("data"))
	if _, err := tg.Open(t.Context(), "f", -1, -1); err == nil {
		t.Error("open at offset -1 succeeded")
	}
}
