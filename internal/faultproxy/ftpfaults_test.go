package faultproxy_test

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/internal/faultproxy"
	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	syncpkg "github.com/ftpsync-mount/ftpsync-mount/sync"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
	"github.com/ftpsync-mount/ftpsync-mount/target/local"
)

// TestListReadWriteThroughFaults lists, reads and overwrites a tree on the
// embedded server through the fault proxy, retrying until each operation
// succeeds, and checks that the results equal the tree without faults and
// that no file on the server is ever seen half-written under its name.
func TestListReadWriteThroughFaults(t *testing.T) {
	const seed = 7
	rnd := rand.New(rand.NewSource(seed))
	srv := ftpdtest.Start(t)
	orig := fillTree(t, srv.Root, rnd, "", 14, 200<<10)
	fig := &figures{}
	p := faultproxy.New(faultConfig(t, seed))
	defer p.Close()
	tg := newTarget(t, fig, srv, p)

	// Listing: the same names, kinds and sizes as the folder on disk.
	listed := listTree(t, fig, tg)
	for path, data := range orig {
		e, ok := listed[path]
		if !ok || e.IsDir || e.Size != int64(len(data)) {
			t.Errorf("listed %s: %+v (present %v), want a file of %d bytes", path, e, ok, len(data))
		}
	}

	// Reading: every byte as on disk.
	got := map[string][]byte{}
	for _, path := range sortedKeys(orig) {
		retry(t, fig, "read "+path, func() error {
			b, err := readFile(t.Context(), fig, tg, path, listed[path].Size)
			got[path] = b
			return err
		})
	}
	compareTrees(t, fig, "read", got, orig)

	// Writing: new content over every file, plus new files; a watcher
	// scans the server folder the whole time.
	want := map[string][]byte{}
	allowed := map[string][][]byte{}
	for _, path := range sortedKeys(orig) {
		old := orig[path]
		data := make([]byte, len(old)+rnd.Intn(50<<10)+1)
		rnd.Read(data)
		want[path] = data
		allowed[path] = [][]byte{old, data}
	}
	for i := 0; i < 4; i++ {
		data := make([]byte, rnd.Intn(150<<10))
		rnd.Read(data)
		path := "new/n" + string(rune('0'+i)) + ".bin"
		want[path] = data
		allowed[path] = [][]byte{data}
	}
	retry(t, fig, "mkdir new", func() error {
		err := tg.Mkdir(t.Context(), "new")
		if err != nil {
			if e, serr := tg.Stat(t.Context(), "new"); serr == nil && e.IsDir {
				return nil // made by an attempt whose reply was lost
			}
		}
		return err
	})
	w := watch(t, srv.Root, allowed, fig)
	for _, path := range sortedKeys(want) {
		data := want[path]
		retry(t, fig, "write "+path, func() error {
			_, err := tg.Write(t.Context(), path, bytes.NewReader(data), target.WriteOptions{Size: int64(len(data))})
			return err
		})
	}
	if bad := w.end(); len(bad) > 0 {
		t.Errorf("half-written files seen under their final names: %v", bad)
	}
	onDisk, temps := readTree(t, srv.Root)
	compareTrees(t, fig, "written", onDisk, want)
	t.Logf("%d temporary files left by interrupted uploads (hidden from listings)", temps)
	fig.report(t, "list, read, write", p, seed)
}

