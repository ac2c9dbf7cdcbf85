package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
)

// The FTP target is the one whose refinement the wrapper must keep.
var _ mtimeRefiner = (*ftp.Target)(nil)

func newLocal(t *testing.T) (target.Target, string) {
	t.Helper()
	dir := t.TempDir()
	lt, err := local.New(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lt.Close() })
	return lt, dir
}

// value finds one sample in a scrape, by name and labels.
func value(t *testing.T, r *Registry, name string, labels map[string]string) float64 {
	t.Helper()
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	checkExposition(t, b.String())
	_, samples := parseExposition(t, b.String())
next:
	for _, s := range samples {
		if s.name != name || len(s.labels) != len(labels) {
			continue
		}
		for k, v := range labels {
			if s.labels[k] != v {
				continue next
			}
		}
		return s.value
	}
	t.Fatalf("no sample %s%v in:\n%s", name, labels, b.String())
	return 0
}

func TestWrapTargetCountsOperationsBytesAndErrors(t *testing.T) {
	lt, dir := newLocal(t)
	r := NewRegistry()
	w := WrapTarget(lt, r)
	ctx := context.Background()
	if _, ok := w.(mtimeRefiner); ok {
		t.Fatal("a local target's wrapper claims to refine times")
	}
	if w.ID() != lt.ID() || w.String() != lt.String() || w.Features() != lt.Features() {
		t.Fatal("the wrapper changes ID, String or Features")
	}

	content := []byte("hello, metrics\n")
	if _, err := w.Write(ctx, "a.txt", bytes.NewReader(content), target.WriteOptions{Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(ctx, "a.txt", strings.NewReader("more")); err != nil {
		t.Fatal(err)
	}
	rc, err := w.Open(ctx, "a.txt", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != string(content)+"more" {
		t.Fatalf("read %q, %v", got, err)
	}
	if err := w.Mkdir(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	if err := w.Rename(ctx, "a.txt", "d/b.txt"); err != nil {
		t.Fatal(err)
	}
	if err := w.SetModTime(ctx, "d/b.txt", time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if es, err := w.List(ctx, "d"); err != nil || len(es) != 1 {
		t.Fatalf("list: %v, %v", es, err)
	}
	if err := w.Remove(ctx, "d/b.txt"); err != nil {
		t.Fatal(err)
	}
	if err := w.Rmdir(ctx, "d"); err != nil {
		t.Fatal(err)
	}

	// Failures, one of each kind the local target can produce here.
	if _, err := w.Stat(ctx, "missing"); !errors.Is(err, target.ErrNotFound) {
		t.Fatalf("stat missing: %v", err)
	}
	if _, err := w.Open(ctx, "missing", 0, -1); !errors.Is(err, target.ErrNotFound) {
		t.Fatalf("open missing: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "full"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "full", "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Rmdir(ctx, "full"); !errors.Is(err, target.ErrNotEmpty) {
		t.Fatalf("rmdir full: %v", err)
	}
	if err := w.Mkdir(ctx, "full"); !errors.Is(err, target.ErrExist) {
		t.Fatalf("mkdir existing: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := w.List(cancelled, "full"); err == nil {
		t.Fatal("list with a cancelled context succeeded")
	}

	for op, n := range map[string]float64{"write": 1, "append": 1, "open": 2, "mkdir": 2, "rename": 1,
		"setmtime": 1, "list": 2, "remove": 1, "rmdir": 2, "stat": 1, "refine_mtime": 0} {
		if v := value(t, r, OpsName, map[string]string{"op": op}); v != n {
			t.Errorf("%s{op=%q} = %v, want %v", OpsName, op, v, n)
		}
	}
	for _, c := range []struct{ op, kind string }{
		{"stat", "not_found"}, {"open", "not_found"}, {"rmdir", "not_empty"}, {"mkdir", "exists"}, {"list", "canceled"},
	} {
		if v := value(t, r, ErrorsName, map[string]string{"op": c.op, "kind": c.kind}); v != 1 {
			t.Errorf("%s{op=%q,kind=%q} = %v, want 1", ErrorsName, c.op, c.kind, v)
		}
	}
	if v := value(t, r, BytesUpName, nil); v != float64(len(content)+4) {
		t.Errorf("bytes up %v, want %d", v, len(content)+4)
	}
	if v := value(t, r, BytesDownName, nil); v != float64(len(content)+4) {
		t.Errorf("bytes down %v, want %d", v, len(content)+4)
	}
	if v := value(t, r, UploadName+"_count", nil); v != 1 {
		t.Errorf("upload latency count %v, want 1 (the write)", v)
	}
}

func TestErrorKind(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{target.NewError("stat", "x", target.ErrNotFound, nil), "not_found"},
		{fmt.Errorf("upload x: %w", target.NewError("write", "x", target.ErrPermission, nil)), "permission"},
		{target.NewError("list", "", target.ErrTemporary, context.Canceled), "canceled"},
		{target.NewError("list", "", target.ErrTemporary, errors.New("421 too many users")), "temporary"},
		{target.NewError("login", "", target.ErrAuth, nil), "auth"},
		{context.DeadlineExceeded, "timeout"},
		{errors.New("something else"), "other"},
	} {
		if got := ErrorKind(c.err); got != c.want {
			t.Errorf("ErrorKind(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// refiningTarget is a local target that also refines times, as the FTP
// target does.
type refiningTarget struct {
	target.Target
	asked int
}

func (r *refiningTarget) RefineModTime(ctx context.Context, p string) (time.Time, error) {
	r.asked++
	if p == "missing" {
		return time.Time{}, target.NewError("mdtm", p, target.ErrNotFound, nil)
	}
	return time.Unix(1700000000, 0).UTC(), nil
}

func TestWrapTargetKeepsRefineModTime(t *testing.T) {
	lt, _ := newLocal(t)
	inner := &refiningTarget{Target: lt}
	r := NewRegistry()
	w := WrapTarget(inner, r)
	rf, ok := w.(mtimeRefiner)
	if !ok {
		t.Fatal("the wrapper hides RefineModTime")
	}
	if got, err := rf.RefineModTime(context.Background(), "a"); err != nil || !got.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("refine: %v, %v", got, err)
	}
	if _, err := rf.RefineModTime(context.Background(), "missing"); !errors.Is(err, target.ErrNotFound) {
		t.Fatalf("refine missing: %v", err)
	}
	if inner.asked != 2 {
		t.Fatalf("inner target asked %d times, want 2", inner.asked)
	}
	if v := value(t, r, OpsName, map[string]string{"op": "refine_mtime"}); v != 2 {
		t.Errorf("refine_mtime ops %v, want 2", v)
	}
	if v := value(t, r, ErrorsName, map[string]string{"op": "refine_mtime", "kind": "not_found"}); v != 1 {
		t.Errorf("refine_mtime not_found errors %v, want 1", v)
	}
	// A second wrapper on the same registry shares the series.
	WrapTarget(lt, r).Stat(context.Background(), "")
	if v := value(t, r, OpsName, map[string]string{"op": "stat"}); v != 1 {
		t.Errorf("stat ops %v after a second wrapper's stat, want 1", v)
	}
}

// brokenReader fails halfway, as a download whose connection drops.
type brokenReader struct{ n int }

func (b *brokenReader) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, target.NewError("read", "x", target.ErrTemporary, errors.New("connection reset"))
	}
	b.n--
	p[0] = 'x'
	return 1, nil
}

func (b *brokenReader) Close() error { return nil }

func TestDownloadBreakingHalfwayCountsOneError(t *testing.T) {
	r := NewRegistry()
	m := newTargetMetrics(r)
	rc := &countingReadCloser{rc: &brokenReader{n: 3}, m: m}
	buf := make([]byte, 8)
	for range 6 {
		rc.Read(buf)
	}
	if v := value(t, r, BytesDownName, nil); v != 3 {
		t.Errorf("bytes down %v, want 3", v)
	}
	if v := value(t, r, ErrorsName, map[string]string{"op": "open", "kind": "temporary"}); v != 1 {
		t.Errorf("open temporary errors %v, want 1 for one broken transfer", v)
	}
}
