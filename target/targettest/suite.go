// Package targettest is the contract every target.Target must meet, as one
// suite that each target's tests run: local folders, the in-process FTP
// server and real FTP servers. A behaviour the higher layers rely on belongs
// here, so that it is pinned for every target at once.
package targettest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// Harness tells the suite how to get targets to test.
type Harness struct {
	// New returns a target over a fresh, empty tree. The suite closes it at
	// the end of the subtest; New must not register its own Close.
	New func(t *testing.T) target.Target
	// Root, if set, returns the local folder that backs tg, so that the
	// suite can also check what the server's disk holds (no temp files
	// left, no partial file under its final name). It returns "" when
	// there is no such folder.
	Root func(t *testing.T, tg target.Target) string
	// Large adds the 100 MiB case.
	Large bool
}

// env is what each case gets: a fresh target and, if known, its folder.
type env struct {
	tg   target.Target
	root string // "" when the harness cannot tell
}

type testCase struct {
	name string
	fn   func(t *testing.T, e *env)
}

// Run runs every case of the contract as a subtest, each on a fresh tree.
func Run(t *testing.T, h Harness) {
	if h.New == nil {
		t.Fatal("targettest.Harness.New is nil")
	}
	cases := []testCase{
		{"MissingPaths", testMissingPaths},
		{"MkdirAndStat", testMkdirAndStat},
		{"RmdirAndRemove", testRmdirAndRemove},
		{"ListFile", testListFile},
		{"OpenDir", testOpenDir},
		{"WriteStat", testWriteStat},
		{"SetModTime", testSetModTime},
		{"ZeroByte", testZeroByte},
		{"AtomicWrite", testAtomicWrite},
		{"ShortWrite", testShortWrite},
		{"SourceError", testSourceError},
		{"RangedReads", testRangedReads},
		{"ChangedFile", testChangedFile},
		{"Append", testAppend},
		{"RenameOverFile", testRenameOverFile},
		{"RenameDir", testRenameDir},
		{"Names", testNames},
		{"InvalidNames", testInvalidNames},
		{"Cancelled", testCancelled},
		{"CancelDuringWrite", testCancelDuringWrite},
		{"Concurrent", testConcurrent},
	}
	if h.Large {
		cases = append(cases, testCase{"Large", testLarge})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := h.New(t)
			t.Cleanup(func() {
				if err := tg.Close(); err != nil {
					t.Errorf("close %s: %v", tg, err)
				}
			})
			e := &env{tg: tg}
			if h.Root != nil {
				e.root = h.Root(t, tg)
			}
			if es, err := tg.List(t.Context(), ""); err != nil || len(es) != 0 {
				t.Fatalf("New gave a tree that is not empty: %d entries, error %v", len(es), err)
			}
			c.fn(t, e)
			e.checkNoTemps(t)
		})
	}
}

// checkNoTemps fails if the backing folder holds a temp file: every Write,
// failed or not, must clean up after itself.
func (e *env) checkNoTemps(t *testing.T) {
	t.Helper()
	if e.root == "" {
		return
	}
	err := filepath.WalkDir(e.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if target.IsTempName(d.Name()) {
			t.Errorf("temp file left on disk: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk %s: %v", e.root, err)
	}
}

// diskFile reads p from the backing folder; ok is false without one.
func (e *env) diskFile(t *testing.T, p string) (data []byte, ok bool, err error) {
	if e.root == "" {
		return nil, false, nil
	}
	b, err := os.ReadFile(filepath.Join(e.root, filepath.FromSlash(p)))
	return b, true, err
}

// wantErr fails unless err matches one of kinds.
func wantErr(t *testing.T, what string, err error, kinds ...error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, kinds)
		return
	}
	for _, k := range kinds {
		if errors.Is(err, k) {
			return
		}
	}
	t.Errorf("%s: error %q (%T) matches none of %v", what, err, err, kinds)
}

// wantTree fails unless the target holds exactly want (see Tree).
func wantTree(t *testing.T, tg target.Target, want map[string]string) {
	t.Helper()
	got := Tree(t, tg)
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			t.Errorf("tree: %s is missing", p)
		case g != w:
			t.Errorf("tree: %s is %.12s, want %.12s", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("tree: unexpected %s", p)
		}
	}
}

// sameTime reports whether got matches want at precision prec: equal once
// both are truncated, or closer than prec (for servers that round).
func sameTime(got, want time.Time, prec time.Duration) bool {
	if prec <= 0 {
		prec = time.Nanosecond
	}
	d := got.Sub(want)
	if d < 0 {
		d = -d
	}
	return got.Truncate(prec).Equal(want.Truncate(prec)) || d < prec
}

// stepTimeout bounds every wait for another goroutine in the suite.
const stepTimeout = 20 * time.Second
