package targettest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// WriteFile stores data under p with its exact size, failing the test on
// error.
func WriteFile(t testing.TB, tg target.Target, p string, data []byte) target.Entry {
	t.Helper()
	e, err := tg.Write(t.Context(), p, bytes.NewReader(data), target.WriteOptions{Size: int64(len(data))})
	if err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
	return e
}

// ReadFile reads the whole file at p, failing the test on error.
func ReadFile(t testing.TB, tg target.Target, p string) []byte {
	t.Helper()
	b, err := readRange(t, tg, p, 0, -1)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return b
}

// readRange reads a range of p; an error from Open, Read or Close is returned.
func readRange(t testing.TB, tg target.Target, p string, off, n int64) ([]byte, error) {
	rc, err := tg.Open(t.Context(), p, off, n)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return b, err
}

// Tree walks the whole target and returns every path with the sha256 (hex)
// of its content, or "dir" for a directory. Listings must not show temp or
// invalid names; the test fails if one does.
func Tree(t testing.TB, tg target.Target) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		if depth > 64 {
			t.Fatalf("tree: %s is nested deeper than 64 levels; a loop?", dir)
		}
		for _, e := range listChecked(t, tg, dir) {
			p := target.Join(dir, e.Name)
			if e.IsDir {
				out[p] = "dir"
				walk(p, depth+1)
				continue
			}
			rc, err := tg.Open(t.Context(), p, 0, -1)
			if err != nil {
				t.Fatalf("tree: open %s: %v", p, err)
			}
			h := sha256.New()
			_, err = io.Copy(h, rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatalf("tree: read %s: %v", p, err)
			}
			out[p] = hex.EncodeToString(h.Sum(nil))
		}
	}
	walk("", 0)
	return out
}

// listChecked lists dir, failing the test on error and on any temp or
// invalid name in the listing.
func listChecked(t testing.TB, tg target.Target, dir string) []target.Entry {
	t.Helper()
	es, err := tg.List(t.Context(), dir)
	if err != nil {
		t.Fatalf("list %q: %v", dir, err)
	}
	for _, e := range es {
		if target.IsTempName(e.Name) {
			t.Errorf("list %q shows the temp name %q", dir, e.Name)
		}
		if err := target.ValidName(e.Name); err != nil {
			t.Errorf("list %q shows an invalid name: %v", dir, err)
		}
	}
	return es
}

// sum is the sha256 (hex) of b, as Tree reports it.
func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// CompareDirs fails the test with one error per difference between the
// local folders a and b: a path on one side only, a different type, or
// different bytes.
func CompareDirs(t testing.TB, a, b string) {
	t.Helper()
	diffs, err := DiffDirs(a, b)
	if err != nil {
		t.Fatalf("compare %s with %s: %v", a, b, err)
	}
	for _, d := range diffs {
		t.Errorf("%s vs %s: %s", a, b, d)
	}
}

// DiffDirs lists the differences between the local folders a and b, sorted
// by path. Links are compared by where they point, never followed.
func DiffDirs(a, b string) ([]string, error) {
	ta, err := scanDir(a)
	if err != nil {
		return nil, err
	}
	tb, err := scanDir(b)
	if err != nil {
		return nil, err
	}
	var diffs []string
	for p, ea := range ta {
		eb, ok := tb[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: only in the first (%s)", p, ea.kind))
		case ea.kind != eb.kind:
			diffs = append(diffs, fmt.Sprintf("%s: %s in the first, %s in the second", p, ea.kind, eb.kind))
		case ea.detail != eb.detail:
			d, err := describeDiff(filepath.Join(a, p), filepath.Join(b, p), ea, eb)
			if err != nil {
				return nil, err
			}
			diffs = append(diffs, p+": "+d)
		}
	}
	for p, eb := range tb {
		if _, ok := ta[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: only in the second (%s)", p, eb.kind))
		}
	}
	sort.Strings(diffs)
	return diffs, nil
}

// scanned is one entry of a scanned folder: its kind and what identifies
// its content (sha256 for files, the target for links).
type scanned struct {
	kind   string // "file", "dir", "symlink" or "special"
	detail string
	size   int64
}

func scanDir(root string) (map[string]scanned, error) {
	out := map[string]scanned{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch t := d.Type(); {
		case t.IsDir():
			out[rel] = scanned{kind: "dir"}
		case t&fs.ModeSymlink != 0:
			dst, err := os.Readlink(path)
			if err != nil {
				return err
			}
			out[rel] = scanned{kind: "symlink", detail: dst}
		case t.IsRegular():
			s, n, err := hashFile(path)
			if err != nil {
				return err
			}
			out[rel] = scanned{kind: "file", detail: s, size: n}
		default:
			out[rel] = scanned{kind: "special", detail: t.String()}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	return out, nil
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// describeDiff says how two entries of the same kind differ: link targets,
// or file sizes and the first differing byte.
func describeDiff(pa, pb string, ea, eb scanned) (string, error) {
	if ea.kind != "file" {
		return fmt.Sprintf("%q in the first, %q in the second", ea.detail, eb.detail), nil
	}
	fa, err := os.Open(pa)
	if err != nil {
		return "", err
	}
	defer fa.Close()
	fb, err := os.Open(pb)
	if err != nil {
		return "", err
	}
	defer fb.Close()
	off, err := firstDiff(fa, fb)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("content differs from byte %d (sizes %d and %d)", off, ea.size, eb.size), nil
}

// firstDiff returns the offset of the first byte where a and b differ,
// counting the end of the shorter one as a difference.
func firstDiff(a, b io.Reader) (int64, error) {
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	var off int64
	for {
		na, erra := io.ReadFull(a, ba)
		nb, errb := io.ReadFull(b, bb)
		for i := 0; i < na && i < nb; i++ {
			if ba[i] != bb[i] {
				return off + int64(i), nil
			}
		}
		if na != nb {
			return off + int64(min(na, nb)), nil
		}
		off += int64(na)
		endA := errors.Is(erra, io.EOF) || errors.Is(erra, io.ErrUnexpectedEOF)
		endB := errors.Is(errb, io.EOF) || errors.Is(errb, io.ErrUnexpectedEOF)
		switch {
		case erra != nil && !endA:
			return 0, erra
		case errb != nil && !endB:
			return 0, errb
		case endA || endB:
			return off, nil
		}
	}
}

// genReader yields n deterministic pseudo-random bytes from seed without
// holding them in memory, so that large files can be written and checked.
func genReader(seed uint64, n int64) io.Reader {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(key), n)
}

// pattern returns n deterministic pseudo-random bytes, so that a read at a
// wrong offset shows.
func pattern(seed byte, n int) []byte {
	b, _ := io.ReadAll(genReader(uint64(seed), int64(n)))
	return b
}
