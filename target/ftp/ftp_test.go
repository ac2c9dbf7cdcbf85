package ftp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd/ftpdtest"
	"github.com/ftpsync-mount/ftpsync-mount/internal/testutil"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// newTarget connects to the embedded server with test defaults.
func newTarget(t *testing.T, srv *ftpdtest.Server, opts Options) *Target {
	t.Helper()
	if opts.URL == "" {
		opts.URL = srv.URL()
	}
	if opts.Password == "" {
		opts.Password = srv.Password
	}
	if opts.Log == nil {
		opts.Log = testutil.Log(t)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	tg, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

// wantSetupError fails unless New failed with a message holding every
// fragment and matching kind (if not nil).
func wantSetupError(t *testing.T, err error, kind error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("New succeeded, want an error containing %q", fragments)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not contain %q", err, f)
		}
	}
	if kind != nil && !errors.Is(err, kind) {
		t.Errorf("error %q does not match %v", err, kind)
	}
}

func TestNewConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = New(t.Context(), Options{URL: "ftp://u@" + addr + "/", Password: "x", Log: testutil.Log(t)})
	wantSetupError(t, err, nil, "connect to "+addr+": connection refused — is the server running and the port right?")
}

func TestNewUnknownHost(t *testing.T) {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: "nowhere.invalid", IsNotFound: true}}
	}
	_, err := New(t.Context(), Options{URL: "ftp://u@nowhere.invalid/", Password: "x", DialContext: dial, Log: testutil.Log(t)})
	wantSetupError(t, err, nil, "unknown host nowhere.invalid", "check the host name")
}

