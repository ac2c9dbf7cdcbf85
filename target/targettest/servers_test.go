package targettest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestNeedEnv(t *testing.T) {
	t.Setenv("CI", "")
	t.Setenv("TARGETTEST_A", "a")
	t.Setenv("TARGETTEST_B", "")
	if v := NeedEnv(t, "TARGETTEST_A"); len(v) != 1 || v[0] != "a" {
		t.Errorf("NeedEnv(TARGETTEST_A) = %q, want [a]", v)
	}
	reached := false
	t.Run("missing", func(t *testing.T) {
		NeedEnv(t, "TARGETTEST_A", "TARGETTEST_B")
		reached = true
	})
	if reached {
		t.Error("NeedEnv went on with TARGETTEST_B empty; want a skip")
	}
}

func TestFreshDir(t *testing.T) {
	root := t.TempDir()
	a, b := FreshDir(t, root), FreshDir(t, root)
	if a == b {
		t.Fatalf("FreshDir gave %q twice", a)
	}
	for _, name := range []string{a, b} {
		entries, err := os.ReadDir(filepath.Join(root, name))
		if err != nil || len(entries) != 0 {
			t.Errorf("FreshDir %q: %d entries, %v; want an empty folder", name, len(entries), err)
		}
	}
}
