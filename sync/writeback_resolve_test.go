package sync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/cache"
)

// newResolveEnv is a runner with --resolve r whose first upload of
// doc.txt ("v1") is on the server.
func newResolveEnv(t *testing.T, r Resolution) *wbEnv {
	t.Helper()
	e := newWBEnvResolve(t, r)
	e.write(cache.RootIno, "doc.txt", "v1")
	e.flush()
	return e
}

// newWBEnvResolve is newWBEnv with the runner's --resolve set to r.
func newWBEnvResolve(t *testing.T, r Resolution) *wbEnv {
	t.Helper()
	e := newWBEnv(t)
	e.close()
	e.resolve = r
	e.open()
	return e
}

// serverEdit changes doc.txt on the server, dated at, as someone else would.
func (e *wbEnv) serverEdit(name, data string, at time.Time) {
	e.t.Helper()
	p := filepath.Join(e.srv, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chtimes(p, at, at); err != nil {
		e.t.Fatal(err)
	}
}

func (e *wbEnv) conflictCopies(name string) []string {
	e.t.Helper()
	kids, err := e.c.Children(cache.RootIno)
	if err != nil {
		e.t.Fatal(err)
	}
	stem := strings.TrimSuffix(name, filepath.Ext(name)) + ".conflict-"
	var out []string
	for _, k := range kids {
		if strings.HasPrefix(k.Name, stem) {
			out = append(out, k.Name)
		}
	}
	return out
}

func (e *wbEnv) unresolved() []cache.ConflictRecord {
	e.t.Helper()
	rs, err := e.c.Conflicts()
	if err != nil {
		e.t.Fatal(err)
	}
	return rs
}

// Each --resolve settles a file changed on both sides as it says; only
// keep-both (and new or old when the times tie) leaves a conflict copy.
func TestWritebackResolveBothChanged(t *testing.T) {
	future := time.Now().Add(time.Hour)
	past := time.Now().Add(-time.Hour)
	for _, tc := range []struct {
		r          Resolution
		serverAt   time.Time
		wantServer string
		wantCopy   bool
	}{
		{ResolveKeepBoth, past, "server's", true},
		{ResolveLocal, future, "local v2", false},
		{ResolveRemote, past, "server's", false},
		{ResolveNew, past, "local v2", false},
		{ResolveNew, future, "server's", false},
		{ResolveOld, past, "server's", false},
		{ResolveOld, future, "local v2", false},
	} {
		t.Run(tc.r.String()+"-server-"+map[bool]string{true: "newer", false: "older"}[tc.serverAt.After(time.Now())], func(t *testing.T) {
			e := newResolveEnv(t, tc.r)
			e.serverEdit("doc.txt", "server's", tc.serverAt)
			e.write(cache.RootIno, "doc.txt", "local v2")
			e.flush()
			if got := e.serverFile("doc.txt"); got != tc.wantServer {
				t.Errorf("doc.txt on the server = %q, want %q", got, tc.wantServer)
			}
			copies := e.conflictCopies("doc.txt")
			if (len(copies) == 1) != tc.wantCopy || len(copies) > 1 {
				t.Fatalf("conflict copies %v, want one: %v", copies, tc.wantCopy)
			}
			rs := e.unresolved()
			if (len(rs) == 1) != tc.wantCopy || len(rs) > 1 {
				t.Fatalf("unresolved conflicts %+v, want one: %v", rs, tc.wantCopy)
			}
			if tc.wantCopy {
				if rs[0].Path != "doc.txt" || rs[0].Copy != copies[0] || rs[0].Kind != cache.ConflictBothChanged ||
					rs[0].Local.Size != int64(len("local v2")) || rs[0].Remote.Size != int64(len("server's")) {
					t.Errorf("conflict record %+v", rs[0])
				}
				if got := e.serverFile(copies[0]); got != "local v2" {
					t.Errorf("%s on the server = %q", copies[0], got)
				}
			}
			if st := e.wb.Status(); len(st.Conflicts) != 1 {
				t.Errorf("settled conflicts in status: %+v, want one", st.Conflicts)
			}
			doc, err := e.c.Lookup(cache.RootIno, "doc.txt")
			if err != nil {
				t.Fatal(err)
			}
			if wantLocal := tc.wantServer == "local v2"; doc.Local != wantLocal || doc.Dirty {
				t.Errorf("doc.txt in the cache: local %v dirty %v, want local %v and clean", doc.Local, doc.Dirty, wantLocal)
			}
		})
	}
}

// resolve --keep settles a keep-both conflict on both sides.
func TestResolveKeepBothConflict(t *testing.T) {
	for _, keep := range []cache.Keep{cache.KeepLocal, cache.KeepRemote, cache.KeepBoth} {
		e := newResolveEnv(t, ResolveKeepBoth)
		e.serverEdit("doc.txt", "server's", time.Now().Add(-time.Minute))
		e.write(cache.RootIno, "doc.txt", "local v2")
		e.flush()
		copies := e.conflictCopies("doc.txt")
		if len(copies) != 1 {
			t.Fatalf("conflict copies %v", copies)
		}
		r, _, err := e.c.Resolve(copies[0], keep)
		if err != nil {
			t.Fatalf("resolve --keep %d: %v", keep, err)
		}
		if r.Path != "doc.txt" {
			t.Errorf("resolved %+v", r)
		}
		e.flush()
		_, copyErr := os.Stat(filepath.Join(e.srv, copies[0]))
		switch keep {
		case cache.KeepLocal:
			if got := e.serverFile("doc.txt"); got != "local v2" || !errors.Is(copyErr, os.ErrNotExist) {
				t.Errorf("keep local: doc.txt %q, copy on the server: %v", got, copyErr)
			}
		case cache.KeepRemote:
			if got := e.serverFile("doc.txt"); got != "server's" || !errors.Is(copyErr, os.ErrNotExist) {
				t.Errorf("keep remote: doc.txt %q, copy on the server: %v", got, copyErr)
			}
		case cache.KeepBoth:
			if got := e.serverFile("doc.txt"); got != "server's" || copyErr != nil {
				t.Errorf("keep both: doc.txt %q, copy on the server: %v", got, copyErr)
			}
		}
		if rs := e.unresolved(); len(rs) != 0 {
			t.Errorf("keep %d: still unresolved: %+v", keep, rs)
		}
		if _, _, err := e.c.Resolve(copies[0], keep); !errors.Is(err, cache.ErrNoConflict) {
			t.Errorf("a second resolve: %v, want ErrNoConflict", err)
		}
		e.close()
	}
}

// A file changed here but deleted on the server: keep-both uploads the
// local version again and records it; remote drops it here.
func TestWritebackResolveChangedHereDeletedThere(t *testing.T) {
	for _, r := range []Resolution{ResolveKeepBoth, ResolveRemote} {
		e := newResolveEnv(t, r)
		if err := os.Remove(filepath.Join(e.srv, "doc.txt")); err != nil {
			t.Fatal(err)
		}
		e.write(cache.RootIno, "doc.txt", "local v2")
		e.flush()
		_, statErr := os.Stat(filepath.Join(e.srv, "doc.txt"))
		_, lookErr := e.c.Lookup(cache.RootIno, "doc.txt")
		rs := e.unresolved()
		switch r {
		case ResolveKeepBoth:
			if statErr != nil || lookErr != nil || len(rs) != 1 || rs[0].Kind != cache.ConflictLocalChangedGone {
				t.Errorf("keep-both: on the server %v, in the cache %v, conflicts %+v", statErr, lookErr, rs)
			}
		case ResolveRemote:
			if !errors.Is(statErr, os.ErrNotExist) || !errors.Is(lookErr, cache.ErrNotFound) || len(rs) != 0 {
				t.Errorf("remote: on the server %v, in the cache %v, conflicts %+v", statErr, lookErr, rs)
			}
		}
		e.close()
	}
}

// A file deleted here but changed on the server: the server's version stays
// unless --resolve local says the deletion wins.
func TestWritebackResolveDeletedHereChangedThere(t *testing.T) {
	for _, r := range []Resolution{ResolveKeepBoth, ResolveLocal} {
		e := newResolveEnv(t, r)
		e.serverEdit("doc.txt", "server's", time.Now().Add(-time.Minute))
		if err := e.c.Unlink(cache.RootIno, "doc.txt"); err != nil {
			t.Fatal(err)
		}
		e.flush()
		_, statErr := os.Stat(filepath.Join(e.srv, "doc.txt"))
		rs := e.unresolved()
		switch r {
		case ResolveKeepBoth:
			if statErr != nil || len(rs) != 1 || rs[0].Kind != cache.ConflictRemoteChangedGone {
				t.Errorf("keep-both: on the server %v, conflicts %+v", statErr, rs)
			}
		case ResolveLocal:
			if !errors.Is(statErr, os.ErrNotExist) || len(rs) != 0 {
				t.Errorf("local: on the server %v, conflicts %+v", statErr, rs)
			}
		}
		e.close()
	}
}

// A folder deleted on the server while a file in it changed here is made
// again by the file's upload.
func TestWritebackRemakesDeletedFolder(t *testing.T) {
	e := newWBEnv(t)
	d := e.mkdir(cache.RootIno, "d")
	sub := e.mkdir(d, "sub")
	e.write(sub, "f", "v1")
	e.flush()
	if err := os.RemoveAll(filepath.Join(e.srv, "d")); err != nil {
		t.Fatal(err)
	}
	e.write(sub, "f", "v2")
	e.flush()
	if got := e.serverFile("d/sub/f"); got != "v2" {
		t.Fatalf("d/sub/f on the server = %q", got)
	}
}

// FileState tells a running upload and one whose last attempt failed.
func TestWritebackFileState(t *testing.T) {
	e := newWBEnv(t)
	e.tg.mu.Lock()
	e.tg.hold, e.tg.holding = make(chan struct{}), make(chan struct{})
	e.tg.mu.Unlock()
	ino := e.write(cache.RootIno, "f", "x")
	done := make(chan error, 1)
	go func() { done <- e.wb.Flush(t.Context()) }()
	<-e.tg.holding
	if up, failed := e.wb.FileState(ino); !up || failed {
		t.Errorf("while its upload runs: uploading %v, failed %v", up, failed)
	}
	close(e.tg.hold)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if up, failed := e.wb.FileState(ino); up || failed {
		t.Errorf("once uploaded: uploading %v, failed %v", up, failed)
	}
	e.wb.mu.Lock()
	counted := len(e.wb.uploadsOf)
	e.wb.mu.Unlock()
	if counted != 0 {
		t.Errorf("once uploaded, %d files still counted as having uploads queued", counted)
	}
	e.tg.mu.Lock()
	e.tg.hold, e.tg.failAll = nil, true
	e.tg.mu.Unlock()
	e.write(cache.RootIno, "f", "y")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.wb.Flush(ctx); err == nil {
		t.Fatal("a flush with every write failing succeeded")
	}
	if up, failed := e.wb.FileState(ino); up || !failed {
		t.Errorf("after failed attempts: uploading %v, failed %v", up, failed)
	}
}