// TestNewSilentServer: a server that accepts and never answers makes New
// fail within the timeout, not hang.
func TestNewSilentServer(t *testing.T) {
	addr := testutil.SilentServer(t)
	var err error
	within(t, 3*time.Second, "New against a silent server", func() {
		_, err = New(t.Context(), Options{URL: "ftp://u@" + addr + "/", Password: "x", Timeout: 300 * time.Millisecond, Log: testutil.Log(t)})
	})
	wantSetupError(t, err, target.ErrTemporary, "no answer within 300ms")

	// The caller's context bounds it too.
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	within(t, 3*time.Second, "New with a short context", func() {
		_, err = New(ctx, Options{URL: "ftp://u@" + addr + "/", Password: "x", Log: testutil.Log(t)})
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("New with an expiring context: %v, want context.DeadlineExceeded", err)
	}
}

func TestNewWrongPassword(t *testing.T) {
	srv := ftpdtest.Start(t)
	const wrong = "not-the-password-1234"
	_, err := New(t.Context(), Options{URL: srv.URL(), Password: wrong, Log: testutil.Log(t)})
	wantSetupError(t, err, target.ErrAuth, "login as tester at "+srv.Addr()+" failed: 530", "check the password (FTPSYNC_PASSWORD, --password-file or ~/.netrc)")
	if err != nil && strings.Contains(err.Error(), wrong) {
		t.Errorf("error %q shows the password", err)
	}
}

func TestNewRootChecks(t *testing.T) {
	srv := ftpdtest.Start(t)
	if err := os.WriteFile(filepath.Join(srv.Root, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(t.Context(), Options{URL: srv.URL() + "missing", Password: srv.Password, Log: testutil.Log(t)})
	wantSetupError(t, err, target.ErrNotFound, "remote folder /missing does not exist on "+srv.Addr())
	_, err = New(t.Context(), Options{URL: srv.URL() + "file", Password: srv.Password, Log: testutil.Log(t)})
	wantSetupError(t, err, target.ErrNotDir, "remote path /file on "+srv.Addr()+" is a file")

	// No path: the login folder, resolved with PWD, is the root.
	tg := newTarget(t, srv, Options{URL: strings.TrimSuffix(srv.URL(), "/")})
	if tg.ep.Root != "/" {
		t.Errorf("root from PWD = %q, want /", tg.ep.Root)
	}
	es, err := tg.List(t.Context(), "")
	if err != nil || len(es) != 1 || es[0].Name != "file" {
		t.Errorf("list of the login folder = %+v, %v; want file", es, err)
	}
	// String and ID name the folder as the URL did, not as PWD answered,
	// so that they are known before the server is reached.
	if s, want := tg.String(), "ftp://tester@"+srv.Addr(); s != want {
		t.Errorf("String() = %q, want %q", s, want)
	}
	if id, want := tg.ID(), srv.Addr()+"/~tester"; id != want {
		t.Errorf("ID() = %q, want %q", id, want)
	}
}

// tlsGreeter is a minimal FTPS server: it greets, accepts AUTH TLS and
// completes a TLS handshake with cfg, then closes; with implicit, it does
// the handshake first. Enough to check
// certificate verification without a full server, also for implicit TLS,
// which the embedded server does not offer.
func tlsGreeter(t *testing.T, cfg *tls.Config, implicit bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if implicit {
				_ = tls.Server(c, cfg).Handshake()
				c.Close()
				continue
			}
			_, _ = io.WriteString(c, "220 hello\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			if strings.HasPrefix(line, "AUTH TLS") {
				_, _ = io.WriteString(c, "234 go ahead\r\n")
				_ = tls.Server(c, cfg).Handshake()
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// TestTLSVerification: a self-signed server is refused with advice naming
// both ways out; the real proftpd test (proftpd-explicit-tls) covers
// transfers over TLS.
func TestTLSVerification(t *testing.T) {
	ss := testutil.NewSelfSigned(t)
	cfg, caFile := &tls.Config{Certificates: []tls.Certificate{ss.Cert}}, ss.CAFile(t)
	implicit := tlsGreeter(t, cfg, true)
	_, err := New(t.Context(), Options{URL: "ftps://tester@" + implicit + "/", Password: "pw", Log: testutil.Log(t)})
	wantSetupError(t, err, nil, "TLS certificate of "+implicit+" is not trusted", "--ca-file", "--insecure-skip-verify")

	addr := tlsGreeter(t, cfg, false)
	u := "ftpes://tester@" + addr + "/"
	_, err = New(t.Context(), Options{URL: u, Password: "pw", Log: testutil.Log(t)})
	wantSetupError(t, err, nil, "TLS certificate of "+addr+" is not trusted", "--ca-file", "--insecure-skip-verify")

	// With the certificate trusted, the handshake passes and New fails
	// later (the greeter closes), for another reason.
	_, err = New(t.Context(), Options{URL: u, Password: "pw", CAFile: caFile, Log: testutil.Log(t)})
	if err == nil || strings.Contains(err.Error(), "not trusted") {
		t.Errorf("New with --ca-file: %v; want a failure after the handshake", err)
	}
	_, err = New(t.Context(), Options{URL: u, Password: "pw", CAFile: filepath.Join(t.TempDir(), "none.pem"), Log: testutil.Log(t)})
	wantSetupError(t, err, nil, "--ca-file")
}

// TestTLSNotOffered: ftpes:// to a server without FTPS says so.
func TestTLSNotOffered(t *testing.T) {
	srv := ftpdtest.Start(t)
	_, err := New(t.Context(), Options{URL: "ftpes://tester@" + srv.Addr() + "/", Password: srv.Password, Log: testutil.Log(t)})
	wantSetupError(t, err, target.ErrUnsupported, "the server does not offer TLS", "ftp://")
}

// TestTLSRealServerUntrusted: proftpd's certificate is refused without
// its CA.
func TestTLSRealServerUntrusted(t *testing.T) {
	u, _, pw := targettest.RealServer(t, proftpd.envPrefix)
	_, err := New(t.Context(), Options{URL: "ftpes" + strings.TrimPrefix(u, "ftp"), Password: pw, Log: testutil.Log(t)})
	wantSetupError(t, err, nil, "is not trusted", "--ca-file", "--insecure-skip-verify")
	tg, err := New(t.Context(), Options{URL: "ftpes" + strings.TrimPrefix(u, "ftp"), Password: pw, InsecureSkipVerify: true, Log: testutil.Log(t)})
	if err != nil {
		t.Fatalf("New with --insecure-skip-verify: %v", err)
	}
	defer tg.Close()
	if _, err := tg.List(t.Context(), ""); err != nil {
		t.Errorf("list over TLS without verification: %v", err)
	}
}

// TestFeatures: what the embedded server offers is reported, and the
// features read from FEAT survive the login transcript.
func TestFeatures(t *testing.T) {
	srv := ftpdtest.Start(t)
	tg := newTarget(t, srv, Options{})
	f := tg.Features()
	if !f.MLSD || !f.MFMT || !f.REST || !f.APPE || f.TLS || f.MtimePrecision != time.Second || !f.StagedWrites {
		t.Errorf("features %+v: want MLSD, MFMT, REST, APPE, no TLS, second precision, staged writes", f)
	}
	got := parseFeat("FEAT\r\n211-Features:\r\n MDTM\r\n REST STREAM\r\n SIZE\r\n UTF8\r\n211 End\r\nTYPE I\r\n")
	if want := (serverFeatures{mdtm: true, rest: true, utf8: true}); got != want {
		t.Errorf("parseFeat = %+v, want %+v", got, want)
	}
	var tr transcript
	tr.start()
	_, _ = tr.Write([]byte("PASS secret\r\n"))
	_, _ = tr.Write([]byte("230 ok\r\n"))
	if s := tr.stop(); strings.Contains(s, "secret") || !strings.Contains(s, "230 ok") {
		t.Errorf("transcript kept %q", s)
	}
}
