package ftp

import (
	"crypto/rand"
	"encoding/hex"
	"io"
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

// roots maps each target to the folder on disk that backs it.
type roots map[target.Target]string

// TestContractEmbedded runs the target contract against the in-process
// server, each case in a fresh subfolder of its root.
func TestContractEmbedded(t *testing.T) {
	srv := ftpdtest.Start(t)
	dirs := roots{}
	targettest.Run(t, targettest.Harness{
		New: func(t *testing.T) target.Target {
			sub := freshDir(t, srv.Root)
			tg, err := New(t.Context(), Options{URL: srv.URL() + sub, Password: srv.Password, Log: testutil.Log(t), Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			dirs[tg] = filepath.Join(srv.Root, sub)
			return tg
		},
		Root:  func(t *testing.T, tg target.Target) string { return dirs[tg] },
		Large: true,
	})
}

// freshDir makes a uniquely named empty folder under root and returns its name.
func freshDir(t testing.TB, root string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "case-" + hex.EncodeToString(b[:])
	if err := os.Mkdir(filepath.Join(root, name), 0o755); err != nil {
		t.Fatal(err)
	}
	return name
}

// realServer describes a server started by scripts/test-servers.sh.
type realServer struct {
	name, urlEnv, rootEnv string
}

// TestContractRealServers runs the contract against proftpd and vsftpd.
// Without the servers it skips, except in CI, where a missing server is a
// failure (a silently skipped suite hides regressions).
func TestContractRealServers(t *testing.T) {
	for _, s := range []realServer{
		{"proftpd", "FTPSYNC_TEST_PROFTPD_URL", "FTPSYNC_TEST_PROFTPD_ROOT"},
		{"vsftpd", "FTPSYNC_TEST_VSFTPD_URL", "FTPSYNC_TEST_VSFTPD_ROOT"},
	} {
		t.Run(s.name, func(t *testing.T) {
			u, root, pw := realServerEnv(t, s)
			runRealContract(t, u, root, pw, Options{})
		})
	}
	t.Run("proftpd-explicit-tls", func(t *testing.T) {
		u, root, pw := realServerEnv(t, realServer{"proftpd", "FTPSYNC_TEST_PROFTPD_URL", "FTPSYNC_TEST_PROFTPD_ROOT"})
		ca := os.Getenv("FTPSYNC_TEST_CA")
		if ca == "" {
			missingServer(t, "FTPSYNC_TEST_CA")
		}
		runRealContract(t, "ftpes"+strings.TrimPrefix(u, "ftp"), root, pw, Options{CAFile: ca})
	})
}

func realServerEnv(t *testing.T, s realServer) (u, root, pw string) {
	u, root, pw = os.Getenv(s.urlEnv), os.Getenv(s.rootEnv), os.Getenv("FTPSYNC_TEST_PASSWORD")
	if u == "" || pw == "" {
		missingServer(t, s.urlEnv+" and FTPSYNC_TEST_PASSWORD")
	}
	return u, root, pw
}

func missingServer(t *testing.T, vars string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not set: a missing server is a failure in CI (run scripts/test-servers.sh up, then eval \"$(scripts/test-servers.sh env)\")", vars)
	}
	t.Skipf("%s not set; start the servers with scripts/test-servers.sh up", vars)
}

// runRealContract runs the suite with each case in a fresh folder made
// through the server itself (so that the FTP user owns it).
func runRealContract(t *testing.T, u, root, pw string, base Options) {
	u = strings.TrimSuffix(u, "/")
	dirs := roots{}
	targettest.Run(t, targettest.Harness{
		New: func(t *testing.T) target.Target {
			opts := base
			opts.URL, opts.Password, opts.Log, opts.Timeout = u+"/", pw, testutil.Log(t), 20*time.Second
			top, err := New(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer top.Close()
			var b [4]byte
			_, _ = rand.Read(b[:])
			sub := "case-" + hex.EncodeToString(b[:])
			if err := top.Mkdir(t.Context(), sub); err != nil {
				t.Fatal(err)
			}
			opts.URL = u + "/" + sub
			tg, err := New(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if root != "" {
				dirs[tg] = filepath.Join(root, sub)
				// Runs after the suite's Close (cleanups run last first).
				t.Cleanup(func() { os.RemoveAll(filepath.Join(root, sub)) })
			}
			return tg
		},
		Root:  func(t *testing.T, tg target.Target) string { return dirs[tg] },
		Large: true,
	})
}

// readAll reads a whole file through the target.
func readAll(t testing.TB, tg *Target, p string) []byte {
	t.Helper()
	rc, err := tg.Open(t.Context(), p, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
