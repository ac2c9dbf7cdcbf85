package faultproxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/ftpsync-mount/ftpsync-mount/internal/faultproxy"
	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
)

// The figures a run of these tests reports; docs/guarantees.md quotes them.
// `go test -v -run 'ThroughFaults' ./internal/faultproxy` prints them.
type figures struct {
	mu            sync.Mutex
	runs          int   // attempts of an operation, failed ones included
	failedRuns    int   // attempts that ended in an error (and were retried)
	shortCaught   int   // reads that ended early without an error, caught by the size check
	bytesCompared int64 // bytes compared with the reference after the faults
	dataLost      int   // files whose final content differs from the reference
	scans         int   // scans of the server folder for half-written files
}

func (f *figures) add(fn func(f *figures)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

func (f *figures) report(t *testing.T, what string, p *faultproxy.Proxy, seed int64) {
	t.Helper()
	s := p.Stats()
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Logf("fault figures (%s, seed %d): faults injected %d %v over %d connections; runs %d (%d failed and retried, %d short reads caught); "+
		"bytes compared %d; half-written scans %d; data lost: %d",
		what, seed, s.Total, s.Injected, s.Conns, f.runs, f.failedRuns, f.shortCaught, f.bytesCompared, f.scans, f.dataLost)
	if f.dataLost != 0 {
		t.Errorf("data lost: %d", f.dataLost)
	}
}

const (
	clientTimeout = 800 * time.Millisecond
	maxAttempts   = 40
)

// faultConfig is the proxy setup every test here uses: a stall may outlast
// the client's timeout, so both short and fatal stalls occur.
func faultConfig(t *testing.T, seed int64) faultproxy.Config {
	return faultproxy.Config{Seed: seed, Rate: 0.4, MaxFaults: 24, MaxOffset: 96 << 10,
		MaxStall: 3 * clientTimeout / 2, MaxDelay: 15 * time.Millisecond, Logf: t.Logf}
}

func testLog(t *testing.T) logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	if testing.Verbose() {
		l.SetOutput(os.Stderr)
	}
	return l
}

// retry runs fn until it succeeds, at most maxAttempts times, and counts
// the attempts. The fault budget is finite, so success must come.
func retry(t *testing.T, fig *figures, what string, fn func() error) {
	t.Helper()
	var err error
	for i := 0; i < maxAttempts; i++ {
		err = fn()
		fig.add(func(f *figures) {
			f.runs++
			if err != nil {
				f.failedRuns++
			}
		})
		if err == nil {
			return
		}
		t.Logf("%s: attempt %d: %v", what, i+1, err)
	}
	t.Fatalf("%s still failing after %d attempts: %v", what, maxAttempts, err)
}

// fillTree writes n seeded files of up to max bytes into root and returns
// their contents by slash path.
func fillTree(t *testing.T, root string, rnd *rand.Rand, prefix string, n, max int) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	dirs := []string{"", "a", "a/b", "c d"}
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("%s%s-%02d.bin", prefix, "f", i)
		if d := dirs[rnd.Intn(len(dirs))]; d != "" {
			p = d + "/" + p
		}
		data := make([]byte, rnd.Intn(max+1))
		rnd.Read(data)
		files[p] = data
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// serverEndsWhole checks the end of an upload through the faults: the
// watcher saw no half-written file, the server's folder root holds want,
// and no temporary file or staging folder is left.
func serverEndsWhole(t *testing.T, w *watcher, fig *figures, root string, want map[string][]byte) {
	t.Helper()
	if bad := w.end(); len(bad) > 0 {
		t.Errorf("half-written files seen on the server: %v", bad)
	}
	onServer, temps := readTree(t, root)
	compareTrees(t, fig, "server", onServer, want)
	if temps != 0 {
		t.Errorf("%d temporary files or staging folders left on the server", temps)
	}
}

