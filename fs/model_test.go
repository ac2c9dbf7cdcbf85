package fs

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// The model-based test: seeded random sequences of file operations applied
// to the mount and to a plain folder (the model), with flushes at random
// points while files stay open. Every operation must succeed or fail alike
// on both; at the end the mount, the model and the server must be
// identical, byte for byte (DESIGN.md invariant 3).

// modelOps is how many operations one seed runs, and modelSeeds how many
// seeds run; FTPSYNC_MODEL_OPS and FTPSYNC_MODEL_SEEDS raise them for the
// long run of make stress.
var modelOps, modelSeeds = envCount("FTPSYNC_MODEL_OPS", 300), envCount("FTPSYNC_MODEL_SEEDS", 12)

// envCount reads a positive count from the environment, or def when it is
// unset or not a positive number.
func envCount(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

type modelRun struct {
	t     *testing.T
	rng   *rand.Rand
	m     *testMount
	roots [2]string   // the mount, the model
	open  []modelFile // files open on both sides
	names []string    // a small name space, so operations collide
	log   []string    // what ran, for the failure message
}

// modelFile is one file open on both sides.
type modelFile struct {
	f    [2]*os.File
	path string // where it was opened (it may have moved since)
}

func TestModelRandomOperations(t *testing.T) {
	for seed := int64(1); seed <= int64(modelSeeds); seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			m := mount(t, mountOpts{})
			writeTree(t, m.serverDir, map[string][]byte{"a": []byte("server a"), "d1/b": []byte("server b")})
			ref := t.TempDir()
			writeTree(t, ref, map[string][]byte{"a": []byte("server a"), "d1/b": []byte("server b")})
			r := &modelRun{t: t, rng: rand.New(rand.NewSource(seed)), m: m, roots: [2]string{m.dir, ref},
				names: []string{"a", "b", "c", "d1", "d2", "d1/a", "d1/b", "d1/c", "d2/a", "d2/d3", "d2/d3/x", "d1/d3"}}
			deadline := time.Now().Add(max(20*time.Second, time.Duration(modelOps)*70*time.Millisecond))
			for i := 0; i < modelOps && time.Now().Before(deadline); i++ {
				r.step()
			}
			for _, f := range r.open {
				f.f[0].Close()
				f.f[1].Close()
			}
			targettest.CompareDirs(t, m.dir, ref)
			m.flush(t)
			targettest.CompareDirs(t, m.serverDir, ref)
			if t.Failed() {
				t.Logf("operations:\n%s", joinLines(r.log))
			}
		})
	}
}

func joinLines(l []string) string {
	out := ""
	for _, s := range l {
		out += "  " + s + "\n"
	}
	return out
}

func (r *modelRun) pick() string { return r.names[r.rng.Intn(len(r.names))] }

func (r *modelRun) data() []byte {
	b := make([]byte, r.rng.Intn(3000))
	r.rng.Read(b)
	return b
}

// both runs f on each side and checks that both succeed or both fail.
func (r *modelRun) both(what string, f func(root string, side int) error) {
	r.t.Helper()
	r.log = append(r.log, what)
	var errs [2]error
	for i, root := range r.roots {
		errs[i] = f(root, i)
	}
	if (errs[0] == nil) != (errs[1] == nil) {
		r.t.Fatalf("%s: mount %v, model %v\n%s", what, errs[0], errs[1], joinLines(r.log))
	}
}

func (r *modelRun) step() {
	p, q := r.pick(), r.pick()
	switch n := r.rng.Intn(100); {
	case n < 20:
		d := r.data()
		r.both("write "+p, func(root string, _ int) error { return os.WriteFile(filepath.Join(root, p), d, 0o644) })
	case n < 28:
		d := r.data()
		r.both("append "+p, func(root string, _ int) error {
			f, err := os.OpenFile(filepath.Join(root, p), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = f.Write(d)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			return err
		})
	case n < 33:
		size := int64(r.rng.Intn(4000))
		r.both(fmt.Sprintf("truncate %s %d", p, size), func(root string, _ int) error { return os.Truncate(filepath.Join(root, p), size) })
	case n < 48:
		r.both("rename "+p+" "+q, func(root string, _ int) error { return os.Rename(filepath.Join(root, p), filepath.Join(root, q)) })
	case n < 58:
		r.both("remove "+p, func(root string, _ int) error { return os.Remove(filepath.Join(root, p)) })
	case n < 68:
		r.both("mkdir "+p, func(root string, _ int) error { return os.Mkdir(filepath.Join(root, p), 0o755) })
	case n < 76:
		mt := time.Unix(1_600_000_000+r.rng.Int63n(1e8), 0)
		r.both("touch "+p, func(root string, _ int) error { return os.Chtimes(filepath.Join(root, p), mt, mt) })
	case n < 82:
		r.openFile(p)
	case n < 92:
		r.useOpen()
	case n < 95:
		if len(r.open) > 0 {
			return // a flush waits for open files to be closed
		}
		r.log = append(r.log, "flush")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := r.m.wb.Flush(ctx); err != nil {
			r.t.Fatalf("flush: %v", err)
		}
	default:
		r.checkListing(p)
	}
}

// openFile opens (creating) a file for writing on both sides and keeps it.
func (r *modelRun) openFile(p string) {
	if len(r.open) >= 3 {
		return
	}
	var mf modelFile
	mf.path = p
	r.both("open "+p, func(root string, i int) error {
		f, err := os.OpenFile(filepath.Join(root, p), os.O_RDWR|os.O_CREATE, 0o644)
		mf.f[i] = f
		return err
	})
	if mf.f[0] != nil {
		r.open = append(r.open, mf)
	}
}

// useOpen writes at a random offset through an open file, or closes it.
func (r *modelRun) useOpen() {
	if len(r.open) == 0 {
		return
	}
	i := r.rng.Intn(len(r.open))
	mf := r.open[i]
	if r.rng.Intn(3) == 0 {
		r.both("close "+mf.path, func(_ string, side int) error { return mf.f[side].Close() })
		r.open = append(r.open[:i], r.open[i+1:]...)
		return
	}
	d, off := r.data(), int64(r.rng.Intn(2000))
	r.both(fmt.Sprintf("pwrite %s @%d", mf.path, off), func(_ string, side int) error {
		_, err := mf.f[side].WriteAt(d, off)
		return err
	})
}

// checkListing compares a folder's names on both sides.
func (r *modelRun) checkListing(p string) {
	var names [2][]string
	r.both("list "+p, func(root string, i int) error {
		ents, err := os.ReadDir(filepath.Join(root, p))
		for _, e := range ents {
			names[i] = append(names[i], e.Name())
		}
		sort.Strings(names[i])
		return err
	})
	if fmt.Sprint(names[0]) != fmt.Sprint(names[1]) {
		r.t.Fatalf("list %s: mount %v, model %v\n%s", p, names[0], names[1], joinLines(r.log))
	}
}
