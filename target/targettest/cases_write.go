package targettest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
)

// wantTime is a modification time with a sub-second part, so that targets
// with nanosecond precision must keep it and coarser ones may drop it.
var wantTime = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)

// checkEntry fails unless e describes a file of size bytes and, when mtime
// is not zero, with that modification time at e's precision.
func checkEntry(t *testing.T, what string, e target.Entry, name string, size int64, mtime time.Time) {
	t.Helper()
	if e.Name != name || e.IsDir || e.Size != size {
		t.Errorf("%s: entry %+v, want file %q of %d bytes", what, e, name, size)
	}
	if e.Precision <= 0 {
		t.Errorf("%s: entry %+v has no precision", what, e)
	}
	if e.ModTime.IsZero() {
		t.Errorf("%s: entry %+v has no modification time", what, e)
	}
	if !mtime.IsZero() && !sameTime(e.ModTime, mtime, e.Precision) {
		t.Errorf("%s: modification time %v, want %v at precision %v", what, e.ModTime, mtime, e.Precision)
	}
}

// testWriteStat: what Write returns, Stat, List and the disk agree on size,
// content and (where it can be set) the modification time.
func testWriteStat(t *testing.T, e *env) {
	ctx := t.Context()
	canTime := e.tg.Features().CanSetModTime()
	for i, size := range []int{5000, 17, 70000} {
		data := pattern(byte(i), size)
		mtime := wantTime.Add(time.Duration(i) * time.Hour)
		got, err := e.tg.Write(ctx, "f", bytes.NewReader(data), target.WriteOptions{ModTime: mtime, Size: int64(size)})
		if err != nil {
			t.Fatalf("write %d bytes: %v", size, err)
		}
		if !canTime {
			mtime = time.Time{}
		}
		checkEntry(t, "write", got, "f", int64(size), mtime)
		st, err := e.tg.Stat(ctx, "f")
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		checkEntry(t, "stat", st, "f", int64(size), mtime)
		es := listChecked(t, e.tg, "")
		if len(es) != 1 {
			t.Fatalf("list = %+v, want only f", es)
		}
		checkEntry(t, "list", es[0], "f", int64(size), mtime)
		if b := ReadFile(t, e.tg, "f"); !bytes.Equal(b, data) {
			t.Errorf("read back %d bytes, not the %d written", len(b), size)
		}
		if b, ok, err := e.diskFile(t, "f"); ok && (err != nil || !bytes.Equal(b, data)) {
			t.Errorf("disk holds %d bytes (error %v), not the %d written", len(b), err, size)
		}
	}
	// Size -1 means the size is not known beforehand.
	if _, err := e.tg.Write(ctx, "g", strings.NewReader("unsized"), target.WriteOptions{Size: -1}); err != nil {
		t.Fatalf("write with Size -1: %v", err)
	}
	if b := ReadFile(t, e.tg, "g"); string(b) != "unsized" {
		t.Errorf("read back %q, want %q", b, "unsized")
	}
}

// testSetModTime: SetModTime sticks where the features say it can, and is
// ErrUnsupported elsewhere.
func testSetModTime(t *testing.T, e *env) {
	ctx := t.Context()
	WriteFile(t, e.tg, "f", []byte("x"))
	err := e.tg.SetModTime(ctx, "f", wantTime)
	if !e.tg.Features().CanSetModTime() {
		wantErr(t, "setmodtime without MFMT or MDTM", err, target.ErrUnsupported)
		return
	}
	if err != nil {
		t.Fatalf("setmodtime: %v", err)
	}
	st, err := e.tg.Stat(ctx, "f")
	if err != nil {
		t.Fatal(err)
	}
	checkEntry(t, "stat after setmodtime", st, "f", 1, wantTime)
}

// testZeroByte: empty files are written, listed and read like any other,
// including over a non-empty file.
func testZeroByte(t *testing.T, e *env) {
	ctx := t.Context()
	WriteFile(t, e.tg, "full", []byte("not empty"))
	for _, p := range []string{"empty", "full"} {
		got := WriteFile(t, e.tg, p, nil)
		checkEntry(t, "write", got, p, 0, time.Time{})
		if b := ReadFile(t, e.tg, p); len(b) != 0 {
			t.Errorf("read %s: %d bytes, want 0", p, len(b))
		}
		if b, err := readRange(t, e.tg, p, 0, 10); err != nil || len(b) != 0 {
			t.Errorf("ranged read of empty %s: %d bytes, %v", p, len(b), err)
		}
	}
	if _, err := e.tg.Write(ctx, "unsized", strings.NewReader(""), target.WriteOptions{Size: -1}); err != nil {
		t.Errorf("write of an empty source with Size -1: %v", err)
	}
	wantTree(t, e.tg, map[string]string{"empty": sum(nil), "full": sum(nil), "unsized": sum(nil)})
}

