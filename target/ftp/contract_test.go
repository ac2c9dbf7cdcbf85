package ftp

import (
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
			sub := targettest.FreshDir(t, srv.Root)
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

// realServer is one server started by scripts/test-servers.sh: its name
// and the prefix of the variables the script exports for it.
type realServer struct{ name, envPrefix string }

var (
	proftpd = realServer{"proftpd", "FTPSYNC_TEST_PROFTPD"}
	vsftpd  = realServer{"vsftpd", "FTPSYNC_TEST_VSFTPD"}
)

// TestContractRealServers runs the contract against proftpd and vsftpd.
// Without the servers it skips, except in CI, where a missing server is a
// failure (a silently skipped suite hides regressions).
func TestContractRealServers(t *testing.T) {
	for _, s := range []realServer{proftpd, vsftpd} {
		t.Run(s.name, func(t *testing.T) {
			u, root, pw := targettest.RealServer(t, s.envPrefix)
			runRealContract(t, u, root, pw, Options{})
		})
	}
	t.Run("proftpd-explicit-tls", func(t *testing.T) {
		u, root, pw := targettest.RealServer(t, proftpd.envPrefix)
		ca := targettest.NeedEnv(t, "FTPSYNC_TEST_CA")[0]
		runRealContract(t, "ftpes"+strings.TrimPrefix(u, "ftp"), root, pw, Options{CAFile: ca})
	})
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
			sub := targettest.FreshRemoteDir(t, top)
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
