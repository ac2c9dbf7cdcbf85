package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLocalFilesSpreadOverFolders: each local file lives in the subfolder
// of data/ its inode number names, and new files land in many of them.
func TestLocalFilesSpreadOverFolders(t *testing.T) {
	c := openTest(t, t.TempDir(), 0)
	defer c.Close()
	folders := map[string]bool{}
	for i := range 20 {
		ino := newLocal(t, c, "f"+strings.Repeat("x", i), []byte("content"))
		dir, name := filepath.Split(c.localPath(ino))
		if filepath.Clean(dir) != c.shardDir(ino) || filepath.Dir(filepath.Clean(dir)) != c.dataDir() {
			t.Errorf("inode %d lives in %s, want a subfolder of %s", ino, dir, c.dataDir())
		}
		folders[dir] = true
		if want := strings.TrimLeft(name, "0123456789"); want != "" {
			t.Errorf("local file %q is not named by its inode number", name)
		}
		wantContent(t, c, ino, "content")
	}
	if len(folders) < 20 {
		t.Errorf("20 new files share %d folders", len(folders))
	}
}

// TestFlatCacheMoved: a cache that kept its local files in data/ itself
// (before the subfolders) opens with every file in its subfolder, a
// truncation noted but not yet renamed is finished from there, and a copy
// from the server cut short is removed.
func TestFlatCacheMoved(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, 0)
	kept := newLocal(t, c, "kept", []byte("kept content"))
	ino := newLocal(t, c, "f", []byte("old content"))
	crashAfterRecord(t, c, ino)
	// The layout before the subfolders: every file in data/ itself.
	for _, p := range localFiles(t, c) {
		if err := os.Rename(filepath.Join(c.dataDir(), p), filepath.Join(c.dataDir(), filepath.Base(p))); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range shardNames {
		if err := os.Remove(filepath.Join(c.dataDir(), name)); err != nil {
			t.Fatal(err)
		}
	}
	stray := filepath.Join(c.dataDir(), "fill-77")
	if err := os.WriteFile(stray, []byte("cut copy"), 0o600); err != nil {
		t.Fatal(err)
	}

	c = openTest(t, dir, 0)
	defer c.Close()
	wantContent(t, c, kept, "kept content")
	wantContent(t, c, ino, "new")
	wantNoPending(t, c)
	for _, p := range localFiles(t, c) {
		if filepath.Dir(p) == "." {
			t.Errorf("%s is still in data/ itself", p)
		}
	}
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v)", stray, err)
	}
}
