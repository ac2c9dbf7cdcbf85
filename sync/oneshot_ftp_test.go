package sync

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
)

// ftpSide serves a new folder with the embedded FTP server and opens a
// target on it.
func ftpSide(t *testing.T, e *syncEnv) (target.Target, string) {
	t.Helper()
	srv := ftpdtest.Start(t)
	tg, err := ftp.New(t.Context(), ftp.Options{URL: srv.URL(), Password: srv.Password, Log: e.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg, srv.Root
}

func TestSyncWithFTPServer(t *testing.T) {
	e := newSyncEnv(t)
	remote, root := ftpSide(t, e)
	e.remote, e.rdir = remote, root
	writeAt(t, e.ldir, "index.html", "<h1>hi</h1>", tA)
	writeAt(t, e.ldir, "a dir/ünï code.txt", "unicode", tA)
	writeAt(t, e.ldir, "empty", "", tA)
	writeAt(t, root, "from-server/x.bin", "server data", tA)
	sum, out := e.mustRun(Options{Mode: ModeSync})
	if sum.FilesUp != 3 || sum.FilesDown != 1 || sum.Conflicts != 0 {
		t.Errorf("first sync: %+v\n%s", sum, out)
	}
	e.sameTrees()
	e.noop(Options{Mode: ModeSync})

	// Changes and deletions on either side, through the server.
	writeAt(t, root, "index.html", "<h1>server edit</h1>", time.Now().Add(-time.Minute))
	removeAt(t, e.ldir, "empty")
	writeAt(t, e.ldir, "a dir/new.txt", "new", tA)
	removeAt(t, root, "from-server")
	sum, out = e.mustRun(Options{Mode: ModeSync})
	if sum.FilesUp != 1 || sum.FilesDown != 1 || sum.DeletedRemote != 1 || sum.DeletedLocal != 2 {
		t.Errorf("second sync: %+v\n%s", sum, out)
	}
	e.sameTrees()
	e.noop(Options{Mode: ModeSync})
}

func TestSyncFTPToFTP(t *testing.T) {
	e := newSyncEnv(t)
	a, aroot := ftpSide(t, e)
	b, broot := ftpSide(t, e)
	e.local, e.ldir, e.remote, e.rdir = a, aroot, b, broot
	writeAt(t, aroot, "one/two/three.txt", "deep", tA)
	writeAt(t, broot, "other.txt", "other", tA)
	e.mustRun(Options{Mode: ModeSync})
	e.sameTrees()
	e.noop(Options{Mode: ModeSync})
	if fi, err := os.Stat(filepath.Join(broot, "one", "two", "three.txt")); err != nil || !fi.ModTime().Equal(tA.Truncate(time.Second)) {
		t.Errorf("copied file: %v, mtime %v; want the source's to the second", err, fi)
	}
}
