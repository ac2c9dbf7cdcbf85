package targettest

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// testRangedReads: reads at odd offsets and lengths return exactly the
// requested bytes; past the end there is nothing (or an error).
func testRangedReads(t *testing.T, e *env) {
	const size = 10000
	data := pattern(5, size)
	WriteFile(t, e.tg, "f", data)
	for _, c := range []struct{ off, n int64 }{
		{0, -1}, {0, 0}, {0, 1}, {1, 1}, {1, -1}, {4095, -1}, {4095, 2}, {4096, 1},
		{4097, 100}, {4097, -1}, {9000, 5000}, {9999, -1}, {9999, 1}, {5000, 0}, {0, size},
	} {
		want := data[c.off:]
		if c.n >= 0 && c.n < int64(len(want)) {
			want = want[:c.n]
		}
		b, err := readRange(t, e.tg, "f", c.off, c.n)
		if err != nil || !bytes.Equal(b, want) {
			t.Errorf("read at %d length %d: %d bytes (error %v), want %d bytes", c.off, c.n, len(b), err, len(want))
		}
	}
	for _, off := range []int64{size, size + 1, size + 4096} {
		if b, err := readRange(t, e.tg, "f", off, -1); len(b) != 0 {
			t.Errorf("read at %d, past the end of %d bytes: %d bytes (error %v)", off, size, len(b), err)
		}
	}
	// Closing a reader early must not spoil the next operation.
	rc, err := e.tg.Open(t.Context(), "f", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Logf("close of a reader abandoned early: %v", err)
	}
	if b := ReadFile(t, e.tg, "f"); !bytes.Equal(b, data) {
		t.Errorf("read after an abandoned read: %d bytes, want %d", len(b), size)
	}
}

// testChangedFile: after a file is replaced, reads show the new content
// (nothing stale), and a reader opened before shows all of the old content
// or fails, never a mix.
func testChangedFile(t *testing.T, e *env) {
	a, b, c := pattern(6, 5000), pattern(7, 7000), pattern(8, 7000)
	WriteFile(t, e.tg, "f", a)
	rc, err := e.tg.Open(t.Context(), "f", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 100)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	WriteFile(t, e.tg, "f", b)
	rest, err := io.ReadAll(rc)
	rc.Close()
	if got := append(head, rest...); err == nil && !bytes.Equal(got, a) {
		t.Errorf("a reader opened before the change gave %d bytes that are not the old content", len(got))
	}
	if got := ReadFile(t, e.tg, "f"); !bytes.Equal(got, b) {
		t.Errorf("after the change: %d bytes that are not the new content", len(got))
	}
	st, err := e.tg.Stat(t.Context(), "f")
	if err != nil || st.Size != int64(len(b)) {
		t.Errorf("stat after the change: %+v, %v", st, err)
	}
	WriteFile(t, e.tg, "f", c)
	if got, err := readRange(t, e.tg, "f", 4097, 100); err != nil || !bytes.Equal(got, c[4097:4197]) {
		t.Errorf("after a same-size change, a ranged read gave stale or wrong bytes (error %v)", err)
	}
}

