package sftp

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ftpsync-mount/ftpsync-mount/internal/testutil"
	"github.com/ftpsync-mount/ftpsync-mount/target"
	"github.com/ftpsync-mount/ftpsync-mount/target/targettest"
)

// roots maps each target to the folder on disk that backs it.
type roots struct {
	mu sync.Mutex // protects m
	m  map[target.Target]string
}

func (r *roots) set(tg target.Target, dir string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[target.Target]string{}
	}
	r.m[tg] = dir
}

func (r *roots) get(_ *testing.T, tg target.Target) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[tg]
}

// TestContractInProcess runs the target contract against pkg/sftp's server
// behind an SSH server in this process, logging in with the password.
func TestContractInProcess(t *testing.T) {
	isolate(t)
	srv := startServer(t)
	var dirs roots
	targettest.Run(t, targettest.Harness{
		New: func(t *testing.T) target.Target {
			sub := targettest.FreshDir(t, srv.Root)
			tg, err := New(t.Context(), Options{URL: srv.URL(sub), Password: srv.Password,
				KnownHostsFile: srv.KnownHosts, Log: testutil.Log(t), Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			dirs.set(tg, filepath.Join(srv.Root, sub))
			return tg
		},
		Root: dirs.get,
	})
}

// realSSHD is what scripts/test-servers.sh exports for its private sshd.
type realSSHD struct {
	url, root, key, knownHosts, password string
}

// sshdEnv reads the variables of the script's sshd. Without them the test
// skips, except in CI, where a missing server is a failure.
func sshdEnv(t *testing.T) realSSHD {
	t.Helper()
	var s realSSHD
	s.url, s.root, s.password = targettest.RealServer(t, "FTPSYNC_TEST_SFTP")
	files := targettest.NeedEnv(t, "FTPSYNC_TEST_SFTP_KEY", "FTPSYNC_TEST_SFTP_KNOWN_HOSTS")
	s.key, s.knownHosts = files[0], files[1]
	s.url = strings.TrimSuffix(s.url, "/")
	return s
}

// TestContractOpenSSH runs the contract against Debian's OpenSSH server
// started by scripts/test-servers.sh, logging in with the generated key,
// each case in a fresh folder made through the server (so that the test
// user owns it). It runs a second time as if the server had no
// posix-rename@openssh.com, to cover the remove-then-rename fallback that
// OpenSSH's plain rename (which refuses to replace) needs.
func TestContractOpenSSH(t *testing.T) {
	isolate(t)
	s := sshdEnv(t)
	t.Run("posix-rename", func(t *testing.T) { runOpenSSHContract(t, s, true) })
	t.Run("plain-rename", func(t *testing.T) { runOpenSSHContract(t, s, false) })
}

func runOpenSSHContract(t *testing.T, s realSSHD, posixRename bool) {
	var dirs roots
	targettest.Run(t, targettest.Harness{
		New: func(t *testing.T) target.Target {
			opts := Options{URL: s.url, IdentityFile: s.key, KnownHostsFile: s.knownHosts,
				Log: testutil.Log(t), Timeout: 20 * time.Second}
			top, err := New(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer top.Close()
			sub := targettest.FreshRemoteDir(t, top)
			opts.URL = s.url + "/" + sub
			tg, err := New(t.Context(), opts)
			if err != nil {
				t.Fatal(err)
			}
			if !tg.posixRename {
				t.Fatal("OpenSSH did not offer posix-rename@openssh.com")
			}
			tg.posixRename = posixRename
			if s.root != "" {
				dirs.set(tg, filepath.Join(s.root, sub))
			}
			return tg
		},
		Root:  dirs.get,
		Large: posixRename,
	})
}
