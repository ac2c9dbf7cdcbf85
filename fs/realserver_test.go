package fs

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// TestReadTreeRealServers mounts the proftpd and vsftpd that
// scripts/test-servers.sh runs on 127.0.0.1. Without them the test skips,
// and fails under CI=true.
func TestReadTreeRealServers(t *testing.T) {
	for _, s := range []struct{ name, env string }{
		{"proftpd", "FTPSYNC_TEST_PROFTPD"},
		{"vsftpd", "FTPSYNC_TEST_VSFTPD"},
	} {
		t.Run(s.name, func(t *testing.T) {
			v := targettest.NeedEnv(t, s.env+"_URL", s.env+"_ROOT", "FTPSYNC_TEST_PASSWORD")
			u, root, pw := v[0], v[1], v[2]
			sub := fmt.Sprintf("fs-test-%d", time.Now().UnixNano())
			dir := filepath.Join(root, sub)
			t.Cleanup(func() { os.RemoveAll(dir) })
			files := sampleTree()
			// LIST gives minutes for files of the last six months.
			mt := time.Now().Add(-time.Hour).Truncate(time.Minute).UTC()
			writeTreeAt(t, dir, files, mt)
			chownTree(t, dir)

			log := logrus.New()
			log.SetOutput(io.Discard)
			tg, err := ftp.New(t.Context(), ftp.Options{URL: u + sub + "/", Password: pw, Timeout: 10 * time.Second, Log: log})
			if err != nil {
				t.Fatalf("connect to %s: %v", s.name, err)
			}
			m := mount(t, mountOpts{target: tg})
			checkTreeWith(t, m.dir, files, mt, 0, time.Minute)
		})
	}
}

// chownTree gives the tree to the FTP test user, who can not read root's
// files otherwise.
func chownTree(t *testing.T, dir string) {
	t.Helper()
	uid, _ := strconv.Atoi(os.Getenv("FTPSYNC_TEST_UID"))
	gid, _ := strconv.Atoi(os.Getenv("FTPSYNC_TEST_GID"))
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
		return os.Chmod(p, map[bool]os.FileMode{true: 0o755, false: 0o644}[d.IsDir()])
	})
	if err != nil {
		t.Fatal(err)
	}
}