// oneShotPair opens the two sides of a one-shot run, the server through a
// fault proxy seeded with seed, and the state store; all close when the
// test ends.
func oneShotPair(t *testing.T, fig *figures, srv *ftpdtest.Server, seed int64, ldir, stateDir string) (*faultproxy.Proxy, *ftp.Target, *local.Target, *syncpkg.Store, logrus.FieldLogger) {
	t.Helper()
	p := faultproxy.New(faultConfig(t, seed))
	t.Cleanup(func() { p.Close() })
	remote := newTarget(t, fig, srv, p)
	log := testLog(t)
	lt, err := local.New(ldir, local.Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lt.Close() })
	st, err := syncpkg.OpenStore(stateDir, lt.ID(), remote.ID(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return p, remote, lt, st, log
}

// TestOneShotSyncThroughFaults runs the one-shot two-way sync between a
// local folder and the server through the faults until a run succeeds; both
// sides then hold the union of the two trees, byte for byte.
func TestOneShotSyncThroughFaults(t *testing.T) {
	const seed = 11
	rnd := rand.New(rand.NewSource(seed))
	srv := ftpdtest.Start(t)
	ldir, stateDir := t.TempDir(), t.TempDir()
	lfiles := fillTree(t, ldir, rnd, "l", 12, 150<<10)
	rfiles := fillTree(t, srv.Root, rnd, "r", 12, 150<<10)
	want := map[string][]byte{}
	allowed := map[string][][]byte{}
	for _, m := range []map[string][]byte{lfiles, rfiles} {
		for path, data := range m {
			want[path] = data
			allowed[path] = [][]byte{data}
		}
	}
	fig := &figures{}
	p, remote, lt, st, log := oneShotPair(t, fig, srv, seed, ldir, stateDir)

	wr, wl := watch(t, srv.Root, allowed, fig), watch(t, ldir, allowed, fig)
	var last syncpkg.Summary
	retry(t, fig, "sync", func() error {
		var err error
		last, err = syncpkg.Run(t.Context(), lt, remote, syncpkg.Options{Mode: syncpkg.ModeSync, Parallel: 2, Store: st, Log: log})
		return err
	})
	for what, w := range map[string]*watcher{"server": wr, "local": wl} {
		if bad := w.end(); len(bad) > 0 {
			t.Errorf("half-written files seen in the %s folder: %v", what, bad)
		}
	}
	t.Logf("last run: %+v", last)
	onServer, temps := readTree(t, srv.Root)
	compareTrees(t, fig, "server", onServer, want)
	onLocal, ltemps := readTree(t, ldir)
	compareTrees(t, fig, "local", onLocal, want)
	t.Logf("temporary files left by interrupted transfers: %d on the server, %d local", temps, ltemps)

	// A run after the faults are spent finds nothing to do.
	sum, err := syncpkg.Run(t.Context(), lt, remote, syncpkg.Options{Mode: syncpkg.ModeSync, Parallel: 2, Store: st, Log: log})
	if err != nil || sum.FilesUp+sum.FilesDown+sum.DeletedLocal+sum.DeletedRemote+sum.Conflicts != 0 {
		t.Errorf("sync after success: %+v, %v; want nothing to do", sum, err)
	}
	if _, err := os.Stat(filepath.Join(srv.Root, ".pyftpsync-meta.json")); err == nil {
		t.Error("sync wrote a meta file on the server")
	}
	fig.report(t, "one-shot sync", p, seed)
}

// TestOneShotUploadOfNewFoldersThroughFaults uploads a tree of folders the
// server does not have, which the engine stages (sync/oneshot_stage.go),
// through the faults until a run succeeds: every file arrives whole, none
// is seen half-written under its final path, and no staging folder is
// left.
func TestOneShotUploadOfNewFoldersThroughFaults(t *testing.T) {
	const seed = 12
	rnd := rand.New(rand.NewSource(seed))
	srv := ftpdtest.Start(t)
	ldir, stateDir := t.TempDir(), t.TempDir()
	want := map[string][]byte{}
	allowed := map[string][][]byte{}
	for path, data := range fillTree(t, filepath.Join(ldir, "new"), rnd, "l", 16, 150<<10) {
		want["new/"+path] = data
		allowed["new/"+path] = [][]byte{data}
	}
	fig := &figures{}
	p, remote, lt, st, log := oneShotPair(t, fig, srv, seed, ldir, stateDir)
	if !remote.Features().StagedWrites {
		t.Fatal("the embedded server should offer staged writes (MLSD)")
	}
	w := watch(t, srv.Root, allowed, fig)
	retry(t, fig, "upload", func() error {
		_, err := syncpkg.Run(t.Context(), lt, remote, syncpkg.Options{Mode: syncpkg.ModeUpload, Parallel: 2, Store: st, Log: log})
		return err
	})
	serverEndsWhole(t, w, fig, srv.Root, want)
	sum, err := syncpkg.Run(t.Context(), lt, remote, syncpkg.Options{Mode: syncpkg.ModeSync, Parallel: 2, Store: st, Log: log})
	if err != nil || sum.FilesUp+sum.FilesDown+sum.DeletedLocal+sum.DeletedRemote+sum.Conflicts != 0 {
		t.Errorf("sync after success: %+v, %v; want nothing to do", sum, err)
	}
	fig.report(t, "one-shot upload of new folders", p, seed)
}
