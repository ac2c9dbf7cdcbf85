package fakeftp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/ftpsync-mount/ftpsync-mount/internal/fakeftp"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/ftp"
)

// noMLSD is a FEAT list without MLST: the client falls back to LIST.
var noMLSD = []string{"SIZE", "UTF8", "REST STREAM", "EPSV"}

// connect opens a target on the fake server with a short timeout and a
// logger whose lines the test can read.
func connect(t *testing.T, srv *fakeftp.Server, timeout time.Duration) (*ftp.Target, *logtest.Hook, error) {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	tg, err := ftp.New(t.Context(), ftp.Options{URL: srv.URL(), Password: "pw", Connections: 2, Timeout: timeout, Log: log})
	if err == nil {
		t.Cleanup(func() { tg.Close() })
	}
	return tg, hook, err
}

func mustConnect(t *testing.T, srv *fakeftp.Server) (*ftp.Target, *logtest.Hook) {
	t.Helper()
	tg, hook, err := connect(t, srv, 2*time.Second)
	if err != nil {
		t.Fatalf("connect to the fake server: %v", err)
	}
	return tg, hook
}

func names(es []target.Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Name)
	}
	sort.Strings(out)
	return out
}

// warned reports whether a warning logged mentions every one of subs.
func warned(hook *logtest.Hook, subs ...string) bool {
	for _, e := range hook.AllEntries() {
		if e.Level > logrus.WarnLevel {
			continue
		}
		all := true
		for _, s := range subs {
			all = all && strings.Contains(e.Message, s)
		}
		if all {
			return true
		}
	}
	return false
}

func listing(text string) func(cmd, dir string) io.Reader {
	return func(string, string) io.Reader { return strings.NewReader(text) }
}

// hostileMLSD names every unsafe entry the issue lists, between two good ones.
const hostileMLSD = "type=file;size=2;modify=20250102030405; ok.txt\r\n" +
	"type=dir;modify=20250102030405; ..\r\n" +
	"type=file;size=1;modify=20250102030405; ../x\r\n" +
	"type=dir;modify=20250102030405; ../../etc\r\n" +
	"type=file;size=1;modify=20250102030405; a/b\r\n" +
	"type=file;size=1;modify=20250102030405; /etc/passwd\r\n" +
	"type=file;size=1;modify=20250102030405; nul\x00x\r\n" +
	"type=file;size=1;modify=20250102030405; cr\rx\r\n" +
	"type=file;size=1;modify=20250102030405; lf\nx\r\n" +
	"type=file;size=1;modify=20250102030405; \xff\xfe.txt\r\n" +
	"type=dir;modify=20250102030405; sub\r\n"

const hostileLIST = "-rw-r--r--    1 0        0               2 Jan 15 10:30 ok.txt\r\n" +
	"drwxr-xr-x    2 0        0            4096 Jan 15 10:30 ..\r\n" +
	"-rw-r--r--    1 0        0               1 Jan 15 10:30 ../x\r\n" +
	"-rw-r--r--    1 0        0               1 Jan 15 10:30 a/b\r\n" +
	"-rw-r--r--    1 0        0               1 Jan 15 10:30 nul\x00x\r\n" +
	"-rw-r--r--    1 0        0               1 Jan 15 10:30 cr\rx\r\n" +
	"-rw-r--r--    1 0        0               1 Jan 15 10:30 \xe9t\xe9\r\n" +
	"lrwxrwxrwx    1 0        0               4 Jan 15 10:30 link -> /etc\r\n" +
	"drwxr-xr-x    2 0        0            4096 Jan 15 10:30 sub\r\n"

// TestHostileNames: unsafe names are left out of listings with a warning;
// the safe ones are kept.
func TestHostileNames(t *testing.T) {
	for _, tc := range []struct {
		name    string
		feat    []string
		listing string
		want    string
	}{
		// A raw LF inside an MLSD name cannot be told from a line end:
		// "lf" is read as a name of its own (reading it fails on the
		// server) and the rest as a malformed line, with a warning.
		{"MLSD", nil, hostileMLSD, "lf,ok.txt,sub"},
		{"LIST", noMLSD, hostileLIST, "ok.txt,sub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := fakeftp.Start(t, fakeftp.Options{Feat: tc.feat, Listing: listing(tc.listing)})
			tg, hook := mustConnect(t, srv)
			es, err := tg.List(t.Context(), "")
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			if got := strings.Join(names(es), ","); got != tc.want {
				t.Errorf("listed %q, want %s", got, tc.want)
			}
			for _, bad := range []string{`"../x"`, `a/b`, `nul\x00x`, `cr\rx`, "UTF-8"} {
				if !warned(hook, "listing", bad) {
					t.Errorf("no warning naming %s", bad)
				}
			}
			// A path with a traversal element never reaches the server.
			for _, p := range []string{"../x", "a/../../x", "sub/../.."} {
				if _, err := tg.Stat(t.Context(), p); !errors.Is(err, target.ErrInvalidName) {
					t.Errorf("stat %q: %v, want ErrInvalidName", p, err)
				}
			}
			for _, c := range srv.Commands() {
				if strings.Contains(c, "..") {
					t.Errorf("the server was sent %q", c)
				}
			}
		})
	}
}

