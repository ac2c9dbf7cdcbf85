package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// envInt reads a test size from the environment (make stress sets them),
// or def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// kop is one operation of the mixed workload, applied alike to the mount
// and to the reference folder.
type kop struct {
	kind string // mkdir, write, append, rename, remove
	a, b string
	data []byte
}

var killDirs = []string{"d0", "d1", "d2", "d0/e0", "d1/e1"}

// randomKop picks an operation over a small name space, so that operations
// collide: renames over existing files, removals of what a rename moved.
func randomKop(rng *rand.Rand) kop {
	dir := func() string {
		if rng.Intn(5) == 0 {
			return ""
		}
		return killDirs[rng.Intn(len(killDirs))]
	}
	file := func() string { return filepath.Join(dir(), fmt.Sprintf("f%d", rng.Intn(8))) }
	data := func(max int) []byte {
		b := make([]byte, rng.Intn(max))
		rng.Read(b)
		return b
	}
	switch n := rng.Intn(20); {
	case n < 2:
		return kop{kind: "mkdir", a: killDirs[rng.Intn(len(killDirs))]}
	case n < 9:
		return kop{kind: "write", a: file(), data: data(200 << 10)}
	case n < 12:
		return kop{kind: "append", a: file(), data: data(8 << 10)}
	case n < 16:
		return kop{kind: "rename", a: file(), b: file()}
	default:
		return kop{kind: "remove", a: file()}
	}
}

func (o kop) apply(root string) error {
	a, b := filepath.Join(root, o.a), filepath.Join(root, o.b)
	switch o.kind {
	case "mkdir":
		return os.Mkdir(a, 0o755)
	case "write":
		return os.WriteFile(a, o.data, 0o644)
	case "append":
		f, err := os.OpenFile(a, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.Write(o.data)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case "rename":
		return os.Rename(a, b)
	default:
		return os.Remove(a)
	}
}

// adopt makes the reference hold what the mount shows at the paths of an
// operation the kill interrupted: it may have happened, not happened, or
// (a write cut between create and close) happened in part, as after any
// crash. Everything before it must be exactly in place.
func adopt(t *testing.T, o kop, mnt, ref string) {
	t.Helper()
	for _, p := range []string{o.a, o.b} {
		if p == "" {
			continue
		}
		m, r := filepath.Join(mnt, p), filepath.Join(ref, p)
		fi, err := os.Lstat(m)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Remove(r); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("adopt %s: %v", p, err)
			}
		case err != nil:
			t.Fatalf("after the remount: %v", err)
		case fi.IsDir():
			if err := os.MkdirAll(r, 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			data, err := os.ReadFile(m)
			if err != nil {
				t.Fatalf("read %s after the remount: %v", p, err)
			}
			if err := os.WriteFile(r, data, 0o644); err != nil {
				t.Fatalf("adopt %s: %v", p, err)
			}
		}
	}
}

// TestKill9MixedWorkloadLoop kills the mount with SIGKILL at a random
// moment of a seeded mixed workload (writes, appends, renames, removals,
// folders) with uploads in flight, remounts the same cache and goes on,
// FTPSYNC_KILLS times (3 here, 20 in make stress). After each remount the
// mount shows every completed operation; after the last unmount the
// server's folder equals the reference folder.
func TestKill9MixedWorkloadLoop(t *testing.T) {
	kills := envInt(t, "FTPSYNC_KILLS", 3)
	bin := buildBinary(t)
	srv := ftpdtest.Start(t)
	mnt, cacheDir, ref := t.TempDir(), t.TempDir(), t.TempDir()
	rng := rand.New(rand.NewSource(int64(envInt(t, "FTPSYNC_KILL_SEED", 1))))
	args := []string{"--cache-dir", cacheDir, "--write-back", "10ms", "--transfers", "4"}
	var ops, interrupted int
	start := time.Now()
	for round := 0; round <= kills; round++ {
		m := startMount(t, bin, srv, mnt, args...)
		targettest.CompareDirs(t, mnt, ref)
		if t.Failed() {
			t.Fatalf("round %d: the mount lost completed operations (log above)", round)
		}
		if round == kills {
			if out, err := exec.Command(bin, "unmount", mnt).CombinedOutput(); err != nil {
				t.Fatalf("unmount: %v\n%s", err, out)
			}
			if err := m.wait(t); err != nil {
				t.Fatalf("mount exit: %v\n%s", err, m.log())
			}
			break
		}
		var killed atomic.Bool
		delay := time.Duration(100+rng.Intn(500)) * time.Millisecond
		timer := time.AfterFunc(delay, func() {
			killed.Store(true)
			m.cmd.Process.Signal(syscall.SIGKILL)
		})
		var cut *kop
		for i := 0; i < 5000 && cut == nil; i++ {
			o := randomKop(rng)
			merr := o.apply(mnt)
			if merr != nil && killed.Load() {
				cut = &o
				break
			}
			ops++
			rerr := o.apply(ref)
			if (merr == nil) != (rerr == nil) {
				t.Fatalf("round %d op %d %s %s %s: mount %v, reference %v", round, ops, o.kind, o.a, o.b, merr, rerr)
			}
		}
		timer.Stop()
		if cut == nil {
			t.Fatalf("round %d: the workload ended before the kill", round)
		}
		m.wait(t)
		exec.Command("umount", "-l", mnt).Run()
		mm := startMount(t, bin, srv, mnt, args...)
		adopt(t, *cut, mnt, ref)
		interrupted++
		if out, err := exec.Command(bin, "unmount", mnt).CombinedOutput(); err != nil {
			t.Fatalf("unmount after round %d: %v\n%s", round, err, out)
		}
		mm.wait(t)
	}
	temps := countTempFiles(t, srv.Root)
	bytes := treeBytes(t, ref)
	targettest.CompareDirs(t, srv.Root, ref)
	lost := "0"
	if t.Failed() {
		lost = "see the differences above"
	}
	t.Logf("fault figures: kills %d, operations %d (%d cut by a kill), temporary files left %d, bytes compared %d, data lost: %s, %v",
		kills, ops, interrupted, temps, bytes, lost, time.Since(start).Round(time.Second))
}

// countTempFiles removes, and counts, the temporary files of uploads a kill
// cut short; they never show under a final name.
func countTempFiles(t *testing.T, root string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && target.IsTempName(d.Name()) {
			n++
			os.Remove(p)
		}
		return nil
	})
	return n
}

// treeBytes is the size of every file under root.
func treeBytes(t *testing.T, root string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
