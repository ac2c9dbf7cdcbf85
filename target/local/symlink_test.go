package local

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// linkFixture builds a root holding a file, a directory and links to both,
// inside and outside the root, and a folder outside with a secret file.
func linkFixture(t *testing.T, newT func(*testing.T, string) *Target) (tg *Target, root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "sub"), filepath.Join(root, "sub", "deep")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		filepath.Join(root, "real"):             "real",
		filepath.Join(root, "sub", "f"):         "f",
		filepath.Join(root, "sub", "deep", "g"): "g",
		filepath.Join(outside, "secret"):        "secret",
		filepath.Join(outside, "innocent"):      "innocent",
	}
	for p, data := range files {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"out":     filepath.Join(outside, "secret"), // absolute, out of the root
		"outrel":  "../outside/secret",              // relative, out of the root
		"outdir":  outside,
		"in":      "real", // inside the root: still not followed
		"indir":   "sub",
		"dangles": "nothing",
	}
	for name, dst := range links {
		if err := os.Symlink(dst, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	tg = newT(t, root)
	t.Cleanup(func() { tg.Close() })
	return tg, root, outside
}

func TestSymlinksAreInvisible(t *testing.T) {
	for name, newT := range constructors {
		t.Run(name, func(t *testing.T) { testSymlinksAreInvisible(t, newT) })
	}
}

func testSymlinksAreInvisible(t *testing.T, newT func(*testing.T, string) *Target) {
	tg, _, _ := linkFixture(t, newT)
	ctx := t.Context()
	got := targettest.Tree(t, tg)
	if len(got) != 5 || got["sub"] != "dir" || got["real"] == "" || got["sub/f"] == "" || got["sub/deep"] != "dir" || got["sub/deep/g"] == "" {
		t.Errorf("tree = %v; want only real, sub, sub/f, sub/deep and sub/deep/g", got)
	}
	for _, p := range []string{"out", "outrel", "outdir", "in", "indir", "dangles",
		"outdir/secret", "indir/f", "indir/deep/g", "outdir/../root/real"} {
		_, err := tg.Stat(ctx, p)
		if !errors.Is(err, target.ErrNotFound) && !errors.Is(err, target.ErrInvalidName) {
			t.Errorf("stat %s: %v, want ErrNotFound", p, err)
		}
		if _, err := tg.Open(ctx, p, 0, -1); err == nil {
			t.Errorf("open %s succeeded", p)
		}
	}
	for _, p := range []string{"outdir", "indir", "indir/deep"} {
		if _, err := tg.List(ctx, p); !errors.Is(err, target.ErrNotFound) {
			t.Errorf("list %s: %v, want ErrNotFound", p, err)
		}
	}
}

func TestSymlinksAreNotChangedOrFollowed(t *testing.T) {
	for name, newT := range constructors {
		t.Run(name, func(t *testing.T) { testSymlinksAreNotChangedOrFollowed(t, newT) })
	}
}

func testSymlinksAreNotChangedOrFollowed(t *testing.T, newT func(*testing.T, string) *Target) {
	tg, root, outside := linkFixture(t, newT)
	ctx := t.Context()
	snapshot := t.TempDir()
	if err := os.CopyFS(snapshot, os.DirFS(outside)); err != nil {
		t.Fatal(err)
	}
	secretTime := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(outside, "secret"), secretTime, secretTime); err != nil {
		t.Fatal(err)
	}

	for _, p := range []string{"out", "outrel", "in", "dangles"} {
		_, err := tg.Write(ctx, p, strings.NewReader("evil"), target.WriteOptions{Size: 4})
		if !errors.Is(err, target.ErrPermission) {
			t.Errorf("write over link %s: %v, want ErrPermission", p, err)
		}
		if err := tg.Rename(ctx, "real", p); !errors.Is(err, target.ErrPermission) {
			t.Errorf("rename over link %s: %v, want ErrPermission", p, err)
		}
		if _, err := tg.Append(ctx, p, strings.NewReader("evil")); !errors.Is(err, target.ErrNotFound) {
			t.Errorf("append to link %s: %v, want ErrNotFound", p, err)
		}
		if err := tg.SetModTime(ctx, p, time.Now()); !errors.Is(err, target.ErrNotFound) {
			t.Errorf("setmodtime of link %s: %v, want ErrNotFound", p, err)
		}
		if err := tg.Remove(ctx, p); !errors.Is(err, target.ErrNotFound) {
			t.Errorf("remove of link %s: %v, want ErrNotFound", p, err)
		}
		if err := tg.Rename(ctx, p, "taken"); !errors.Is(err, target.ErrNotFound) {
			t.Errorf("rename of link %s: %v, want ErrNotFound", p, err)
		}
	}
	for _, p := range []string{"outdir/new", "outdir/secret", "indir/new", "indir/deep/new"} {
		_, err := tg.Write(ctx, p, strings.NewReader("evil"), target.WriteOptions{Size: 4})
		if !errors.Is(err, target.ErrNotFound) {
			t.Errorf("write through a linked directory to %s: %v, want ErrNotFound", p, err)
		}
		if err := tg.Mkdir(ctx, p+"dir"); !errors.Is(err, target.ErrNotFound) {
			t.Errorf("mkdir through a linked directory at %s: %v, want ErrNotFound", p, err)
		}
		if err := tg.Remove(ctx, p); !errors.Is(err, target.ErrNotFound) {
			t.Errorf("remove through a linked directory at %s: %v, want ErrNotFound", p, err)
		}
	}
	if err := tg.Rmdir(ctx, "outdir"); !errors.Is(err, target.ErrNotFound) {
		t.Errorf("rmdir of a linked directory: %v, want ErrNotFound", err)
	}

	if err := os.Chtimes(filepath.Join(snapshot, "secret"), secretTime, secretTime); err != nil {
		t.Fatal(err)
	}
	targettest.CompareDirs(t, snapshot, outside)
	if fi, err := os.Stat(filepath.Join(outside, "secret")); err != nil || !fi.ModTime().Equal(secretTime) {
		t.Errorf("the file outside changed its time: %v, %v", fi.ModTime(), err)
	}
	for _, name := range []string{"out", "outrel", "outdir", "in", "indir", "dangles"} {
		if fi, err := os.Lstat(filepath.Join(root, name)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("link %s is no longer a link: %v", name, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "real")); err != nil || !bytes.Equal(b, []byte("real")) {
		t.Errorf("real changed: %q, %v", b, err)
	}
}