// TestMalformedListings: lines we cannot read are skipped with a warning;
// a listing that stops mid-line is an error, so that the entries it lost
// are never taken for deleted ones.
func TestMalformedListings(t *testing.T) {
	for _, tc := range []struct {
		name, feat, listing string
		wantErr             bool
		want                string
	}{
		{name: "MLSD garbage", listing: "type=file;size=1;modify=20250102030405; good\r\n" +
			"junk\r\n type=file; \r\ntype=file;size=-1; neg\r\ntype=file;size=99999999999999999999; huge\r\n" +
			"type=file;modify=2025; short\r\n;;;;; x\r\n=\r\n\r\n", want: "good"},
		{name: "LIST garbage", feat: "nomlsd", listing: "total 12\r\n" +
			"-rw-r--r--    1 0        0               1 Jan 15 10:30 good\r\n" +
			"drwxr-xr-x\r\n-rw-r--r-- 1 0 0 notanumber Jan 15 10:30 f\r\n" +
			"-rw-r--r-- 1 0 0 5 Foo 99 99:99 g\r\nbrw-rw---- 1 0 6 8, 0 Jan 15 10:30 sda\r\n", want: "good"},
		{name: "MLSD truncated", listing: "type=file;size=1;modify=20250102030405; good\r\ntype=file;si", wantErr: true},
		{name: "LIST truncated", feat: "nomlsd", listing: "-rw-r--r--    1 0        0               1 Jan 15 10:30 good\r\n-rw-r--r-- 1 0", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := fakeftp.Options{Listing: listing(tc.listing)}
			if tc.feat == "nomlsd" {
				opts.Feat = noMLSD
			}
			srv := fakeftp.Start(t, opts)
			tg, hook := mustConnect(t, srv)
			es, err := tg.List(t.Context(), "")
			if tc.wantErr {
				if err == nil || !errors.Is(err, target.ErrTemporary) || !strings.Contains(err.Error(), "mid-line") {
					t.Errorf("truncated listing: %v entries, err %v; want a temporary error naming the cut", names(es), err)
				}
				return
			}
			if err != nil || strings.Join(names(es), ",") != tc.want {
				t.Fatalf("list: %v, %v; want %s", names(es), err, tc.want)
			}
			if !warned(hook, "listing") {
				t.Error("no warning about the lines left out")
			}
		})
	}
}

// lazyListing yields n MLSD lines without holding them.
type lazyListing struct {
	n, i int
	buf  []byte
}

func (l *lazyListing) Read(p []byte) (int, error) {
	for len(l.buf) < len(p) && l.i < l.n {
		l.buf = fmt.Appendf(l.buf, "type=file;size=%d;modify=20250102030405; file-%07d.txt\r\n", l.i%1000, l.i)
		l.i++
	}
	if len(l.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, l.buf)
	l.buf = l.buf[n:]
	return n, nil
}

// TestMillionEntries lists a folder of 1,000,000 entries generated as they
// are sent, and bounds the time and the memory the client takes.
func TestMillionEntries(t *testing.T) {
	const n = 1_000_000
	srv := fakeftp.Start(t, fakeftp.Options{Listing: func(string, string) io.Reader { return &lazyListing{n: n} }})
	tg, _ := mustConnect(t, srv)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	start := time.Now()
	es, err := tg.List(ctx, "")
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(es) != n {
		t.Fatalf("listed %d entries, want %d", len(es), n)
	}
	peak := after.HeapSys - before.HeapSys
	t.Logf("1,000,000 entries listed in %v; heap grew by %d MiB (total allocated %d MiB)",
		took.Round(time.Millisecond), peak>>20, (after.TotalAlloc-before.TotalAlloc)>>20)
	// The whole listing and its entries are held at once (List returns a
	// slice): about 65 bytes of listing and 120 of entry per name.
	if peak > 1<<30 {
		t.Errorf("heap grew by %d MiB for %d entries; want under 1 GiB", peak>>20, n)
	}
	runtime.KeepAlive(es)
}

// TestSplitReplies: replies written one byte per TCP segment are read
// whole.
func TestSplitReplies(t *testing.T) {
	srv := fakeftp.Start(t, fakeftp.Options{Chunk: 1, Listing: listing("type=file;size=5;modify=20250102030405; f.txt\r\n"),
		Files: map[string][]byte{"/f.txt": []byte("hello")}})
	tg, _ := mustConnect(t, srv)
	es, err := tg.List(t.Context(), "")
	if err != nil || len(es) != 1 || es[0].Name != "f.txt" || es[0].Size != 5 {
		t.Fatalf("list: %+v, %v", es, err)
	}
	r, err := tg.Open(t.Context(), "f.txt", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil || string(b) != "hello" {
		t.Fatalf("read: %q, %v", b, err)
	}
}

// TestOneBytePerSecond: a server that trickles its greeting one byte a
// second is given up on after the timeout, with a message that says so.
func TestOneBytePerSecond(t *testing.T) {
	srv := fakeftp.Start(t, fakeftp.Options{Chunk: 1, Pace: time.Second})
	start := time.Now()
	_, _, err := connect(t, srv, 300*time.Millisecond)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Errorf("connect to a trickling server: %v; want a timeout that says so", err)
	}
	if took > 3*time.Second {
		t.Errorf("gave up after %v; the timeout is 300ms", took)
	}
}
