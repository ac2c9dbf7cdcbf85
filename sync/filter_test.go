package sync

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestFilterCheck(t *testing.T) {
	f, err := NewFilter([]string{"*.txt", "docs/*.md"}, []string{"**/*.log", "build/", "tmp", "/top.txt", "a/**/z/*.txt"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		p     string
		dir   bool
		want  Result
		about string
	}{
		{"a.txt", false, Included, "matches *.txt"},
		{"x/y/a.txt", false, Included, "base-name pattern at any depth"},
		{"a.md", false, ByUser, "not selected by --match"},
		{"docs/a.md", false, Included, "path pattern"},
		{"x/docs/a.md", false, ByUser, "path patterns are anchored"},
		{"x.log", false, ByUser, "**/ matches zero folders"},
		{"a/b/c.log", false, ByUser, "**/ matches many folders"},
		{"build", true, ByUser, "folder-only pattern on a folder"},
		{"x/build", true, ByUser, "folder-only base name at any depth"},
		{"build", false, ByUser, "a file named build is not selected by --match"},
		{"tmp", true, ByUser, "bare name, folder"},
		{"tmp", false, ByUser, "bare name, file"},
		{"top.txt", false, ByUser, "anchored with a leading slash"},
		{"sub/top.txt", false, Included, "the leading slash anchors at the root only"},
		{"a/z/q.txt", false, ByUser, "** in the middle, zero folders"},
		{"a/b/c/z/q.txt", false, ByUser, "** in the middle, many folders"},
		{"docs", true, Included, "folders are always entered"},
		{".git", true, ByDefault, "default exclude"},
		{"x/.DS_Store", false, ByDefault, "default exclude at depth"},
		{"x/" + MetaFileName, false, ByDefault, "pyftpsync's meta file"},
		{"x/.ftpsync-tmp-1-a.txt", false, ByDefault, "our temp names"},
		{"#recycle", true, ByDefault, "NAS recycle bin"},
	}
	for _, c := range cases {
		if got := f.Check(c.p, c.dir); got != c.want {
			t.Errorf("%s (dir %v): got %v, want %v: %s", c.p, c.dir, got, c.want, c.about)
		}
	}
}

func TestFilterBadPattern(t *testing.T) {
	if _, err := NewFilter([]string{"[a"}, nil); err == nil || !strings.Contains(err.Error(), "--match") {
		t.Errorf("bad --match: %v", err)
	}
	if _, err := NewFilter(nil, []string{"/"}); err == nil {
		t.Error("a pattern of only a slash names nothing")
	}
}

func TestPromptAsker(t *testing.T) {
	in := strings.NewReader("x\nr\nL\n")
	var out bytes.Buffer
	a := NewPromptAsker(in, &out)
	ctx := context.Background()
	l, r := fileAt(3, tA, 0), fileAt(4, tA, 0)
	if got, err := a.Ask(ctx, "a", BothChanged, l, r); err != nil || got != ResolveRemote {
		t.Errorf("first answer: %v, %v; want remote after an invalid answer", got, err)
	}
	if got, _ := a.Ask(ctx, "b", BothChanged, l, r); got != ResolveLocal {
		t.Errorf("second answer: %v", got)
	}
	if got, _ := a.Ask(ctx, "c", BothChanged, l, nil); got != ResolveLocal {
		t.Errorf("upper case applies to all remaining: %v", got)
	}
	if n := strings.Count(out.String(), "Conflict:"); n != 2 {
		t.Errorf("prompted %d times, want 2:\n%s", n, out.String())
	}
	eof := NewPromptAsker(strings.NewReader(""), &out)
	if got, err := eof.Ask(ctx, "d", BothNew, l, r); got != ResolveSkip || err == nil {
		t.Errorf("end of input: %v, %v; want skip with an error", got, err)
	}
}
