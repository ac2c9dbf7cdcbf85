package sync

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// realFTP opens a fresh folder on one of the servers scripts/test-servers.sh
// runs, made through the server so that its FTP user owns it, and removes
// it at the end. Without the server the test is skipped, and fails in CI.
func realFTP(t *testing.T, e *syncEnv, urlEnv string) target.Target {
	t.Helper()
	u, pw := os.Getenv(urlEnv), os.Getenv("FTPSYNC_TEST_PASSWORD")
	if u == "" || pw == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s and FTPSYNC_TEST_PASSWORD not set: a missing server is a failure in CI (scripts/test-servers.sh up)", urlEnv)
		}
		t.Skipf("%s not set; start the servers with scripts/test-servers.sh up and eval its env", urlEnv)
	}
	root, err := ftp.New(t.Context(), ftp.Options{URL: u, Password: pw, Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	var b [6]byte
	rand.Read(b[:])
	dir := "sync-test-" + hex.EncodeToString(b[:])
	if err := root.Mkdir(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	tg, err := ftp.New(t.Context(), ftp.Options{URL: strings.TrimSuffix(u, "/") + "/" + dir, Password: pw, Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tg.Close()
		removeAll(t, root, dir)
	})
	return tg
}

// removeAll deletes a folder tree through a target, for cleanup (when the
// test's context is already cancelled).
func removeAll(t *testing.T, tg target.Target, p string) {
	ctx := context.Background()
	ents, err := tg.List(ctx, p)
	if err != nil {
		t.Logf("cleanup: list %s: %v", p, err)
		return
	}
	for _, e := range ents {
		cp := target.Join(p, e.Name)
		if e.IsDir {
			removeAll(t, tg, cp)
		} else if err := tg.Remove(ctx, cp); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
	if err := tg.Rmdir(ctx, p); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

func putFile(t *testing.T, tg target.Target, p, content string, mt time.Time) {
	t.Helper()
	dir, _ := target.Split(p)
	if dir != "" {
		if _, err := tg.Stat(t.Context(), dir); errors.Is(err, target.ErrNotFound) {
			if err := tg.Mkdir(t.Context(), dir); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := tg.Write(t.Context(), p, bytes.NewReader([]byte(content)), target.WriteOptions{ModTime: mt, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
}

// TestSyncProftpdToVsftpd syncs a folder on proftpd (MLSD, MFMT) with one
// on vsftpd (LIST with minute times, MDTM), in both directions.
func TestSyncProftpdToVsftpd(t *testing.T) {
	e := newSyncEnv(t)
	pro := realFTP(t, e, "FTPSYNC_TEST_PROFTPD_URL")
	vs := realFTP(t, e, "FTPSYNC_TEST_VSFTPD_URL")
	e.local, e.remote = pro, vs
	putFile(t, pro, "site/index.html", "<h1>pro</h1>", tA)
	putFile(t, pro, "site/a b/ünï.txt", "unicode", tA)
	putFile(t, vs, "from-vs.txt", "vsftpd", tA)
	sum, out := e.mustRun(Options{Mode: ModeSync})
	if sum.FilesUp != 2 || sum.FilesDown != 1 || sum.Conflicts != 0 || sum.Errors != 0 {
		t.Errorf("first sync: %+v\n%s", sum, out)
	}
	sameTargets(t, pro, vs)
	e.noop(Options{Mode: ModeSync})

	// A change on vsftpd within the same minute, same size: only MDTM
	// can tell it from the recorded one.
	putFile(t, vs, "site/index.html", "<h1>vsf</h1>", time.Now().Add(-time.Second))
	putFile(t, pro, "new.txt", "new", tA)
	if err := pro.Remove(t.Context(), "from-vs.txt"); err != nil {
		t.Fatal(err)
	}
	sum, out = e.mustRun(Options{Mode: ModeSync})
	if sum.FilesUp != 1 || sum.FilesDown != 1 || sum.DeletedRemote != 1 || sum.Conflicts != 0 {
		t.Errorf("second sync: %+v\n%s", sum, out)
	}
	if got := string(targettest.ReadFile(t, pro, "site/index.html")); got != "<h1>vsf</h1>" {
		t.Errorf("proftpd index.html = %q", got)
	}
	sameTargets(t, pro, vs)
	e.noop(Options{Mode: ModeSync})
}

func sameTargets(t *testing.T, a, b target.Target) {
	t.Helper()
	for _, d := range diffMaps(targettest.Tree(t, a), targettest.Tree(t, b)) {
		t.Errorf("%s vs %s: %s", a, b, d)
	}
}
