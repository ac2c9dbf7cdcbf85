package sync

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
)

// syncEnv is a pair of local folders, one standing in for the server, and
// a state store, for engine tests that need no network.
type syncEnv struct {
	t          *testing.T
	ldir, rdir string
	local      target.Target
	remote     target.Target
	stateDir   string
	log        logrus.FieldLogger
}

func newSyncEnv(t *testing.T) *syncEnv {
	t.Helper()
	base := t.TempDir()
	e := &syncEnv{t: t, ldir: filepath.Join(base, "local"), rdir: filepath.Join(base, "remote"), stateDir: filepath.Join(base, "state")}
	for _, d := range []string{e.ldir, e.rdir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
	}
	e.log = l
	var err error
	if e.local, err = local.New(e.ldir, local.Options{Log: l}); err != nil {
		t.Fatal(err)
	}
	if e.remote, err = local.New(e.rdir, local.Options{Log: l}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.local.Close(); e.remote.Close() })
	return e
}

// run runs one sync with opts (the store, filter and parallelism filled
// in when not set) and returns the summary and the printed lines.
func (e *syncEnv) run(opts Options) (Summary, string, error) {
	e.t.Helper()
	return e.runWith(e.t.Context(), e.local, e.remote, opts)
}

func (e *syncEnv) runWith(ctx context.Context, l, r target.Target, opts Options) (Summary, string, error) {
	e.t.Helper()
	st, err := OpenStore(e.stateDir, l.ID(), r.ID(), e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	if opts.Store == nil {
		opts.Store = st
	}
	if opts.Parallel == 0 {
		opts.Parallel = 4
	}
	if opts.Filter == nil {
		opts.Filter, _ = NewFilter(nil, nil)
	}
	var out bytes.Buffer
	opts.Out = &out
	opts.Log = e.log
	sum, err := Run(ctx, l, r, opts)
	if testing.Verbose() {
		e.t.Logf("%s run output:\n%s", opts.Mode, out.String())
	}
	return sum, out.String(), err
}

// mustRun runs and fails the test on an error.
func (e *syncEnv) mustRun(opts Options) (Summary, string) {
	e.t.Helper()
	sum, out, err := e.run(opts)
	if err != nil {
		e.t.Fatalf("%s: %v\n%s", opts.Mode, err, out)
	}
	return sum, out
}

func (e *syncEnv) records() map[string]Record {
	e.t.Helper()
	st, err := OpenStore(e.stateDir, e.local.ID(), e.remote.ID(), e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	defer st.Close()
	all, err := st.All()
	if err != nil {
		e.t.Fatal(err)
	}
	return all
}

// writeAt writes content to root/rel with the given mtime, creating
// folders.
func writeAt(t *testing.T, root, rel, content string, mt time.Time) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, root, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(root, rel string) bool {
	_, err := os.Lstat(filepath.Join(root, filepath.FromSlash(rel)))
	return err == nil
}

func removeAt(t *testing.T, root, rel string) {
	t.Helper()
	if err := os.RemoveAll(filepath.Join(root, filepath.FromSlash(rel))); err != nil {
		t.Fatal(err)
	}
}

// snapshotDir describes every entry under root: content and mtime of
// files, "dir" for folders.
func snapshotDir(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			out[filepath.ToSlash(rel)] = "dir"
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = string(b) + "@" + fi.ModTime().UTC().Format(time.RFC3339Nano)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// contents is snapshotDir without mtimes, for comparing the two sides.
func contents(t *testing.T, root string) map[string]string {
	t.Helper()
	out := snapshotDir(t, root)
	for k, v := range out {
		if i := strings.LastIndexByte(v, '@'); i >= 0 && v != "dir" {
			out[k] = v[:i]
		}
	}
	return out
}

func diffMaps(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "only first: "+k)
		} else if v != w {
			d = append(d, "differs: "+k+": "+v+" vs "+w)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "only second: "+k)
		}
	}
	sort.Strings(d)
	return d
}

// sameTrees fails unless both folders hold the same paths and bytes.
func (e *syncEnv) sameTrees() {
	e.t.Helper()
	for _, d := range diffMaps(contents(e.t, e.ldir), contents(e.t, e.rdir)) {
		e.t.Errorf("local vs remote: %s", d)
	}
}

// noop checks that a run right after does nothing at all.
func (e *syncEnv) noop(opts Options) {
	e.t.Helper()
	before := e.records()
	sum, out := e.mustRun(opts)
	if sum.FilesUp+sum.FilesDown+sum.DeletedLocal+sum.DeletedRemote+sum.DirsCreated+sum.Conflicts+sum.Skipped != 0 || out != "" {
		e.t.Errorf("second run did something: %+v\n%s", sum, out)
	}
	after := e.records()
	if len(before) != len(after) {
		e.t.Errorf("second run changed the number of records: %d -> %d", len(before), len(after))
	}
}
