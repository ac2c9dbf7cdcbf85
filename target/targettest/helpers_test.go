package targettest

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDiffDirs(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	writeTree(t, a, map[string]string{"same": "x", "d/same": "y", "changed": "abcdef", "onlyA": "", "kind": "file", "empty/": ""})
	writeTree(t, b, map[string]string{"same": "x", "d/same": "y", "changed": "abcXef", "onlyB/": "", "kind/": "", "empty/": ""})
	if err := os.Symlink("same", filepath.Join(a, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("other", filepath.Join(b, "link")); err != nil {
		t.Fatal(err)
	}
	got, err := DiffDirs(a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"changed: content differs from byte 3 (sizes 6 and 6)",
		"kind: file in the first, dir in the second",
		`link: "same" in the first, "other" in the second`,
		"onlyA: only in the first (file)",
		"onlyB: only in the second (dir)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DiffDirs:\n got %q\nwant %q", got, want)
	}
	if got, err := DiffDirs(a, a); err != nil || len(got) != 0 {
		t.Errorf("DiffDirs of a folder with itself: %q, %v", got, err)
	}
}

func TestDiffDirsLengths(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	long := strings.Repeat("z", 100<<10)
	writeTree(t, a, map[string]string{"f": long})
	writeTree(t, b, map[string]string{"f": long + "tail"})
	got, err := DiffDirs(a, b)
	want := []string{"f: content differs from byte 102400 (sizes 102400 and 102404)"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("DiffDirs = %q, %v; want %q", got, err, want)
	}
}

func TestDiffDirsMissingFolder(t *testing.T) {
	if _, err := DiffDirs(t.TempDir(), filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("DiffDirs with a missing folder gave no error")
	}
}

func TestSameTime(t *testing.T) {
	base := time.Date(2021, 3, 4, 5, 6, 7, 500_000_000, time.UTC)
	for _, c := range []struct {
		got  time.Time
		prec time.Duration
		want bool
	}{
		{base, time.Nanosecond, true},
		{base.Add(time.Nanosecond), time.Nanosecond, false},
		{base.Truncate(time.Second), time.Second, true},
		{base.Truncate(time.Second).Add(time.Second), time.Second, true}, // rounded up
		{base.Add(2 * time.Second), time.Second, false},
		{base.Truncate(time.Minute), time.Minute, true},
		{base.Add(-time.Hour), time.Minute, false},
		{base.Truncate(24 * time.Hour), 24 * time.Hour, true},
	} {
		if got := sameTime(c.got, base, c.prec); got != c.want {
			t.Errorf("sameTime(%v, %v, %v) = %v, want %v", c.got, base, c.prec, got, c.want)
		}
	}
}

func TestGenReaderIsDeterministic(t *testing.T) {
	a, b, c := pattern(1, 5000), pattern(1, 5000), pattern(2, 5000)
	if string(a) != string(b) || string(a) == string(c) || len(a) != 5000 {
		t.Error("pattern is not deterministic per seed, or seeds do not differ")
	}
}