// steppedReader yields data in chunks and, before every chunk after the
// first, tells the test it is waiting and waits to be let go, so that the
// test can look at the target while the write is half done.
type steppedReader struct {
	data    []byte
	chunk   int
	off     int
	waiting chan struct{} // receives once per pause
	proceed chan struct{} // the test sends to end a pause
	stop    chan struct{} // closed when the test ends, to free the writer
}

var errStopped = errors.New("the test ended")

func (r *steppedReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	if r.off > 0 {
		select {
		case r.waiting <- struct{}{}:
		case <-r.stop:
			return 0, errStopped
		}
		select {
		case <-r.proceed:
		case <-r.stop:
			return 0, errStopped
		}
	}
	n := copy(p[:min(len(p), r.chunk)], r.data[r.off:])
	r.off += n
	return n, nil
}

// testAtomicWrite: while a write is half done, the final name shows the old
// file (or nothing, for a new one) through Stat, Open, List and on disk,
// and listings never show the temp file.
func testAtomicWrite(t *testing.T, e *env) {
	old := pattern(1, 100<<10)
	WriteFile(t, e.tg, "f", old)
	for _, p := range []string{"f", "new"} {
		var before []byte
		if p == "f" {
			before = old
		}
		src := &steppedReader{data: pattern(2, 512<<10), chunk: 64 << 10,
			waiting: make(chan struct{}), proceed: make(chan struct{}), stop: make(chan struct{})}
		t.Cleanup(func() { close(src.stop) })
		done := make(chan error, 1)
		go func() {
			_, err := e.tg.Write(t.Context(), p, src, target.WriteOptions{Size: int64(len(src.data))})
			done <- err
		}()
		for pause := 0; ; pause++ {
			var err error
			finished := false
			select {
			case <-src.waiting:
			case err = <-done:
				finished = true
			case <-time.After(stepTimeout):
				t.Fatalf("write %s: no progress for %v", p, stepTimeout)
			}
			if finished {
				if err != nil {
					t.Fatalf("write %s: %v", p, err)
				}
				if pause == 0 {
					t.Fatalf("write %s finished without reading its source in chunks", p)
				}
				break
			}
			checkMidWrite(t, e, p, before)
			src.proceed <- struct{}{}
		}
		if b := ReadFile(t, e.tg, p); !bytes.Equal(b, src.data) {
			t.Errorf("after the write, %s holds %d bytes, not the %d written", p, len(b), len(src.data))
		}
	}
}

// checkMidWrite checks what a half-done write of p shows: the old content,
// or nothing when old is nil.
func checkMidWrite(t *testing.T, e *env, p string, old []byte) {
	t.Helper()
	ctx := t.Context()
	st, err := e.tg.Stat(ctx, p)
	b, rerr := readRange(t, e.tg, p, 0, -1)
	disk, onDisk, derr := e.diskFile(t, p)
	if old == nil {
		wantErr(t, "stat mid-write of a new file", err, target.ErrNotFound)
		wantErr(t, "read mid-write of a new file", rerr, target.ErrNotFound)
		if onDisk && derr == nil {
			t.Errorf("disk shows %d bytes of a half-written new file", len(disk))
		}
	} else {
		if err != nil || st.Size != int64(len(old)) {
			t.Errorf("stat mid-write: %+v, %v; want the old size %d", st, err, len(old))
		}
		if rerr != nil || !bytes.Equal(b, old) {
			t.Errorf("read mid-write: %d bytes, %v; want the old %d bytes", len(b), rerr, len(old))
		}
		if onDisk && (derr != nil || !bytes.Equal(disk, old)) {
			t.Errorf("disk mid-write: %d bytes, %v; want the old %d bytes", len(disk), derr, len(old))
		}
	}
	for _, en := range listChecked(t, e.tg, "") {
		if en.Name != p {
			continue
		}
		if old == nil {
			t.Errorf("list mid-write shows the new file %s", p)
		} else if en.Size != int64(len(old)) {
			t.Errorf("list mid-write shows %s with %d bytes, want the old %d", p, en.Size, len(old))
		}
	}
}

