package targettest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// testMissingPaths: every operation on a path that does not exist, directly
// or below a missing directory, reports ErrNotFound and creates nothing.
func testMissingPaths(t *testing.T, e *env) {
	ctx := t.Context()
	for _, p := range []string{"missing", "missing/deeper/file"} {
		_, err := e.tg.Stat(ctx, p)
		wantErr(t, "stat "+p, err, target.ErrNotFound)
		_, err = e.tg.List(ctx, p)
		wantErr(t, "list "+p, err, target.ErrNotFound)
		_, err = readRange(t, e.tg, p, 0, -1)
		wantErr(t, "open "+p, err, target.ErrNotFound)
		wantErr(t, "remove "+p, e.tg.Remove(ctx, p), target.ErrNotFound)
		wantErr(t, "rename "+p, e.tg.Rename(ctx, p, "dst"), target.ErrNotFound)
		wantErr(t, "rmdir "+p, e.tg.Rmdir(ctx, p), target.ErrNotFound)
		wantErr(t, "setmodtime "+p, e.tg.SetModTime(ctx, p, time.Now()), target.ErrNotFound, target.ErrUnsupported)
	}
	_, err := e.tg.Write(ctx, "missing/file", strings.NewReader("x"), target.WriteOptions{Size: 1})
	wantErr(t, "write into a missing directory", err, target.ErrNotFound)
	wantErr(t, "mkdir in a missing directory", e.tg.Mkdir(ctx, "missing/sub"), target.ErrNotFound)
	wantTree(t, e.tg, map[string]string{})
}

// testMkdirAndStat: Mkdir creates one level, refuses existing names, and
// Stat and List describe what is there; the root is a directory.
func testMkdirAndStat(t *testing.T, e *env) {
	ctx := t.Context()
	root, err := e.tg.Stat(ctx, "")
	if err != nil || !root.IsDir {
		t.Fatalf("stat of the root: %+v, %v; want a directory", root, err)
	}
	if err := e.tg.Mkdir(ctx, "d"); err != nil {
		t.Fatalf("mkdir d: %v", err)
	}
	wantErr(t, "mkdir of an existing directory", e.tg.Mkdir(ctx, "d"), target.ErrExist)
	WriteFile(t, e.tg, "f", []byte("x"))
	wantErr(t, "mkdir over a file", e.tg.Mkdir(ctx, "f"), target.ErrExist)
	if err := e.tg.Mkdir(ctx, "d/sub"); err != nil {
		t.Fatalf("mkdir d/sub: %v", err)
	}
	st, err := e.tg.Stat(ctx, "d/sub")
	if err != nil || !st.IsDir || st.Name != "sub" {
		t.Errorf("stat d/sub = %+v, %v; want directory named sub", st, err)
	}
	es := listChecked(t, e.tg, "")
	if len(es) != 2 || es[0].Name == es[1].Name {
		t.Fatalf("list of the root = %+v, want d and f", es)
	}
	for _, en := range es {
		if en.IsDir != (en.Name == "d") {
			t.Errorf("list entry %+v has the wrong type", en)
		}
		if en.Name == "f" && en.Size != 1 {
			t.Errorf("list entry f has size %d, want 1", en.Size)
		}
	}
	if es := listChecked(t, e.tg, "d/sub"); len(es) != 0 {
		t.Errorf("list of the empty d/sub = %+v", es)
	}
}