// readTree returns every regular file under root by slash path, leaving out
// the temporary files of interrupted uploads.
func readTree(t *testing.T, root string) (files map[string][]byte, temps int) {
	t.Helper()
	files = map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if target.IsTempName(d.Name()) {
			// A temporary file, or a staging folder (sync/oneshot_stage.go).
			temps++
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, temps
}

// compareTrees counts the bytes compared and the files that differ.
func compareTrees(t *testing.T, fig *figures, what string, got, want map[string][]byte) {
	t.Helper()
	lost := 0
	var n int64
	for p, w := range want {
		g, ok := got[p]
		n += int64(len(w))
		if !ok || !bytes.Equal(g, w) {
			lost++
			t.Errorf("%s: %s has %d bytes (present %v), want %d", what, p, len(g), ok, len(w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected file %s", what, p)
		}
	}
	fig.add(func(f *figures) { f.bytesCompared += n; f.dataLost += lost })
}

// watcher scans a folder while a test writes to it through the faults and
// records any file whose content under its final name is neither one of
// the allowed versions nor absent: a half-written file.
type watcher struct {
	root    string
	allowed map[string][][]byte // read only while running
	fig     *figures
	stop    chan struct{}
	done    chan struct{}

	mu  sync.Mutex // protects bad
	bad []string
}

func watch(t *testing.T, root string, allowed map[string][][]byte, fig *figures) *watcher {
	w := &watcher{root: root, allowed: allowed, fig: fig, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(3 * time.Millisecond)
		defer tick.Stop()
		for {
			w.scan()
			select {
			case <-w.stop:
				w.scan()
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { w.end() })
	return w
}

func (w *watcher) scan() {
	w.fig.add(func(f *figures) { f.scans++ })
	for p, versions := range w.allowed {
		b, err := os.ReadFile(filepath.Join(w.root, filepath.FromSlash(p)))
		if err != nil {
			continue // absent, or replaced between the walk and the read
		}
		ok := false
		for _, v := range versions {
			ok = ok || bytes.Equal(b, v)
		}
		if !ok {
			w.mu.Lock()
			w.bad = append(w.bad, fmt.Sprintf("%s: %d bytes", p, len(b)))
			w.mu.Unlock()
		}
	}
}

// end stops the scans and returns the half-written files seen.
func (w *watcher) end() []string {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bad
}

// newTarget connects through the proxy, retrying: the login itself meets
// faults.
func newTarget(t *testing.T, fig *figures, srv *ftpdtest.Server, p *faultproxy.Proxy) *ftp.Target {
	t.Helper()
	var tg *ftp.Target
	retry(t, fig, "connect", func() error {
		var err error
		tg, err = ftp.New(t.Context(), ftp.Options{URL: srv.URL(), Password: srv.Password, Connections: 2,
			Timeout: clientTimeout, DialContext: p.DialContext, Log: testLog(t)})
		return err
	})
	t.Cleanup(func() { tg.Close() })
	return tg
}

// listTree lists the target recursively through the faults.
func listTree(t *testing.T, fig *figures, tg target.Target) map[string]target.Entry {
	t.Helper()
	out := map[string]target.Entry{}
	queue := []string{""}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		var es []target.Entry
		retry(t, fig, "list "+dir, func() error {
			var err error
			es, err = tg.List(t.Context(), dir)
			return err
		})
		for _, e := range es {
			p := target.Join(dir, e.Name)
			out[p] = e
			if e.IsDir {
				queue = append(queue, p)
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// readFile reads a whole file through the faults. A read that ends early
// without an error (a cut data connection the server reported as a success)
// is caught by comparing with the listed size, as the mount and the
// one-shot download do.
func readFile(ctx context.Context, fig *figures, tg target.Target, p string, size int64) ([]byte, error) {
	r, err := tg.Open(ctx, p, 0, -1)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err == nil && int64(len(b)) != size {
		fig.add(func(f *figures) { f.shortCaught++ })
		err = fmt.Errorf("read %s: got %d bytes, listed size %d", p, len(b), size)
	}
	return b, err
}