// testShortWrite: a source that yields fewer or more bytes than
// WriteOptions.Size fails with ErrShortWrite and leaves the old file.
func testShortWrite(t *testing.T, e *env) {
	old := []byte("the old content")
	WriteFile(t, e.tg, "f", old)
	data := pattern(4, 10000)
	for _, p := range []string{"f", "new"} {
		for _, size := range []int64{10001, 9999, 0} {
			_, err := e.tg.Write(t.Context(), p, bytes.NewReader(data), target.WriteOptions{Size: size})
			wantErr(t, "write with a source that does not match Size", err, target.ErrShortWrite)
		}
	}
	wantTree(t, e.tg, map[string]string{"f": sum(old)})
}

var errSource = errors.New("the source broke")

// failingReader yields some data, then errSource.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errSource
	}
	n := min(len(p), r.n)
	clear(p[:n])
	r.n -= n
	return n, nil
}

// testSourceError: a source that fails midway makes Write fail with that
// error and leaves the old file.
func testSourceError(t *testing.T, e *env) {
	old := []byte("the old content")
	WriteFile(t, e.tg, "f", old)
	for _, p := range []string{"f", "new"} {
		_, err := e.tg.Write(t.Context(), p, &failingReader{n: 100 << 10}, target.WriteOptions{Size: 1 << 20})
		wantErr(t, "write from a failing source", err, errSource)
	}
	wantTree(t, e.tg, map[string]string{"f": sum(old)})
}

// testAppend: Append extends a file where the features say it can, and is
// ErrUnsupported elsewhere.
func testAppend(t *testing.T, e *env) {
	ctx := t.Context()
	WriteFile(t, e.tg, "f", []byte("hello"))
	got, err := e.tg.Append(ctx, "f", strings.NewReader(", world"))
	if !e.tg.Features().APPE {
		wantErr(t, "append without APPE", err, target.ErrUnsupported)
		return
	}
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	checkEntry(t, "append", got, "f", 12, time.Time{})
	if _, err := e.tg.Append(ctx, "f", strings.NewReader("")); err != nil {
		t.Errorf("append of nothing: %v", err)
	}
	if b := ReadFile(t, e.tg, "f"); string(b) != "hello, world" {
		t.Errorf("after append: %q", b)
	}
	if _, err := e.tg.Append(ctx, "f", &failingReader{n: 10}); !errors.Is(err, errSource) {
		t.Errorf("append from a failing source: %v, want errSource", err)
	}
}

// largeSize is the size of the Large case.
const largeSize = 100 << 20

// testLarge: a 100 MiB file streams in and out intact, also from an offset
// near its end.
func testLarge(t *testing.T, e *env) {
	ctx := t.Context()
	const seed = 42
	want := sha256.New()
	if _, err := io.Copy(want, genReader(seed, largeSize)); err != nil {
		t.Fatal(err)
	}
	got, err := e.tg.Write(ctx, "large", genReader(seed, largeSize), target.WriteOptions{Size: largeSize})
	if err != nil {
		t.Fatalf("write 100 MiB: %v", err)
	}
	checkEntry(t, "write", got, "large", largeSize, time.Time{})
	rc, err := e.tg.Open(ctx, "large", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil || n != largeSize || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		t.Errorf("read back %d bytes (error %v), sha256 %x, want %x", n, err, h.Sum(nil), want.Sum(nil))
	}
	const tail = 4097
	var wantTail bytes.Buffer
	gen := genReader(seed, largeSize)
	if _, err := io.CopyN(io.Discard, gen, largeSize-tail); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(&wantTail, gen); err != nil {
		t.Fatal(err)
	}
	b, err := readRange(t, e.tg, "large", largeSize-tail, -1)
	if err != nil || !bytes.Equal(b, wantTail.Bytes()) {
		t.Errorf("read of the last %d bytes: %d bytes, %v", tail, len(b), err)
	}
	if e.root != "" {
		s, size, err := hashFile(filepath.Join(e.root, "large"))
		if err != nil || size != largeSize || s != hex.EncodeToString(want.Sum(nil)) {
			t.Errorf("disk holds %d bytes with sha256 %s (error %v)", size, s, err)
		}
	}
}