// testRenameOverFile: Rename replaces a file, moves between directories,
// and fails without effect into a missing directory.
func testRenameOverFile(t *testing.T, e *env) {
	ctx := t.Context()
	WriteFile(t, e.tg, "a", []byte("A"))
	WriteFile(t, e.tg, "b", []byte("BB"))
	if err := e.tg.Rename(ctx, "a", "b"); err != nil {
		t.Fatalf("rename over a file: %v", err)
	}
	if err := e.tg.Mkdir(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := e.tg.Rename(ctx, "b", "d/c"); err != nil {
		t.Fatalf("rename into a directory: %v", err)
	}
	wantErr(t, "rename into a missing directory", e.tg.Rename(ctx, "d/c", "nope/c"), target.ErrNotFound)
	wantTree(t, e.tg, map[string]string{"d": "dir", "d/c": sum([]byte("A"))})
}

// testRenameDir: renaming a directory moves everything below it.
func testRenameDir(t *testing.T, e *env) {
	ctx := t.Context()
	for _, d := range []string{"d", "d/sub", "other"} {
		if err := e.tg.Mkdir(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	WriteFile(t, e.tg, "d/f", []byte("f"))
	WriteFile(t, e.tg, "d/sub/g", []byte("g"))
	if err := e.tg.Rename(ctx, "d", "other/moved"); err != nil {
		t.Fatalf("rename of a directory: %v", err)
	}
	wantTree(t, e.tg, map[string]string{
		"other": "dir", "other/moved": "dir", "other/moved/sub": "dir",
		"other/moved/f": sum([]byte("f")), "other/moved/sub/g": sum([]byte("g")),
	})
}

// oddNames are names users have that a careless target mangles.
var oddNames = []string{
	"with space.txt", "two  spaces", ".hidden", "..dots", "...", "#hash#", "100%", "%2F%20",
	"héllo wörld", "日本語のファイル", "emoji 🎉", "semi;colon", "quote'\"", "back\\slash",
	"dash-", "-leading-dash", strings.Repeat("x", 200),
}

// testNames: odd names survive write, list, stat, read, mkdir, rename and
// remove unchanged.
func testNames(t *testing.T, e *env) {
	ctx := t.Context()
	want := map[string]string{}
	for _, n := range oddNames {
		WriteFile(t, e.tg, n, []byte(n))
		want[n] = sum([]byte(n))
	}
	dir := "dir ünï #% .x"
	if err := e.tg.Mkdir(ctx, dir); err != nil {
		t.Fatalf("mkdir %q: %v", dir, err)
	}
	want[dir] = "dir"
	for _, n := range oddNames[:4] {
		p := target.Join(dir, n)
		WriteFile(t, e.tg, p, []byte(p))
		want[p] = sum([]byte(p))
	}
	for _, n := range oddNames {
		if st, err := e.tg.Stat(ctx, n); err != nil || st.Name != n || st.Size != int64(len(n)) {
			t.Errorf("stat %q: %+v, %v", n, st, err)
		}
	}
	wantTree(t, e.tg, want)
	from, to := oddNames[8], oddNames[9]+" renamed"
	if err := e.tg.Rename(ctx, from, to); err != nil {
		t.Fatalf("rename %q to %q: %v", from, to, err)
	}
	want[to] = want[from]
	delete(want, from)
	wantTree(t, e.tg, want)
	for p, h := range want {
		if h == "dir" || strings.HasPrefix(p, dir+"/") {
			continue
		}
		if err := e.tg.Remove(ctx, p); err != nil {
			t.Errorf("remove %q: %v", p, err)
		}
	}
	if es := listChecked(t, e.tg, ""); len(es) != 1 || es[0].Name != dir {
		t.Errorf("after removing the files, the root lists %+v", es)
	}
}

// testConcurrent: 16 goroutines write, read and list distinct files at
// once; afterwards the tree holds exactly what each wrote last.
func testConcurrent(t *testing.T, e *env) {
	const workers, rounds = 16, 3
	if err := e.tg.Mkdir(t.Context(), "d"); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"d": "dir"}
	var mu sync.Mutex // protects want
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			p := fmt.Sprintf("c%02d", w)
			if w%2 == 1 {
				p = "d/" + p
			}
			var data []byte
			for r := range rounds {
				data = pattern(byte(w*rounds+r), 1000+w*4099+r)
				if _, err := e.tg.Write(t.Context(), p, bytes.NewReader(data), target.WriteOptions{Size: int64(len(data))}); err != nil {
					t.Errorf("write %s: %v", p, err)
					return
				}
				got, err := readRange(t, e.tg, p, 0, -1)
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("read %s back: %d bytes, %v; want %d bytes", p, len(got), err, len(data))
				}
				dir, _ := target.Split(p)
				es, err := e.tg.List(t.Context(), dir)
				if err != nil {
					t.Errorf("list %q: %v", dir, err)
				}
				for _, en := range es {
					if target.IsTempName(en.Name) {
						t.Errorf("list %q during writes shows the temp name %q", dir, en.Name)
					}
				}
			}
			mu.Lock()
			want[p] = sum(data)
			mu.Unlock()
		})
	}
	wg.Wait()
	wantTree(t, e.tg, want)
}