// testRmdirAndRemove: Rmdir refuses a non-empty directory and a file,
// Remove refuses a directory, and neither touches what it refused.
func testRmdirAndRemove(t *testing.T, e *env) {
	ctx := t.Context()
	if err := e.tg.Mkdir(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	WriteFile(t, e.tg, "d/f", []byte("keep"))
	wantErr(t, "rmdir of a non-empty directory", e.tg.Rmdir(ctx, "d"), target.ErrNotEmpty)
	if err := e.tg.Rmdir(ctx, "d/f"); err == nil {
		t.Error("rmdir of a file succeeded")
	}
	if err := e.tg.Remove(ctx, "d"); err == nil {
		t.Error("remove of a directory succeeded")
	}
	wantTree(t, e.tg, map[string]string{"d": "dir", "d/f": sum([]byte("keep"))})
	if err := e.tg.Remove(ctx, "d/f"); err != nil {
		t.Fatalf("remove d/f: %v", err)
	}
	if err := e.tg.Rmdir(ctx, "d"); err != nil {
		t.Fatalf("rmdir of the emptied d: %v", err)
	}
	_, err := e.tg.Stat(ctx, "d")
	wantErr(t, "stat of a removed directory", err, target.ErrNotFound)
	wantTree(t, e.tg, map[string]string{})
}

// testListFile: listing a file is ErrNotDir (a target can always tell, if
// need be by a Stat); listing below a file is either.
func testListFile(t *testing.T, e *env) {
	WriteFile(t, e.tg, "f", []byte("data"))
	_, err := e.tg.List(t.Context(), "f")
	wantErr(t, "list of a file", err, target.ErrNotDir)
	_, err = e.tg.List(t.Context(), "f/sub")
	wantErr(t, "list below a file", err, target.ErrNotDir, target.ErrNotFound)
}

// testOpenDir: reading a directory fails, at Open or at the first Read.
func testOpenDir(t *testing.T, e *env) {
	if err := e.tg.Mkdir(t.Context(), "d"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"d", ""} {
		if b, err := readRange(t, e.tg, p, 0, -1); err == nil {
			t.Errorf("read of directory %q gave %d bytes and no error", p, len(b))
		}
	}
	_, err := e.tg.Write(t.Context(), "d", strings.NewReader("x"), target.WriteOptions{Size: 1})
	if err == nil {
		t.Error("write over a directory succeeded")
	}
	wantTree(t, e.tg, map[string]string{"d": "dir"})
}

// untouchedReader fails the test if anything reads it: a refused write must
// be refused before it consumes its source.
type untouchedReader struct{ read atomic.Bool }

func (r *untouchedReader) Read([]byte) (int, error) {
	r.read.Store(true)
	return 0, io.EOF
}

// testInvalidNames: paths with "..", ".", NUL, CR or LF elements are
// refused with ErrInvalidName by every operation, and nothing changes.
func testInvalidNames(t *testing.T, e *env) {
	ctx := t.Context()
	if err := e.tg.Mkdir(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	WriteFile(t, e.tg, "b", []byte("b"))
	WriteFile(t, e.tg, "a/c", []byte("c"))
	before := Tree(t, e.tg)
	bad := []string{"..", "../b", "a/../b", "a/./c", "./b", "a/..", "x\x00y", "a/\x00", "x\ny", "x\rz"}
	for _, p := range bad {
		what := func(op string) string { return op + " " + strings.ReplaceAll(p, "\x00", `\0`) }
		_, err := e.tg.Stat(ctx, p)
		wantErr(t, what("stat"), err, target.ErrInvalidName)
		_, err = e.tg.List(ctx, p)
		wantErr(t, what("list"), err, target.ErrInvalidName)
		_, err = readRange(t, e.tg, p, 0, -1)
		wantErr(t, what("open"), err, target.ErrInvalidName)
		src := &untouchedReader{}
		_, err = e.tg.Write(ctx, p, src, target.WriteOptions{Size: -1})
		wantErr(t, what("write"), err, target.ErrInvalidName)
		_, err = e.tg.Append(ctx, p, src)
		wantErr(t, what("append"), err, target.ErrInvalidName, target.ErrUnsupported)
		if src.read.Load() {
			t.Errorf("%s: the source was read before the name was refused", what("write"))
		}
		wantErr(t, what("rename from"), e.tg.Rename(ctx, p, "new"), target.ErrInvalidName)
		wantErr(t, what("rename to"), e.tg.Rename(ctx, "b", p), target.ErrInvalidName)
		wantErr(t, what("remove"), e.tg.Remove(ctx, p), target.ErrInvalidName)
		wantErr(t, what("mkdir"), e.tg.Mkdir(ctx, p), target.ErrInvalidName)
		wantErr(t, what("rmdir"), e.tg.Rmdir(ctx, p), target.ErrInvalidName)
		wantErr(t, what("setmodtime"), e.tg.SetModTime(ctx, p, time.Now()), target.ErrInvalidName, target.ErrUnsupported)
	}
	wantTree(t, e.tg, before)
}

// promptly bounds how long an operation with a cancelled context may take.
const promptly = 5 * time.Second

// testCancelled: with a context cancelled beforehand every operation fails
// promptly with an error wrapping context.Canceled and changes nothing.
func testCancelled(t *testing.T, e *env) {
	if err := e.tg.Mkdir(t.Context(), "d"); err != nil {
		t.Fatal(err)
	}
	WriteFile(t, e.tg, "f", []byte("old"))
	before := Tree(t, e.tg)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	src := &untouchedReader{}
	ops := []struct {
		name string
		do   func() error
	}{
		{"stat", func() error { _, err := e.tg.Stat(ctx, "f"); return err }},
		{"list", func() error { _, err := e.tg.List(ctx, ""); return err }},
		{"open", func() error {
			rc, err := e.tg.Open(ctx, "f", 0, -1)
			if err == nil {
				rc.Close()
			}
			return err
		}},
		{"write", func() error {
			_, err := e.tg.Write(ctx, "new", src, target.WriteOptions{Size: -1})
			return err
		}},
		{"write over", func() error {
			_, err := e.tg.Write(ctx, "f", bytes.NewReader([]byte("new")), target.WriteOptions{Size: 3})
			return err
		}},
		{"append", func() error { _, err := e.tg.Append(ctx, "f", src); return err }},
		{"rename", func() error { return e.tg.Rename(ctx, "f", "g") }},
		{"remove", func() error { return e.tg.Remove(ctx, "f") }},
		{"mkdir", func() error { return e.tg.Mkdir(ctx, "e") }},
		{"rmdir", func() error { return e.tg.Rmdir(ctx, "d") }},
		{"setmodtime", func() error { return e.tg.SetModTime(ctx, "f", time.Unix(1e9, 0)) }},
	}
	for _, op := range ops {
		start := time.Now()
		err := op.do()
		if d := time.Since(start); d > promptly {
			t.Errorf("%s with a cancelled context took %v", op.name, d)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: error %v, want one wrapping context.Canceled", op.name, err)
		}
	}
	if src.read.Load() {
		t.Error("a write with a cancelled context read its source")
	}
	wantTree(t, e.tg, before)
}

// cancellingReader yields chunks of data and cancels its context once the
// first chunk is out, like a user pressing ^C mid-upload.
type cancellingReader struct {
	data   []byte
	chunk  int
	cancel context.CancelFunc
	sent   int
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	if r.sent >= len(r.data) {
		return 0, io.EOF
	}
	if r.sent > 0 {
		r.cancel()
	}
	n := copy(p[:min(len(p), r.chunk)], r.data[r.sent:])
	r.sent += n
	return n, nil
}

// testCancelDuringWrite: a write cancelled midway fails with
// context.Canceled and leaves the old file and no temp file.
func testCancelDuringWrite(t *testing.T, e *env) {
	old := []byte("the old content")
	WriteFile(t, e.tg, "f", old)
	for _, p := range []string{"f", "new"} {
		ctx, cancel := context.WithCancel(t.Context())
		src := &cancellingReader{data: pattern(3, 1<<20), chunk: 32 << 10, cancel: cancel}
		_, err := e.tg.Write(ctx, p, src, target.WriteOptions{Size: 1 << 20})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("write %s cancelled midway: error %v, want one wrapping context.Canceled", p, err)
		}
	}
	wantTree(t, e.tg, map[string]string{"f": sum(old)})
}
