package main

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/testutil"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/sftp"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// sshdFolder is a fresh folder on the OpenSSH server of
// scripts/test-servers.sh, made through the server so that its user owns
// it, with the flags that log in with the script's key.
type sshdFolder struct {
	url   string   // sftp:// URL of the folder
	disk  string   // the same folder on this machine
	flags []string // --identity and --known-hosts
	tg    target.Target
}

// freshSSHDFolder skips without the script's variables, or fails in CI.
// It points HOME at an empty folder for the rest of the test.
func freshSSHDFolder(t *testing.T) *sshdFolder {
	t.Helper()
	v := targettest.NeedEnv(t, "FTPSYNC_TEST_SFTP_URL", "FTPSYNC_TEST_SFTP_ROOT", "FTPSYNC_TEST_SFTP_KEY", "FTPSYNC_TEST_SFTP_KNOWN_HOSTS")
	base, root, key, known := strings.TrimSuffix(v[0], "/"), v[1], v[2], v[3]
	// No agent and no ~/.ssh of the machine: the key given is the only way in.
	t.Setenv("SSH_AUTH_SOCK", "")
	t.Setenv("HOME", t.TempDir())
	t.Setenv("FTPSYNC_PASSWORD", "")
	opts := sftp.Options{URL: base, IdentityFile: key, KnownHostsFile: known, Log: testutil.Log(t), Timeout: 20 * time.Second}
	top, err := sftp.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer top.Close()
	sub := targettest.FreshRemoteDir(t, top)
	opts.URL = base + "/" + sub
	tg, err := sftp.New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return &sshdFolder{url: opts.URL, disk: filepath.Join(root, sub), flags: []string{"--identity", key, "--known-hosts", known}, tg: tg}
}

// put writes a file on the server through SFTP.
func (s *sshdFolder) put(t *testing.T, p string, data []byte, mt time.Time) {
	t.Helper()
	if _, err := s.tg.Write(t.Context(), p, bytes.NewReader(data), target.WriteOptions{ModTime: mt, Size: int64(len(data))}); err != nil {
		t.Fatalf("put %s: %v", p, err)
	}
}

func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// TestMountSFTP mounts a folder of the OpenSSH server with the built
// binary, logging in with a key: it reads a file the server has, writes,
// overwrites, makes a folder and renames while uploads wait (--write-back
// 1h), and checks that nothing but folders reached the server before
// 'ftpsync-mount unmount', which uploads everything and exits 0; then the
// server's folder on disk holds exactly the tree written.
func TestMountSFTP(t *testing.T) {
	bin := buildBinary(t) // before freshSSHDFolder moves HOME, and with it Go's caches
	s := freshSSHDFolder(t)
	big := randomBytes(1, 3<<20+17)
	s.put(t, "on-server.bin", big, mt0)
	s.put(t, "replace-me.txt", []byte("old"), mt0)
	mnt := t.TempDir()
	m := startMountURL(t, bin, s.url, "", mnt, append([]string{"--cache-dir", t.TempDir(), "--write-back", "1h"}, s.flags...)...)

	if got, err := os.ReadFile(filepath.Join(mnt, "on-server.bin")); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read through the mount: %d bytes, %v; want the server's %d", len(got), err, len(big))
	}
	want := map[string][]byte{
		"on-server.bin":       big,
		"replace-me.txt":      []byte("new content, longer than before"),
		"new/nested/file.bin": randomBytes(2, 1<<20),
		"renamed.txt":         []byte("written, then renamed"),
	}
	if err := os.MkdirAll(filepath.Join(mnt, "new", "nested"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"replace-me.txt", "new/nested/file.bin"} {
		if err := os.WriteFile(filepath.Join(mnt, p), want[p], 0o644); err != nil {
			t.Fatalf("write %s: %v", p, err)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "draft.txt"), want["renamed.txt"], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(mnt, "draft.txt"), filepath.Join(mnt, "renamed.txt")); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(bin, "status", "--json", mnt).CombinedOutput()
	var st mountStatus
	if err != nil || json.Unmarshal(out, &st) != nil || st.Queue.Pending == 0 || !strings.HasPrefix(st.Remote, "sftp://") {
		t.Fatalf("status before the unmount: %v\n%s", err, out)
	}
	if got := mustRead(t, filepath.Join(s.disk, "replace-me.txt")); got != "old" {
		t.Fatalf("the overwrite reached the server before the unmount (--write-back 1h): %q", got)
	}
	if out, err := exec.Command(bin, "unmount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v\n%s", err, out)
	}
	if err := m.wait(t); err != nil {
		t.Fatalf("mount exit: %v\n%s", err, m.log())
	}
	got := map[string][]byte{}
	err = filepath.WalkDir(s.disk, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(s.disk, p)
		got[filepath.ToSlash(rel)], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, w := range want {
		if !bytes.Equal(got[p], w) {
			t.Errorf("server's %s: %d bytes, want %d", p, len(got[p]), len(w))
		}
	}
	for p := range got {
		if want[p] == nil {
			t.Errorf("the server holds %s, which the mount did not show (a temporary or the renamed draft?)", p)
		}
	}
}

