package fs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// sh runs a shell script in dir as a user would, failing the test on error.
func sh(t *testing.T, dir, script string) {
	t.Helper()
	cmd := exec.Command("sh", "-euc", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// toolCase runs script in the mount and in a plain folder holding the same
// starting tree; after the mount flushed, the server's folder must equal
// the plain one byte for byte.
func toolCase(t *testing.T, start map[string][]byte, script string) *testMount {
	t.Helper()
	m := mount(t, mountOpts{})
	ref := t.TempDir()
	writeTree(t, m.serverDir, start)
	writeTree(t, ref, start)
	sh(t, ref, script)
	sh(t, m.dir, script)
	targettest.CompareDirs(t, m.dir, ref)
	m.flush(t)
	targettest.CompareDirs(t, m.serverDir, ref)
	return m
}

func TestWriteBasics(t *testing.T) {
	toolCase(t, map[string][]byte{"old.txt": []byte("old\n"), "d/keep": []byte("k")}, `
echo hello > new.txt
mkdir -p a/b/c
echo deep > a/b/c/f
mv old.txt renamed.txt
echo more >> renamed.txt
rm d/keep
rmdir d
mv a x
echo tmp > gone; rm gone
`)
}

func TestVimStyleSave(t *testing.T) {
	toolCase(t, map[string][]byte{"doc.txt": []byte(strings.Repeat("line\n", 1000))}, `
cp doc.txt .doc.txt.swp
printf 'edited\n' >> .doc.txt.swp
mv .doc.txt.swp doc.txt
cp doc.txt doc.txt~ && rm doc.txt~
`)
}

func TestSedInPlace(t *testing.T) {
	toolCase(t, map[string][]byte{"conf": []byte("a=1\nb=2\n"), "sub/x.cfg": []byte("b=2\n")}, `
sed -i 's/b=2/b=3/' conf sub/x.cfg
`)
}

func TestAppendLog(t *testing.T) {
	toolCase(t, map[string][]byte{"app.log": []byte("start\n")}, `
for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i" >> app.log; done
`)
}

func TestCopyTreeAndTar(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"a/1": []byte("one"), "a/b/2": make([]byte, 3<<20), "c": []byte("")})
	tarball := filepath.Join(t.TempDir(), "t.tar")
	if out, err := exec.Command("tar", "cf", tarball, "-C", src, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	toolCase(t, nil, "cp -r "+src+" copy && mkdir untar && tar xf "+tarball+" -C untar")
}

func TestGitClone(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is needed for this test")
	}
	repo := t.TempDir()
	writeTree(t, repo, map[string][]byte{"README": []byte("hi\n"), "src/main.go": []byte("package main\n")})
	sh(t, repo, `git init -q . && git -c user.name=t -c user.email=t@e add . && git -c user.name=t -c user.email=t@e commit -qm one`)
	// git adapts .git/config and the index to the filesystem, so the
	// reference is the mount itself: copied out before the flush.
	m := mount(t, mountOpts{})
	sh(t, m.dir, "git clone -q "+repo+" clone && git -C clone fsck --no-progress 2>&1 | (! grep .) && git -C clone status --porcelain | (! grep .)")
	snap := t.TempDir()
	sh(t, m.dir, "cp -r clone "+snap+"/")
	m.flush(t)
	targettest.CompareDirs(t, m.serverDir, snap)
}

func TestRsyncArchive(t *testing.T) {
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Fatal("rsync is needed for this test (apt-get install rsync)")
	}
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"a/1": []byte("one"), "a/b/2": []byte("two"), "top": []byte("t")})
	os.Chmod(filepath.Join(src, "top"), 0o600)
	toolCase(t, nil, "rsync -a "+src+"/ dst/")
}