// TestSyncCommandSFTP runs the one-shot sync between a local folder and a
// folder of the OpenSSH server: new files both ways, then a change on each
// side and a deletion, then a run with nothing to do.
func TestSyncCommandSFTP(t *testing.T) {
	s := freshSSHDFolder(t)
	base := t.TempDir()
	l, st := filepath.Join(base, "l"), filepath.Join(base, "state")
	writeFileAt(t, filepath.Join(l, "local.txt"), "from local", mt0)
	writeFileAt(t, filepath.Join(l, "dir with space", "ünï.bin"), string(randomBytes(3, 300<<10)), mt0)
	writeFileAt(t, filepath.Join(l, "doomed.txt"), "to be deleted", mt0)
	s.put(t, "remote.txt", []byte("from the server"), mt0)
	runSync := func(want string) {
		t.Helper()
		args := append([]string{"sync", l, s.url, "--state-dir", st}, s.flags...)
		code, out := runCLI(t, t.Context(), args...)
		if code != exitOK || !strings.Contains(out, want) {
			t.Fatalf("sync: exit %d, want 0 and %q\n%s", code, want, out)
		}
	}

	runSync("3 up (300.0 KiB), 1 down (15 B)")
	if mustRead(t, filepath.Join(l, "remote.txt")) != "from the server" ||
		mustRead(t, filepath.Join(s.disk, "local.txt")) != "from local" ||
		mustRead(t, filepath.Join(s.disk, "dir with space", "ünï.bin")) != mustRead(t, filepath.Join(l, "dir with space", "ünï.bin")) {
		t.Fatal("the first sync did not make the two sides equal")
	}

	writeFileAt(t, filepath.Join(l, "local.txt"), "changed locally", mt0.Add(time.Hour))
	s.put(t, "remote.txt", []byte("changed on the server"), mt0.Add(time.Hour))
	if err := os.Remove(filepath.Join(l, "doomed.txt")); err != nil {
		t.Fatal(err)
	}
	runSync("1 up (15 B), 1 down (21 B), 0 deleted locally, 1 deleted remotely, 0 conflicts")
	if mustRead(t, filepath.Join(s.disk, "local.txt")) != "changed locally" || mustRead(t, filepath.Join(l, "remote.txt")) != "changed on the server" {
		t.Error("the changes did not cross")
	}
	if _, err := os.Stat(filepath.Join(s.disk, "doomed.txt")); !os.IsNotExist(err) {
		t.Errorf("the file deleted locally is still on the server: %v", err)
	}
	runSync("0 up (0 B), 0 down (0 B), 0 deleted locally, 0 deleted remotely, 0 conflicts")
}
